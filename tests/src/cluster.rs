//! A highly available Kubernetes cluster of kiln's role images booted as
//! nspawn containers on a [`BootNet`]: etcd nodes, masters with the strict
//! kubeadm stand-in on PATH and a keepalived VIP, workers. Reads what the
//! stand-in recorded (etcd keys, console lines) and where the VIP sits.
//! Dropping a [`Cluster`] kills every container before its namespaces go.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine;
use kiln_node::node_config::Role;

use crate::artifacts::Build;
use crate::bootnet::{addr, BootNet};
use crate::nspawn::{console_text, Container};
use crate::tree;

/// A node of tests/fixtures/profiles/cluster*.toml: its MAC and address
/// both end in `last` (see [`crate::bootnet::mac`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub name: &'static str,
    pub role: Role,
    pub last: u8,
}

impl Node {
    pub fn ip(&self) -> Ipv4Addr {
        addr(self.last)
    }
}

const fn node(name: &'static str, role: Role, last: u8) -> Node {
    Node { name, role, last }
}

pub const ETCD_NODES: [Node; 3] = [
    node("etcd1", Role::Etcd, 11),
    node("etcd2", Role::Etcd, 12),
    node("etcd3", Role::Etcd, 13),
];
pub const MASTERS: [Node; 3] = [
    node("master1", Role::Master, 21),
    node("master2", Role::Master, 22),
    node("master3", Role::Master, 23),
];
/// A master the profiles do not list, on an address they do not list: a
/// cloud replacement.
pub const NEW_MASTER: Node = node("master4", Role::Master, 24);
pub const WORKERS: [Node; 2] = [
    node("worker1", Role::Worker, 31),
    node("worker2", Role::Worker, 32),
];

/// The profiles' keepalived VIP, also the control-plane endpoint's host.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

/// The stand-in's console line prefix (see tests/src/bin).
const STANDIN_LINE: &str = "KUBEADM-STANDIN ";

/// Whether the profile keeps etcd on dedicated nodes or on the masters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    External,
    Stacked,
}

/// A profile built on the Debian base, each role's public OS tree extracted
/// once and shared read-only by every container of the role, which gets the
/// role's `.ign` at boot.
pub struct Images {
    pub build: Build,
    pub topology: Topology,
    /// The profile's `cluster.name`.
    pub cluster: String,
    roots: BTreeMap<Role, PathBuf>,
}

impl Images {
    /// Builds `profile`'s configs and OS trees, extracts the trees and installs the
    /// kubeadm stand-in (and, stacked, the host's etcd for it to start) on
    /// masters and workers, as a Kubernetes package would.
    pub fn new(profile: &Path, cluster: &str, topology: Topology) -> Images {
        let build = Build::new();
        let took = build.on_debian_base(profile, "ignition,rootfs");
        let start = Instant::now();
        let mut roles = vec![Role::Master, Role::Worker];
        if topology == Topology::External {
            roles.push(Role::Etcd);
        }
        let mut roots = BTreeMap::new();
        for role in roles {
            let root = build.dir.path().join(format!("root-{role}"));
            let tarball = build.out().join(format!("{role}/rootfs.tar.gz"));
            tree::extract(&tarball, &root).unwrap_or_else(|e| panic!("{e:#}"));
            if role != Role::Etcd {
                install(&crate::binary("kubeadm"), &root, "usr/local/bin/kubeadm");
            }
            if role == Role::Master && topology == Topology::Stacked {
                install(
                    &crate::etcd::Release::Primary.tool("etcd"),
                    &root,
                    "usr/local/bin/etcd",
                );
            }
            roots.insert(role, root);
        }
        eprintln!(
            "kiln build {took:?}, extract and install {:?}",
            start.elapsed()
        );
        Images {
            build,
            topology,
            cluster: cluster.to_owned(),
            roots,
        }
    }

    pub fn root(&self, role: Role) -> &Path {
        &self.roots[&role]
    }

    /// The role's Ignition config: its nodes' user-data.
    pub fn config(&self, role: Role) -> PathBuf {
        self.build.out().join(format!("{role}/{role}.ign"))
    }

    pub fn secrets(&self) -> PathBuf {
        self.build.secrets()
    }
}

/// Copies an executable into a root filesystem, mode 0755.
fn install(from: &Path, root: &Path, rel: &str) {
    let to = root.join(rel);
    fs::create_dir_all(to.parent().expect("a file path has a parent"))
        .unwrap_or_else(|e| panic!("creating the folder of {}: {e}", to.display()));
    fs::copy(from, &to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", to.display()));
}

/// One successful init or join the stand-in recorded in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub node: String,
    pub verb: String,
    /// etcd revision that created the key: orders records cluster-wide.
    pub revision: u64,
}

/// The booted cluster: containers by node name, every console ever
/// written (killed containers' too), the network they share.
pub struct Cluster<'a> {
    containers: BTreeMap<&'static str, Container>,
    consoles: Vec<(String, PathBuf)>,
    pub images: &'a Images,
    pub net: BootNet,
}

impl<'a> Cluster<'a> {
    /// A network with fixed leases for every node of the profiles; `tag`
    /// keeps namespace names apart from other tests'.
    pub fn new(images: &'a Images, tag: &str) -> Cluster<'a> {
        let leases: Vec<(u8, u8, &str)> = ETCD_NODES
            .iter()
            .chain(&MASTERS)
            .chain(&[NEW_MASTER])
            .chain(&WORKERS)
            .map(|n| (n.last, n.last, n.name))
            .collect();
        Cluster {
            containers: BTreeMap::new(),
            consoles: vec![],
            images,
            net: BootNet::new(tag, &leases),
        }
    }

    /// Boots a fresh container for `node` from its role's image; `extra`
    /// are more nspawn options (like `--bind-ro=...`). A node booted again
    /// after [`Cluster::kill`] is a new machine with the same MAC.
    pub fn boot(&mut self, node: Node, extra: &str) {
        assert!(
            !self.containers.contains_key(node.name),
            "{} is already running",
            node.name
        );
        let generation = self
            .consoles
            .iter()
            .filter(|(n, _)| n.starts_with(node.name))
            .count();
        let machine = match generation {
            0 => node.name.to_owned(),
            g => format!("{}r{g}", node.name),
        };
        let netns = self.net.host_ns(node.name, node.last);
        let log = self
            .images
            .build
            .dir
            .path()
            .join(format!("{}-{machine}.log", self.net.prefix));
        let root = self.images.root(node.role);
        let config = self.images.config(node.role);
        let container = Container::boot_with(root, Some(&config), &machine, &netns, &log, extra);
        self.consoles.push((machine, log));
        self.containers.insert(node.name, container);
    }

    /// Kills `node`'s container at once, as a lost machine disappears, and
    /// unplugs its namespace (an address it held goes with it).
    pub fn kill(&mut self, node: Node) {
        let mut container = self
            .containers
            .remove(node.name)
            .unwrap_or_else(|| panic!("{} is not running", node.name));
        container.kill();
        self.net.remove_host_ns(node.name);
    }

    pub fn container(&self, node: Node) -> &Container {
        self.containers
            .get(node.name)
            .unwrap_or_else(|| panic!("{} is not running", node.name))
    }

    /// The etcd endpoints Kubernetes uses: etcd nodes, or the masters.
    pub fn etcd_endpoints(&self) -> Vec<Ipv4Addr> {
        match self.images.topology {
            Topology::External => ETCD_NODES.iter().map(Node::ip).collect(),
            Topology::Stacked => all_masters().map(|m| m.ip()).collect(),
        }
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.net
            .etcdctl(&self.images.secrets(), &self.etcd_endpoints(), args)
    }

    /// The value of `key` ("" when absent or etcd does not answer).
    pub fn get(&self, key: &str) -> String {
        self.net
            .get(&self.images.secrets(), &self.etcd_endpoints(), key)
    }

    /// The etcd key of kiln's init lock.
    pub fn lock_key(&self) -> String {
        format!("/kiln/{}/kubeadm/init-lock", self.images.cluster)
    }

    /// The etcd key of kiln's initialized marker.
    pub fn marker_key(&self) -> String {
        format!("/kiln/{}/kubeadm/initialized", self.images.cluster)
    }

    /// Every successful init or join under `/registry/kiln-standin/log/`,
    /// oldest first; empty while etcd does not answer.
    pub fn records(&self) -> Vec<Record> {
        let out = self.etcdctl(&[
            "get",
            "--prefix",
            "/registry/kiln-standin/log/",
            "-w",
            "json",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut records: Vec<Record> = json["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(kv["key"].as_str()?)
                    .ok()?;
                let key = String::from_utf8(key).ok()?;
                let (node, verb) = key
                    .strip_prefix("/registry/kiln-standin/log/")?
                    .split_once('-')?;
                Some(Record {
                    node: node.to_owned(),
                    verb: verb.to_owned(),
                    revision: kv["create_revision"].as_u64()?,
                })
            })
            .collect();
        records.sort_by_key(|r| r.revision);
        records
    }

    /// The stand-in's console lines (`KUBEADM-STANDIN verb ok|refused
    /// reason`) of one container's console, booted or killed, by machine name.
    pub fn standin_lines(&self, machine: &str) -> Vec<String> {
        self.consoles
            .iter()
            .filter(|(m, _)| m == machine)
            .flat_map(|(_, log)| standin_lines(&console_text(log)))
            .collect()
    }

    /// Every stand-in console line of every container, with its machine.
    pub fn all_standin_lines(&self) -> Vec<(String, String)> {
        self.consoles
            .iter()
            .flat_map(|(m, log)| {
                standin_lines(&console_text(log))
                    .into_iter()
                    .map(move |l| (m.clone(), l))
            })
            .collect()
    }

    /// The machine name of `node`'s running container.
    pub fn machine(&self, node: Node) -> String {
        self.container(node).name.clone()
    }

    /// The running masters whose namespace holds the VIP.
    pub fn vip_holders(&self) -> Vec<Node> {
        all_masters()
            .filter(|m| self.containers.contains_key(m.name))
            .filter(|m| {
                let netns = format!("{}-{}", self.net.prefix, m.name);
                let out = crate::run(Command::new("ip").args(["-n", &netns, "-4", "-br", "addr"]));
                String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
            })
            .collect()
    }

    /// `curl https://URL` from the bridge, trusting only the cluster CA.
    pub fn https_get(&self, url: &str) -> Output {
        crate::run(
            Command::new("ip")
                .args(["netns", "exec", &self.net.bridge_ns, "curl", "-sS"])
                .args(["--max-time", "3", "--cacert"])
                .arg(self.images.secrets().join("ca.crt"))
                .arg(url),
        )
    }

    /// Polls `probe` until it yields a value; on timeout fails with
    /// `what` and every console's tail.
    pub fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> (T, Duration) {
        let start = Instant::now();
        loop {
            if let Some(value) = probe() {
                return (value, start.elapsed());
            }
            if start.elapsed() > within {
                panic!(
                    "{what}: not within {within:?}\nrecords: {:?}\n{}",
                    self.records(),
                    self.consoles_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last `lines` lines of every console, for failure messages.
    pub fn consoles_tail(&self, lines: usize) -> String {
        self.consoles
            .iter()
            .map(|(machine, log)| {
                let text = console_text(log);
                let tail: Vec<&str> = text.lines().rev().take(lines).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- console of {machine} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

/// The listed masters and [`NEW_MASTER`].
fn all_masters() -> impl Iterator<Item = Node> {
    MASTERS.into_iter().chain([NEW_MASTER])
}

fn standin_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.find(STANDIN_LINE).map(|at| l[at..].trim().to_owned()))
        .collect()
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        // Containers hold the namespaces busy: they go first.
        self.containers.clear();
    }
}
