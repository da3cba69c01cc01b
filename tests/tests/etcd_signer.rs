//! The etcd nodes' signer, with real etcd in network namespaces: it signs a
//! master's renewal only for a master still in the cluster that shows its
//! current certificate, and each key once per renewal window.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::scenario::{Node, Scenario};
use kiln_e2e::etcd::{agent, assert_ok, etcdctl, Lifetimes};
use kiln_node::node_config::DiscoverySource;
use kiln_node::pki::{signing_request, KeyAlgorithm};

const LIFETIMES: Lifetimes = Lifetimes {
    leaf_seconds: 60,
    renew_before_seconds: 40,
};
const AGENT_CERT: &str = "etc/kiln/pki/etcd/kiln-agent.crt";

fn file(root: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(rel)).unwrap_or_default()
}

/// What `kiln-firstboot renew` on an etcd node logged.
fn sign_round(node: &Node) -> String {
    let out = agent(&node.host, &node.root, None, &["renew"]);
    assert_ok(&out, "etcd renew");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn only_a_master_in_the_cluster_showing_its_certificate_is_renewed_once_per_window() {
    let mut sc = Scenario::with_lifetimes("sg", 126, 3, DiscoverySource::Static, LIFETIMES);
    // master1 and master3 are listed; master2 was dropped from the profile
    // (the etcd nodes' node.toml), its image still holds valid certificates.
    sc.fixture
        .list_masters(&[("master1", sc.ip(21)), ("master3", sc.ip(23))]);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    let masters = [
        (sc.master_node(21), "master1"),
        (sc.master_node(22), "master2"),
        (sc.master_node(23), "master3"),
    ];
    let first: Vec<Vec<u8>> = masters
        .iter()
        .map(|(m, _)| file(&m.root, AGENT_CERT))
        .collect();
    let etcd = &nodes[0];
    let put = |key: &str, value: &str| {
        let out = etcdctl(&etcd.host, &etcd.root, &all, &["put", key, "--", value]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let get = |key: &str| {
        let out = etcdctl(
            &etcd.host,
            &etcd.root,
            &all,
            &["get", key, "--print-value-only"],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // A fresh key and one put: a bare request, as old agents sent, and one
    // beside the real agent certificate, which is not for that key.
    let fresh = KeyAlgorithm::EcdsaP256.generate().unwrap().serialize_pem();
    let csr = signing_request("kiln-agent", &fresh).unwrap();
    put("/kiln/certs/requests/master1/kiln-agent", &csr);
    put(
        "/kiln/certs/requests/master3/kiln-agent",
        &serde_json::json!({
            "csr": csr,
            "current": String::from_utf8(first[2].clone()).unwrap(),
        })
        .to_string(),
    );
    let said = sign_round(etcd);
    for needle in [
        "refusing the renewal request /kiln/certs/requests/master1/kiln-agent: it carries no \
         current certificate",
        "refusing the renewal request /kiln/certs/requests/master3/kiln-agent: its current \
         certificate",
    ] {
        assert!(said.contains(needle), "{needle:?} not in:\n{said}");
    }
    for node in ["master1", "master3"] {
        assert_eq!(get(&format!("/kiln/certs/issued/{node}/kiln-agent")), "");
        assert_eq!(get(&format!("/kiln/certs/requests/{node}/kiln-agent")), "");
    }

    // Once the certificates are due, every master asks; the listed ones,
    // which share the builder's agent key, get one certificate between them.
    let due = Duration::from_secs(LIFETIMES.leaf_seconds - LIFETIMES.renew_before_seconds + 2);
    let start = Instant::now();
    std::thread::sleep(due.saturating_sub(start.elapsed()));
    let mut log = String::new();
    for _ in 0..3 {
        for (master, name) in &masters {
            let out = agent(&master.host, &master.root, Some(name), &["renew"]);
            assert_ok(&out, "master renew");
        }
        log.push_str(&sign_round(etcd));
    }
    let now: Vec<Vec<u8>> = masters
        .iter()
        .map(|(m, _)| file(&m.root, AGENT_CERT))
        .collect();
    assert_ne!(now[0], first[0], "master1 was not renewed:\n{log}");
    assert_eq!(
        now[2], now[0],
        "master1 and master3 hold different certificates"
    );
    assert_eq!(now[1], first[1], "master2, which left, was renewed:\n{log}");
    assert!(
        log.contains("master2 has left the cluster"),
        "no refusal of master2 in:\n{log}"
    );
    let signed = log.matches("signed a kiln-agent certificate for").count();
    let again = log.matches("already got in this renewal window").count();
    assert_eq!((signed, again), (1, 1), "{log}");
    let fingerprint = kiln_node::pki::key_fingerprint(
        &kiln_node::pki::CertInfo::from_pem(std::str::from_utf8(&now[0]).unwrap())
            .unwrap()
            .public_key,
    );
    assert!(log.contains(&format!("key {fingerprint}")), "{log}");
}
