//! A test lab for the etcd agent: listed members in network namespaces, node
//! roots as the builder bakes them, and the agent's two phases with etcd
//! started in between, plus the small cluster checks the tests share.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use kiln_node::node_config::DiscoverySource;
use tempfile::TempDir;

use super::{agent, assert_ok, etcdctl, start_etcd, Fixture, Release};
use crate::netns::{Host, Lab};

/// A host namespace with a node root folder for the agent.
pub struct Node {
    pub host: Host,
    pub root: PathBuf,
    /// Names the node's processes in the lab.
    pub label: String,
}

pub struct Scenario {
    pub lab: Lab,
    pub fixture: Fixture,
    dir: TempDir,
    roots: AtomicU32,
}

impl Scenario {
    /// A lab with `count` listed members at 10.77.<subnet>.11...
    pub fn new(tag: &str, subnet: u8, count: u8, discovery: DiscoverySource) -> Scenario {
        Scenario::with_lifetimes(tag, subnet, count, discovery, super::MONTH)
    }

    /// The same with certificates of the given lifetimes.
    pub fn with_lifetimes(
        tag: &str,
        subnet: u8,
        count: u8,
        discovery: DiscoverySource,
        lifetimes: super::Lifetimes,
    ) -> Scenario {
        let lab = Lab::new(tag, subnet);
        let ips: Vec<Ipv4Addr> = (0..count).map(|i| lab.addr(11 + i)).collect();
        Scenario {
            fixture: Fixture::with_lifetimes(&ips, discovery, lifetimes),
            lab,
            dir: tempfile::tempdir().unwrap(),
            roots: AtomicU32::new(0),
        }
    }

    /// A fresh node (new namespace, fresh root) at 10.77.<subnet>.<last>.
    pub fn node(&self, last: u8) -> Node {
        let host = self.lab.host(last);
        self.node_on(host)
    }

    /// A fresh root (a newly booted image) on an existing host.
    pub fn node_on(&self, host: Host) -> Node {
        self.node_on_with(host, Release::Primary)
    }

    /// A fresh root of an image that carries etcd `release`.
    pub fn node_on_with(&self, host: Host, release: Release) -> Node {
        let n = self.roots.fetch_add(1, Ordering::SeqCst);
        let root = self.dir.path().join(format!("root{n}"));
        self.fixture.node_root_with(&root, release);
        Node {
            label: format!("etcd-root{n}"),
            host,
            root,
        }
    }

    /// A master's root (see [`Fixture::master_root`]) at 10.77.<subnet>.<last>.
    pub fn master_node(&self, last: u8) -> Node {
        let n = self.roots.fetch_add(1, Ordering::SeqCst);
        let root = self.dir.path().join(format!("root{n}"));
        self.fixture.master_root(&root);
        Node {
            label: format!("master-root{n}"),
            host: self.lab.host(last),
            root,
        }
    }

    /// The folder that holds every node root of the scenario.
    pub fn roots_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn ip(&self, last: u8) -> Ipv4Addr {
        self.lab.addr(last)
    }

    /// Agent `run`, etcd started from its configuration, then `settle`.
    pub fn boot(&self, nodes: &[&Node], hostname: Option<&str>) {
        std::thread::scope(|s| {
            for node in nodes {
                s.spawn(|| {
                    assert_ok(
                        &agent(&node.host, &node.root, hostname, &["run"]),
                        "agent run",
                    )
                });
            }
        });
        for node in nodes {
            start_etcd(&self.lab, &node.label, &node.host, &node.root);
        }
        std::thread::scope(|s| {
            for node in nodes {
                s.spawn(|| {
                    assert_ok(
                        &agent(&node.host, &node.root, hostname, &["settle"]),
                        "agent settle",
                    )
                });
            }
        });
    }

    /// Starts the node's watcher (what kiln-watch.service runs), under the
    /// node's label: [`Scenario::destroy`] ends it with etcd.
    pub fn watch(&self, node: &Node, hostname: Option<&str>) {
        let mut cmd = super::agent_command(
            &node.host,
            &node.root,
            hostname,
            super::AGENT_TIMEOUT_SECS,
            &["watch"],
        );
        let log = std::fs::File::create(node.root.join("watch.log")).unwrap();
        cmd.stdout(std::process::Stdio::null()).stderr(log);
        self.lab.spawn(&node.label, cmd);
    }

    /// Kills a node's etcd (SIGKILL) and deletes its data: the VM is gone.
    pub fn destroy(&self, node: &Node) {
        self.lab.kill(&node.label);
        std::fs::remove_dir_all(node.root.join("var/lib/etcd")).unwrap();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn started_voting(members: &[serde_json::Value]) -> usize {
    members
        .iter()
        .filter(|m| m["name"].as_str().is_some_and(|n| !n.is_empty()))
        .filter(|m| !m["isLearner"].as_bool().unwrap_or(false))
        .count()
}

pub fn peer_urls(members: &[serde_json::Value]) -> Vec<String> {
    let mut urls: Vec<String> = members
        .iter()
        .flat_map(|m| m["peerURLs"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    urls.sort();
    urls
}

pub fn put(node: &Node, endpoints: &[Ipv4Addr], key: &str, value: &str) {
    assert_ok(
        &etcdctl(&node.host, &node.root, endpoints, &["put", key, value]),
        "etcdctl put",
    );
}

pub fn get(node: &Node, endpoint: Ipv4Addr, key: &str) -> String {
    let out = etcdctl(
        &node.host,
        &node.root,
        &[endpoint],
        &["get", key, "--print-value-only"],
    );
    assert_ok(&out, "etcdctl get");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn converged(node: &Node) -> bool {
    let status =
        std::fs::read_to_string(node.root.join("run/kiln/status.json")).unwrap_or_default();
    status.contains("\"converged\"") && node.root.join("var/lib/kiln/firstboot.done").exists()
}
