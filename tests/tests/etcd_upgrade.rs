//! etcd upgrades by rolling replacement, with real etcd in network
//! namespaces: a 3.4 cluster replaced node by node by 3.5 images keeps its
//! data while writes go on; a 3.4 image never joins a 3.5 cluster.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::scenario::{get, peer_urls, put, started_voting, stderr, Node, Scenario};
use kiln_e2e::etcd::{self, agent, etcdctl, members, wait_healthy, Release};
use kiln_node::node_config::DiscoverySource;

/// `/version` of every endpoint: (etcdserver, etcdcluster).
fn versions(node: &Node, endpoints: &[Ipv4Addr]) -> Vec<(String, String)> {
    endpoints
        .iter()
        .map(|ip| {
            let out = etcdctl(
                &node.host,
                &node.root,
                &[*ip],
                &["endpoint", "status", "-w", "json"],
            );
            let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let server = value[0]["Status"]["version"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let out = kiln_e2e::run(
                node.host
                    .command("curl")
                    .args(["-s", "--max-time", "2", "--cacert"])
                    .arg(node.root.join("etc/kiln/pki/etcd/ca.crt"))
                    .arg("--cert")
                    .arg(node.root.join("etc/kiln/pki/etcd/kiln-agent.crt"))
                    .arg("--key")
                    .arg(node.root.join("etc/kiln/pki/etcd/kiln-agent.key"))
                    .arg(format!("https://{ip}:2379/version")),
            );
            let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let cluster = value["etcdcluster"].as_str().unwrap_or("").to_owned();
            (server, cluster)
        })
        .collect()
}

/// Waits until every endpoint reports cluster version `minor`.0.
fn wait_cluster_version(node: &Node, endpoints: &[Ipv4Addr], minor: &str) {
    let start = Instant::now();
    loop {
        let now = versions(node, endpoints);
        if now
            .iter()
            .all(|(_, cluster)| cluster == &format!("{minor}.0"))
        {
            return;
        }
        assert!(
            start.elapsed() < etcd::HEALTHY_WITHIN,
            "cluster version never became {minor}.0: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A cluster of etcd 3.4.23 nodes is replaced one node at a time by images
/// of etcd 3.5 under the same names and addresses, the way a new image
/// version rolls out; a client writes all along. At the end every member
/// runs 3.5, the cluster version is 3.5, and every write etcd acknowledged,
/// before or during the upgrade, is readable.
#[test]
fn rolling_replacement_upgrades_3_4_to_3_5_with_writes_going_on() {
    let sc = Scenario::new("u", 121, 3, DiscoverySource::Static);
    let old: Vec<Node> = (11..14)
        .map(|i| sc.node_on_with(sc.lab.host(i), Release::Previous))
        .collect();
    sc.boot(&old.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_cluster_version(&old[0], &all, "3.4");
    put(&old[0], &all, "/before", "upgrade");
    let before = members(&old[0].host, &old[0].root, all[0]);

    // The writer runs from its own root (a client), through all endpoints.
    let client = sc.node(40);
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && i < 100_000 {
                let key = format!("/w/{i:06}");
                let out = etcdctl(&client.host, &client.root, &all, &["put", &key, "v"]);
                if out.status.success() {
                    acknowledged.lock().unwrap().push(key);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        for (n, node) in old.iter().enumerate() {
            let written = acknowledged.lock().unwrap().len();
            sc.destroy(node);
            let fresh = sc.node_on_with(node.host.clone(), Release::Primary);
            sc.boot(&[&fresh], None);
            wait_healthy(&fresh.host, &fresh.root, &all, etcd::HEALTHY_WITHIN);
            let now = members(&fresh.host, &fresh.root, all[0]);
            assert_eq!(started_voting(&now), 3, "after replacing node {n}: {now:?}");
            // Writes went on across this replacement.
            let start = Instant::now();
            while acknowledged.lock().unwrap().len() < written + 5 {
                assert!(start.elapsed() < Duration::from_secs(60), "writes stalled");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        stop.store(true, Ordering::SeqCst);
    });

    let reader = sc.node(41);
    wait_cluster_version(&reader, &all, "3.5");
    let now = versions(&reader, &all);
    assert!(
        now.iter().all(|(server, _)| server.starts_with("3.5.")),
        "{now:?}"
    );
    let after = members(&reader.host, &reader.root, all[0]);
    assert_eq!(peer_urls(&after), peer_urls(&before));
    assert_eq!(get(&reader, all[2], "/before"), "upgrade");
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(
        acknowledged.len() >= 15,
        "only {} writes",
        acknowledged.len()
    );
    let out = etcdctl(
        &reader.host,
        &reader.root,
        &all,
        &["get", "/w/", "--prefix", "--keys-only"],
    );
    let stored = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.lines().any(|l| l == k.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
}

/// An image of etcd 3.4 booted to replace a member of a 3.5 cluster (a
/// rollback by image) changes nothing: the dead member stays listed, the
/// node writes no etcd configuration, and it says why and what to do.
#[test]
fn older_etcd_image_never_joins_a_newer_cluster() {
    let sc = Scenario::new("v", 122, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_cluster_version(&nodes[0], &all, "3.5");
    sc.destroy(&nodes[1]);
    let before = members(&nodes[0].host, &nodes[0].root, all[0]);

    let old = sc.node_on_with(nodes[1].host.clone(), Release::Previous);
    let plan = agent(&old.host, &old.root, None, &["plan"]);
    assert!(!plan.status.success(), "plan accepted a 3.4 node");
    assert!(stderr(&plan).contains("older than the cluster's version 3.5"));
    let out = agent(&old.host, &old.root, None, &["run"]);
    assert!(!out.status.success(), "a 3.4 node joined a 3.5 cluster");
    let said = stderr(&out);
    assert!(
        said.contains("etcd2 changes nothing")
            && said.contains("older than the cluster's version 3.5")
            && said.contains("build this image with etcd 3.5"),
        "{said}"
    );
    assert_eq!(said.matches("changes nothing").count(), 1, "{said}");
    assert!(!old.root.join("etc/kiln/etcd.env").exists());
    let after = members(&nodes[0].host, &nodes[0].root, all[0]);
    assert_eq!(after, before, "the membership changed");
}
