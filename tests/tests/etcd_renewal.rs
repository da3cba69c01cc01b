//! Certificates that never expire under a running cluster, with real etcd
//! in network namespaces: members built with leaves that live a minute
//! renew them (`kiln-firstboot renew`, as kiln-renew.timer runs it) and keep
//! serving mutual TLS for three lifetimes while a client writes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::backup::operator_files;
use kiln_e2e::etcd::scenario::{started_voting, Node, Scenario};
use kiln_e2e::etcd::{self, agent, assert_ok, etcdctl, members, wait_healthy, Lifetimes};
use kiln_node::node_config::DiscoverySource;

/// Every distinct content a (root, file) held, in order.
type Versions = BTreeMap<(usize, &'static str), Vec<Vec<u8>>>;

const LIFETIMES: Lifetimes = Lifetimes {
    leaf_seconds: 60,
    renew_before_seconds: 40,
};
/// How often the test runs `renew` on every root, standing in for
/// kiln-renew.timer (whose period is renew_before / 4, at least 30 s; these
/// 40-second windows are shorter than profiles may give).
const TIMER: Duration = Duration::from_secs(10);

/// The serving certificate `ip` presents, as openssl prints its end date.
fn presented_end_date(node: &Node, ip: Ipv4Addr) -> String {
    let pki = node.root.join("etc/kiln/pki/etcd");
    let script = format!(
        "openssl s_client -connect {ip}:2379 -CAfile {ca} -cert {cert} -key {key} </dev/null \
         2>/dev/null | openssl x509 -noout -enddate",
        ca = pki.join("ca.crt").display(),
        cert = pki.join("kiln-agent.crt").display(),
        key = pki.join("kiln-agent.key").display(),
    );
    let out = kiln_e2e::run(node.host.command("sh").args(["-c", &script]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn file(root: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(rel)).unwrap_or_default()
}

#[test]
fn minute_long_certificates_are_renewed_on_every_member_while_writes_go_on() {
    let sc = Scenario::with_lifetimes("r", 123, 3, DiscoverySource::Static, LIFETIMES);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    // The client's own root: its agent certificate is renewed the same way.
    let client = sc.node(40);
    let mut roots: Vec<&Node> = nodes.iter().collect();
    roots.push(&client);

    let keys_before: Vec<Vec<u8>> = nodes
        .iter()
        .map(|n| file(&n.root, "etc/etcd/pki/server.key"))
        .collect();
    let start = Instant::now();
    let run_for = Duration::from_secs(3 * LIFETIMES.leaf_seconds + 20);
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::new());
    // Every distinct certificate each root's files held: renewals show up here.
    let seen: Mutex<Versions> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                let key = format!("/w/{i:06}");
                let out = etcdctl(&client.host, &client.root, &all, &["put", &key, "v"]);
                if out.status.success() {
                    acknowledged.lock().unwrap().push((key, start.elapsed()));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        while start.elapsed() < run_for {
            for (n, node) in roots.iter().enumerate() {
                assert_ok(
                    &agent(&node.host, &node.root, None, &["renew"]),
                    "agent renew",
                );
                for rel in [
                    "etc/etcd/pki/server.crt",
                    "etc/etcd/pki/peer.crt",
                    "etc/kiln/pki/etcd/kiln-agent.crt",
                ] {
                    let bytes = file(&node.root, rel);
                    let mut seen = seen.lock().unwrap();
                    let versions = seen.entry((n, rel)).or_default();
                    if !bytes.is_empty() && versions.last() != Some(&bytes) {
                        versions.push(bytes);
                    }
                }
            }
            std::thread::sleep(TIMER);
        }
        stop.store(true, Ordering::SeqCst);
    });

    // Three lifetimes later the cluster still serves mutual TLS, healthy.
    wait_healthy(&client.host, &client.root, &all, etcd::HEALTHY_WITHIN);
    assert_eq!(
        started_voting(&members(&client.host, &client.root, all[0])),
        3
    );
    let seen = seen.into_inner().unwrap();
    for (n, node) in nodes.iter().enumerate() {
        for rel in [
            "etc/etcd/pki/server.crt",
            "etc/etcd/pki/peer.crt",
            "etc/kiln/pki/etcd/kiln-agent.crt",
        ] {
            let versions = seen.get(&(n, rel)).map_or(0, Vec::len);
            assert!(
                versions >= 4,
                "{rel} of etcd{}: {versions} certificates in 3 lifetimes",
                n + 1
            );
        }
        assert_eq!(
            file(&node.root, "etc/etcd/pki/server.key"),
            keys_before[n],
            "renewal changed a key"
        );
    }
    let client_versions = seen
        .get(&(3, "etc/kiln/pki/etcd/kiln-agent.crt"))
        .map_or(0, Vec::len);
    assert!(
        client_versions >= 4,
        "the client's certificate: {client_versions}"
    );
    // What the members present is their renewed certificate.
    for (node, ip) in nodes.iter().zip(all) {
        let presented = presented_end_date(&client, ip);
        let on_disk = kiln_e2e::run_ok(
            std::process::Command::new("openssl")
                .args(["x509", "-noout", "-enddate", "-in"])
                .arg(node.root.join("etc/etcd/pki/server.crt")),
        );
        assert_eq!(
            presented,
            on_disk.trim(),
            "{ip} presents another certificate"
        );
    }

    // Writes went on throughout, and every acknowledged one is there.
    let acknowledged = acknowledged.into_inner().unwrap();
    let mut last = Duration::ZERO;
    for (_, at) in &acknowledged {
        assert!(
            *at - last < Duration::from_secs(20),
            "no write succeeded from {last:?} to {at:?}"
        );
        last = *at;
    }
    assert!(
        run_for.saturating_sub(last) < Duration::from_secs(20),
        "writes stopped at {last:?}"
    );
    let out = etcdctl(
        &client.host,
        &client.root,
        &all,
        &["get", "/w/", "--prefix", "--keys-only"],
    );
    let stored = String::from_utf8_lossy(&out.stdout);
    let missing = acknowledged
        .iter()
        .filter(|(k, _)| !stored.lines().any(|l| l == k))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged writes lost",
        acknowledged.len()
    );
}

/// A master holds no etcd CA key: its agent asks through etcd, an etcd
/// node's renewal signs the request (for the client names masters hold,
/// with the master's own key), and the master's next run installs it.
#[test]
fn a_master_without_the_etcd_ca_key_renews_through_the_etcd_nodes() {
    let mut sc = Scenario::with_lifetimes("rm", 124, 3, DiscoverySource::Static, LIFETIMES);
    // The etcd nodes sign only for masters in the cluster: listed ones.
    let listed = sc.ip(21);
    sc.fixture.list_masters(&[("master1", listed)]);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    let master = sc.master_node(21);
    assert!(!master.root.join("etc/kiln/pki/etcd/ca.key").exists());
    let certs = [
        "etc/kiln/pki/etcd/kiln-agent.crt",
        "etc/kubernetes/pki/apiserver-etcd-client.crt",
    ];
    let keys: Vec<Vec<u8>> = certs
        .iter()
        .map(|c| file(&master.root, &c.replace(".crt", ".key")))
        .collect();
    let mut versions: Vec<Vec<Vec<u8>>> = vec![Vec::new(); certs.len()];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2 * LIFETIMES.leaf_seconds + 20) {
        assert_ok(
            &agent(&master.host, &master.root, Some("master1"), &["renew"]),
            "master renew",
        );
        for node in &nodes {
            assert_ok(
                &agent(&node.host, &node.root, None, &["renew"]),
                "etcd renew",
            );
        }
        for (seen, cert) in versions.iter_mut().zip(certs) {
            let bytes = file(&master.root, cert);
            if seen.last() != Some(&bytes) {
                seen.push(bytes);
            }
        }
        std::thread::sleep(TIMER);
    }
    let ca = master.root.join("etc/kiln/pki/etcd/ca.crt");
    for ((seen, cert), key) in versions.iter().zip(certs).zip(&keys) {
        assert!(
            seen.len() >= 3,
            "{cert}: {} certificates in 2 lifetimes",
            seen.len()
        );
        assert_eq!(
            &file(&master.root, &cert.replace(".crt", ".key")),
            key,
            "{cert}: key changed"
        );
        kiln_e2e::run_ok(
            std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&ca)
                .arg(master.root.join(cert)),
        );
    }
    // The renewed client certificate is the one that works now.
    wait_healthy(&master.host, &master.root, &all, etcd::HEALTHY_WITHIN);
    let subject = kiln_e2e::run_ok(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(master.root.join(certs[1])),
    );
    assert!(subject.contains("kube-apiserver-etcd-client"), "{subject}");
}

/// The operator sees certificates close to their end: `kiln health` warns
/// (and still reports the cluster healthy), `kiln certs --endpoints` lists
/// what each member presents as due and exits 1.
#[test]
fn health_and_certs_show_the_members_certificates_inside_the_window() {
    let sc = Scenario::with_lifetimes("rw", 125, 3, DiscoverySource::Static, LIFETIMES);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let dir = tempfile::tempdir().unwrap();
    // The profile leaves renew_before at its default, a third of 365 days:
    // the minute-long certificates are all inside it.
    let (profile, secrets) = operator_files(&sc, &nodes[0], dir.path(), 125);
    let kiln = |args: &[&str]| {
        let mut cmd = nodes[0]
            .host
            .command(&kiln_e2e::binary("kiln").display().to_string());
        cmd.args(args).arg(&profile).arg("--secrets").arg(&secrets);
        kiln_e2e::run(&mut cmd)
    };
    let health = kiln(&["health"]);
    let said = String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success(), "{said}");
    for i in 11..14 {
        assert!(
            said.contains(&format!(
                "the certificate of https://10.77.125.{i}:2379 (CN=etcd{})",
                i - 10
            )),
            "{said}"
        );
    }
    let urls = format!("https://{}:2379,https://{}:2379", sc.ip(11), sc.ip(12));
    let certs = kiln(&["certs", "--json", "--endpoints", &urls]);
    assert_eq!(certs.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&certs.stdout).unwrap();
    let presented: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://"))
        })
        .collect();
    assert_eq!(presented.len(), 2, "{rows}");
    for row in presented {
        assert_eq!(row["standing"], "renew", "{row}");
        assert!(
            row["seconds_left"].as_i64().is_some_and(|s| s <= 60),
            "{row}"
        );
    }
}
