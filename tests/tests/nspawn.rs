//! The etcd role's root filesystem booted by real systemd in containers:
//! kiln-firstboot.service, then etcd.service, then the settle unit make a
//! three-member TLS cluster; a lost member is replaced by a fresh container
//! with the same address, and the cluster's data survives. The booted tree
//! is the role's public OS tree (no key, no token: tests/tests/disks.rs
//! scans it); each container gets the role's `.ign` as a credential, and the
//! image's real Ignition applies it at first boot. The tree is checked first:
//! no SSH server, no password; inside the containers every key is 0600 and
//! /usr is read-only, as on a node's verified OS.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::Build;
use kiln_e2e::bootnet::{addr, BootNet};
use kiln_e2e::nspawn::{wait_console, Container};
use kiln_e2e::profile;
use kiln_e2e::tree;

const BOOT_WAIT: Duration = Duration::from_secs(180);

/// What must never be in a node image: an SSH server, a password hash, the
/// cluster's config.
fn assert_image_hygiene(root: &Path) {
    for sshd in ["usr/sbin/sshd", "lib/systemd/system/ssh.service"] {
        assert!(!root.join(sshd).exists(), "the image holds {sshd}");
    }
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    for line in shadow.lines() {
        let hash = line.split(':').nth(1).unwrap_or("");
        assert!(
            hash.is_empty() || hash.starts_with(['*', '!']),
            "etc/shadow holds a password for {}",
            line.split(':').next().unwrap_or("")
        );
        assert!(!hash.is_empty(), "{} has an empty password", line);
    }
    assert_eq!(
        fs::read(root.join("etc/machine-id")).unwrap(),
        b"",
        "machine-id must be empty"
    );
    for config in ["etc/kiln/node.toml", "etc/kiln/pki"] {
        assert!(!root.join(config).exists(), "the image holds /{config}");
    }
}

/// What Ignition gave a booted container: its config, every key and the
/// token 0600 (`find` prints any other, then the count).
fn assert_config_applied(c: &Container) {
    let out = c.exec(
        "test -f /etc/kiln/node.toml && cd /etc && \
         find kiln/pki etcd/pki \\( -name '*.key' -o -name bootstrap-token \\) ! -perm 0600 && \
         find kiln/pki etcd/pki \\( -name '*.key' -o -name bootstrap-token \\) | wc -l",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        out.status.success(),
        "{}: no config applied: {said}",
        c.name
    );
    let keys: usize = lines
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(lines.len(), 1, "{}: keys not 0600: {said}", c.name);
    // The etcd CA and agent keys from the config, the serving and peer
    // keys the member minted.
    assert!(
        keys >= 4,
        "{}: only {keys} key files in /etc/kiln/pki and /etc/etcd/pki",
        c.name
    );
    let console = c.console();
    assert!(
        console.contains("/run/credentials/kiln-ignition.service/kiln.ign")
            && console.contains("kiln: Ignition applied this node's config"),
        "{}: Ignition did not apply the credential:\n{console}",
        c.name
    );
}

fn consoles(containers: &[&Container]) -> String {
    containers
        .iter()
        .map(|c| {
            let text = c.console();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- console of {} ---\n{}\n", c.name, tail.join("\n"))
        })
        .collect()
}

/// What kiln-firstboot said on a container's console, but for discovery's
/// warnings (DNS SRV answers nothing here, every round).
fn agent_lines(c: &Container) -> String {
    let console = c.console();
    let lines: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("kiln_firstboot") && !l.contains("discovery failed"))
        .collect();
    lines.join("\n")
}

#[test]
fn three_containers_form_a_tls_cluster_and_a_lost_member_is_replaced() {
    let build = Build::new();
    let built = build.on_debian_base(&profile("local.toml"), "ignition,rootfs");
    let root = build.dir.path().join("root");
    let start = Instant::now();
    tree::extract(&build.out().join("etcd/rootfs.tar.gz"), &root).unwrap();
    eprintln!("build {built:?}, extract {:?}", start.elapsed());
    assert_image_hygiene(&root);
    let secrets = build.secrets();
    let config = build.out().join("etcd/etcd.ign");
    let logs = build.dir.path();

    let mut net = BootNet::new(
        "ns",
        &[
            (11, 11, "etcd1"),
            (12, 12, "etcd2"),
            (13, 13, "etcd3"),
            (14, 14, "etcd4"),
        ],
    );
    let endpoints = [addr(11), addr(12), addr(13)];
    let mut containers: Vec<Container> = Vec::new();
    for last in [11u8, 12, 13] {
        let netns = net.host_ns(&format!("h{last}"), last);
        let log = logs.join(format!("etcd{last}.log"));
        let name = format!("etcd{last}");
        containers.push(Container::boot(&root, &config, &name, &netns, &log));
    }
    // A fourth container from the same tree, given no config.
    let netns = net.host_ns("h14", 14);
    let bare_log = logs.join("etcd14-bare.log");
    let mut bare = Container::boot_with(&root, None, "etcd14", &netns, &bare_log, "");
    let refs: Vec<&Container> = containers.iter().collect();
    let formed = net.wait_cluster(&secrets, &endpoints, BOOT_WAIT, &|| consoles(&refs));
    eprintln!("three containers healthy {formed:?} after boot");
    for c in &containers {
        assert_config_applied(c);
    }
    // It says so, and does nothing else.
    let said = "kiln: no Ignition config for this container";
    wait_console(&bare.log, said, Duration::from_secs(60));
    let console = bare.console();
    let units = bare.exec("systemctl is-active kiln-firstboot.service etcd.service");
    let units = String::from_utf8_lossy(&units.stdout);
    assert_eq!(
        units.split_whitespace().collect::<Vec<_>>(),
        ["inactive", "inactive"]
    );
    assert!(
        !console.contains("kiln_firstboot"),
        "the agent ran:\n{console}"
    );
    bare.kill();
    net.remove_host_ns("h14");
    // The OS tree is read-only inside: the agent and etcd ran without
    // writing to it, and a write fails.
    let write = containers[0].exec("touch /usr/bin/kiln-written");
    assert!(!write.status.success(), "a write to /usr succeeded");
    let said = String::from_utf8_lossy(&write.stderr);
    assert!(said.contains("Read-only file system"), "{said}");
    assert!(!root.join("usr/bin/kiln-written").exists());
    // etcd answers before each agent's settle has said it converged.
    for c in &containers {
        let said = |text: &str| text.contains("decided") && text.contains("node converged");
        let start = std::time::Instant::now();
        while !said(&c.console()) && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert!(
            said(&c.console()),
            "{}: kiln-firstboot's decision and convergence are not on the console within 60 s; \
             its lines there:\n{}",
            c.name,
            agent_lines(c)
        );
    }
    let health = net.kiln_health(&secrets, &endpoints, "0s");
    assert!(
        health.status.success(),
        "kiln health disagrees with etcdctl: {}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(report["healthy"], true);
    assert_eq!(report["members"].as_array().map(Vec::len), Some(3));
    let put = net.etcdctl(&secrets, &endpoints, &["put", "/kiln/test", "kept"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let before = net.members(&secrets, &endpoints);

    // etcd2 is lost; a fresh container from the same image takes its MAC.
    let mut lost = containers.remove(1);
    lost.kill();
    drop(lost);
    net.remove_host_ns("h12");
    let gate = net.kiln_health(&secrets, &endpoints, "2s");
    let stderr = String::from_utf8_lossy(&gate.stderr);
    assert!(
        !gate.status.success() && stderr.contains("etcd2 is not healthy"),
        "kiln health --wait must fail, naming etcd2, while it is down: {stderr}"
    );
    let netns = net.host_ns("h12", 12);
    let log = logs.join("etcd12-replacement.log");
    let fresh = Container::boot(&root, &config, "etcd12b", &netns, &log);
    let mut all: Vec<&Container> = containers.iter().collect();
    all.push(&fresh);
    let replaced = net.wait_cluster(&secrets, &endpoints, BOOT_WAIT, &|| consoles(&all));
    eprintln!("replacement healthy {replaced:?} after boot");
    assert_config_applied(&fresh);

    let after = net.members(&secrets, &endpoints);
    let id = |m: &serde_json::Value, name: &str| {
        (m["name"] == name).then(|| m["ID"].as_u64().unwrap_or_default())
    };
    let old_id = before.iter().find_map(|m| id(m, "etcd2"));
    let new_id = after.iter().find_map(|m| id(m, "etcd2"));
    assert!(
        new_id.is_some(),
        "no member etcd2 after replacement: {after:?}"
    );
    assert_ne!(old_id, new_id, "etcd2 was not replaced by a new member");
    assert_eq!(net.get(&secrets, &endpoints, "/kiln/test"), "kept");
    assert_eq!(
        net.get(&secrets, &[addr(12)], "/kiln/test"),
        "kept",
        "read from the new member"
    );
    let text = fresh.console();
    assert!(
        text.contains("as replacement for dead member etcd2") && text.contains("node converged"),
        "the new container did not replace etcd2 and converge:\n{text}"
    );
}
