//! The kubeadm stand-in judged on node roots laid out from a real `kiln build`
//! (tests/fixtures/kubeadm/configs/cluster.toml) and hand-written configs:
//! strict refusals offline, then init and joins against a real etcd and the
//! fake API server inside network namespaces this test creates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::{lay_out, Build};
use kiln_e2e::etcd::Release;
use kiln_e2e::kubeadm::openssl;
use kiln_e2e::netns::{Host, Lab};
use kiln_e2e::{binary, fixture, run, run_ok};

const SUBNET: u8 = 150;
const PKI: &str = "etc/kubernetes/pki";

/// One build of the fixture cluster and node roots laid out from it.
struct Cluster {
    build: Build,
    roots: tempfile::TempDir,
    token: String,
    ca_hash: String,
}

impl Cluster {
    fn new() -> Cluster {
        let build = Build::new();
        build.ok(&fixture("kubeadm/configs/cluster.toml"));
        let token = fs::read_to_string(build.secrets().join("bootstrap-token"))
            .expect("the build wrote a bootstrap token")
            .trim()
            .to_owned();
        let pipeline = format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
            build.secrets().join("ca.crt").display()
        );
        let digest = run_ok(Command::new("sh").arg("-c").arg(&pipeline));
        let ca_hash = format!("sha256:{}", digest.split_whitespace().next().unwrap());
        Cluster {
            build,
            roots: tempfile::tempdir().unwrap(),
            token,
            ca_hash,
        }
    }

    /// A fresh root for `node`: `role`'s OS tree with its config applied.
    fn root(&self, role: &str, node: &str) -> PathBuf {
        let root = self.roots.path().join(node);
        lay_out(&self.build.out(), role, &root);
        root
    }

    /// Writes fixture `config` filled in for `node` at `ip` into `root`;
    /// returns its node path.
    fn config(&self, root: &Path, config: &str, node: &str, ip: &str) -> String {
        let text = fs::read_to_string(fixture(&format!("kubeadm/configs/{config}")))
            .unwrap()
            .replace("@TOKEN@", &self.token)
            .replace("@CA_HASH@", &self.ca_hash)
            .replace("@NODE@", node)
            .replace("@IP@", ip);
        let node_path = format!("/etc/kiln/kubeadm/{config}");
        let target = root.join(node_path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, text).unwrap();
        node_path
    }
}

/// Runs the stand-in against `root` in `host`'s namespace, or without a
/// host in a fresh empty one (so nothing it tries can leave the machine).
fn kubeadm(root: &Path, host: Option<&Host>, args: &[&str]) -> Output {
    let bin = binary("kubeadm").display().to_string();
    let mut cmd = match host {
        Some(host) => host.command(&bin),
        None => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--net", &bin]);
            cmd
        }
    };
    run(cmd.env("KUBEADM_STANDIN_ROOT", root).args(args))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a refusal whose console line contains every one of `words`.
#[track_caller]
fn assert_refused(out: &Output, verb: &str, words: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "kubeadm {verb} was accepted:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("KUBEADM-STANDIN {verb} refused")))
        .unwrap_or_else(|| panic!("no refusal line for {verb}:\n{err}"));
    for word in words {
        assert!(line.contains(word), "refusal lacks {word:?}: {line}");
    }
}

#[track_caller]
fn assert_accepted(out: &Output, verb: &str) {
    let err = stderr(out);
    assert!(out.status.success(), "kubeadm {verb} refused:\n{err}");
    assert!(err.contains(&format!("KUBEADM-STANDIN {verb} ok")), "{err}");
}

#[test]
fn configs_and_files_are_judged_like_kubeadm() {
    let cluster = Cluster::new();
    let master = cluster.root("master", "master1");
    let init = |config: &str| {
        let path = cluster.config(&master, config, "master1", "10.77.150.21");
        kubeadm(&master, None, &["init", "--config", &path])
    };
    assert_refused(
        &init("init-v1beta3-too-new.yaml"),
        "init",
        &["v1beta3", "removed in Kubernetes 1.36"],
    );
    assert_refused(
        &init("init-v1beta4-too-old.yaml"),
        "init",
        &["v1beta4", "1.31"],
    );
    assert_refused(
        &init("init-overlapping-subnets.yaml"),
        "init",
        &["serviceSubnet", "overlaps"],
    );
    assert_refused(&init("init-unknown-field.yaml"), "init", &["clusterNmae"]);
    assert_refused(
        &init("init-service-subnet-too-large.yaml"),
        "init",
        &["serviceSubnet", "the mask must be >= 12"],
    );
    assert_refused(
        &init("init-p384-before-1.34.yaml"),
        "init",
        &["Invalid encryption algorithm \"ECDSA-P384\"", "1.33"],
    );
    let join = cluster.config(
        &master,
        "join-missing-field.yaml",
        "master1",
        "10.77.150.21",
    );
    assert_refused(
        &kubeadm(&master, None, &["join", "--config", &join]),
        "join",
        &["apiServerEndpoint"],
    );
    assert_refused(
        &kubeadm(
            &master,
            None,
            &["join", "--config", &join, "--control-plane", "1"],
        ),
        "cli",
        &["--control-plane"],
    );

    // Valid configs pass every check; with no etcd running, init stops there.
    let valid = init("init-v1beta4.yaml");
    assert_refused(
        &valid,
        "init",
        &["no etcd endpoint answered", "unreachable"],
    );
    assert_refused(
        &init("init-v1beta3.yaml"),
        "init",
        &["no etcd endpoint answered", "unreachable"],
    );

    let client_key = master.join(PKI).join("apiserver-etcd-client.key");
    fs::set_permissions(&client_key, fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        &init("init-v1beta4.yaml"),
        "init",
        &["apiserver-etcd-client.key", "0600"],
    );
    fs::set_permissions(&client_key, fs::Permissions::from_mode(0o600)).unwrap();

    // A client certificate from another CA, with its own (matching) key.
    let client_cert = master.join(PKI).join("apiserver-etcd-client.crt");
    openssl::self_signed("intruder", (&client_cert, &client_key)).unwrap();
    fs::set_permissions(&client_key, fs::Permissions::from_mode(0o600)).unwrap();
    assert_refused(
        &init("init-v1beta4.yaml"),
        "init",
        &[
            "apiserver-etcd-client.crt",
            "not signed by /etc/kubernetes/pki/etcd/ca.crt",
        ],
    );

    let worker = cluster.root("worker", "worker1");
    let worker_join = cluster.config(
        &worker,
        "join-worker-v1beta4.yaml",
        "worker1",
        "10.77.150.31",
    );
    fs::copy(
        cluster.build.secrets().join("ca.key"),
        worker.join("etc/kiln/pki/leaked.pem"),
    )
    .unwrap();
    assert_refused(
        &kubeadm(&worker, None, &["join", "--config", &worker_join]),
        "join",
        &[
            "/etc/kiln/pki/leaked.pem",
            "private key of the CA /etc/kiln/pki/ca.crt",
        ],
    );
    let log = fs::read_to_string(worker.join("var/log/kubeadm-standin.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(record["verb"], "join");
    assert_eq!(record["result"], "refused");
    // kubeadm writes a worker's CA from discovery and refuses to overwrite one.
    fs::remove_file(worker.join("etc/kiln/pki/leaked.pem")).unwrap();
    fs::create_dir_all(worker.join(PKI)).unwrap();
    fs::copy(
        cluster.build.secrets().join("ca.crt"),
        worker.join(PKI).join("ca.crt"),
    )
    .unwrap();
    assert_refused(
        &kubeadm(&worker, None, &["join", "--config", &worker_join]),
        "join",
        &["[FileAvailable] /etc/kubernetes/pki/ca.crt already exists"],
    );
}

/// Starts `kubeadm init` and SIGKILLs it once it announces its init-delay wait.
fn kill_while_waiting(root: &Path, host: &Host, config: &str) {
    use std::io::{BufRead, BufReader};
    let mut child = host
        .command(&binary("kubeadm").display().to_string())
        .env("KUBEADM_STANDIN_ROOT", root)
        .args(["init", "--config", config])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.starts_with("KUBEADM-STANDIN init waiting") {
            break;
        }
    }
    // `ip netns exec` execs kubeadm, so the child is kubeadm itself.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        seen.contains("waiting 60s"),
        "init never waited: {seen} ({status})"
    );
}

/// etcd1's serving and peer pair from the CA in `pki`, into `dir`.
fn mint_member_certs(pki: &Path, dir: &Path, host: &Host) {
    let read = |f: &str| fs::read_to_string(pki.join(f)).unwrap();
    let ca = kiln_node::pki::Authority::load(&read("ca.crt"), &read("ca.key")).unwrap();
    kiln_e2e::etcd::mint_member_pair(&ca, "etcd1", host.ip.into(), 86_400, dir);
}

/// Starts etcd1 of `release` in `host`, with serving and peer certificates
/// minted from the etcd image's CA as the member would mint them; returns
/// once it is healthy.
fn start_etcd(lab: &Lab, cluster: &Cluster, host: &Host, release: Release) -> PathBuf {
    let root = cluster.root("etcd", "etcd1");
    let pki = root.join("etc/kiln/pki/etcd");
    let member = root.join("test-member-pki");
    mint_member_certs(&pki, &member, host);
    let url = |port: u16| format!("https://{}:{port}", host.ip);
    let mut cmd = host.command(&release.tool("etcd").display().to_string());
    cmd.args(["--name", "etcd1", "--data-dir"])
        .arg(root.join("data"))
        .args([
            "--listen-client-urls",
            &url(2379),
            "--advertise-client-urls",
            &url(2379),
        ])
        .args([
            "--listen-peer-urls",
            &url(2380),
            "--initial-advertise-peer-urls",
            &url(2380),
        ])
        .args(["--initial-cluster", &format!("etcd1={}", url(2380))])
        .args([
            "--client-cert-auth",
            "--peer-client-cert-auth",
            "--cert-file",
        ])
        .arg(member.join("server.crt"))
        .arg("--key-file")
        .arg(member.join("server.key"))
        .arg("--trusted-ca-file")
        .arg(pki.join("ca.crt"))
        .arg("--peer-cert-file")
        .arg(member.join("peer.crt"))
        .arg("--peer-key-file")
        .arg(member.join("peer.key"))
        .arg("--peer-trusted-ca-file")
        .arg(pki.join("ca.crt"))
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(root.join("etcd.log")).unwrap());
    lab.spawn("etcd1", cmd);
    let master1 = cluster.root("master", "master1");
    let start = Instant::now();
    while !run(etcdctl_command(host, &master1).args(["endpoint", "health"]))
        .status
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "etcd did not become healthy; its log:\n{}",
            fs::read_to_string(root.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    root
}

/// `etcdctl` against etcd1 with a master's etcd client certificate.
fn etcdctl_command(host: &Host, master: &Path) -> Command {
    let pki = master.join(PKI);
    let mut cmd = host.command(&Release::Primary.tool("etcdctl").display().to_string());
    cmd.env("ETCDCTL_API", "3")
        .arg("--endpoints=https://10.77.150.11:2379")
        .arg("--cacert")
        .arg(pki.join("etcd/ca.crt"))
        .arg("--cert")
        .arg(pki.join("apiserver-etcd-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-etcd-client.key"));
    cmd
}

/// `etcdctl get` of `key` (or `--prefix --keys-only`) with a master's client cert.
fn etcdctl(host: &Host, master: &Path, args: &[&str]) -> String {
    run_ok(etcdctl_command(host, master).args(args))
}

#[test]
fn init_once_then_joins_against_real_etcd() {
    let cluster = Cluster::new();
    let lab = Lab::new("ka", SUBNET);
    let etcd_host = lab.host(11);
    let (m1, m2, w1) = (lab.host(21), lab.host(22), lab.host(31));
    let master1 = cluster.root("master", "master1");
    let master2 = cluster.root("master", "master2");
    let worker1 = cluster.root("worker", "worker1");
    let _apiservers = kiln_e2e::kubeadm::kubelet::Kubelets(vec![master1.clone(), master2.clone()]);
    start_etcd(&lab, &cluster, &etcd_host, Release::Primary);

    // A control-plane join before any init finds no API server.
    let early = cluster.config(
        &master2,
        "join-master-v1beta4.yaml",
        "master2",
        "10.77.150.22",
    );
    let text = fs::read_to_string(master2.join(early.trim_start_matches('/'))).unwrap();
    let impatient = format!("{text}timeouts:\n  discovery: \"2s\"\n");
    fs::write(master2.join("etc/kiln/kubeadm/early.yaml"), impatient).unwrap();
    let out = kubeadm(
        &master2,
        Some(&m2),
        &["join", "--config", "/etc/kiln/kubeadm/early.yaml"],
    );
    assert_refused(&out, "join-control-plane", &["did not answer"]);

    // Killed inside the init-delay window: nothing reached etcd, so a
    // later init (here the same master, rebooted) still initializes.
    let init1 = cluster.config(&master1, "init-v1beta4.yaml", "master1", "10.77.150.21");
    let delay = master1.join("etc/kubeadm-standin/init-delay");
    fs::create_dir_all(delay.parent().unwrap()).unwrap();
    fs::write(&delay, "60\n").unwrap();
    kill_while_waiting(&master1, &m1, &init1);
    let registry = etcdctl(
        &etcd_host,
        &master1,
        &["get", "--prefix", "--keys-only", "/registry/"],
    );
    assert_eq!(registry.trim(), "", "a killed init wrote to etcd");
    fs::remove_file(&delay).unwrap();
    assert_accepted(
        &kubeadm(&master1, Some(&m1), &["init", "--config", &init1]),
        "init",
    );
    assert_eq!(
        etcdctl(
            &etcd_host,
            &master1,
            &[
                "get",
                "--print-value-only",
                "/registry/kiln-standin/initialized-by"
            ]
        )
        .trim(),
        "master1"
    );
    let ca = cluster.build.secrets().join("ca.crt");
    let health = run_ok(
        w1.command("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg("https://10.77.150.21:6443/healthz"),
    );
    assert_eq!(health, "ok");

    // A second init, even on another master, sees the cluster's data.
    let init2 = cluster.config(&master2, "init-v1beta4.yaml", "master2", "10.77.150.22");
    assert_refused(
        &kubeadm(&master2, Some(&m2), &["init", "--config", &init2]),
        "init",
        &["already holds Kubernetes data"],
    );
    let join2 = cluster.config(
        &master2,
        "join-master-v1beta4.yaml",
        "master2",
        "10.77.150.22",
    );
    assert_accepted(
        &kubeadm(&master2, Some(&m2), &["join", "--config", &join2]),
        "join-control-plane",
    );
    let health = run_ok(
        w1.command("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg("https://10.77.150.22:6443/healthz"),
    );
    assert_eq!(health, "ok");

    let wrong = cluster.config(&worker1, "join-wrong-hash.yaml", "worker1", "10.77.150.31");
    assert_refused(
        &kubeadm(&worker1, Some(&w1), &["join", "--config", &wrong]),
        "join",
        &["caCertHashes"],
    );
    let join_w = cluster.config(
        &worker1,
        "join-worker-v1beta4.yaml",
        "worker1",
        "10.77.150.31",
    );
    assert_accepted(
        &kubeadm(&worker1, Some(&w1), &["join", "--config", &join_w]),
        "join",
    );

    let log = etcdctl(
        &etcd_host,
        &master1,
        &[
            "get",
            "--prefix",
            "--keys-only",
            "/registry/kiln-standin/log/",
        ],
    );
    let keys: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        keys,
        [
            "/registry/kiln-standin/log/master1-init",
            "/registry/kiln-standin/log/master2-join-control-plane",
            "/registry/kiln-standin/log/worker1-join",
        ]
    );

    // Token commands as the agent runs them on any master.
    let list = |root: &Path, host: &Host| {
        let out = kubeadm(
            root,
            Some(host),
            &[
                "token",
                "list",
                "--kubeconfig",
                "/etc/kubernetes/admin.conf",
                "-o",
                "json",
            ],
        );
        assert_accepted(&out, "token-list");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<serde_json::Value>()
            .map(|v| v.unwrap()["token"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&master2, &m2), vec![cluster.token.clone()]);
    let create = |token: &str| {
        kubeadm(
            &master2,
            Some(&m2),
            &[
                "token",
                "create",
                token,
                "--ttl",
                "86400s",
                "--kubeconfig",
                "/etc/kubernetes/admin.conf",
            ],
        )
    };
    assert_refused(&create(&cluster.token), "token-create", &["already exists"]);
    assert_accepted(&create("zzzzzz.0123456789abcdef"), "token-create");
    assert_eq!(list(&master1, &m1).len(), 2);
}

/// kubeadm's preflight check ExternalEtcdVersion asks the real etcd's
/// /version: Debian 12's etcd 3.4.23 is refused before anything is written.
#[test]
fn init_refuses_an_external_etcd_older_than_kubeadms_minimum() {
    let cluster = Cluster::new();
    let lab = Lab::new("kv", SUBNET);
    let etcd_host = lab.host(11);
    let m1 = lab.host(21);
    let master1 = cluster.root("master", "master1");
    let _apiservers = kiln_e2e::kubeadm::kubelet::Kubelets(vec![master1.clone()]);
    start_etcd(&lab, &cluster, &etcd_host, Release::Previous);
    let init = cluster.config(&master1, "init-v1beta4.yaml", "master1", "10.77.150.21");
    assert_refused(
        &kubeadm(&master1, Some(&m1), &["init", "--config", &init]),
        "init",
        &[
            "[ExternalEtcdVersion] this version of kubeadm only supports external etcd version >= 3.5.24-0",
            "Current version: 3.4.23",
        ],
    );
    let registry = etcdctl(
        &etcd_host,
        &master1,
        &["get", "--prefix", "--keys-only", "/registry/"],
    );
    assert_eq!(registry.trim(), "", "a refused init wrote to etcd");
}
