//! Discovery through DNS SRV records `_etcd-server-ssl._tcp.<domain>`, the
//! names etcd itself uses, with a minimal DNS client (no resolver crate:
//! the agent needs one query type and must stay small). DNS answers are not
//! authenticated: what they name is only ever a candidate to probe over
//! mutual TLS, bounded in number and in time.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::dns_client::query;
use super::dns_message::{Answer, Question, TYPE_A, TYPE_AAAA, TYPE_SRV};
use super::PeerSource;
use kiln_node::layout::under_root;
use kiln_node::node_config::{url_for, NodeConfig};

/// The most SRV targets one lookup follows, and the most client URLs it
/// gives: etcd clusters have a handful of members, and each target may cost
/// two queries. The rest of an answer is dropped, and the journal says so.
const MAX_SRV_TARGETS: usize = 16;
const MAX_URLS: usize = 16;
/// One whole lookup (the SRV query and every target's) ends within this,
/// and each query within `QUERY_DEADLINE` of it: the agent's retry loop
/// does not interrupt an attempt, so discovery bounds its own.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
const QUERY_DEADLINE: Duration = Duration::from_secs(2);

pub struct DnsSrv {
    service: String,
    resolv_conf: PathBuf,
    client_port: u16,
    /// What the last lookup dropped or skipped, so the journal hears it once.
    said: Mutex<String>,
}

impl DnsSrv {
    pub fn new(config: &NodeConfig, root: &Path) -> DnsSrv {
        DnsSrv {
            service: format!("_etcd-server-ssl._tcp.{}", config.domain),
            resolv_conf: under_root(root, Path::new("/etc/resolv.conf")),
            client_port: config.etcd.client_port,
            said: Mutex::new(String::new()),
        }
    }

    fn nameserver(&self) -> Result<SocketAddr> {
        let text = std::fs::read_to_string(&self.resolv_conf)
            .with_context(|| format!("reading {}", self.resolv_conf.display()))?;
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .find_map(|rest| rest.trim().parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .with_context(|| format!("{} names no nameserver", self.resolv_conf.display()))
    }
}

impl PeerSource for DnsSrv {
    fn describe(&self) -> String {
        format!("DNS SRV {}", self.service)
    }

    fn client_urls(&self) -> Result<Vec<String>> {
        let server = self.nameserver()?;
        let deadline = Instant::now() + LOOKUP_DEADLINE;
        let found = lookup(server, &self.service, self.client_port, deadline)?;
        let notes = found.notes.join("; ");
        let mut said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        if !notes.is_empty() && *said != notes {
            tracing::warn!(source = %self.describe(), "{notes}");
        }
        *said = notes;
        Ok(found.urls)
    }
}

/// What one lookup found, and what it left out.
#[derive(Debug)]
struct Found {
    urls: Vec<String>,
    notes: Vec<String>,
}

/// The client URLs `service`'s SRV targets give, asking `server` by
/// `deadline`. A target whose addresses cannot be found is skipped (the
/// others may still lead to the cluster); the lookup fails only when no
/// target gives an address.
fn lookup(server: SocketAddr, service: &str, port: u16, deadline: Instant) -> Result<Found> {
    let ask = |name: &str, qtype| {
        let question = Question {
            name: name.to_owned(),
            qtype,
        };
        query(
            server,
            &question,
            deadline.min(Instant::now() + QUERY_DEADLINE),
        )
    };
    let answer = ask(service, TYPE_SRV)?;
    let mut targets: Vec<&str> = Vec::new();
    for (owner, target) in &answer.srv {
        let new = !targets.iter().any(|t| t.eq_ignore_ascii_case(target));
        if owner.eq_ignore_ascii_case(service) && new {
            targets.push(target);
        }
    }
    let mut notes = Vec::new();
    if targets.len() > MAX_SRV_TARGETS {
        notes.push(format!(
            "{server} named {} SRV targets for {service}; following the first {MAX_SRV_TARGETS}",
            targets.len()
        ));
        targets.truncate(MAX_SRV_TARGETS);
    }
    let (mut urls, mut skipped) = (Vec::new(), Vec::new());
    for target in targets {
        let glue: Vec<IpAddr> = answer
            .addresses
            .iter()
            .filter(|(owner, _)| owner.eq_ignore_ascii_case(target))
            .map(|(_, ip)| *ip)
            .collect();
        let ips = if glue.is_empty() {
            addresses(target, &ask)
        } else {
            Ok(glue)
        };
        match ips {
            Ok(ips) => {
                for url in ips.into_iter().map(|ip| url_for(ip, port)) {
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
            Err(e) => skipped.push(format!("{target} ({e:#})")),
        }
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "skipped SRV targets of {service} without an address: {}",
            skipped.join(", ")
        ));
    }
    if urls.len() > MAX_URLS {
        notes.push(format!(
            "{service}'s targets have {} addresses; asking the first {MAX_URLS}",
            urls.len()
        ));
        urls.truncate(MAX_URLS);
    }
    ensure!(
        !urls.is_empty(),
        "{server} knows no {service} records with an address{}",
        notes.last().map_or(String::new(), |n| format!(" ({n})"))
    );
    Ok(Found { urls, notes })
}

/// `target`'s IPv4 addresses, or its IPv6 ones when it has none.
fn addresses(target: &str, ask: &impl Fn(&str, u16) -> Result<Answer>) -> Result<Vec<IpAddr>> {
    let of = |qtype| -> Result<Vec<IpAddr>> {
        let answer = ask(target, qtype)?;
        Ok(answer
            .addresses
            .into_iter()
            .filter(|(owner, _)| owner.eq_ignore_ascii_case(target))
            .map(|(_, ip)| ip)
            .collect())
    };
    let v4 = of(TYPE_A);
    if matches!(&v4, Ok(ips) if !ips.is_empty()) {
        return v4;
    }
    match (v4, of(TYPE_AAAA)) {
        (_, Ok(v6)) if !v6.is_empty() => Ok(v6),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Ok(_), Ok(_)) => anyhow::bail!("no A or AAAA record"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::fake_dns::{question, reply, FakeDns, Rec};
    use super::*;

    const SERVICE: &str = "_etcd-server-ssl._tcp.kiln.test";
    const NOW: Duration = Duration::ZERO;

    /// How the test's server answers a target's address query: (rcode,
    /// addresses), or `None` for silence.
    type AddressAnswer = fn(&str, u16) -> Option<(u8, Vec<Ipv4Addr>)>;

    /// A server whose SRV answer names `targets`; each target's address
    /// queries are answered by `address`.
    fn server(targets: Vec<String>, glue: usize, address: AddressAnswer) -> FakeDns {
        FakeDns::start(
            Box::new(move |query| {
                let (name, qtype) = question(query);
                if qtype == TYPE_SRV {
                    let mut records: Vec<Rec> =
                        targets.iter().map(|t| Rec::Srv(SERVICE, t)).collect();
                    for (i, t) in targets.iter().enumerate() {
                        for g in 0..glue {
                            let ip = Ipv4Addr::new(10, 77, i as u8, g as u8 + 1);
                            records.push(Rec::A(t, ip));
                        }
                    }
                    return vec![(NOW, reply(query, 0, 0, &records))];
                }
                let Some((rcode, ips)) = address(&name, qtype) else {
                    return vec![];
                };
                let records: Vec<Rec> = ips.iter().map(|ip| Rec::A(&name, *ip)).collect();
                vec![(NOW, reply(query, 0, rcode, &records))]
            }),
            None,
        )
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("{n}.kiln.test")).collect()
    }

    #[test]
    fn a_failing_target_is_skipped_and_the_lookup_keeps_its_deadline() {
        let dns = server(names(&["a", "b", "c"]), 0, |name, qtype| {
            match (name.split('.').next().unwrap(), qtype) {
                ("a", _) => Some((2, vec![])), // SERVFAIL
                ("b", TYPE_A) => Some((0, vec![Ipv4Addr::new(10, 77, 0, 12)])),
                _ => None, // c: never answered
            }
        });
        let start = Instant::now();
        let found = lookup(dns.addr, SERVICE, 2379, start + Duration::from_millis(800)).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(1300),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(found.urls, vec!["https://10.77.0.12:2379"]);
        let notes = found.notes.join("; ");
        assert!(
            notes.contains("a.kiln.test (reading") && notes.contains("error code 2"),
            "{notes}"
        );
        assert!(notes.contains("c.kiln.test (DNS server"), "{notes}");
    }

    #[test]
    fn the_source_fails_only_when_no_target_has_an_address() {
        let dns = server(names(&["a", "b"]), 0, |_, _| Some((2, vec![])));
        let deadline = Instant::now() + Duration::from_secs(2);
        let err = lookup(dns.addr, SERVICE, 2379, deadline).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("knows no _etcd-server-ssl._tcp.kiln.test records with an address")
                && text.contains("a.kiln.test")
                && text.contains("b.kiln.test"),
            "{text}"
        );
    }

    #[test]
    fn answers_past_the_caps_are_dropped_and_said() {
        let targets: Vec<String> = (0..20).map(|i| format!("t{i}.kiln.test")).collect();
        let dns = server(targets, 1, |_, _| None);
        let deadline = Instant::now() + Duration::from_secs(2);
        let found = lookup(dns.addr, SERVICE, 2379, deadline).unwrap();
        assert_eq!(found.urls.len(), MAX_SRV_TARGETS);
        assert!(
            found.notes[0].contains("named 20 SRV targets"),
            "{:?}",
            found.notes
        );

        let targets: Vec<String> = (0..10).map(|i| format!("t{i}.kiln.test")).collect();
        let dns = server(targets, 3, |_, _| None);
        let found = lookup(dns.addr, SERVICE, 2379, deadline).unwrap();
        assert_eq!(found.urls.len(), MAX_URLS);
        assert!(
            found.notes[0].contains("have 30 addresses"),
            "{:?}",
            found.notes
        );
    }
}
