//! The etcd first-boot agent against real etcd 3.4 in network namespaces:
//! the nine scenarios of issue 3. Run as root (namespaces). Each test owns
//! subnet 10.77.<x>.0/24 with a unique x and namespaces named after its PID.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::scenario::{
    converged, get, peer_urls, put, started_voting, stderr, Node, Scenario,
};
use kiln_e2e::etcd::{self, agent, assert_ok, members, start_etcd, wait_healthy};
use kiln_node::node_config::DiscoverySource;

/// Scenario 1: three listed members start at once and form a healthy cluster
/// with mutual TLS; a client without a certificate is refused.
#[test]
fn three_listed_members_form_a_cluster() {
    let sc = Scenario::new("a", 101, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    let list = members(&nodes[0].host, &nodes[0].root, all[0]);
    assert_eq!(started_voting(&list), 3, "{list:?}");
    assert!(nodes.iter().all(converged));
    for (node, ip) in nodes.iter().zip(all) {
        check_minted(&sc, node, ip);
    }

    let ca = nodes[0].root.join("etc/kiln/pki/etcd/ca.crt");
    let no_cert = kiln_e2e::run(
        nodes[0]
            .host
            .command("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{}:2379/health", all[1])),
    );
    assert!(
        !no_cert.status.success(),
        "a client without a certificate got in"
    );
    // A rerun after success changes nothing.
    let rerun = agent(&nodes[0].host, &nodes[0].root, None, &["run"]);
    assert_ok(&rerun, "rerun");
    assert!(stderr(&rerun).contains("nothing to do"));
}

/// A member's own serving and peer pair, minted at first boot: the build's
/// certificate profile (names, addresses, usages, chain), checked by
/// openssl, with a 0600 key that no other node root holds.
fn check_minted(sc: &Scenario, node: &Node, ip: Ipv4Addr) {
    let openssl = |args: &[&str], file: &std::path::Path| {
        kiln_e2e::run_ok(std::process::Command::new("openssl").args(args).arg(file))
    };
    let pki = node.root.join("etc/etcd/pki");
    let name = members(&node.host, &node.root, ip)
        .iter()
        .find(|m| m["peerURLs"][0] == format!("https://{ip}:2380"))
        .and_then(|m| m["name"].as_str().map(str::to_owned))
        .expect("the member is listed");
    for kind in ["server", "peer"] {
        let cert = pki.join(format!("{kind}.crt"));
        let verified = kiln_e2e::run_ok(
            std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(pki.join("ca.crt"))
                .arg(&cert),
        );
        assert!(verified.trim_end().ends_with(": OK"), "{verified}");
        let ext = openssl(
            &[
                "x509",
                "-noout",
                "-ext",
                "subjectAltName,keyUsage,extendedKeyUsage",
                "-in",
            ],
            &cert,
        );
        let sans = format!(
            "DNS:{name}, DNS:{name}.{}, DNS:localhost, IP Address:{ip}, IP Address:127.0.0.1",
            etcd::DOMAIN
        );
        assert!(ext.contains(&sans), "{kind}: {ext}");
        assert!(ext.contains("Digital Signature"), "{kind}: {ext}");
        assert!(
            ext.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{kind}: {ext}"
        );
        let key_path = pki.join(format!("{kind}.key"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key_path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{kind}.key");
        let key = std::fs::read(&key_path).unwrap();
        let holders: Vec<_> = kiln_e2e::files_holding(sc.roots_dir(), &key)
            .into_iter()
            .filter(|p| !p.starts_with(&node.root))
            .collect();
        assert!(
            holders.is_empty(),
            "{name}'s {kind} key is also in {holders:?}"
        );
    }
}

/// Scenario 2: one listed member starts 20 s after the others and joins.
#[test]
fn late_listed_member_joins() {
    let sc = Scenario::new("b", 102, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&[&nodes[0], &nodes[1]], None);
    std::thread::sleep(Duration::from_secs(20));
    let plan = agent(&nodes[2].host, &nodes[2].root, None, &["plan"]);
    assert_ok(&plan, "plan");
    let said = String::from_utf8_lossy(&plan.stdout);
    assert!(said.contains("not started"), "{said}\n{}", stderr(&plan));
    sc.boot(&[&nodes[2]], None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    assert_eq!(
        started_voting(&members(&nodes[0].host, &nodes[0].root, all[0])),
        3
    );
}

/// Scenario 3: a member is destroyed; a fresh node on the same address
/// replaces it; data written before the failure survives. The cluster was
/// built before members minted their own certificates (each runs the
/// builder's pair); the replacement, from a rebuilt image, mints its own
/// and joins, and the others keep theirs.
#[test]
fn dead_member_is_replaced_on_the_same_address() {
    let sc = Scenario::new("c", 103, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    for (i, node) in nodes.iter().enumerate() {
        sc.fixture
            .install_builder_minted(&node.root, &format!("etcd{}", i + 1));
    }
    let served = |node: &Node| std::fs::read(node.root.join("etc/etcd/pki/server.crt")).unwrap();
    let builders: Vec<Vec<u8>> = nodes.iter().map(served).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    put(&nodes[0], &all, "/before", "failure");
    let old = members(&nodes[0].host, &nodes[0].root, all[0]);
    sc.destroy(&nodes[1]);

    let fresh = sc.node_on(nodes[1].host.clone());
    let plan = agent(&fresh.host, &fresh.root, None, &["plan"]);
    assert_ok(&plan, "plan");
    assert!(String::from_utf8_lossy(&plan.stdout)
        .contains("cluster of 3 as replacement for dead member etcd2"));
    assert!(
        !fresh.root.join("etc/kiln/etcd.env").exists(),
        "plan wrote files"
    );
    sc.boot(&[&fresh], None);

    wait_healthy(&fresh.host, &fresh.root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&fresh.host, &fresh.root, all[0]);
    assert_eq!(started_voting(&now), 3, "{now:?}");
    assert_eq!(peer_urls(&now), peer_urls(&old));
    assert_ne!(now, old, "the dead member's ID is gone");
    assert_eq!(get(&fresh, all[1], "/before"), "failure");
    assert_eq!(
        served(&nodes[0]),
        builders[0],
        "etcd1 kept the builder's pair"
    );
    assert_eq!(
        served(&nodes[2]),
        builders[2],
        "etcd3 kept the builder's pair"
    );
    check_minted(&sc, &fresh, all[1]);
}

/// Scenario 4: the replacement comes up on a new, unlisted address with the
/// dead member's hostname: it mints certificates and the stale member goes.
#[test]
fn replacement_on_a_new_address_mints_certs_and_joins() {
    let sc = Scenario::new("d", 104, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    sc.destroy(&nodes[1]);
    sc.lab.remove_host(&nodes[1].host);

    let fresh = sc.node(40);
    sc.boot(&[&fresh], Some("etcd2"));
    let all = [sc.ip(11), sc.ip(40), sc.ip(13)];
    wait_healthy(&fresh.host, &fresh.root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&fresh.host, &fresh.root, all[0]);
    assert_eq!(started_voting(&now), 3, "{now:?}");
    let urls = peer_urls(&now);
    assert!(
        urls.contains(&format!("https://{}:2380", sc.ip(40))),
        "{urls:?}"
    );
    assert!(
        !urls.contains(&format!("https://{}:2380", sc.ip(12))),
        "{urls:?}"
    );
    let text = kiln_e2e::run_ok(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(fresh.root.join("etc/etcd/pki/server.crt")),
    );
    assert!(
        text.contains(&format!("IP Address:{}", sc.ip(40))),
        "{text}"
    );
}

/// Scenario 5: five members; two replaced one after the other.
#[test]
fn five_members_two_replaced_in_turn() {
    let sc = Scenario::new("e", 105, 5, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..16).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all: Vec<Ipv4Addr> = (11..16).map(|i| sc.ip(i)).collect();
    put(&nodes[0], &all, "/k", "v");
    for victim in [1, 3] {
        sc.destroy(&nodes[victim]);
        let fresh = sc.node_on(nodes[victim].host.clone());
        sc.boot(&[&fresh], None);
        wait_healthy(&fresh.host, &fresh.root, &all, etcd::HEALTHY_WITHIN);
        assert_eq!(
            started_voting(&members(&fresh.host, &fresh.root, all[0])),
            5
        );
        assert_eq!(get(&fresh, all[victim], "/k"), "v");
    }
}

/// Five members, two dead: etcd4 has been gone for longer than three beats
/// but less than the grace when etcd2 dies and a replacement boots on
/// etcd2's address. It changes nothing while etcd4 is neither seen nor dead
/// to the cluster, then removes both before its add; no removal is left
/// without its add.
#[test]
fn a_same_address_replacement_beside_a_second_dead_voter_removes_both_first() {
    let (sc, nodes) = watched_cluster("sad", 118, 5);
    let all: Vec<Ipv4Addr> = (11..16).map(|i| sc.ip(i)).collect();
    put(&nodes[0], &all, "/k", "v");
    sc.destroy(&nodes[3]);
    let etcd4_died = Instant::now();
    // Past three 2 s beats (no longer seen), short of the 12 s grace.
    std::thread::sleep(Duration::from_secs(9));
    sc.destroy(&nodes[1]);
    let fresh = sc.node_on(nodes[1].host.clone());
    sc.boot(&[&fresh], None);
    // The watchers last saw etcd4 up to a beat (2 s) before it died; the
    // replacement booted 9 s after, so this fails if it did not wait.
    let grace = Duration::from_secs(etcd::REPLACE_DEAD_AFTER_SECONDS - 2);
    assert!(
        etcd4_died.elapsed() >= grace,
        "etcd2's replacement changed the membership {:?} after etcd4 died, within the grace",
        etcd4_died.elapsed()
    );
    let live: Vec<Ipv4Addr> = [0, 1, 2, 4].map(|i| all[i]).to_vec();
    wait_healthy(&fresh.host, &fresh.root, &live, etcd::HEALTHY_WITHIN);
    let now = members(&fresh.host, &fresh.root, all[0]);
    assert_eq!((now.len(), started_voting(&now)), (4, 4), "{now:?}");
    let gone = format!("https://{}:2380", all[3]);
    assert!(!peer_urls(&now).contains(&gone), "{now:?}");
    assert_eq!(get(&fresh, all[1], "/k"), "v");
}

/// Scenario 6: two of three members dead: the new node changes nothing and
/// says quorum is lost and what to do.
#[test]
fn quorum_lost_changes_nothing() {
    let sc = Scenario::new("f", 106, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let before = members(&nodes[0].host, &nodes[0].root, sc.ip(11));
    sc.destroy(&nodes[1]);
    sc.destroy(&nodes[2]);

    let fresh = sc.node_on(nodes[1].host.clone());
    let out = agent(&fresh.host, &fresh.root, None, &["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("quorum is lost") && err.contains("snapshot"),
        "{err}"
    );
    assert!(!fresh.root.join("etc/kiln/etcd.env").exists());
    assert!(!fresh.root.join("etc/etcd").exists());
    // Without quorum only a serializable read answers.
    let after = etcd::local_members(&nodes[0].host, &nodes[0].root, sc.ip(11));
    assert_eq!(etcd::id_names(&after), etcd::id_names(&before));
}

/// Scenario 7: the agent dies right after `member add`, before etcd starts;
/// the rerun reuses the added member and the cluster ends healthy.
#[test]
fn killed_after_member_add_converges_on_rerun() {
    let mut sc = Scenario::new("g", 107, 3, DiscoverySource::Static);
    // A fourth member: the cluster may grow to it.
    sc.fixture.config.etcd.size = Some(4);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let spare = sc.node(14);
    assert_ok(
        &agent(&spare.host, &spare.root, Some("etcd4"), &["run"]),
        "first run",
    );
    // What a kill right after `member add` leaves: the cluster knows the
    // learner, the node's root has none of the later writes.
    let crashed = sc.node_on(spare.host.clone());
    let rerun = agent(&crashed.host, &crashed.root, Some("etcd4"), &["run"]);
    assert_ok(&rerun, "rerun");
    assert!(stderr(&rerun).contains("not started"), "{}", stderr(&rerun));
    // A second rerun on the same root before etcd starts changes nothing either.
    assert_ok(
        &agent(&crashed.host, &crashed.root, Some("etcd4"), &["run"]),
        "second rerun",
    );
    start_etcd(&sc.lab, &crashed.label, &crashed.host, &crashed.root);
    assert_ok(
        &agent(&crashed.host, &crashed.root, Some("etcd4"), &["settle"]),
        "settle",
    );

    let all = [sc.ip(11), sc.ip(12), sc.ip(13), sc.ip(14)];
    wait_healthy(&crashed.host, &crashed.root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&crashed.host, &crashed.root, all[0]);
    assert_eq!(now.len(), 4, "{now:?}");
    assert_eq!(started_voting(&now), 4, "{now:?}");
}

/// Scenario 7, the blunt way: the agent is SIGKILLed at ever later moments
/// of its run (25 ms apart, until one run completes), each run starting on
/// what the killed one left; it converges with one member for itself. (The
/// window between `member add` and the configuration write is a few ms, so
/// the test above recreates that exact state instead of hoping to hit it.)
#[test]
fn killed_at_any_moment_converges_on_rerun() {
    let mut sc = Scenario::new("k", 110, 3, DiscoverySource::Static);
    // A fourth member: the cluster may grow to it.
    sc.fixture.config.etcd.size = Some(4);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let spare = sc.node(14);
    // Kill ever later until a run got as far as writing etcd's configuration.
    for delay_ms in (0..60).map(|i| 5 + i * 25) {
        let mut child = etcd::agent_command(&spare.host, &spare.root, Some("etcd4"), 20, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the agent");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if spare.root.join("etc/kiln/etcd.env").exists() {
            break;
        }
    }
    assert_ok(
        &agent(&spare.host, &spare.root, Some("etcd4"), &["run"]),
        "final run",
    );
    start_etcd(&sc.lab, &spare.label, &spare.host, &spare.root);
    assert_ok(
        &agent(&spare.host, &spare.root, Some("etcd4"), &["settle"]),
        "settle",
    );

    let all = [sc.ip(11), sc.ip(12), sc.ip(13), sc.ip(14)];
    wait_healthy(&spare.host, &spare.root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&spare.host, &spare.root, all[0]);
    let mine = format!("https://{}:2380", sc.ip(14));
    assert_eq!(
        peer_urls(&now).iter().filter(|u| **u == mine).count(),
        1,
        "{now:?}"
    );
    assert_eq!(started_voting(&now), 4, "{now:?}");
}

/// `count` listed members booted, each with its watcher (kiln-watch).
fn watched_cluster(tag: &str, subnet: u8, count: u8) -> (Scenario, Vec<Node>) {
    let sc = Scenario::new(tag, subnet, count, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..11 + count).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    for node in &nodes {
        sc.watch(node, None);
    }
    (sc, nodes)
}

/// A new node on a new address named after a live member that only it
/// cannot reach (a route of its own drops that member's traffic): the
/// cluster still sees the member, so the node removes nothing and says why.
#[test]
fn a_node_cut_off_from_a_live_member_never_removes_it() {
    let (sc, nodes) = watched_cluster("cut", 116, 3);
    let cut_off = sc.node(40);
    kiln_e2e::run_ok(cut_off.host.command("ip").args([
        "route",
        "add",
        "blackhole",
        &format!("{}/32", sc.ip(13)),
    ]));
    let before = members(&nodes[0].host, &nodes[0].root, sc.ip(11));
    // Longer than etcd.replace_dead_after: its own view never counts.
    let timeout = etcd::REPLACE_DEAD_AFTER_SECONDS + 8;
    let out = etcd::agent_with_timeout(
        &cut_off.host,
        &cut_off.root,
        Some("etcd3"),
        timeout,
        &["run"],
    );
    assert!(!out.status.success(), "it changed the membership");
    let said = stderr(&out);
    assert!(
        said.contains("member etcd3 at") && said.contains("is alive"),
        "{said}"
    );
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    assert_eq!(members(&nodes[0].host, &nodes[0].root, sc.ip(11)), before);
    assert!(!cut_off.root.join("etc/kiln/etcd.env").exists());
}

/// Takes the node's link down or up: a network partition of that node.
fn link(node: &Node, state: &str) {
    kiln_e2e::run_ok(node.host.command("ip").args(["link", "set", "ve0", state]));
}

/// A member cut off for less than etcd.replace_dead_after keeps its place
/// and is healthy again once healed; cut off for longer, a new node takes
/// its place, and the member, back, moves its data aside and stays out.
#[test]
fn a_short_partition_removes_no_one_and_a_long_one_frees_the_place_for_good() {
    let (sc, nodes) = watched_cluster("part", 117, 3);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    let before = members(&nodes[0].host, &nodes[0].root, all[0]);
    let newcomer = sc.node(40);

    link(&nodes[2], "down");
    let short = etcd::REPLACE_DEAD_AFTER_SECONDS - 4;
    let out = etcd::agent_with_timeout(
        &newcomer.host,
        &newcomer.root,
        Some("etcd9"),
        short,
        &["run"],
    );
    assert!(
        !out.status.success(),
        "it took etcd3's place within the grace"
    );
    assert!(!newcomer.root.join("etc/kiln/etcd.env").exists());
    link(&nodes[2], "up");
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    assert_eq!(members(&nodes[0].host, &nodes[0].root, all[0]), before);

    link(&nodes[2], "down");
    let start = Instant::now();
    sc.boot(&[&newcomer], Some("etcd9"));
    assert!(
        start.elapsed() >= Duration::from_secs(etcd::REPLACE_DEAD_AFTER_SECONDS - 3),
        "etcd3 was replaced after {:?}",
        start.elapsed()
    );
    let now_all = [sc.ip(11), sc.ip(12), sc.ip(40)];
    wait_healthy(
        &nodes[0].host,
        &nodes[0].root,
        &now_all,
        etcd::HEALTHY_WITHIN,
    );
    let now = members(&nodes[0].host, &nodes[0].root, all[0]);
    assert_eq!((now.len(), started_voting(&now)), (3, 3), "{now:?}");
    let gone = format!("https://{}:2380", sc.ip(13));
    assert!(!peer_urls(&now).contains(&gone), "{now:?}");

    // etcd3 comes back: the cluster removed it, so its watcher moves its
    // data aside and, with the cluster at its size, says why it does not
    // join; the membership stays as it is.
    link(&nodes[2], "up");
    let back = &nodes[2].root;
    let status = back.join("run/kiln/status.json");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if text.contains("\"removed\"") {
            break text;
        }
        assert!(
            start.elapsed() < etcd::HEALTHY_WITHIN,
            "etcd3 did not find itself removed: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(text.contains("etcd.size is 3"), "{text}");
    assert!(!back.join("var/lib/etcd").exists());
    let aside = std::fs::read_dir(back.join("var/lib"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("etcd.stale-"));
    assert!(aside, "etcd3's data was not moved aside");
    assert!(!back.join("etc/kiln/etcd.env").exists());
    assert!(!back.join("var/lib/kiln/firstboot.done").exists());
    assert_eq!(members(&nodes[0].host, &nodes[0].root, all[0]), now);
}

/// An initial member whose peers do not answer bootstraps at once only when
/// their hosts refuse the connection; a peer that accepts and stays silent
/// (a live member too busy to answer) holds the bootstrap for 15 s.
#[test]
fn a_silent_peer_holds_the_bootstrap_and_refusing_ones_do_not() {
    let sc = Scenario::new("sil", 115, 3, DiscoverySource::Static);
    let first = sc.node(11);
    let _refusing = sc.lab.host(13);
    let plan = |timeout| {
        let start = Instant::now();
        let out = etcd::agent_with_timeout(&first.host, &first.root, None, timeout, &["plan"]);
        (out, start.elapsed())
    };
    let silent = sc.lab.host(12);
    let mut listener = silent.command("python3");
    listener.args([
        "-c",
        "import socket, sys, time\n\
         s = socket.socket(); s.bind((sys.argv[1], 2379)); s.listen(16)\n\
         held = []\n\
         while True: held.append(s.accept())\n",
    ]);
    listener.arg(silent.ip.to_string());
    sc.lab.spawn("silent-peer", listener);
    std::thread::sleep(Duration::from_millis(500));
    let (out, _) = plan(8);
    assert!(!out.status.success(), "bootstrapped beside a silent peer");
    assert!(
        stderr(&out).contains("once none has answered for 15s"),
        "{}",
        stderr(&out)
    );
    let (out, took) = plan(40);
    assert_ok(&out, "plan once the peer was silent long enough");
    assert!(took >= Duration::from_secs(15), "{took:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrapping"));

    // Nothing listens anywhere: a forming cluster, no wait.
    sc.lab.kill("silent-peer");
    let (out, took) = plan(40);
    assert_ok(&out, "plan beside refusing peers");
    assert!(took < Duration::from_secs(10), "{took:?}\n{}", stderr(&out));
}

/// Issue 33: a spoofed DNS SRV answer naming an address that refuses
/// connections does not make an initial member bootstrap at once while a
/// listed peer may be alive (unreachable here): the silence rule holds.
#[test]
fn a_srv_answer_steered_to_a_refusing_address_does_not_shorten_the_silence() {
    let sc = Scenario::new("spoof", 119, 3, DiscoverySource::DnsSrv);
    let first = sc.node(11);
    // Up, with nothing on the client port: what the spoofed record names.
    let refusing = sc.lab.host(30);
    let dns = serve_srv(&sc, &[("etcd2".into(), refusing.ip)]);
    use_dns(&first, dns);
    std::thread::sleep(Duration::from_millis(300));
    let plan = |timeout| {
        let start = Instant::now();
        let out = etcd::agent_with_timeout(&first.host, &first.root, None, timeout, &["plan"]);
        (out, start.elapsed())
    };
    let (out, _) = plan(8);
    assert!(
        !out.status.success(),
        "bootstrapped at once on a spoofed SRV answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("once none has answered for 15s"),
        "{}",
        stderr(&out)
    );
    let (out, took) = plan(40);
    assert_ok(&out, "plan once the cluster was silent long enough");
    assert!(took >= Duration::from_secs(15), "{took:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrapping"));
}

/// Scenario 8: nothing answers and the node is not an initial member: a
/// bounded wait, a clear error, nothing written.
#[test]
fn lone_unlisted_node_waits_then_fails_cleanly() {
    let sc = Scenario::new("h", 108, 3, DiscoverySource::Static);
    let lone = sc.node(50);
    let start = Instant::now();
    let out = etcd::agent_with_timeout(&lone.host, &lone.root, Some("spare"), 3, &["run"]);
    let took = start.elapsed();
    assert!(!out.status.success());
    assert!(
        took < Duration::from_secs(60),
        "wait was not bounded: {took:?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("not an initial member") && err.contains("gave up after"),
        "{err}"
    );
    for written in ["etc/kiln/etcd.env", "etc/etcd", "run/kiln", "var/lib/etcd"] {
        assert!(!lone.root.join(written).exists(), "{written} was written");
    }
}

/// dnsmasq in the lab, serving `_etcd-server-ssl._tcp` SRV records for
/// the named members at their addresses; returns its address.
fn serve_srv(sc: &Scenario, records: &[(String, Ipv4Addr)]) -> Ipv4Addr {
    let dns = sc.lab.bridge_host(1);
    let mut dnsmasq = dns.command("dnsmasq");
    dnsmasq.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
    ]);
    dnsmasq.arg(format!("--listen-address={}", dns.ip));
    for (member, ip) in records {
        let name = format!("{member}.{}", etcd::DOMAIN);
        dnsmasq.arg(format!(
            "--srv-host=_etcd-server-ssl._tcp.{},{name},2380",
            etcd::DOMAIN
        ));
        dnsmasq.arg(format!("--host-record={name},{ip}"));
    }
    sc.lab.spawn("dnsmasq", dnsmasq);
    dns.ip
}

/// Points the node's resolver at `dns`.
fn use_dns(node: &Node, dns: Ipv4Addr) {
    std::fs::write(
        node.root.join("etc/resolv.conf"),
        format!("nameserver {dns}\n"),
    )
    .unwrap();
}

/// Scenario 9: discovery through DNS SRV served by dnsmasq in the lab; a
/// node beyond the listed three grows the cluster to its etcd.size of 4.
#[test]
fn unlisted_node_discovers_cluster_through_dns_srv() {
    let mut sc = Scenario::new("i", 109, 3, DiscoverySource::DnsSrv);
    sc.fixture.config.etcd.size = Some(4);
    let records: Vec<(String, Ipv4Addr)> = (1..=3u8)
        .map(|i| (format!("etcd{i}"), sc.ip(10 + i)))
        .collect();
    let dns = serve_srv(&sc, &records);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);

    let joiner = sc.node(20);
    use_dns(&joiner, dns);
    sc.boot(&[&joiner], Some("etcd4"));
    let all = [sc.ip(11), sc.ip(12), sc.ip(13), sc.ip(20)];
    wait_healthy(&joiner.host, &joiner.root, &all, etcd::HEALTHY_WITHIN);
    assert_eq!(
        started_voting(&members(&joiner.host, &joiner.root, all[0])),
        4
    );
}

/// Cloud replacement: each of the three initial members dies in turn and a
/// node with a new name and a new address takes its place once the cluster
/// has seen it dead for etcd.replace_dead_after. Discovery is DNS SRV
/// records that name the initial members only (nobody updates them) and
/// etcd.endpoint, a TCP load balancer whose targets follow the live members
/// as an autoscaling group's target group does: the last new node finds the
/// cluster through the load balancer alone, over TLS that checks the
/// balancer's address in the certificates the agents minted. Writes and
/// `kiln health --wait` go on in between; no etcdctl by hand.
#[test]
fn all_initial_members_replaced_by_new_names_on_new_addresses() {
    let mut sc = Scenario::new("rot", 113, 3, DiscoverySource::DnsSrv);
    let names: Vec<(String, Ipv4Addr)> = (1..=3u8)
        .map(|i| (format!("etcd{i}"), sc.ip(10 + i)))
        .chain((4..=6u8).map(|i| (format!("etcd{i}"), sc.ip(17 + i))))
        .collect();
    let dns = serve_srv(&sc, &names[..3]);
    let balancer = sc.lab.bridge_host(50);
    sc.fixture.config.etcd.endpoint = Some(format!("{}:2379", balancer.ip));
    let balancer_dir = tempfile::tempdir().unwrap();
    let targets = balancer_dir.path().join("targets");
    let follow = |live: &[Ipv4Addr]| {
        let lines: Vec<String> = live.iter().map(|ip| format!("{ip}:2379\n")).collect();
        std::fs::write(&targets, lines.concat()).unwrap();
    };
    follow(&names[..3].iter().map(|(_, ip)| *ip).collect::<Vec<_>>());
    let mut forward = balancer.command(&kiln_e2e::binary("tcp-forward").display().to_string());
    forward.arg(format!("{}:2379", balancer.ip)).arg(&targets);
    sc.lab.spawn("balancer", forward);
    let originals: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    for node in &originals {
        use_dns(node, dns);
    }
    sc.boot(&originals.iter().collect::<Vec<_>>(), None);
    for node in &originals {
        sc.watch(node, None);
    }
    let mut live: Vec<Ipv4Addr> = (11..14).map(|i| sc.ip(i)).collect();
    put(&originals[0], &live, "/rotation/0", "before");
    // The operator's gate between replacements: `kiln health --wait`,
    // which passes only at etcd.size (3, the listed members) all healthy.
    let dir = tempfile::tempdir().unwrap();
    let (profile, secrets) =
        kiln_e2e::etcd::backup::operator_files(&sc, &originals[0], dir.path(), 113);
    let health_wait = |node: &kiln_e2e::etcd::scenario::Node, live: &[Ipv4Addr]| {
        let urls: Vec<String> = live.iter().map(|ip| format!("https://{ip}:2379")).collect();
        let mut cmd = node
            .host
            .command(&kiln_e2e::binary("kiln").display().to_string());
        cmd.arg("health")
            .arg(&profile)
            .arg("--secrets")
            .arg(&secrets)
            .arg(format!("--endpoints={}", urls.join(",")))
            .args(["--wait", "60s"]);
        let out = kiln_e2e::run(&mut cmd);
        assert_ok(&out, "kiln health --wait between replacements");
    };
    let mut fresh = Vec::new();
    for (k, old) in originals.iter().enumerate() {
        sc.destroy(old);
        sc.lab.remove_host(&old.host);
        live.retain(|ip| *ip != sc.ip(11 + k as u8));
        follow(&live);
        let (name, ip) = &names[3 + k];
        let node = sc.node(ip.octets()[3]);
        use_dns(&node, dns);
        let start = Instant::now();
        sc.boot(&[&node], Some(name));
        let took = start.elapsed();
        // It waited for the cluster to see the dead member dead long enough
        // (the watchers last saw it up to a beat before it died).
        assert!(
            took >= Duration::from_secs(etcd::REPLACE_DEAD_AFTER_SECONDS - 3),
            "{name} replaced etcd{} after {took:?}",
            k + 1
        );
        sc.watch(&node, Some(name));
        live.push(*ip);
        follow(&live);
        health_wait(&node, &live);
        put(&node, &live, &format!("/rotation/{}", k + 1), name);
        fresh.push(node);
    }
    let now = members(&fresh[2].host, &fresh[2].root, live[0]);
    assert_eq!(started_voting(&now), 3, "{now:?}");
    assert_eq!(
        now.len(),
        3,
        "a dead member is still listed or one too many joined: {now:?}"
    );
    let mut names_now: Vec<&str> = now.iter().filter_map(|m| m["name"].as_str()).collect();
    names_now.sort_unstable();
    assert_eq!(names_now, ["etcd4", "etcd5", "etcd6"]);
    for ip in &live {
        assert_eq!(get(&fresh[0], *ip, "/rotation/0"), "before");
        for (k, (name, _)) in names[3..].iter().enumerate() {
            assert_eq!(get(&fresh[0], *ip, &format!("/rotation/{}", k + 1)), *name);
        }
    }
}

/// Five members, two dead, two new nodes booted at the same moment: the
/// membership lock lets one change run at a time, exactly the two dead are
/// removed and both new nodes join.
#[test]
fn two_new_nodes_at_once_take_the_places_of_two_dead_members() {
    let (sc, nodes) = watched_cluster("two", 114, 5);
    for dead in &nodes[3..] {
        sc.destroy(dead);
        sc.lab.remove_host(&dead.host);
    }
    let newcomers = [(sc.node(31), "etcd6"), (sc.node(32), "etcd7")];
    std::thread::scope(|s| {
        for (node, name) in &newcomers {
            s.spawn(|| sc.boot(&[node], Some(name)));
        }
    });
    let all: Vec<Ipv4Addr> = [11, 12, 13, 31, 32].map(|i| sc.ip(i)).to_vec();
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&nodes[0].host, &nodes[0].root, all[0]);
    assert_eq!(started_voting(&now), 5, "{now:?}");
    assert_eq!(now.len(), 5, "{now:?}");
    let urls = peer_urls(&now);
    for gone in [14, 15] {
        let url = format!("https://{}:2380", sc.ip(gone));
        assert!(!urls.contains(&url), "{url} is still listed: {urls:?}");
    }

    // One more dead member, two more new nodes at once: one takes the
    // place, the other finds the cluster at its size and changes nothing.
    // (Every member reports: without a report from etcd6 and etcd7, no one
    // could tell that etcd3 is dead.)
    for (node, name) in &newcomers {
        sc.watch(node, Some(name));
    }
    sc.destroy(&nodes[2]);
    sc.lab.remove_host(&nodes[2].host);
    let late = [(sc.node(33), "etcd8"), (sc.node(34), "etcd9")];
    let runs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = late
            .iter()
            .map(|(node, name)| {
                s.spawn(|| {
                    etcd::agent_with_timeout(&node.host, &node.root, Some(name), 45, &["run"])
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..2).filter(|i| runs[*i].status.success()).collect();
    assert_eq!(winners.len(), 1, "{runs:?}");
    let (winner, loser) = (winners[0], 1 - winners[0]);
    let said = stderr(&runs[loser]);
    assert!(said.contains("etcd.size is 5"), "{said}");
    assert!(!late[loser].0.root.join("etc/kiln/etcd.env").exists());
    let (node, name) = &late[winner];
    start_etcd(&sc.lab, &node.label, &node.host, &node.root);
    assert_ok(
        &agent(&node.host, &node.root, Some(name), &["settle"]),
        "settle",
    );
    let all: Vec<Ipv4Addr> = [11, 12, 31, 32, 33 + winner as u8]
        .map(|i| sc.ip(i))
        .to_vec();
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, etcd::HEALTHY_WITHIN);
    let now = members(&nodes[0].host, &nodes[0].root, all[0]);
    assert_eq!((now.len(), started_voting(&now)), (5, 5), "{now:?}");
}

/// A node configuration the agent cannot read is bad input: exit 2, the
/// reason printed once, nothing written.
#[test]
fn bad_node_configuration_exits_2_and_says_why_once() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("etc/kiln/node.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "cluster = 3\n").unwrap();
    for args in [&["run"][..], &["plan"]] {
        let out = kiln_e2e::run(
            std::process::Command::new(etcd::agent_binary())
                .arg("--root")
                .arg(root.path())
                .args(args),
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert_eq!(said.matches("invalid type: integer").count(), 1, "{said}");
        assert!(said.contains("node.toml is invalid"), "{said}");
    }
    assert!(!root.path().join("etc/kiln/etcd.env").exists());
}

/// Breaks a fresh node root the way a bad image would.
type Spoil<'a> = dyn Fn(&Node) + 'a;

/// `plan` checks what `run` needs before it says what it would do, and
/// both refuse alike, changing nothing: no etcd CA key to mint the member's
/// certificates with, a key others can read, the agent's certificate of
/// another cluster's CA.
#[test]
fn plan_and_run_refuse_alike_what_run_could_not_use() {
    let sc = Scenario::new("p", 111, 3, DiscoverySource::Static);
    let other = etcd::Fixture::new(&[sc.ip(11)], DiscoverySource::Static);
    let pki = "etc/kiln/pki/etcd";
    let cases: [(&str, &Spoil<'_>); 3] = [
        ("has no etcd CA key", &|n: &Node| {
            std::fs::remove_file(n.root.join(pki).join("ca.key")).unwrap()
        }),
        ("has mode 644", &|n: &Node| {
            let key = n.root.join(pki).join("ca.key");
            std::fs::set_permissions(key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
        }),
        (
            "is not a valid certificate of this cluster's etcd CA",
            &|n: &Node| {
                let foreign = tempfile::tempdir().unwrap();
                other.node_root(foreign.path());
                std::fs::copy(
                    foreign.path().join(pki).join("kiln-agent.crt"),
                    n.root.join(pki).join("kiln-agent.crt"),
                )
                .unwrap();
            },
        ),
    ];
    let host = sc.lab.host(11);
    for (words, spoil) in cases {
        let node = sc.node_on(host.clone());
        spoil(&node);
        for verb in ["plan", "run"] {
            let out = agent(&node.host, &node.root, None, &[verb]);
            let said = stderr(&out);
            assert!(!out.status.success(), "{verb} accepted a node with {words}");
            assert!(said.contains(words), "{verb}: {said}");
            assert!(!said.contains("bootstrapping"), "{verb}: {said}");
        }
        assert!(!node.root.join("etc/kiln/etcd.env").exists());
        assert!(!node.root.join("etc/etcd").exists());
    }
}
