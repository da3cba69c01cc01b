//! Helpers of the backup and restore tests: a booted cluster with many keys,
//! `kiln backup` as an operator runs it, and node roots that restore.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use kiln_node::layout::etcd::BAKED_SNAPSHOT;
use kiln_node::layout::{pki, under_root, NODE_CONFIG};
use kiln_node::node_config::DiscoverySource;
use serde_json::Value;

use super::scenario::{Node, Scenario};
use super::{assert_ok, etcdctl, wait_healthy, HEALTHY_WITHIN};

pub const KEYS: usize = 1000;

/// A booted three-member cluster at 10.77.`subnet`.11-13.
pub fn cluster(tag: &str, subnet: u8) -> (Scenario, Vec<Node>, [Ipv4Addr; 3]) {
    let sc = Scenario::new(tag, subnet, 3, DiscoverySource::Static);
    let nodes: Vec<Node> = (11..14).map(|i| sc.node(i)).collect();
    sc.boot(&nodes.iter().collect::<Vec<_>>(), None);
    let all = [sc.ip(11), sc.ip(12), sc.ip(13)];
    wait_healthy(&nodes[0].host, &nodes[0].root, &all, HEALTHY_WITHIN);
    (sc, nodes, all)
}

/// Writes `/k/0000`.. (`KEYS` of them): 125 puts per transaction (etcd allows 128 ops).
pub fn write_keys(node: &Node, all: &[Ipv4Addr]) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(125) {
        let mut script = String::from("\n");
        for i in chunk {
            script.push_str(&format!("put /k/{i:04} value-{i}\n"));
        }
        script.push_str("\n\n");
        let mut cmd = etcd_txn(node, all);
        let mut child = cmd.spawn().expect("starting etcdctl txn");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, "etcdctl txn");
    }
}

fn etcd_txn(node: &Node, all: &[Ipv4Addr]) -> std::process::Command {
    let eps: Vec<String> = all.iter().map(|ip| format!("https://{ip}:2379")).collect();
    let file = |p: PathBuf| under_root(&node.root, &p);
    let mut cmd = node.host.command(
        &super::Release::Primary
            .tool("etcdctl")
            .display()
            .to_string(),
    );
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", eps.join(",")))
        .arg("--cacert")
        .arg(file(pki::etcd_ca_cert()))
        .arg("--cert")
        .arg(file(pki::etcd_agent_client_cert()))
        .arg("--key")
        .arg(file(pki::etcd_agent_client_key()))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `get --prefix /k/ -w json`: the keys and the cluster ID of the answer.
pub fn read_keys(node: &Node, endpoint: Ipv4Addr) -> (Vec<Value>, u64) {
    let out = etcdctl(
        &node.host,
        &node.root,
        &[endpoint],
        &["get", "--prefix", "/k/", "-w", "json"],
    );
    assert_ok(&out, "etcdctl get");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kvs = value["kvs"].as_array().cloned().unwrap_or_default();
    (kvs, value["header"]["cluster_id"].as_u64().unwrap())
}

pub fn member_ids(list: &[Value]) -> HashSet<u64> {
    list.iter().filter_map(|m| m["ID"].as_u64()).collect()
}

/// A profile and secrets folder for `kiln backup`, as `kiln build` leaves them.
pub fn operator_files(sc: &Scenario, node: &Node, dir: &Path, subnet: u8) -> (PathBuf, PathBuf) {
    let members: Vec<String> = (1..=3)
        .map(|i| format!("{{ name = \"etcd{i}\", ip = \"{}\" }}", sc.ip(10 + i)))
        .collect();
    let profile = dir.join("cluster.toml");
    fs::write(
        &profile,
        format!(
            "[cluster]\nname = \"kiln-test\"\ndomain = \"kiln.test\"\n\
             kubernetes_version = \"1.36.2\"\nnode_subnets = [\"10.77.{subnet}.0/24\"]\n\n\
             [etcd]\nmembers = [{}]\n",
            members.join(", ")
        ),
    )
    .unwrap();
    let secrets = dir.join("secrets");
    fs::create_dir_all(secrets.join("etcd")).unwrap();
    for (from, to) in [
        (pki::etcd_ca_cert(), "ca.crt"),
        (pki::etcd_agent_client_cert(), "kiln-agent.crt"),
        (pki::etcd_agent_client_key(), "kiln-agent.key"),
    ] {
        fs::copy(under_root(&node.root, &from), secrets.join("etcd").join(to)).unwrap();
    }
    (profile, secrets)
}

/// `kiln backup PROFILE --secrets DIR --out FILE ARGS` in `node`'s namespace.
pub fn kiln_backup(node: &Node, files: &(PathBuf, PathBuf), out: &Path, args: &[&str]) -> Output {
    let mut cmd = node
        .host
        .command(&crate::binary("kiln").display().to_string());
    super::with_etcd_tools(&mut cmd)
        .arg("backup")
        .arg(&files.0)
        .arg("--secrets")
        .arg(&files.1)
        .arg("--out")
        .arg(out)
        .args(args);
    crate::run(&mut cmd)
}

/// A fresh root for `host` whose node.toml restores from the baked `snapshot`.
pub fn restoring_node(sc: &Scenario, host: crate::netns::Host, snapshot: &Path) -> Node {
    let node = sc.node_on(host);
    let mut config = sc.fixture.config.clone();
    config.etcd.restore_from = Some(BAKED_SNAPSHOT.into());
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        let target = under_root(&node.root, path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        kiln_node::fsutil::write_atomic(&target, bytes, mode).unwrap();
    };
    write(Path::new(NODE_CONFIG), config.to_toml().as_bytes(), 0o644);
    write(
        Path::new(BAKED_SNAPSHOT),
        &fs::read(snapshot).unwrap(),
        0o600,
    );
    node
}
