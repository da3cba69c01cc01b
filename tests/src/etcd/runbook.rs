//! The runbook being automated, for the benchmark: etcd configured by hand
//! with a static `--initial-cluster` and the builder's certificates.

use std::net::Ipv4Addr;

use kiln_node::layout::pki as paths;

/// The runbook's hand-written etcd configuration for listed member `name`:
/// the builder's certificates used in place, `--initial-cluster` given.
pub fn member_env(
    name: &str,
    ip: Ipv4Addr,
    initial_cluster: &str,
    state: &str,
) -> Vec<(String, String)> {
    let member = paths::etcd_member_dir(name);
    let file = |f: &str| member.join(f).display().to_string();
    let ca = paths::etcd_ca_cert().display().to_string();
    [
        ("ETCD_NAME", name.to_owned()),
        ("ETCD_DATA_DIR", "/var/lib/etcd".to_owned()),
        ("ETCD_LISTEN_CLIENT_URLS", format!("https://{ip}:2379")),
        ("ETCD_ADVERTISE_CLIENT_URLS", format!("https://{ip}:2379")),
        ("ETCD_LISTEN_PEER_URLS", format!("https://{ip}:2380")),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("https://{ip}:2380"),
        ),
        ("ETCD_INITIAL_CLUSTER", initial_cluster.to_owned()),
        ("ETCD_INITIAL_CLUSTER_STATE", state.to_owned()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", "kiln-test".to_owned()),
        ("ETCD_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_TRUSTED_CA_FILE", ca.clone()),
        ("ETCD_CERT_FILE", file("server.crt")),
        ("ETCD_KEY_FILE", file("server.key")),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_PEER_TRUSTED_CA_FILE", ca),
        ("ETCD_PEER_CERT_FILE", file("peer.crt")),
        ("ETCD_PEER_KEY_FILE", file("peer.key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
