//! Issue 3's benchmark: the etcd agent against the hand-run runbook, side by
//! side in one run (an ignored test; figures and command in BENCHMARKS.md).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::scenario::{stderr, Node, Scenario};
use kiln_e2e::etcd::{self, agent, assert_ok, etcdctl, members, start_etcd};
use kiln_node::node_config::DiscoverySource;

/// etcd's start-to-healthy time is bimodal (about 0.4 s, or 2-3 s after a
/// split first election), so formations are many and interleaved.
const FORMATIONS: u8 = 20;
const REPLACEMENTS: u8 = 7;
/// Replacements happen in a settled cluster: etcd refuses new voting members
/// for 5 s after a member (re)joins.
const SETTLE: Duration = Duration::from_secs(6);
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

fn lab(tag: String, subnet: u8) -> (Scenario, Vec<Node>, [Ipv4Addr; 3]) {
    let sc = Scenario::new(&tag, subnet, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    (sc, nodes, all)
}

/// Three agents `run`, etcd started from their configuration, `settle`
/// alongside the same health probe as the static cluster gets.
fn form_with_agents(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for node in nodes {
            s.spawn(|| assert_ok(&agent(&node.host, &node.root, None, &["run"]), "agent run"));
        }
    });
    for node in nodes {
        start_etcd(&sc.lab, &node.label, &node.host, &node.root);
    }
    std::thread::scope(|s| {
        for node in nodes {
            s.spawn(|| assert_ok(&agent(&node.host, &node.root, None, &["settle"]), "settle"));
        }
        etcd::wait_all_health(&nodes[0].host, &nodes[0].root, all, HEALTHY_WITHIN);
    });
    t.elapsed()
}

fn initial_cluster(all: &[Ipv4Addr]) -> String {
    let pairs: Vec<String> = (all.iter().enumerate())
        .map(|(i, ip)| format!("etcd{}=https://{ip}:2380", i + 1))
        .collect();
    pairs.join(",")
}

/// The runbook's hand-written static configuration with the same certificates.
fn form_static(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> Duration {
    let t = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        let name = format!("etcd{}", i + 1);
        etcd::runbook::issue_certs(&node.root, &name, all[i]);
        let env = etcd::runbook::member_env(&name, all[i], &initial_cluster(all), "new");
        etcd::start_etcd_with(&sc.lab, &node.label, &node.host, &node.root, env);
    }
    etcd::wait_all_health(&nodes[0].host, &nodes[0].root, all, HEALTHY_WITHIN);
    t.elapsed()
}

/// etcd2 dies; a fresh node on its address boots the agent. Returns the
/// time and the agent's peak RSS in `run` and `settle`.
fn replace_with_agent(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> (Duration, u64, u64) {
    std::thread::sleep(SETTLE);
    sc.destroy(&nodes[1]);
    wait_writable(&nodes[0], &[all[0], all[2]]);
    let fresh = sc.node_on(nodes[1].host.clone());
    etcd::runbook::issue_certs(&fresh.root, "etcd2", all[1]);
    let t = Instant::now();
    let run_kib = peak_rss_kib(&fresh, "run");
    start_etcd(&sc.lab, &fresh.label, &fresh.host, &fresh.root);
    let settle_kib = std::thread::scope(|s| {
        let settle = s.spawn(|| peak_rss_kib(&fresh, "settle"));
        etcd::wait_all_health(&fresh.host, &fresh.root, all, HEALTHY_WITHIN);
        settle.join().expect("settle thread")
    });
    (t.elapsed(), run_kib, settle_kib)
}

/// etcd2 dies; the runbook script: member remove, member add, start the
/// fresh node with state=existing (each etcdctl retried like
/// `until etcdctl ...; do sleep 0.2; done`, as etcd refuses changes while
/// it elects a leader).
fn replace_by_runbook(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> Duration {
    let dead = member_id(&nodes[0], all[0], "etcd2");
    std::thread::sleep(SETTLE);
    sc.destroy(&nodes[1]);
    wait_writable(&nodes[0], &[all[0], all[2]]);
    let fresh = sc.node_on(nodes[1].host.clone());
    etcd::runbook::issue_certs(&fresh.root, "etcd2", all[1]);
    let t = Instant::now();
    let ctl = |args: &[&str]| runbook_etcdctl(&nodes[0], all[0], args);
    ctl(&["member", "remove", &format!("{dead:x}")]);
    ctl(&[
        "member",
        "add",
        "etcd2",
        &format!("--peer-urls=https://{}:2380", all[1]),
    ]);
    let env = etcd::runbook::member_env("etcd2", all[1], &initial_cluster(all), "existing");
    etcd::start_etcd_with(&sc.lab, &fresh.label, &fresh.host, &fresh.root, env);
    etcd::wait_all_health(&fresh.host, &fresh.root, all, HEALTHY_WITHIN);
    t.elapsed()
}

/// One runbook `etcdctl` step, retried like `until etcdctl ...; do sleep
/// 0.2; done`.
fn runbook_etcdctl(node: &Node, endpoint: Ipv4Addr, args: &[&str]) {
    let start = Instant::now();
    loop {
        let out = etcdctl(&node.host, &node.root, &[endpoint], args);
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < HEALTHY_WITHIN,
            "runbook etcdctl {args:?}: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs an agent command under `/usr/bin/time`; returns its peak RSS.
fn peak_rss_kib(node: &Node, command: &str) -> u64 {
    let out = kiln_e2e::run(
        node.host
            .command("/usr/bin/time")
            .args(["-f", "maxrss=%M"])
            .arg(etcd::agent_binary())
            .arg("--root")
            .arg(&node.root)
            .args(["--no-start", "--timeout", "20", command]),
    );
    assert_ok(&out, command);
    let err = stderr(&out);
    err.lines()
        .find_map(|l| l.strip_prefix("maxrss=")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {err}"))
}

/// Waits until the survivors elected a leader again, so that failure
/// detection is not counted as replacement time.
fn wait_writable(node: &Node, survivors: &[Ipv4Addr]) {
    let start = Instant::now();
    while !etcdctl(&node.host, &node.root, survivors, &["put", "/bench", "x"])
        .status
        .success()
    {
        assert!(
            start.elapsed() < HEALTHY_WITHIN,
            "survivors never elected a leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints the agent's (median, mean) over the hand-run one's.
fn print_ratio(what: &str, agent: (f64, f64), by_hand: (f64, f64)) {
    println!(
        "{what} ratio: median {:.2}  mean {:.2}",
        agent.0 / by_hand.0,
        agent.1 / by_hand.1
    );
}

/// Prints min, median, mean and max; returns (median, mean).
fn summarize(name: &str, mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    let (median, mean) = (
        secs[secs.len() / 2],
        secs.iter().sum::<f64>() / secs.len() as f64,
    );
    println!(
        "{name:<22} n={:<3} min {:.3}s  median {median:.3}s  mean {mean:.3}s  max {:.3}s",
        secs.len(),
        secs[0],
        secs[secs.len() - 1]
    );
    (median, mean)
}

/// Issue 3's benchmark, agent vs runbook side by side in one run:
/// `KILN_FIRSTBOOT_BIN=$PWD/target/release/kiln-firstboot cargo test -p
/// kiln-e2e --test etcd_bench -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_agent_vs_runbook() {
    let (mut agent_form, mut static_form) = (vec![], vec![]);
    for round in 0..FORMATIONS {
        let (sc, nodes, all) = lab(format!("fa{round}"), 140);
        agent_form.push(form_with_agents(&sc, &nodes, &all));
        drop(sc);
        let (sc, nodes, all) = lab(format!("fs{round}"), 141);
        static_form.push(form_static(&sc, &nodes, &all));
    }
    let (mut agent_replace, mut runbook_replace, mut rss) = (vec![], vec![], vec![]);
    for round in 0..REPLACEMENTS {
        let (sc, nodes, all) = lab(format!("ra{round}"), 142);
        form_with_agents(&sc, &nodes, &all);
        let (took, run_kib, settle_kib) = replace_with_agent(&sc, &nodes, &all);
        agent_replace.push(took);
        rss.extend([run_kib, settle_kib]);
        drop(sc);
        let (sc, nodes, all) = lab(format!("rr{round}"), 143);
        form_static(&sc, &nodes, &all);
        runbook_replace.push(replace_by_runbook(&sc, &nodes, &all));
    }
    let af = summarize("formation, agent", agent_form);
    let sf = summarize("formation, static", static_form);
    let ar = summarize("replacement, agent", agent_replace);
    let rr = summarize("replacement, runbook", runbook_replace);
    print_ratio("formation", af, sf);
    print_ratio("replacement", ar, rr);
    println!(
        "agent peak RSS: max {} KiB",
        rss.iter().max().copied().unwrap_or_default()
    );
}

/// The ID of member `name`, as the cluster lists it.
fn member_id(node: &Node, endpoint: Ipv4Addr, name: &str) -> u64 {
    members(&node.host, &node.root, endpoint)
        .into_iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["ID"].as_u64())
        .unwrap_or_else(|| panic!("{name} is listed"))
}

/// Waits until every survivor's watcher reports that it has not seen the
/// member `dead` for `etcd.replace_dead_after`: the grace has passed.
fn wait_dead_to_cluster(sc: &Scenario, node: &Node, survivors: &[Ipv4Addr], dead: u64) {
    let prefix = format!("/kiln/{}/etcd/unseen/", sc.fixture.config.cluster);
    let grace = etcd::REPLACE_DEAD_AFTER_SECONDS;
    let start = Instant::now();
    loop {
        let out = etcdctl(
            &node.host,
            &node.root,
            survivors,
            &["get", "--prefix", &prefix, "--print-value-only"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The watchers' own reports: only theirs are under this prefix here.
        let reports: Vec<kiln_node::etcd::reports::Report> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let saying_dead = reports
            .iter()
            .filter(|r| r.unseen_seconds.get(&dead.to_string()) >= Some(&grace))
            .count();
        if saying_dead == survivors.len() {
            return;
        }
        assert!(
            start.elapsed() < HEALTHY_WITHIN * 2,
            "the survivors never reported the dead member dead: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// etcd2 dies; once the cluster has seen it dead for the grace, a fresh
/// node named etcd9 on a new address boots the agent: `run` (finds etcd2
/// dead to the cluster, removes it, adds itself as a learner, mints its
/// certificates), etcd, `settle` (promotion), until all three answer.
fn new_address_with_agent(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> Duration {
    for node in nodes {
        sc.watch(node, None);
    }
    let dead = member_id(&nodes[0], all[0], "etcd2");
    std::thread::sleep(SETTLE);
    sc.destroy(&nodes[1]);
    let survivors = [all[0], all[2]];
    wait_dead_to_cluster(sc, &nodes[0], &survivors, dead);
    let fresh = sc.node(40);
    let now_all = [all[0], all[2], sc.ip(40)];
    let t = Instant::now();
    assert_ok(
        &agent(&fresh.host, &fresh.root, Some("etcd9"), &["run"]),
        "agent run",
    );
    start_etcd(&sc.lab, &fresh.label, &fresh.host, &fresh.root);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_ok(
                &agent(&fresh.host, &fresh.root, Some("etcd9"), &["settle"]),
                "settle",
            )
        });
        etcd::wait_all_health(&fresh.host, &fresh.root, &now_all, HEALTHY_WITHIN);
    });
    t.elapsed()
}

/// The same failure by hand: certificates for etcd9's new address issued
/// beforehand (openssl, from the etcd CA; not timed), then `etcdctl member
/// remove`, `member add` (each retried until etcd accepts it) and etcd
/// started with state existing, until all three answer.
fn new_address_by_runbook(sc: &Scenario, nodes: &[Node], all: &[Ipv4Addr]) -> Duration {
    let dead = member_id(&nodes[0], all[0], "etcd2");
    std::thread::sleep(SETTLE);
    sc.destroy(&nodes[1]);
    wait_writable(&nodes[0], &[all[0], all[2]]);
    let fresh = sc.node(40);
    let new_ip = sc.ip(40);
    etcd::runbook::issue_certs(&fresh.root, "etcd9", new_ip);
    let now_all = [all[0], all[2], new_ip];
    let t = Instant::now();
    let ctl = |args: &[&str]| runbook_etcdctl(&nodes[0], all[0], args);
    ctl(&["member", "remove", &format!("{dead:x}")]);
    ctl(&[
        "member",
        "add",
        "etcd9",
        &format!("--peer-urls=https://{new_ip}:2380"),
    ]);
    let initial = format!(
        "etcd1=https://{}:2380,etcd3=https://{}:2380,etcd9=https://{new_ip}:2380",
        all[0], all[2]
    );
    let env = etcd::runbook::member_env("etcd9", new_ip, &initial, "existing");
    etcd::start_etcd_with(&sc.lab, &fresh.label, &fresh.host, &fresh.root, env);
    etcd::wait_all_health(&fresh.host, &fresh.root, &now_all, HEALTHY_WITHIN);
    t.elapsed()
}

/// Issue 13's benchmark, side by side in one run: a replacement under a new
/// name on a new address, from the new node's boot (once the dead member's
/// grace has passed) to the cluster healthy at its size, against the
/// runbook's manual steps: `KILN_FIRSTBOOT_BIN=$PWD/target/release/kiln-firstboot
/// cargo test -p kiln-e2e --test etcd_bench new_address -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_new_address_replacement() {
    let (mut by_agent, mut by_runbook) = (vec![], vec![]);
    for round in 0..REPLACEMENTS {
        let (sc, nodes, all) = lab(format!("na{round}"), 144);
        form_with_agents(&sc, &nodes, &all);
        by_agent.push(new_address_with_agent(&sc, &nodes, &all));
        drop(sc);
        let (sc, nodes, all) = lab(format!("nr{round}"), 145);
        form_static(&sc, &nodes, &all);
        by_runbook.push(new_address_by_runbook(&sc, &nodes, &all));
    }
    let a = summarize("new address, agent", by_agent);
    let r = summarize("new address, runbook", by_runbook);
    print_ratio("new-address", a, r);
}
