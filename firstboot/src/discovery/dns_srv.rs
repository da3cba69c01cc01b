//! Discovery through DNS SRV records `_etcd-server-ssl._tcp.<domain>`, the
//! names etcd itself uses, with a minimal UDP DNS client (no resolver crate:
//! the agent needs one query type and must stay small).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use super::PeerSource;
use kiln_node::layout::under_root;
use kiln_node::node_config::{url_for, NodeConfig};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct DnsSrv {
    service: String,
    resolv_conf: PathBuf,
    client_port: u16,
}

impl DnsSrv {
    pub fn new(config: &NodeConfig, root: &Path) -> DnsSrv {
        DnsSrv {
            service: format!("_etcd-server-ssl._tcp.{}", config.domain),
            resolv_conf: under_root(root, Path::new("/etc/resolv.conf")),
            client_port: config.etcd.client_port,
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
        let answer = query(server, &self.service, TYPE_SRV)?;
        let mut urls = Vec::new();
        for target in answer.srv_targets {
            let mut ips: Vec<IpAddr> = answer
                .addresses
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(&target))
                .map(|(_, ip)| *ip)
                .collect();
            if ips.is_empty() {
                ips = query(server, &target, TYPE_A)?
                    .addresses
                    .into_iter()
                    .map(|(_, ip)| ip)
                    .collect();
            }
            urls.extend(ips.into_iter().map(|ip| url_for(ip, self.client_port)));
        }
        ensure!(
            !urls.is_empty(),
            "{server} knows no {} records",
            self.service
        );
        Ok(urls)
    }
}

/// The records of one answer the agent cares about.
#[derive(Debug, Default)]
struct Answer {
    srv_targets: Vec<String>,
    addresses: Vec<(String, IpAddr)>,
}

fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Answer> {
    let id = fastrand::u16(..);
    let mut msg = vec![0u8; 12];
    msg[0..2].copy_from_slice(&id.to_be_bytes());
    msg[2] = 0x01; // recursion desired
    msg[5] = 1; // one question
    for label in name.trim_end_matches('.').split('.') {
        ensure!(
            !label.is_empty() && label.len() < 64,
            "bad DNS name {name:?}"
        );
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());

    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).context("opening a UDP socket for DNS")?;
    socket.set_read_timeout(Some(QUERY_TIMEOUT))?;
    socket
        .connect(server)
        .with_context(|| format!("reaching DNS server {server}"))?;
    socket
        .send(&msg)
        .with_context(|| format!("querying {server} for {name}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .with_context(|| format!("waiting for {server} to answer about {name}"))?;
        if n >= 2 && buf[0..2] == id.to_be_bytes() {
            return parse(&buf[..n])
                .with_context(|| format!("reading {server}'s answer about {name}"));
        }
    }
}

fn parse(msg: &[u8]) -> Result<Answer> {
    ensure!(msg.len() >= 12, "truncated header");
    let rcode = msg[3] & 0x0f;
    ensure!(
        rcode == 0 || rcode == 3,
        "server answered with error code {rcode}"
    );
    let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
    let (questions, records) = (count(4), count(6) + count(8) + count(10));
    let mut pos = 12;
    for _ in 0..questions {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut answer = Answer::default();
    for _ in 0..records {
        let (owner, next) = read_name(msg, pos)?;
        let header = msg.get(next..next + 10).context("truncated record")?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[8], header[9]]));
        let start = next + 10;
        let data = msg
            .get(start..start + len)
            .context("truncated record data")?;
        match rtype {
            TYPE_SRV if len > 6 => answer.srv_targets.push(read_name(msg, start + 6)?.0),
            TYPE_A if len == 4 => {
                let octets: [u8; 4] = data.try_into()?;
                answer.addresses.push((owner, IpAddr::from(octets)));
            }
            TYPE_AAAA if len == 16 => {
                let octets: [u8; 16] = data.try_into()?;
                answer.addresses.push((owner, IpAddr::from(octets)));
            }
            _ => {}
        }
        pos = start + len;
    }
    Ok(answer)
}

/// Reads a possibly compressed name; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut after = None;
    for _ in 0..128 {
        let len = *msg.get(pos).context("truncated name")?;
        match len {
            0 => return Ok((labels.join("."), after.unwrap_or(pos + 1))),
            l if l & 0xc0 == 0xc0 => {
                let low = *msg.get(pos + 1).context("truncated name pointer")?;
                after.get_or_insert(pos + 2);
                pos = (usize::from(l & 0x3f) << 8) | usize::from(low);
            }
            l => {
                let bytes = msg
                    .get(pos + 1..pos + 1 + usize::from(l))
                    .context("truncated label")?;
                labels.push(String::from_utf8_lossy(bytes).into_owned());
                pos += 1 + usize::from(l);
            }
        }
    }
    bail!("name compression loop")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_srv_answer_with_compressed_target_and_glue() {
        // Answer for _s._tcp.x: SRV 0 0 2380 a.x, additional a.x A 10.77.9.11.
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
        msg.extend_from_slice(b"\x02_s\x04_tcp\x01x\x00\x00\x21\x00\x01");
        msg.extend_from_slice(&[
            0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 10, 0, 0, 0, 0, 0x09, 0x4c,
        ]);
        msg.extend_from_slice(&[1, b'a', 0xc0, 20]);
        msg.extend_from_slice(&[
            1, b'a', 0xc0, 20, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 77, 9, 11,
        ]);
        let answer = parse(&msg).unwrap();
        assert_eq!(answer.srv_targets, vec!["a.x"]);
        assert_eq!(
            answer.addresses,
            vec![("a.x".into(), "10.77.9.11".parse().unwrap())]
        );
    }
}
