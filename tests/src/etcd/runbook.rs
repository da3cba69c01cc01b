//! The runbook being automated, for the benchmark: certificates minted by
//! hand (openssl, as the runbook's cfssl step) from the node's etcd CA, and
//! etcd configured by hand with a static `--initial-cluster`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use kiln_node::layout::{pki as paths, under_root};

use crate::kubeadm::openssl::{mint, Eku};

/// Where the runbook puts a member's certificates (a node path).
fn member_dir(name: &str) -> PathBuf {
    PathBuf::from("/etc/runbook/pki").join(name)
}

/// The runbook's certificate step for member `name` on `ip`: a server and
/// a peer pair from the etcd CA the node root holds.
pub fn issue_certs(root: &Path, name: &str, ip: Ipv4Addr) {
    let at = |p: &Path| under_root(root, p);
    let dir = at(&member_dir(name));
    std::fs::create_dir_all(&dir).unwrap();
    let sans = [name.to_owned(), ip.to_string(), "127.0.0.1".to_owned()];
    for usage in ["server", "peer"] {
        mint(
            (&at(&paths::etcd_ca_cert()), &at(&paths::etcd_ca_key())),
            name,
            Eku::Both,
            &sans,
            (
                &dir.join(format!("{usage}.crt")),
                &dir.join(format!("{usage}.key")),
            ),
        )
        .unwrap_or_else(|e| panic!("issuing {name}'s {usage} certificate: {e}"));
    }
}

/// The runbook's hand-written etcd configuration for member `name`: the
/// certificates of [`issue_certs`] in place, `--initial-cluster` given.
pub fn member_env(
    name: &str,
    ip: Ipv4Addr,
    initial_cluster: &str,
    state: &str,
) -> Vec<(String, String)> {
    let member = member_dir(name);
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
