//! `kiln health`: the operator's view of the etcd cluster, from the secrets
//! folder's client certificate and the profile's members: every member, its
//! state, for how long the cluster has not seen it (the members' watchers'
//! reports), and whether the cluster as a whole is healthy at its desired
//! size. With `--wait` it is the gate a pipeline runs between two node
//! replacements.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kiln_node::etcd::client::{EtcdClient, MemberInfo};
use kiln_node::etcd::reports::{parse_reports, unseen_by_cluster, ClusterView, Report};
use kiln_node::layout;
use kiln_node::node_config::{endpoint_url, url_for};
use serde_json::json;

use crate::node_toml::etcd_members;
use crate::profile::LoadedProfile;

/// The operator's etcd client, from the secrets folder of `kiln build`.
pub fn operator_client(secrets: &Path) -> Result<EtcdClient> {
    let file = |name: &str| secrets.join("etcd").join(name);
    EtcdClient::new(
        &file("ca.crt"),
        &file("kiln-agent.crt"),
        &file("kiln-agent.key"),
    )
    .with_context(|| {
        format!(
            "loading the etcd client certificate from {} (the secrets folder of `kiln build`; \
             pass --secrets DIR)",
            secrets.display()
        )
    })
}

/// `endpoints`, or when empty the client URLs of the profile's members and
/// then its `etcd.endpoint` (which still answers after every listed
/// member was replaced on a new address).
pub fn endpoints_or_listed(loaded: &LoadedProfile, endpoints: Vec<String>) -> Vec<String> {
    if !endpoints.is_empty() {
        return endpoints;
    }
    let port = loaded.profile.etcd.client_port;
    etcd_members(&loaded.profile)
        .iter()
        .map(|m| url_for(m.ip, port))
        .chain(loaded.profile.etcd.endpoint.as_deref().map(endpoint_url))
        .collect()
}

/// One member as the cluster reports it.
pub struct MemberHealth {
    pub name: String,
    pub id: String,
    pub client_url: Option<String>,
    pub peer_urls: Vec<String>,
    pub state: &'static str,
    pub healthy: bool,
    /// For how long the cluster has not seen it answer; `None` when no
    /// watcher reports on it.
    pub unseen: Option<Duration>,
}

/// What one look at the cluster found.
pub struct ClusterHealth {
    pub members: Vec<MemberHealth>,
    /// The voting members the cluster keeps (`etcd.size`).
    pub size: usize,
    /// Why the cluster is not healthy; `None` when it is.
    pub problem: Option<String>,
}

/// Where to ask and with which certificate.
pub struct HealthCheck {
    client: EtcdClient,
    endpoints: Vec<String>,
    /// The desired size: fewer members means a replacement is half done
    /// (the dead member removed, the new one not yet added).
    size: usize,
    cluster: String,
}

impl HealthCheck {
    /// `endpoints` overrides the profile's members' client URLs.
    pub fn new(loaded: &LoadedProfile, secrets: &Path, endpoints: Vec<String>) -> Result<Self> {
        Ok(HealthCheck {
            client: operator_client(secrets)?,
            endpoints: endpoints_or_listed(loaded, endpoints),
            size: loaded
                .profile
                .etcd
                .size
                .unwrap_or_else(|| etcd_members(&loaded.profile).len()),
            cluster: loaded.profile.cluster.name.clone(),
        })
    }

    /// One look: the member list from the first endpoint that answers, then
    /// each member's own health.
    pub fn check(&self) -> ClusterHealth {
        let mut errors = Vec::new();
        let list = self.endpoints.iter().find_map(|e| {
            self.client
                .member_list(e)
                .map_err(|err| errors.push(format!("{e}: {err:#}")))
                .ok()
        });
        let Some(list) = list else {
            return ClusterHealth {
                members: vec![],
                size: self.size,
                problem: Some(format!("no etcd endpoint answered: {}", errors.join("; "))),
            };
        };
        let healthy: Vec<bool> = list.iter().map(|m| self.healthy(m)).collect();
        let view = ClusterView {
            alive: list
                .iter()
                .zip(&healthy)
                .filter(|(_, ok)| **ok)
                .map(|(m, _)| m.id.clone())
                .collect(),
            has_leader: healthy.contains(&true),
            reports: self.reports(&list),
            members: list,
        };
        let members: Vec<MemberHealth> = view
            .members
            .iter()
            .zip(healthy)
            .map(|(m, healthy)| member(m, healthy, unseen_by_cluster(&view, &m.id)))
            .collect();
        let mut bad: Vec<String> = members
            .iter()
            .filter(|m| m.state != "voter" || !m.healthy)
            .map(|m| format!("{} is {}{}", display_name(m), describe(m), unseen(m)))
            .collect();
        if members.len() != self.size {
            bad.push(format!(
                "the cluster has {} members, its desired size (etcd.size) is {}",
                members.len(),
                self.size
            ));
        }
        let problem = (!bad.is_empty()).then(|| bad.join(", "));
        ClusterHealth {
            members,
            size: self.size,
            problem,
        }
    }

    fn healthy(&self, m: &MemberInfo) -> bool {
        m.client_urls
            .first()
            .is_some_and(|url| self.client.healthy(url).unwrap_or(false))
    }

    /// The members' watchers' reports, from the first member that answers.
    fn reports(&self, members: &[MemberInfo]) -> Vec<Report> {
        let prefix = layout::keys::watch_reports(&self.cluster);
        members
            .iter()
            .filter_map(|m| m.client_urls.first())
            .find_map(|url| self.client.range(url, &prefix, true, 0).ok())
            .map(|found| parse_reports(&prefix, found.kvs).warn_ignored())
            .unwrap_or_default()
    }

    /// Checks until healthy or `wait` has passed (one check without it).
    pub fn wait(&self, wait: Option<Duration>) -> ClusterHealth {
        let start = Instant::now();
        loop {
            let health = self.check();
            let waited_out = wait.is_none_or(|w| start.elapsed() >= w);
            if health.problem.is_none() || waited_out {
                return health;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn member(m: &MemberInfo, healthy: bool, unseen: Option<Duration>) -> MemberHealth {
    let state = match (m.is_started(), m.is_learner) {
        (false, _) => "unstarted",
        (true, true) => "learner",
        (true, false) => "voter",
    };
    MemberHealth {
        name: m.name.clone(),
        id: m.id.clone(),
        client_url: m.client_urls.first().cloned(),
        peer_urls: m.peer_urls.clone(),
        state,
        healthy,
        unseen,
    }
}

/// ", unseen by the cluster for Ns" for a member the cluster misses.
fn unseen(m: &MemberHealth) -> String {
    match m.unseen {
        Some(d) if !d.is_zero() => format!(", unseen by the cluster for {}s", d.as_secs()),
        _ => String::new(),
    }
}

fn display_name(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        format!("member {}", m.id)
    } else {
        m.name.clone()
    }
}

fn describe(m: &MemberHealth) -> &'static str {
    match (m.state, m.healthy) {
        ("unstarted", _) => "added but not started",
        ("learner", _) => "a learner, not yet promoted",
        (_, false) => "not healthy (no answer or no quorum)",
        _ => "healthy",
    }
}

/// Prints the report; fails with the reason when the cluster is unhealthy.
pub fn report(health: &ClusterHealth, as_json: bool, waited: Option<Duration>) -> Result<()> {
    if as_json {
        let members: Vec<_> = health
            .members
            .iter()
            .map(|m| {
                json!({"name": m.name, "id": m.id, "client_url": m.client_url,
                       "peer_urls": m.peer_urls, "state": m.state, "healthy": m.healthy,
                       "unseen_seconds": m.unseen.map(|d| d.as_secs())})
            })
            .collect();
        let value = json!({"healthy": health.problem.is_none(), "problem": health.problem,
                           "desired_size": health.size, "members": members});
        println!("{value:#}");
    } else {
        for m in &health.members {
            println!(
                "{:<12} {:<24} {:<10} {}{}",
                display_name(m),
                m.client_url.as_deref().unwrap_or("-"),
                m.state,
                describe(m),
                unseen(m)
            );
        }
    }
    match (&health.problem, waited) {
        (None, _) => {
            if !as_json {
                println!(
                    "cluster healthy: {} members started and voting, its desired size",
                    health.members.len()
                );
            }
            Ok(())
        }
        (Some(problem), Some(w)) => bail!("cluster not healthy after {}s: {problem}", w.as_secs()),
        (Some(problem), None) => bail!("cluster not healthy: {problem}"),
    }
}
