//! Golden output of the kubeadm configuration for both API versions.

use super::*;
use kiln_node::node_config::{
    ControlPlaneSettings, DiscoverySource, EtcdSettings, Member, PkiSettings, Role, Vip,
};
use kiln_node::pki::KeyAlgorithm;

fn member(name: &str, ip: &str) -> Member {
    Member {
        name: name.into(),
        ip: ip.parse().unwrap(),
        dns_names: vec![],
    }
}

/// Two external etcd members, three masters behind a VIP.
pub(crate) fn sample_config(role: Role, version: &str) -> NodeConfig {
    NodeConfig {
        cluster: "prod".into(),
        domain: "kiln.test".into(),
        role,
        kubernetes_version: version.into(),
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
            members: vec![member("etcd1", "10.0.0.11"), member("etcd2", "10.0.0.12")],
            backup: None,
            restore_from: None,
            size: None,
            replace_dead_after_seconds: kiln_node::node_config::DEFAULT_REPLACE_DEAD_AFTER_SECONDS,
            endpoint: None,
        },
        control_plane: Some(ControlPlaneSettings {
            endpoint: "10.0.0.20:6443".into(),
            vip: Some(Vip {
                address: "10.0.0.20".parse().unwrap(),
                interface: "eth0".into(),
                virtual_router_id: 51,
                unicast: true,
            }),
            masters: vec![
                member("master1", "10.0.0.21"),
                member("master2", "10.0.0.22"),
                member("master3", "10.0.0.23"),
            ],
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/12".into(),
            node_subnets: vec!["10.0.0.0/24".parse().unwrap()],
            discovery_hash:
                "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f".into(),
            token_ttl_seconds: 0,
        }),
    }
}

const TOKEN: &str = "abcdef.0123456789abcdef";

fn inputs(config: &NodeConfig) -> KubeadmInputs<'_> {
    KubeadmInputs::new(config, "master2", "10.0.0.22".parse().unwrap(), TOKEN).unwrap()
}

const INIT_V1BETA4: &str = include_str!("golden/init-v1beta4.yaml");
const JOIN_MASTER_V1BETA4: &str = include_str!("golden/join-master-v1beta4.yaml");
const INIT_V1BETA3_STACKED: &str = include_str!("golden/init-v1beta3-stacked.yaml");
const JOIN_WORKER_V1BETA3: &str = include_str!("golden/join-worker-v1beta3.yaml");

#[test]
fn v1beta4_init_and_master_join_are_pinned() {
    let config = sample_config(Role::Master, "1.36.2");
    assert_eq!(inputs(&config).init_config(), INIT_V1BETA4);
    assert_eq!(inputs(&config).join_config(true), JOIN_MASTER_V1BETA4);
}

#[test]
fn v1beta3_stacked_init_and_worker_join_are_pinned() {
    let mut config = sample_config(Role::Master, "1.30.6");
    config.etcd.topology = Topology::Stacked;
    if let Some(cp) = config.control_plane.as_mut() {
        cp.token_ttl_seconds = 86400;
    }
    assert_eq!(inputs(&config).init_config(), INIT_V1BETA3_STACKED);
    let worker = sample_config(Role::Worker, "1.30.6");
    let join = KubeadmInputs::new(&worker, "worker1", "10.0.0.31".parse().unwrap(), TOKEN)
        .unwrap()
        .join_config(false);
    assert_eq!(join, JOIN_WORKER_V1BETA3);
}

/// Every emitted document is YAML a real parser reads, with the kinds in order.
#[test]
fn every_document_parses_as_yaml() {
    let config = sample_config(Role::Master, "1.36.2");
    let text = inputs(&config).init_config();
    let kinds: Vec<String> = text
        .split("---\n")
        .map(|doc| {
            let v: serde_json::Value = serde_norway::from_str(doc).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["InitConfiguration", "ClusterConfiguration"]);
    for golden in [
        JOIN_MASTER_V1BETA4,
        INIT_V1BETA3_STACKED,
        JOIN_WORKER_V1BETA3,
    ] {
        for doc in golden.split("---\n") {
            serde_norway::from_str::<serde_json::Value>(doc).unwrap();
        }
    }
}

/// v1beta4 carries the profile's key algorithm and lifetimes; v1beta3 has
/// no such fields and must not get them.
#[test]
fn v1beta4_cluster_configuration_carries_the_pki_settings() {
    let mut config = sample_config(Role::Master, "1.36.2");
    config.pki.key_algorithm = KeyAlgorithm::EcdsaP384;
    config.pki.leaf_validity_seconds = 30 * 86_400;
    config.pki.ca_validity_days = 1;
    let text = inputs(&config).init_config();
    for line in [
        "encryptionAlgorithm: \"ECDSA-P384\"",
        "certificateValidityPeriod: \"720h0m0s\"",
        "caCertificateValidityPeriod: \"24h0m0s\"",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    let old = sample_config(Role::Master, "1.30.6");
    let text = inputs(&old).init_config();
    assert!(!text.contains("encryptionAlgorithm") && !text.contains("ValidityPeriod"));
}

/// External etcd: the API servers reach the listed members, or only the
/// stable endpoint when the profile has one (it outlives their addresses).
#[test]
fn external_etcd_endpoints_are_the_members_or_the_stable_endpoint() {
    let mut config = sample_config(Role::Master, "1.36.2");
    config.etcd.topology = Topology::External;
    let listed = inputs(&config).init_config();
    for url in config.etcd_client_urls() {
        assert!(
            listed.contains(&format!("\"{url}\"")),
            "{url} in:\n{listed}"
        );
    }
    config.etcd.endpoint = Some("etcd.kiln.test:2379".into());
    let text = inputs(&config).init_config();
    assert!(text.contains("\"https://etcd.kiln.test:2379\""), "{text}");
    for url in config.etcd_client_urls() {
        assert!(
            !text.contains(&url),
            "{url} listed beside the endpoint:\n{text}"
        );
    }
}

#[test]
fn a_worker_without_control_plane_settings_is_told_what_to_fix() {
    let mut config = sample_config(Role::Worker, "1.36.2");
    config.control_plane = None;
    let err = KubeadmInputs::new(&config, "w", "10.0.0.31".parse().unwrap(), TOKEN)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("[control_plane]") && err.contains("worker"),
        "{err}"
    );
}
