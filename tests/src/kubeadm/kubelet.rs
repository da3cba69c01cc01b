//! The kubelet's static pods, as far as kubeadm's control plane needs them:
//! init and control-plane join write a manifest per component into
//! /etc/kubernetes/manifests, and the kubelet runs what each manifest
//! names, stops a pod whose manifest left the folder and restarts one that
//! exited. That is what kubeadm's documented restart of a control-plane
//! component after `kubeadm certs renew` relies on ("temporarily remove its
//! manifest file from /etc/kubernetes/manifests/ and wait for 20 seconds",
//! the kubelet's fileCheckFrequency; the stand-in looks every 2 s).
//!
//! The controller manager and scheduler are stood in for by a process that
//! checks its kubeconfig's client certificate at start, as the real ones
//! fail to talk to the API server with an expired one, and answers on the
//! component's secure port (constants.go: KubeControllerManagerPort 10257,
//! KubeSchedulerPort 10259).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::json;

use super::service::{self, Service};
use super::{certs, yaml, Refused, Result, Root};
use crate::refuse;

/// Static pod manifests, kubeadm's constants.go ManifestsSubDirName.
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// Names the kubelet's unit, or its pid file and log in tier-1 tests.
pub const NAME: &str = "kubeadm-standin-kubelet";
/// The kubelet's fileCheckFrequency, shortened from its 20 s default.
const FILE_CHECK: Duration = Duration::from_secs(2);

/// Writes the static pod manifest of `component` running `command`.
pub fn write_manifest(root: &Root, component: &str, command: &[String]) -> Result<()> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": component, "namespace": "kube-system"},
        "spec": {"containers": [{"name": component, "command": command}]},
    });
    super::write_private(
        root,
        &format!("{MANIFESTS}/{component}.yaml"),
        &serde_json::to_string_pretty(&pod).unwrap_or_default(),
    )
}

/// The manifests of the other two control-plane components, each running
/// this stand-in's `serve-component` with the component's kubeconfig.
pub fn write_component_manifests(root: &Root, exe: &str) -> Result<()> {
    for (component, port, kubeconfig) in [
        (
            "kube-controller-manager",
            "10257",
            "/etc/kubernetes/controller-manager.conf",
        ),
        ("kube-scheduler", "10259", "/etc/kubernetes/scheduler.conf"),
    ] {
        let command = [
            exe,
            "serve-component",
            "--config",
            kubeconfig,
            "--port",
            port,
        ]
        .map(String::from)
        .to_vec();
        write_manifest(root, component, &command)?;
    }
    Ok(())
}

/// Starts the kubelet unless it runs (kubeadm restarts kubelet.service).
pub fn start(root: &Root) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Refused(format!("finding this kubeadm binary: {e}")))?;
    service::start(
        root,
        &Service {
            name: NAME,
            description: "kubelet running static pods",
            program: exe.display().to_string(),
            args: ["serve-kubelet", "--config", MANIFESTS]
                .map(String::from)
                .to_vec(),
        },
    )
}

/// A manifest's command line.
fn command_of(text: &str) -> Option<Vec<String>> {
    let doc = yaml::parse_documents(text).ok()?.into_iter().next()?;
    let command: Vec<String> = doc["spec"]["containers"][0]["command"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (!command.is_empty()).then_some(command)
}

struct Pod {
    manifest: String,
    child: Child,
}

/// `kubeadm serve-kubelet`: syncs the static pods until killed. Pods run
/// in the kubelet's process group, so tests end them with it.
pub fn serve(root: &Root) -> Result<()> {
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    loop {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(root.path(MANIFESTS)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let (Some(pod), Ok(text)) = (
                    name.strip_suffix(".yaml"),
                    std::fs::read_to_string(entry.path()),
                ) {
                    wanted.insert(pod.to_owned(), text);
                }
            }
        }
        pods.retain(|name, pod| {
            let exited = pod.child.try_wait().ok().flatten();
            let keep = wanted.get(name) == Some(&pod.manifest) && exited.is_none();
            if !keep {
                let _ = pod.child.kill();
                let _ = pod.child.wait();
                let why = match exited {
                    Some(status) => format!("exited with {status}"),
                    None => "manifest removed or changed".to_owned(),
                };
                eprintln!("KUBELET-STANDIN stopped static pod {name}: {why}");
            }
            keep
        });
        for (name, manifest) in wanted {
            if pods.contains_key(&name) {
                continue;
            }
            let Some(command) = command_of(&manifest) else {
                eprintln!("KUBELET-STANDIN {MANIFESTS}/{name}.yaml names no command");
                continue;
            };
            match Command::new(&command[0]).args(&command[1..]).spawn() {
                Ok(child) => {
                    eprintln!("KUBELET-STANDIN started static pod {name}");
                    pods.insert(name, Pod { manifest, child });
                }
                Err(e) => eprintln!("KUBELET-STANDIN starting {name}: {e}"),
            }
        }
        std::thread::sleep(FILE_CHECK);
    }
}

/// `kubeadm serve-component --config KUBECONFIG --port PORT`: refuses to
/// start with an expired or foreign client certificate, else answers
/// `ok` to whatever comes on 127.0.0.1:PORT.
pub fn serve_component(root: &Root, kubeconfig: &str, port: u16) -> Result<()> {
    let pem = certs::kubeconfig_cert(root, kubeconfig)?;
    certs::usable(root, &pem, &format!("{kubeconfig}'s client certificate"))?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| Refused(format!("binding 127.0.0.1:{port}: {e}")))?;
    for mut stream in listener.incoming().flatten() {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    }
    refuse!("the listener on port {port} ended")
}

/// Ends, on drop, the kubelets the stand-in daemonized under each root,
/// with their static pods (in their process groups), whether the test
/// passed or not.
pub struct Kubelets(pub Vec<std::path::PathBuf>);

impl Drop for Kubelets {
    fn drop(&mut self) {
        for root in &self.0 {
            stop(root);
        }
    }
}

/// Ends the kubelet daemonized under `root` (tier-1 tests) and its static
/// pods: its process group, by the pid its pid file names.
pub fn stop(root: &std::path::Path) {
    let pid_file = root.join(service::pid_file(NAME).trim_start_matches('/'));
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{pid}")])
            .status();
    }
}
