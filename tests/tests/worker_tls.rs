//! A worker's agent runs `kubeadm join` only once the control-plane endpoint
//! answers TLS with a certificate of the cluster CA: a real TLS listener
//! (`openssl s_server`) on the endpoint's address, inside network
//! namespaces this test makes. kubeadm is a recorder here; what kubeadm
//! itself checks is the stand-in's business (kubeadm_standin.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::{lay_out, Build};
use kiln_e2e::etcd::agent_command;
use kiln_e2e::kubeadm::openssl::{self, Eku};
use kiln_e2e::netns::{Host, Lab};
use kiln_e2e::{fixture, run_ok};

/// The fixture cluster's control-plane endpoint is master1's address.
const SUBNET: u8 = 150;
const ENDPOINT_HOST: u8 = 21;
const WORKER_HOST: u8 = 31;
/// The agent's bound on every wait; the refusal must come long before it.
const AGENT_TIMEOUT: u64 = 90;

/// An agent run in the background, killed (by PID) if the test ends first.
struct Running {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Running {
    fn start(host: &Host, root: &Path, recorder: &Path, log: &Path) -> Running {
        let stderr = root.join("agent.stderr");
        let mut cmd = agent_command(host, root, Some("worker1"), AGENT_TIMEOUT, &["run"]);
        cmd.env("KILN_KUBEADM", recorder)
            .env("RECORDER_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        Running {
            child: Some(cmd.spawn().expect("starting kiln-firstboot")),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Still running after `wait`?
    fn still_running_after(&mut self, wait: Duration) -> bool {
        std::thread::sleep(wait);
        let child = self.child.as_mut().unwrap();
        child.try_wait().unwrap().is_none()
    }

    /// The exit status, waiting at most `within`.
    fn exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "the agent did not finish within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A serving certificate for `ip` signed by `ca` (cert, key), written to
/// `dir/<name>.{crt,key}`.
fn serving_cert(dir: &Path, name: &str, ca: (&Path, &Path), ip: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    openssl::mint(
        ca,
        "kube-apiserver",
        Eku::Server,
        &[ip.to_owned()],
        (&crt, &key),
    )
    .unwrap_or_else(|e| panic!("minting {name}: {e}"));
    (crt, key)
}

/// A CA of another cluster.
fn other_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("other-ca.crt"), dir.join("other-ca.key"));
    openssl::self_signed("kubernetes", (&crt, &key)).unwrap();
    (crt, key)
}

/// `openssl s_server` on the endpoint with `cert`, until the lab drops it.
fn serve(lab: &Lab, label: &str, host: &Host, (crt, key): &(PathBuf, PathBuf)) {
    let mut cmd = host.command("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("{}:6443", host.ip))
        .arg("-cert")
        .arg(crt)
        .arg("-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(label, cmd);
}

#[test]
fn workers_wait_for_the_cluster_ca_on_the_endpoint_and_refuse_another() {
    let build = Build::new();
    build.ok(&fixture("kubeadm/configs/cluster.toml"));
    let out = build.out();
    let dir = tempfile::tempdir().unwrap();
    let recorder = dir.path().join("kubeadm");
    fs::write(&recorder, "#!/bin/sh\necho \"$@\" >> \"$RECORDER_LOG\"\n").unwrap();
    run_ok(Command::new("chmod").arg("755").arg(&recorder));
    let secrets = build.secrets();
    let lab = Lab::new("wt", SUBNET);
    let api = lab.host(ENDPOINT_HOST);
    let worker = lab.host(WORKER_HOST);

    // Nothing listens on the endpoint yet: the worker waits, joins nothing.
    let good = dir.path().join("good");
    lay_out(&out, "worker", &good);
    let log = dir.path().join("good.log");
    let mut agent = Running::start(&worker, &good, &recorder, &log);
    assert!(
        agent.still_running_after(Duration::from_secs(4)),
        "the agent ended while the endpoint was down:\n{}",
        agent.stderr()
    );
    assert!(!log.exists(), "kubeadm ran before the endpoint answered");

    // The endpoint answers with the cluster CA's certificate: the worker joins.
    let cert = serving_cert(
        dir.path(),
        "apiserver",
        (&secrets.join("ca.crt"), &secrets.join("ca.key")),
        &api.ip.to_string(),
    );
    serve(&lab, "good", &api, &cert);
    let status = agent.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the agent failed:\n{}", agent.stderr());
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "join --config /etc/kiln/kubeadm/join.yaml\n"
    );
    let stderr = agent.stderr();
    assert!(stderr.contains("answers with the cluster CA"), "{stderr}");
    lab.kill("good");

    // Another cluster's API server on the endpoint: refused at once.
    let other = other_ca(dir.path());
    let cert = serving_cert(
        dir.path(),
        "impostor",
        (&other.0, &other.1),
        &api.ip.to_string(),
    );
    serve(&lab, "impostor", &api, &cert);
    let wrong = dir.path().join("wrong");
    lay_out(&out, "worker", &wrong);
    let log = dir.path().join("wrong.log");
    let start = Instant::now();
    let mut agent = Running::start(&worker, &wrong, &recorder, &log);
    let status = agent.exit_within(Duration::from_secs(AGENT_TIMEOUT / 2));
    let stderr = agent.stderr();
    assert!(
        !status.success(),
        "joined another cluster's endpoint:\n{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(AGENT_TIMEOUT / 2),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to join"), "{stderr}");
    assert!(!log.exists(), "kubeadm ran against another cluster");
    assert!(
        !wrong.join("var/lib/kiln/firstboot.done").exists(),
        "the refused worker marked itself converged"
    );
}
