//! The node configuration: what the builder tells every node of a role, written
//! to `/etc/kiln/node.toml`. It is the same file on every node of the role; each
//! node finds out at boot which member (if any) it is.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::Cidr;
use crate::pki::KeyAlgorithm;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Cluster name; also etcd's `--initial-cluster-token`.
    pub cluster: String,
    /// DNS domain of the nodes (FQDN = `<name>.<domain>`).
    pub domain: String,
    pub role: Role,
    pub kubernetes_version: String,
    pub pki: PkiSettings,
    pub etcd: EtcdSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Etcd,
    Master,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSettings {
    pub key_algorithm: KeyAlgorithm,
    /// Validity of the leaf certificates kiln issues: the ones the agent
    /// mints for unlisted nodes and the ones it renews.
    pub leaf_validity_seconds: u64,
    /// A node renews a kiln-issued certificate with less than this left.
    pub renew_before_seconds: u64,
    /// Validity of the cluster's CAs (kubeadm's caCertificateValidityPeriod).
    pub ca_validity_days: u32,
}

/// Where etcd runs relative to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Dedicated etcd nodes (kubeadm's external etcd).
    #[default]
    External,
    /// etcd runs on the masters.
    Stacked,
}

/// How a node finds its etcd peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoverySource {
    /// The initial members listed in the profile.
    Static,
    /// DNS SRV records `_etcd-server-ssl._tcp.<domain>`.
    DnsSrv,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSettings {
    pub topology: Topology,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub discovery: Vec<DiscoverySource>,
    /// The initial members: the only nodes allowed to bootstrap a new cluster.
    pub members: Vec<Member>,
    /// The snapshot timer's settings; absent, the node takes no snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSettings>,
    /// Snapshot file on the node the initial members rebuild the cluster
    /// from when they bootstrap it (see docs/backup.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<PathBuf>,
    /// Voting members the cluster keeps (`etcd.size`); absent, as many as
    /// the role lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Seconds the cluster must have seen a member dead before a new node
    /// takes its place (`etcd.replace_dead_after`).
    #[serde(default = "default_replace_dead_after")]
    pub replace_dead_after_seconds: u64,
    /// `host:port` of a stable client endpoint in front of the members (a
    /// load balancer or a DNS name, `etcd.endpoint`): discovery asks it
    /// too, and every member's certificates name its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `etcd.replace_dead_after`'s default: 2 minutes.
pub const DEFAULT_REPLACE_DEAD_AFTER_SECONDS: u64 = 120;

fn default_replace_dead_after() -> u64 {
    DEFAULT_REPLACE_DEAD_AFTER_SECONDS
}

/// `kiln-firstboot snapshot`, run by `kiln-snapshot.timer` on etcd nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Seconds between two snapshots (the timer's period).
    pub interval_seconds: u64,
    /// Keep the newest snapshot of each of the last this many hours.
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the last this many days.
    pub keep_daily: u32,
    /// A mounted folder every snapshot is also copied to (same pruning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSettings {
    /// `host:port` clients and kubelets use to reach the API server.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Vip>,
    pub masters: Vec<Member>,
    pub pod_subnet: String,
    pub service_subnet: String,
    /// The networks the nodes live on (`cluster.node_subnets`): a master
    /// takes a keepalived peer registered in etcd only inside one. Empty in
    /// node.toml files of older builders, which then take no registered
    /// peer at all (the listed masters still are peers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_subnets: Vec<Cidr>,
    /// kubeadm's CA pin: `sha256:<hex of the cluster CA's SubjectPublicKeyInfo>`.
    pub discovery_hash: String,
    /// Lifetime of the bootstrap token in seconds; 0 means it never expires.
    #[serde(default)]
    pub token_ttl_seconds: u64,
}

/// Masters that share one VIP at most, listed and registered ones
/// together. VRRP has no limit of its own; this one bounds what a rogue
/// registration in etcd can add to every master's keepalived.conf (each
/// peer gets an advert a second from every master), and lies far above any
/// real control plane (kubeadm's HA guides use 3 or 5 masters).
pub const MAX_VIP_MASTERS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    pub address: IpAddr,
    pub interface: String,
    /// VRRP virtual router id, unique among the VRRP routers of the segment.
    #[serde(default = "default_virtual_router_id")]
    pub virtual_router_id: u8,
    /// Talk VRRP to the listed masters by unicast (clouds drop multicast).
    #[serde(default = "default_true")]
    pub unicast: bool,
}

fn default_virtual_router_id() -> u8 {
    51
}

fn default_true() -> bool {
    true
}

/// A node configuration the agent cannot use: bad input, exit 2. The
/// cause is the error's source, so `{:#}` prints it once.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("reading node configuration {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node configuration {path} is invalid (rebuild the image with `kiln build`)")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| NodeConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("node configuration always serializes")
    }

    /// Voting members the etcd cluster keeps: `etcd.size`, or the members
    /// the topology lists (the masters for stacked etcd).
    pub fn etcd_size(&self) -> usize {
        self.etcd.size.unwrap_or_else(|| match self.etcd.topology {
            Topology::External => self.etcd.members.len(),
            Topology::Stacked => self.control_plane.as_ref().map_or(0, |cp| cp.masters.len()),
        })
    }

    /// Whether this node runs an etcd member: etcd nodes, and masters
    /// with stacked etcd.
    pub fn runs_etcd(&self) -> bool {
        match self.role {
            Role::Etcd => true,
            Role::Master => self.etcd.topology == Topology::Stacked,
            Role::Worker => false,
        }
    }

    /// The host of `etcd.endpoint`, when the profile has one.
    pub fn etcd_endpoint_host(&self) -> Option<&str> {
        self.etcd.endpoint.as_deref().map(endpoint_host)
    }

    /// Where etcd's clients (the API servers) reach it: the stable endpoint
    /// when the profile has one, which outlives every member's address,
    /// else every initial member.
    pub fn etcd_for_clients(&self) -> Vec<String> {
        match &self.etcd.endpoint {
            Some(endpoint) => vec![endpoint_url(endpoint)],
            None => self.etcd_client_urls(),
        }
    }

    /// `https://<ip>:<client_port>` of every initial member.
    pub fn etcd_client_urls(&self) -> Vec<String> {
        self.etcd
            .members
            .iter()
            .map(|m| url_for(m.ip, self.etcd.client_port))
            .collect()
    }
}

/// The client URL of a `host:port` endpoint.
pub fn endpoint_url(endpoint: &str) -> String {
    format!("https://{endpoint}")
}

/// Where every API server of the cluster listens on its own node.
pub const API_SERVER_PORT: u16 = 6443;

/// The port of `host:port`; kubeadm's default when there is none.
pub fn endpoint_port(endpoint: &str) -> u16 {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(API_SERVER_PORT)
}

/// The host of `host:port` (an IPv6 host without its brackets).
pub fn endpoint_host(endpoint: &str) -> &str {
    match endpoint.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host),
    }
}

/// `https://ip:port`, with brackets around IPv6 addresses.
pub fn url_for(ip: IpAddr, port: u16) -> String {
    format!("https://{}:{port}", bracketed(ip))
}

/// The address as the host of a URL or `host:port`: IPv6 in brackets.
pub fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(endpoint_host("10.0.0.20:6443"), "10.0.0.20");
        assert_eq!(endpoint_host("[fd00::20]:8443"), "fd00::20");
        assert_eq!(endpoint_host("api.kiln.test"), "api.kiln.test");
        assert_eq!(endpoint_port("[fd00::20]:8443"), 8443);
        assert_eq!(endpoint_port("api.kiln.test"), 6443);
    }

    #[test]
    fn round_trips_through_toml() {
        let config = NodeConfig {
            cluster: "local".into(),
            domain: "kiln.test".into(),
            role: Role::Etcd,
            kubernetes_version: "1.36.2".into(),
            pki: PkiSettings {
                key_algorithm: KeyAlgorithm::EcdsaP256,
                leaf_validity_seconds: 365 * 86_400,
                renew_before_seconds: 120 * 86_400,
                ca_validity_days: 3650,
            },
            etcd: EtcdSettings {
                topology: Topology::External,
                client_port: 2379,
                peer_port: 2380,
                data_dir: "/var/lib/etcd".into(),
                discovery: vec![DiscoverySource::Static],
                members: vec![Member {
                    name: "etcd1".into(),
                    ip: "fd00::1".parse().unwrap(),
                    dns_names: vec![],
                }],
                backup: Some(BackupSettings {
                    interval_seconds: 3600,
                    keep_hourly: 24,
                    keep_daily: 7,
                    destination: Some("/mnt/backup".into()),
                }),
                restore_from: None,
                size: None,
                replace_dead_after_seconds: DEFAULT_REPLACE_DEAD_AFTER_SECONDS,
                endpoint: None,
            },
            control_plane: None,
        };
        let back: NodeConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.etcd_client_urls(), vec!["https://[fd00::1]:2379"]);
    }
}
