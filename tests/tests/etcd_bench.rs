//! Issue 3's benchmark: the etcd agent against the hand-run runbook, side by
//! side in one run (an ignored test; figures and command in BENCHMARKS.md).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kiln_e2e::etcd::scenario::{stderr, Node, Scenario};
use kiln_e2e::etcd::{self, agent, assert_ok, etcdctl, members, start_etcd};
use kiln_firstboot::node_config::DiscoverySource;

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
        let env = etcd::runbook::member_env(
            &format!("etcd{}", i + 1),
            all[i],
            &initial_cluster(all),
            "new",
        );
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
    let dead = members(&nodes[0].host, &nodes[0].root, all[0])
        .into_iter()
        .find(|m| m["name"] == "etcd2")
        .and_then(|m| m["ID"].as_u64())
        .expect("etcd2 is listed");
    std::thread::sleep(SETTLE);
    sc.destroy(&nodes[1]);
    wait_writable(&nodes[0], &[all[0], all[2]]);
    let fresh = sc.node_on(nodes[1].host.clone());
    let t = Instant::now();
    let ctl = |args: &[&str]| {
        let start = Instant::now();
        loop {
            let out = etcdctl(&nodes[0].host, &nodes[0].root, &[all[0]], args);
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
    };
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
    println!(
        "formation ratio:   median {:.2}  mean {:.2}",
        af.0 / sf.0,
        af.1 / sf.1
    );
    println!(
        "replacement ratio: median {:.2}  mean {:.2}",
        ar.0 / rr.0,
        ar.1 / rr.1
    );
    println!(
        "agent peak RSS: max {} KiB",
        rss.iter().max().copied().unwrap_or_default()
    );
}
