//! Secrets never leave their files: the agent forms a cluster (the etcd
//! node, master1's `kubeadm init`, master2's control-plane join, which
//! re-creates the bootstrap token an operator deleted, worker1's join)
//! against a real etcd and the kubeadm stand-in, inside network namespaces
//! this test makes. No secret of the secrets folder (the bootstrap token,
//! any private key) appears in any agent's output (what the journal and
//! /dev/console get under systemd), in the stand-in's records and console
//! lines, in any argv the stand-in was started with, or in the command line
//! of any process still running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::{lay_out, Build};
use kiln_e2e::etcd::{agent, agent_command, assert_ok, etcdctl, start_etcd, wait_healthy};
use kiln_e2e::etcd::{Release, AGENT_TIMEOUT_SECS, HEALTHY_WITHIN};
use kiln_e2e::netns::{Host, Lab};
use kiln_e2e::{binary, fixture, run};

/// tests/fixtures/kubeadm/configs/cluster.toml's subnet.
const SUBNET: u8 = 150;

/// `kiln-firstboot run` on a master or worker root, the stand-in as kubeadm.
fn kube_agent(host: &Host, root: &Path, name: &str) -> Output {
    let mut cmd = agent_command(host, root, Some(name), AGENT_TIMEOUT_SECS, &["run"]);
    cmd.env("KILN_KUBEADM", binary("kubeadm"))
        .env(kiln_e2e::kubeadm::ROOT_ENV, root);
    run(&mut cmd)
}

/// Every secret value of the secrets folder, named without showing it: the
/// bootstrap token and its secret half, each base64 line of every PEM
/// private key.
fn secrets(dir: &Path) -> Vec<(String, String)> {
    let token = fs::read_to_string(dir.join("bootstrap-token")).expect("reading the token");
    let token = token.trim();
    let mut found = vec![
        ("the bootstrap token".to_owned(), token.to_owned()),
        (
            "the bootstrap token's secret".to_owned(),
            token[7..].to_owned(),
        ),
    ];
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            let mut in_key = false;
            for (n, line) in text.lines().enumerate() {
                if line.starts_with("-----BEGIN") {
                    in_key = line.contains("PRIVATE KEY");
                } else if line.starts_with("-----END") {
                    in_key = false;
                } else if in_key && line.len() >= 16 {
                    let what = format!("line {} of private key {}", n + 1, path.display());
                    found.push((what, line.to_owned()));
                }
            }
        }
    }
    assert!(
        found.len() > 10,
        "the secrets folder holds no private keys?"
    );
    found
}

/// The command lines of every process this machine runs now.
fn command_lines() -> String {
    let mut all = String::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&raw).replace('\0', " "));
            all.push('\n');
        }
    }
    all
}

#[test]
fn no_secret_reaches_a_log_the_console_or_an_argv() {
    let build = Build::new();
    build.ok(&fixture("kubeadm/configs/cluster.toml"));
    let lab = Lab::new("ks", SUBNET);
    let roots = tempfile::tempdir().unwrap();
    let root = |role: &str, name: &str| {
        let root = roots.path().join(name);
        lay_out(&build.out(), role, &root);
        root
    };
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, out: &Output| {
        assert_ok(out, what);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        shown.push((format!("{what} output"), text));
    };

    let etcd_host = lab.host(11);
    let etcd_root = root("etcd", "etcd1");
    Release::Primary.install(&etcd_root);
    keep(
        "etcd1 run",
        &agent(&etcd_host, &etcd_root, Some("etcd1"), &["run"]),
    );
    start_etcd(&lab, "etcd1", &etcd_host, &etcd_root);
    keep(
        "etcd1 settle",
        &agent(&etcd_host, &etcd_root, Some("etcd1"), &["settle"]),
    );
    let etcd_ip = lab.addr(11);
    wait_healthy(&etcd_host, &etcd_root, &[etcd_ip], HEALTHY_WITHIN);

    let nodes: Vec<(&str, Host, PathBuf)> = [
        ("master1", 21, "master"),
        ("master2", 22, "master"),
        ("worker1", 31, "worker"),
    ]
    .into_iter()
    .map(|(name, last, role)| (name, lab.host(last), root(role, name)))
    .collect();
    let _kubelets =
        kiln_e2e::kubeadm::kubelet::Kubelets(nodes.iter().map(|n| n.2.clone()).collect());
    let (master1, master2, worker1) = (&nodes[0], &nodes[1], &nodes[2]);
    keep(
        "master1 run",
        &kube_agent(&master1.1, &master1.2, master1.0),
    );
    // Once master2 has joined, the token goes (an operator deleted it, or
    // it expired and was cleaned up) before master2's agent looks for it:
    // master2 must create it again, and worker1 can only join if it did.
    let secret = secrets(&build.secrets());
    let token_key = format!(
        "/registry/secrets/kube-system/bootstrap-token-{}",
        &secret[0].1[..6]
    );
    let joined_key = "/registry/kiln-standin/log/master2-join-control-plane";
    let hook = master2.2.join("etc/kubeadm-standin/done-delay");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(&hook, "10\n").unwrap();
    let etcd = |args: &[&str]| {
        let out = etcdctl(&etcd_host, &etcd_root, &[etcd_ip], args);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let master2_run = std::thread::scope(|s| {
        let running = s.spawn(|| kube_agent(&master2.1, &master2.2, master2.0));
        let start = Instant::now();
        while etcd(&["get", "--keys-only", joined_key]).is_empty() {
            assert!(
                !running.is_finished(),
                "master2's agent ended before joining"
            );
            assert!(start.elapsed() < Duration::from_secs(AGENT_TIMEOUT_SECS));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(etcd(&["del", &token_key]), "1", "deleting {token_key}");
        running.join().unwrap()
    });
    fs::remove_file(&hook).unwrap();
    keep("master2 run", &master2_run);
    keep(
        "worker1 run",
        &kube_agent(&worker1.1, &worker1.2, worker1.0),
    );
    shown.push(("running processes".into(), command_lines()));

    let mut argvs = 0;
    for (name, _, root) in &nodes {
        for log in ["kubeadm-standin-argv.jsonl", "kubeadm-standin.jsonl"] {
            let text = fs::read_to_string(root.join("var/log").join(log)).unwrap_or_default();
            if log.ends_with("argv.jsonl") {
                argvs += text.lines().count();
            }
            shown.push((format!("{name}'s /var/log/{log}"), text));
        }
    }
    let records = &shown
        .iter()
        .find(|(what, _)| what == "master2's /var/log/kubeadm-standin.jsonl")
        .unwrap()
        .1;
    assert!(
        records
            .lines()
            .any(|l| l.contains("\"token-create\"") && l.contains("\"ok\"")),
        "master2 never created the deleted token:\n{records}"
    );
    assert!(argvs >= 6, "the stand-in recorded only {argvs} argvs");

    let leaks: Vec<String> = shown
        .iter()
        .flat_map(|(what, text)| {
            secret
                .iter()
                .filter(|(_, value)| text.contains(value.as_str()))
                .map(move |(name, _)| format!("{what} holds {name}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets left their files:\n{}",
        leaks.join("\n")
    );
}
