//! etcd test fixtures: node roots laid out the way the builder bakes them
//! (node.toml and the etcd PKI), the agent run inside a host's namespace, and
//! etcd started from the configuration the agent wrote, as systemd would.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_node::etcd::config::parse_env;
use kiln_node::layout::etcd::ENV_FILE;
use kiln_node::layout::{kube, pki as paths, under_root, NODE_CONFIG};
use kiln_node::node_config::{
    ControlPlaneSettings, DiscoverySource, EtcdSettings, Member, NodeConfig, PkiSettings, Role,
    Topology,
};
use kiln_node::pki::{Authority, CertifiedKey, KeyAlgorithm, LeafSpec, Usage};
use kiln_node::versions::Version;

use crate::netns::{Host, Lab};

pub mod backup;
pub mod runbook;
pub mod scenario;

/// The test cluster's DNS domain.
pub const DOMAIN: &str = "kiln.test";

/// Where tests/install-packages extracts the etcd releases the tests run.
const RELEASES: &str = "/var/cache/kiln-tests/etcd";

/// An etcd release the tests run, from a Debian suite's packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Debian sid's etcd (3.5.30 when written): at least kubeadm's minimum
    /// external etcd, so every scenario runs on it.
    Primary,
    /// Debian bookworm's etcd 3.4.23: the old end of the upgrade tests.
    Previous,
}

impl Release {
    /// The folder holding this release's etcd, etcdctl (and etcdutl from 3.5).
    pub fn bin_dir(self) -> PathBuf {
        let suite = match self {
            Release::Primary => "sid",
            Release::Previous => "bookworm",
        };
        Path::new(RELEASES).join(suite).join("usr/bin")
    }

    /// One of the release's executables.
    pub fn tool(self, name: &str) -> PathBuf {
        let path = self.bin_dir().join(name);
        assert!(
            path.exists(),
            "{} is missing: run `tests/install-packages test` (tests/run does it)",
            path.display()
        );
        path
    }

    /// The release's etcd version, as `etcd --version` prints it (asked once).
    pub fn version(self) -> Version {
        static VERSIONS: [std::sync::OnceLock<Version>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        *VERSIONS[self as usize].get_or_init(|| {
            Version::of_binary(&self.tool("etcd"))
                .unwrap_or_else(|e| panic!("the {self:?} release's etcd: {e:#}"))
        })
    }

    /// Installs the release into a node root, where the image has etcd:
    /// /usr/bin/etcd and its tools, as links, and the version file the
    /// build writes beside them.
    pub fn install(self, root: &Path) {
        let bin = root.join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        for name in ["etcd", "etcdctl", "etcdutl"] {
            let link = bin.join(name);
            let _ = fs::remove_file(&link);
            let target = self.bin_dir().join(name);
            if target.exists() {
                std::os::unix::fs::symlink(&target, &link).unwrap();
            }
        }
        let recorded = under_root(root, Path::new(kiln_node::layout::ETCD_VERSION_FILE));
        fs::create_dir_all(recorded.parent().unwrap()).unwrap();
        fs::write(recorded, format!("{}\n", self.version())).unwrap();
    }
}

/// What the builder would bake: one CA (whose key lets every member mint
/// its own serving and peer certificates) and the agent's client cert.
pub struct Fixture {
    pub config: NodeConfig,
    lifetimes: Lifetimes,
    ca: CertifiedKey,
    client: CertifiedKey,
}

/// How long the fixture's leaves live, and when nodes renew them.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub leaf_seconds: u64,
    pub renew_before_seconds: u64,
}

/// The builder's defaults for a 30-day leaf: long enough for any test.
pub const MONTH: Lifetimes = Lifetimes {
    leaf_seconds: 30 * 86_400,
    renew_before_seconds: 10 * 86_400,
};

fn leaf(
    ca: &Authority,
    name: &str,
    usage: Usage,
    ips: Vec<IpAddr>,
    lifetimes: Lifetimes,
) -> CertifiedKey {
    ca.issue(&LeafSpec {
        common_name: name.into(),
        organization: None,
        usage,
        dns_names: vec![name.into(), format!("{name}.{DOMAIN}")],
        ips,
        algorithm: KeyAlgorithm::EcdsaP256,
        validity_seconds: lifetimes.leaf_seconds,
    })
    .expect("issuing a test certificate")
}

impl Fixture {
    /// Members `etcd1..` at the given addresses, discovered through `discovery`.
    pub fn new(ips: &[Ipv4Addr], discovery: DiscoverySource) -> Fixture {
        Fixture::with_lifetimes(ips, discovery, MONTH)
    }

    /// The same with leaves of the given lifetimes.
    pub fn with_lifetimes(
        ips: &[Ipv4Addr],
        discovery: DiscoverySource,
        lifetimes: Lifetimes,
    ) -> Fixture {
        let (ca, ca_material) =
            Authority::generate("kiln-test-etcd-ca", KeyAlgorithm::EcdsaP256, 30).unwrap();
        let members: Vec<Member> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| Member {
                name: format!("etcd{}", i + 1),
                ip: IpAddr::V4(*ip),
                dns_names: vec![],
            })
            .collect();
        let config = NodeConfig {
            cluster: "kiln-test".into(),
            domain: DOMAIN.into(),
            role: Role::Etcd,
            kubernetes_version: "1.36.2".into(),
            pki: PkiSettings {
                key_algorithm: KeyAlgorithm::EcdsaP256,
                leaf_validity_seconds: lifetimes.leaf_seconds,
                renew_before_seconds: lifetimes.renew_before_seconds,
                ca_validity_days: 30,
            },
            etcd: EtcdSettings {
                topology: Topology::External,
                client_port: 2379,
                peer_port: 2380,
                data_dir: "/var/lib/etcd".into(),
                discovery: vec![discovery],
                members,
                backup: None,
                restore_from: None,
                size: None,
                replace_dead_after_seconds: REPLACE_DEAD_AFTER_SECONDS,
                endpoint: None,
            },
            control_plane: None,
        };
        Fixture {
            client: leaf(&ca, "kiln-agent", Usage::Client, vec![], lifetimes),
            ca: ca_material,
            lifetimes,
            config,
        }
    }

    /// Writes a fresh node root (what every node of the role boots with),
    /// with the primary etcd release.
    pub fn node_root(&self, root: &Path) {
        self.node_root_with(root, Release::Primary);
    }

    /// Lists `masters` (name, address) in every node configuration written
    /// from now on, as a profile's control_plane.masters would.
    pub fn list_masters(&mut self, masters: &[(&str, Ipv4Addr)]) {
        self.config.control_plane = Some(ControlPlaneSettings {
            endpoint: format!("{}:6443", masters[0].1),
            vip: None,
            masters: (masters.iter())
                .map(|(name, ip)| Member {
                    name: (*name).into(),
                    ip: IpAddr::V4(*ip),
                    dns_names: vec![],
                })
                .collect(),
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/12".into(),
            discovery_hash: String::new(),
            token_ttl_seconds: 0,
            node_subnets: vec![],
        });
    }

    /// A master's root as the image has it for renewal: the node
    /// configuration of a master, the agent's and the API server's etcd
    /// client certificates, and no etcd CA key.
    pub fn master_root(&self, root: &Path) {
        self.node_root(root);
        let config = NodeConfig {
            role: Role::Master,
            ..self.config.clone()
        };
        let target = under_root(root, Path::new(NODE_CONFIG));
        kiln_node::fsutil::write_atomic(&target, config.to_toml().as_bytes(), 0o644).unwrap();
        fs::remove_file(under_root(root, &paths::etcd_ca_key())).unwrap();
        let ca = Authority::load(&self.ca.cert_pem, &self.ca.key_pem).unwrap();
        let client = leaf(
            &ca,
            "kube-apiserver-etcd-client",
            Usage::Client,
            vec![],
            self.lifetimes,
        );
        for (path, pem, mode) in [
            (kube::ETCD_CLIENT_CERT, &client.cert_pem, 0o644),
            (kube::ETCD_CLIENT_KEY, &client.key_pem, 0o600),
        ] {
            let target = under_root(root, Path::new(path));
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            kiln_node::fsutil::write_atomic(&target, pem.as_bytes(), mode).unwrap();
        }
    }

    /// A fresh node root whose image carries etcd `release`.
    pub fn node_root_with(&self, root: &Path, release: Release) {
        release.install(root);
        let put = |path: &Path, text: &str, mode: u32| {
            let target = under_root(root, path);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            kiln_node::fsutil::write_atomic(&target, text.as_bytes(), mode).unwrap();
        };
        put(Path::new(NODE_CONFIG), &self.config.to_toml(), 0o644);
        put(&paths::etcd_ca_cert(), &self.ca.cert_pem, 0o644);
        put(&paths::etcd_ca_key(), &self.ca.key_pem, 0o600);
        put(
            &paths::etcd_agent_client_cert(),
            &self.client.cert_pem,
            0o644,
        );
        put(&paths::etcd_agent_client_key(), &self.client.key_pem, 0o600);
    }
}

impl Fixture {
    /// What a node of a cluster built before members minted their own
    /// certificates has installed: the builder's serving and peer pair for
    /// the listed member `name`, in etcd's certificate folder.
    pub fn install_builder_minted(&self, root: &Path, name: &str) {
        let member = (self.config.etcd.members.iter())
            .find(|m| m.name == name)
            .expect("a listed member");
        let ca = Authority::load(&self.ca.cert_pem, &self.ca.key_pem).unwrap();
        let dir = under_root(root, Path::new(kiln_node::layout::etcd::CERT_DIR));
        mint_member_pair(&ca, name, member.ip, self.lifetimes.leaf_seconds, &dir);
        let ca_file = dir.join("ca.crt");
        kiln_node::fsutil::write_atomic(&ca_file, self.ca.cert_pem.as_bytes(), 0o644).unwrap();
    }
}

/// Member `name`'s serving and peer pair from `ca`, with the names a member
/// certificate carries ([`kiln_node::pki::member_sans`]), as
/// `server.{crt,key}` and `peer.{crt,key}` in `dir`.
pub fn mint_member_pair(ca: &Authority, name: &str, ip: IpAddr, seconds: u64, dir: &Path) {
    let (dns_names, ips) = kiln_node::pki::member_sans(name, DOMAIN, &[], ip, None);
    fs::create_dir_all(dir).unwrap();
    for (usage, stem) in [(Usage::Server, "server"), (Usage::Peer, "peer")] {
        let leaf = ca
            .issue(&LeafSpec {
                common_name: name.into(),
                organization: None,
                usage,
                dns_names: dns_names.clone(),
                ips: ips.clone(),
                algorithm: KeyAlgorithm::EcdsaP256,
                validity_seconds: seconds,
            })
            .unwrap();
        let write = |file: String, text: &str, mode| {
            kiln_node::fsutil::write_atomic(&dir.join(file), text.as_bytes(), mode).unwrap()
        };
        write(format!("{stem}.crt"), &leaf.cert_pem, 0o644);
        write(format!("{stem}.key"), &leaf.key_pem, 0o600);
    }
}

/// `etcd.replace_dead_after` in the fixture: short, so that tests see a
/// member become dead to the cluster, and long enough for several beats of
/// the watchers.
pub const REPLACE_DEAD_AFTER_SECONDS: u64 = 12;

/// How long the agent may wait in tests (peers here answer within a second).
pub const AGENT_TIMEOUT_SECS: u64 = 90;
/// Bound on a cluster becoming healthy in tests: generous, because CI runs
/// other tests (and VMs) on the same two cores; a healthy cluster returns at once.
pub const HEALTHY_WITHIN: std::time::Duration = std::time::Duration::from_secs(90);

/// Runs `kiln-firstboot --root ROOT --no-start ARGS` inside the host's
/// namespace; with `hostname`, in its own UTS namespace with that hostname.
pub fn agent(host: &Host, root: &Path, hostname: Option<&str>, args: &[&str]) -> Output {
    agent_with_timeout(host, root, hostname, AGENT_TIMEOUT_SECS, args)
}

pub fn agent_with_timeout(
    host: &Host,
    root: &Path,
    hostname: Option<&str>,
    timeout: u64,
    args: &[&str],
) -> Output {
    crate::run(&mut agent_command(host, root, hostname, timeout, args))
}

/// The agent's command line, for callers that manage the process themselves.
pub fn agent_command(
    host: &Host,
    root: &Path,
    hostname: Option<&str>,
    timeout: u64,
    args: &[&str],
) -> Command {
    let mut cmd = match hostname {
        Some(name) => {
            let mut cmd = host.command("unshare");
            cmd.args([
                "--uts",
                "sh",
                "-c",
                // The shell's own write: no `hostname` process to start.
                r#"printf %s "$1" >/proc/sys/kernel/hostname; shift; exec "$@""#,
                "sh",
            ]);
            cmd.arg(name).arg(agent_binary());
            cmd
        }
        None => host.command(&agent_binary().display().to_string()),
    };
    with_etcd_tools(&mut cmd);
    cmd.arg("--root")
        .arg(root)
        .arg("--no-start")
        .arg("--timeout")
        .arg(timeout.to_string())
        .args(args);
    cmd
}

/// Puts the primary release's etcdctl and etcdutl first on `cmd`'s PATH,
/// where a node (and an operator's machine) has etcd's client tools.
pub fn with_etcd_tools(cmd: &mut Command) -> &mut Command {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env(
        "PATH",
        format!("{}:{path}", Release::Primary.bin_dir().display()),
    )
}

/// The agent under test: `$KILN_FIRSTBOOT_BIN` (benchmarks point it at the
/// release build) or the workspace's debug build.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("KILN_FIRSTBOOT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::binary("kiln-firstboot"))
}

/// Asserts that an agent run succeeded, showing its log if not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts etcd in the host's namespace from the environment file the agent
/// wrote under `root` (node paths mapped under `root`). Returns its PID.
pub fn start_etcd(lab: &Lab, label: &str, host: &Host, root: &Path) -> u32 {
    let env_path = under_root(root, Path::new(ENV_FILE));
    let text = fs::read_to_string(&env_path)
        .unwrap_or_else(|e| panic!("the agent wrote no {}: {e}", env_path.display()));
    start_etcd_with(lab, label, host, root, parse_env(&text))
}

/// Starts etcd with exactly the `ETCD_*` variables given, as systemd would
/// from an environment file; absolute paths are mapped under `root`.
pub fn start_etcd_with(
    lab: &Lab,
    label: &str,
    host: &Host,
    root: &Path,
    vars: Vec<(String, String)>,
) -> u32 {
    // The node's own etcd, as its systemd unit would start it.
    let mut cmd = host.command(&root.join("usr/bin/etcd").display().to_string());
    cmd.env_clear();
    for (key, value) in vars {
        let value = if value.starts_with('/') {
            under_root(root, Path::new(&value)).display().to_string()
        } else {
            value
        };
        cmd.env(key, value);
    }
    let log = fs::File::create(root.join("etcd.log")).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    lab.spawn(label, cmd)
}

/// `etcdctl` in `host`'s namespace with the agent's client certificate.
pub fn etcdctl(host: &Host, root: &Path, endpoints: &[Ipv4Addr], args: &[&str]) -> Output {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|ip| format!("https://{ip}:2379"))
        .collect();
    let file = |p: PathBuf| under_root(root, &p);
    let mut cmd = host.command(&Release::Primary.tool("etcdctl").display().to_string());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", eps.join(",")))
        .arg("--cacert")
        .arg(file(paths::etcd_ca_cert()))
        .arg("--cert")
        .arg(file(paths::etcd_agent_client_cert()))
        .arg("--key")
        .arg(file(paths::etcd_agent_client_key()))
        .arg("--command-timeout=5s")
        .args(args);
    crate::run(&mut cmd)
}

/// The member list as JSON, from one endpoint.
pub fn members(host: &Host, root: &Path, endpoint: Ipv4Addr) -> Vec<serde_json::Value> {
    let out = etcdctl(host, root, &[endpoint], &["member", "list", "-w", "json"]);
    assert_ok(&out, "etcdctl member list");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["members"].as_array().cloned().unwrap_or_default()
}

/// `curl` in `host`'s namespace with the agent's client certificate under
/// `root`, giving up after `seconds`.
fn agent_curl(host: &Host, root: &Path, seconds: u32) -> Command {
    let file = |p: PathBuf| under_root(root, &p);
    let mut cmd = host.command("curl");
    cmd.args(["-s", "--max-time", &seconds.to_string(), "--cacert"])
        .arg(file(paths::etcd_ca_cert()))
        .arg("--cert")
        .arg(file(paths::etcd_agent_client_cert()))
        .arg("--key")
        .arg(file(paths::etcd_agent_client_key()));
    cmd
}

/// (ID, name) of each member, sorted; IDs as decimal text whether etcdctl
/// (numbers) or the JSON gateway (strings) listed them.
pub fn id_names(members: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let id = match &m["ID"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (id, m["name"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    ids.sort();
    ids
}

/// The member list as `endpoint` itself knows it: a serializable read
/// through the JSON gateway, which a member answers without quorum (etcd
/// 3.5's etcdctl asks for a linearizable one).
pub fn local_members(host: &Host, root: &Path, endpoint: Ipv4Addr) -> Vec<serde_json::Value> {
    let out = crate::run(
        agent_curl(host, root, 5)
            .args(["-d", r#"{"linearizable":false}"#])
            .arg(format!("https://{endpoint}:2379/v3/cluster/member/list")),
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "member list of {endpoint}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    value["members"].as_array().cloned().unwrap_or_default()
}

/// Waits until `etcdctl endpoint health` passes for every endpoint.
pub fn wait_healthy(host: &Host, root: &Path, endpoints: &[Ipv4Addr], within: Duration) {
    let start = Instant::now();
    loop {
        let out = etcdctl(host, root, endpoints, &["endpoint", "health"]);
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < within,
            "endpoints {endpoints:?} not healthy after {within:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every endpoint's `/health` says true (the agent's client
/// certificate), asked by one probe process on `host` a few milliseconds
/// apart: cheap and prompt enough to time startups with.
pub fn wait_all_health(host: &Host, root: &Path, endpoints: &[Ipv4Addr], within: Duration) {
    let file = |p: PathBuf| under_root(root, &p);
    let out = crate::run(
        host.command(&crate::binary("etcd-health-probe").display().to_string())
            .arg(file(paths::etcd_ca_cert()))
            .arg(file(paths::etcd_agent_client_cert()))
            .arg(file(paths::etcd_agent_client_key()))
            .arg(within.as_millis().to_string())
            .args(endpoints.iter().map(|ip| format!("https://{ip}:2379"))),
    );
    assert!(
        out.status.success(),
        "{endpoints:?} not healthy after {within:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
