//! Who this node is: its hostname and addresses, matched against the members
//! the profile lists (by address first, then by name).

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use kiln_node::node_config::Member;

/// What the node can observe about itself.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    /// Non-loopback, non-link-local addresses, in interface order.
    pub addresses: Vec<IpAddr>,
}

impl HostFacts {
    /// Reads the hostname and interface addresses (the network namespace's,
    /// when run under `ip netns exec`).
    pub fn detect() -> Result<HostFacts> {
        let hostname = nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .into_owned();
        let addresses = nix::ifaddrs::getifaddrs()
            .context("listing the network interfaces' addresses")?
            .filter_map(|ifa| ifa.address)
            .filter_map(|addr| {
                if let Some(v4) = addr.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .filter(|ip| usable(*ip))
            .collect();
        Ok(HostFacts {
            hostname,
            addresses,
        })
    }
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// This node as an etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: IpAddr,
    /// Extra DNS names for certificates.
    pub dns_names: Vec<String>,
    pub kind: IdentityKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A listed member on its listed address: the builder made its certificates.
    Listed,
    /// A listed name on a new address: it mints certificates for the new address.
    ListedNameNewAddress,
    /// Not in the profile: named after its hostname, mints its own certificates.
    Unlisted,
}

impl NodeIdentity {
    /// Whether this node may bootstrap a new cluster (only the initial members may).
    pub fn is_initial_member(&self) -> bool {
        self.kind == IdentityKind::Listed
    }
}

/// Matches the host against the listed members.
pub fn identify(facts: &HostFacts, members: &[Member]) -> Result<NodeIdentity> {
    if let Some(m) = members.iter().find(|m| facts.addresses.contains(&m.ip)) {
        return Ok(NodeIdentity {
            name: m.name.clone(),
            ip: m.ip,
            dns_names: m.dns_names.clone(),
            kind: IdentityKind::Listed,
        });
    }
    let Some(&ip) = facts.addresses.first() else {
        bail!(
            "this node has no usable network address (only loopback or link-local); \
             bring up its network before kiln-firstboot runs"
        );
    };
    let short = facts.hostname.split('.').next().unwrap_or_default();
    if let Some(m) = members.iter().find(|m| m.name == short) {
        return Ok(NodeIdentity {
            name: m.name.clone(),
            ip,
            dns_names: m.dns_names.clone(),
            kind: IdentityKind::ListedNameNewAddress,
        });
    }
    if short.is_empty() {
        bail!("this node has no hostname and its addresses match no listed member; set a hostname");
    }
    Ok(NodeIdentity {
        name: short.to_owned(),
        ip,
        dns_names: vec![],
        kind: IdentityKind::Unlisted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        ["10.77.0.11", "10.77.0.12"]
            .iter()
            .enumerate()
            .map(|(i, ip)| Member {
                name: format!("etcd{}", i + 1),
                ip: ip.parse().unwrap(),
                dns_names: vec![],
            })
            .collect()
    }

    fn facts(hostname: &str, ip: &str) -> HostFacts {
        HostFacts {
            hostname: hostname.into(),
            addresses: vec![ip.parse().unwrap()],
        }
    }

    #[test]
    fn address_wins_over_hostname() {
        let id = identify(&facts("etcd1", "10.77.0.12"), &members()).unwrap();
        assert_eq!((id.name.as_str(), id.kind), ("etcd2", IdentityKind::Listed));
    }

    #[test]
    fn listed_name_on_a_new_address_is_recognised() {
        let id = identify(&facts("etcd2.kiln.test", "10.77.0.40"), &members()).unwrap();
        assert_eq!(id.name, "etcd2");
        assert_eq!(id.kind, IdentityKind::ListedNameNewAddress);
        assert!(!id.is_initial_member());
    }

    #[test]
    fn unknown_host_is_unlisted() {
        let id = identify(&facts("spare7", "10.77.0.40"), &members()).unwrap();
        assert_eq!(
            (id.name.as_str(), id.kind),
            ("spare7", IdentityKind::Unlisted)
        );
    }
}
