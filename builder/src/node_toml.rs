//! From the profile to each role's `/etc/kiln/node.toml`, the agent's contract
//! (its types are `kiln_node::node_config`).

use std::path::PathBuf;

use kiln_node::layout::etcd::BAKED_SNAPSHOT;
use kiln_node::node_config::{
    BackupSettings, ControlPlaneSettings, EtcdSettings, Member, NodeConfig, PkiSettings, Role,
    Topology,
};

use crate::profile::{BackupSection, NodeSpec, Profile, RestoreSource};

/// The etcd members the profile lists: the etcd nodes, or the masters when
/// etcd is stacked on the control plane.
pub fn etcd_members(profile: &Profile) -> Vec<Member> {
    let nodes = match profile.etcd.topology {
        Topology::External => &profile.etcd.members[..],
        Topology::Stacked => profile
            .control_plane
            .as_ref()
            .map_or(&[][..], |cp| &cp.masters[..]),
    };
    nodes.iter().map(member).collect()
}

fn member(node: &NodeSpec) -> Member {
    Member {
        name: node.name.clone(),
        ip: node.ip,
        dns_names: node.dns_names.clone(),
    }
}

/// `/etc/kiln/node.toml` for every node of `role`.
pub fn node_config(profile: &Profile, role: Role, discovery_hash: &str) -> NodeConfig {
    let cluster = &profile.cluster;
    NodeConfig {
        cluster: cluster.name.clone(),
        domain: cluster.domain.clone(),
        role,
        kubernetes_version: cluster.kubernetes_version.to_string(),
        pki: PkiSettings {
            key_algorithm: profile.pki.key_algorithm,
            leaf_validity_seconds: profile.pki.leaf_validity_seconds(),
            renew_before_seconds: profile.pki.renew_before_seconds(),
            ca_validity_days: profile.pki.ca_validity_days,
        },
        etcd: EtcdSettings {
            topology: profile.etcd.topology,
            client_port: profile.etcd.client_port,
            peer_port: profile.etcd.peer_port,
            data_dir: profile.etcd.data_dir.clone(),
            discovery: profile.etcd.discovery.clone(),
            members: etcd_members(profile),
            backup: backup_settings(&profile.etcd.backup),
            restore_from: restore_path(profile.etcd.restore_from.as_ref()),
            size: profile.etcd.size,
            replace_dead_after_seconds: profile.etcd.replace_dead_after.as_secs(),
            endpoint: profile.etcd.endpoint.clone(),
        },
        control_plane: profile
            .control_plane
            .as_ref()
            .map(|cp| ControlPlaneSettings {
                endpoint: cp.endpoint.clone(),
                vip: cp.vip.clone(),
                masters: cp.masters.iter().map(member).collect(),
                pod_subnet: cluster.pod_subnet.to_string(),
                service_subnet: cluster.service_subnet.to_string(),
                node_subnets: cluster.node_subnets.clone(),
                discovery_hash: discovery_hash.to_owned(),
                token_ttl_seconds: cp.token_ttl.map_or(0, |ttl| ttl.as_secs()),
            }),
    }
}

/// The node configuration's backup settings; `None` when backups are off.
pub fn backup_settings(backup: &BackupSection) -> Option<BackupSettings> {
    backup.enabled.then(|| BackupSettings {
        interval_seconds: backup.interval.as_secs(),
        keep_hourly: backup.keep_hourly,
        keep_daily: backup.keep_daily,
        destination: backup.destination.clone(),
    })
}

/// The node path of the snapshot to restore from, baked or on the node.
fn restore_path(source: Option<&RestoreSource>) -> Option<PathBuf> {
    match source? {
        RestoreSource::Local(_) => Some(PathBuf::from(BAKED_SNAPSHOT)),
        RestoreSource::Node(node) => Some(node.clone()),
    }
}
