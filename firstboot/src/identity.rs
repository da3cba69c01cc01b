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
    /// Not in the profile: named after its hostname (or its address, when the
    /// hostname is no usable name), mints its own certificates.
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
    Ok(NodeIdentity {
        name: unlisted_name(&facts.hostname, ip),
        ip,
        dns_names: vec![],
        kind: IdentityKind::Unlisted,
    })
}

/// Hostnames that images and distributions give every machine until it is
/// named: a node called one of these shares its name with every other
/// unnamed node, and the name says nothing about which machine it is.
/// systemd's fallback is "localhost" (option fallback-hostname,
/// meson_options.txt), the kernel's "(none)" (CONFIG_DEFAULT_HOSTNAME,
/// init/Kconfig); the rest are
/// the names the distributions' cloud and installer images ship with.
const DEFAULT_HOSTNAMES: &[&str] = &[
    "localhost",
    "(none)",
    "debian",
    "ubuntu",
    "fedora",
    "centos",
    "rhel",
    "rocky",
    "almalinux",
    "archlinux",
    "alpine",
    "raspberrypi",
];

/// The name an unlisted node takes in etcd, in its certificates and as its
/// kubeadm node name: its hostname's first label, lowercased as the kubelet
/// does (GetHostname, pkg/util/node/node.go), when that is a DNS-1123 label
/// and not a distribution's default; otherwise one derived from its address,
/// which is unique in the cluster by construction.
fn unlisted_name(hostname: &str, ip: IpAddr) -> String {
    let short = hostname
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let unusable = if !is_dns1123_label(&short) {
        "is not a DNS-1123 label (a-z, 0-9 and '-', 1-63 characters, no '-' at either end)"
    } else if DEFAULT_HOSTNAMES.contains(&short.as_str()) {
        "is a distribution's default, which other unnamed nodes share"
    } else {
        return short;
    };
    let name = address_name(ip);
    tracing::warn!(
        hostname,
        member = %name,
        "this node's hostname {hostname:?} {unusable}: it is named {name} after its address"
    );
    name
}

/// Kubernetes' rule for node names it reaches as labels (IsDNS1123Label,
/// staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go):
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1123_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `node-10-77-0-11`, or for IPv6 every segment in hex (`node-fd00-0-0-0-0-0-0-11`):
/// uncompressed, so no two addresses share a name and none ends in '-'.
fn address_name(ip: IpAddr) -> String {
    let parts: Vec<String> = match ip {
        IpAddr::V4(v4) => v4.octets().iter().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6.segments().iter().map(|s| format!("{s:x}")).collect(),
    };
    format!("node-{}", parts.join("-"))
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

    #[test]
    fn unlisted_hostnames_that_are_no_usable_name_give_way_to_the_address() {
        let v4: IpAddr = "10.77.0.11".parse().unwrap();
        let v6: IpAddr = "fd00::11".parse().unwrap();
        for bad in [
            "",
            "(none)",
            "localhost",
            "localhost.localdomain",
            "Debian",
            "ubuntu.example.org",
            "-spare",
            "spare-",
            "spare_7",
            "späre",
            &"a".repeat(64),
        ] {
            let id = identify(&facts(bad, "10.77.0.40"), &members()).unwrap();
            assert_eq!(id.name, "node-10-77-0-40", "hostname {bad:?}");
            assert_eq!(id.kind, IdentityKind::Unlisted);
            assert_eq!(unlisted_name(bad, v6), "node-fd00-0-0-0-0-0-0-11");
        }
        for good in ["spare7", "a", "node-7b", &"a".repeat(63)] {
            assert_eq!(unlisted_name(good, v4), *good);
        }
        assert_eq!(unlisted_name("Spare7.Example.org", v4), "spare7");
        assert_eq!(
            unlisted_name("localhost", "fd00:0:0:ffff::".parse().unwrap()),
            "node-fd00-0-0-ffff-0-0-0-0"
        );
    }
}
