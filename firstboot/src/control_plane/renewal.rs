//! On masters, the certificates kubeadm made: renewed the way kubeadm
//! documents it (kubernetes.io, "Certificate Management with kubeadm"):
//! `kubeadm certs renew all` once one of them is inside kiln's renewal
//! window, then the control-plane static pods restarted, because not every
//! component reloads its certificates (the API server reads its etcd client
//! certificate once). A restart moves a component's manifest out of
//! /etc/kubernetes/manifests until the kubelet has stopped the pod, puts it
//! back and waits until the component answers again, one component at a
//! time and one master at a time, under a lease lock in etcd, so the other
//! masters keep serving.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use time::OffsetDateTime;

use crate::backoff::{retry, Attempt};
use crate::etcd::lease_lock::{self, HeldLock};
use crate::kubeadm::command;
use kiln_node::etcd::kv::KvCluster;
use kiln_node::fsutil::{create_dir_all_mode, write_with_parents};
use kiln_node::layout::kube::{
    CLUSTER_CA, KUBEADM_CERTS, KUBEADM_KUBECONFIGS, KUBEADM_PKI, KUBEADM_STACKED_ETCD_CERTS,
    MANIFESTS, MANIFESTS_ASIDE, RESTART_PENDING,
};
use kiln_node::layout::under_root;
use kiln_node::node_config::API_SERVER_PORT;
use kiln_node::node_config::{NodeConfig, Topology};
use kiln_node::pki::CertInfo;
use kiln_node::tls::ClusterTls;

/// The kubelet notices a manifest's removal within its fileCheckFrequency
/// (20 s) and then gives the pod its termination grace period (30 s).
const STOP_WITHIN: Duration = Duration::from_secs(120);
/// Pulling nothing (the images are local), a component answers in well
/// under a minute; a loaded node gets five.
const START_WITHIN: Duration = Duration::from_secs(300);
/// Another master's restart of three components takes a few minutes.
const LOCK_WITHIN: Duration = Duration::from_secs(900);

/// A control-plane component and the port it answers on (kubeadm's
/// constants.go: KubeControllerManagerPort, KubeSchedulerPort).
struct Component {
    name: &'static str,
    port: u16,
    /// Up means /healthz says ok over TLS with the certificate on disk
    /// (the API server); otherwise the port answering.
    serves_api: bool,
}

const COMPONENTS: [Component; 3] = [
    Component {
        name: "kube-apiserver",
        port: API_SERVER_PORT,
        serves_api: true,
    },
    Component {
        name: "kube-controller-manager",
        port: 10257,
        serves_api: false,
    },
    Component {
        name: "kube-scheduler",
        port: 10259,
        serves_api: false,
    },
];

/// The client certificate (PEM) a kubeconfig embeds: kubeadm writes
/// `client-certificate-data: <base64>` on one line (YAML or JSON).
fn kubeconfig_cert(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.contains("client-certificate-data"))?;
    let value = line.split_once(':')?.1;
    let data = value.trim().trim_matches(|c| c == '"' || c == ',');
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(pem).ok()
}

/// kubeadm's certificates of this master inside the renewal window (whose
/// CA would let them end later), as (node path, seconds left).
pub fn kubeadm_due(
    root: &Path,
    config: &NodeConfig,
    now: OffsetDateTime,
) -> Result<Vec<(String, i64)>> {
    let read = |path: &str| std::fs::read_to_string(under_root(root, Path::new(path))).ok();
    // Each CA read once: most certificates share the cluster CA.
    let mut cas: Vec<(&str, Option<CertInfo>)> = Vec::new();
    let mut ca_of = |ca: &'static str| -> Result<Option<CertInfo>> {
        if let Some((_, info)) = cas.iter().find(|(name, _)| *name == ca) {
            return Ok(info.clone());
        }
        let info = read(&format!("{KUBEADM_PKI}/{ca}.crt"))
            .map(|pem| CertInfo::from_pem(&pem).with_context(|| format!("{ca}.crt")))
            .transpose()?;
        cas.push((ca, info.clone()));
        Ok(info)
    };
    let mut held: Vec<(String, String, &'static str)> = Vec::new();
    let stacked = config.etcd.topology == Topology::Stacked;
    let etcd = KUBEADM_STACKED_ETCD_CERTS.iter().filter(|_| stacked);
    for stem in KUBEADM_CERTS.iter().chain(etcd) {
        let path = format!("{KUBEADM_PKI}/{stem}.crt");
        let ca = match *stem {
            "front-proxy-client" => "front-proxy-ca",
            s if s.starts_with("etcd/") => "etcd/ca",
            _ => "ca",
        };
        if let Some(pem) = read(&path) {
            held.push((path, pem, ca));
        }
    }
    for path in KUBEADM_KUBECONFIGS {
        if let Some(pem) = read(path).as_deref().and_then(kubeconfig_cert) {
            held.push((path.to_owned(), pem, "ca"));
        }
    }
    let mut due = Vec::new();
    for (path, pem, ca) in held {
        let info = CertInfo::from_pem(&pem).with_context(|| path.to_string())?;
        let Some(ca) = ca_of(ca)? else { continue };
        if info.due(now, config.pki.renew_before_seconds, &ca) {
            due.push((path, info.seconds_left(now)));
        }
    }
    Ok(due)
}

/// What the master's renewal did with kubeadm's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub kubeadm_renewed: bool,
    pub restarted: bool,
}

/// Renews kubeadm's certificates when due, then restarts the control plane
/// if anything it reads at start was renewed (now or by an earlier run
/// whose restart did not finish). `etcd_client_renewed`: kiln renewed the
/// API server's etcd client certificate in this run.
pub fn renew(
    root: &Path,
    config: &NodeConfig,
    etcd: &KvCluster,
    node: &str,
    etcd_client_renewed: bool,
) -> Result<Outcome> {
    put_back_aside(root)?;
    let pending = under_root(root, Path::new(RESTART_PENDING));
    let due = kubeadm_due(root, config, OffsetDateTime::now_utc())?;
    let kubeadm_renewed = !due.is_empty();
    if kubeadm_renewed {
        let listed: Vec<String> = due
            .iter()
            .map(|(p, left)| format!("{p} ({left} s left)"))
            .collect();
        // Written first: a renewal interrupted before its restart is finished by the next run.
        mark_pending(&pending, "kubeadm's certificates renewed")?;
        tracing::info!(decision = "kubeadm-renew", "kubeadm's certificates are inside the renewal window: {}; running kubeadm certs renew all", listed.join(", "));
        command::run(&["certs", "renew", "all"])?;
    }
    if etcd_client_renewed {
        mark_pending(&pending, "the API server's etcd client certificate renewed")?;
    }
    if !pending.exists() {
        return Ok(Outcome {
            kubeadm_renewed,
            restarted: false,
        });
    }
    restart_control_plane(root, config, etcd, node)?;
    std::fs::remove_file(&pending).with_context(|| format!("removing {}", pending.display()))?;
    Ok(Outcome {
        kubeadm_renewed,
        restarted: true,
    })
}

fn mark_pending(pending: &Path, why: &str) -> Result<()> {
    write_with_parents(pending, format!("{why}\n").as_bytes(), 0o644)
}

/// Manifests an interrupted restart left aside go back, so the kubelet
/// runs every component again.
fn put_back_aside(root: &Path) -> Result<()> {
    let aside = under_root(root, Path::new(MANIFESTS_ASIDE));
    let Ok(entries) = std::fs::read_dir(&aside) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let target = under_root(root, Path::new(MANIFESTS)).join(entry.file_name());
        if !target.exists() {
            tracing::warn!(manifest = %target.display(), "putting back {}, which an interrupted restart left in {MANIFESTS_ASIDE}", target.display());
            std::fs::rename(entry.path(), &target)
                .with_context(|| format!("putting back {}", target.display()))?;
        }
    }
    Ok(())
}

/// Takes the cluster-wide restart lock, restarts each component in turn
/// and releases the lock.
fn restart_control_plane(
    root: &Path,
    config: &NodeConfig,
    etcd: &KvCluster,
    node: &str,
) -> Result<()> {
    let key = format!("/kiln/{}/kubeadm/restart-lock", config.cluster);
    let held = lease_lock::acquire(
        etcd,
        &key,
        node,
        "the control-plane restart lock (one master restarts at a time)",
        LOCK_WITHIN,
    )?;
    for component in &COMPONENTS {
        restart(root, component, &held)?;
    }
    tracing::info!(
        decision = "restarted",
        "restarted the control plane one component at a time: it uses the renewed certificates"
    );
    Ok(())
}

/// A manifest moved aside, moved back when dropped unless already back.
struct Aside {
    aside: PathBuf,
    manifest: PathBuf,
}

impl Aside {
    fn put_back(&self) -> Result<()> {
        std::fs::rename(&self.aside, &self.manifest).with_context(|| {
            format!(
                "moving {} back to {}",
                self.aside.display(),
                self.manifest.display()
            )
        })
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        if self.aside.exists() {
            if let Err(e) = self.put_back() {
                tracing::error!("{e:#}: move it back by hand, or the component stays down");
            }
        }
    }
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// What tells that the API server is up again with the renewed
/// certificate: a client trusting the cluster CA, and the DER of the
/// certificate now on disk. Made once per restart.
struct ApiCheck {
    tls: ClusterTls,
    renewed: Vec<u8>,
}

impl ApiCheck {
    fn new(root: &Path) -> Result<ApiCheck> {
        let tls = ClusterTls::new(&under_root(root, Path::new(CLUSTER_CA)))?;
        let path = under_root(root, Path::new(&format!("{KUBEADM_PKI}/apiserver.crt")));
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let renewed = x509_parser::pem::parse_x509_pem(&pem)
            .with_context(|| path.display().to_string())?
            .1
            .contents;
        Ok(ApiCheck { tls, renewed })
    }

    /// /healthz says ok and the server presents the renewed certificate.
    fn started(&self, endpoint: &str) -> Result<bool, String> {
        if !self.tls.healthz(endpoint).map_err(|e| format!("{e:#}"))? {
            return Err("/healthz does not say ok yet".into());
        }
        let presented = self
            .tls
            .presented_certificate(endpoint)
            .map_err(|e| format!("{e:#}"))?;
        Ok(presented == self.renewed)
    }
}

fn restart(root: &Path, component: &Component, held: &HeldLock) -> Result<()> {
    let file = format!("{}.yaml", component.name);
    let manifest = under_root(root, Path::new(MANIFESTS)).join(&file);
    if !manifest.exists() {
        tracing::info!(
            component = component.name,
            "no static pod manifest {}: nothing to restart",
            manifest.display()
        );
        return Ok(());
    }
    let api = component
        .serves_api
        .then(|| ApiCheck::new(root))
        .transpose()?;
    let dir = under_root(root, Path::new(MANIFESTS_ASIDE));
    create_dir_all_mode(&dir, 0o700).with_context(|| format!("creating {}", dir.display()))?;
    let aside = Aside {
        aside: dir.join(&file),
        manifest: manifest.clone(),
    };
    std::fs::rename(&manifest, &aside.aside)
        .with_context(|| format!("moving {} aside", manifest.display()))?;
    tracing::info!(
        component = component.name,
        "moved {} out of {MANIFESTS}: waiting for the kubelet to stop it",
        component.name
    );
    retry(
        &format!(
            "the kubelet to stop {} (its manifest is out of {MANIFESTS})",
            component.name
        ),
        STOP_WITHIN,
        || {
            if answers(component.port) {
                Attempt::Retry(format!("port {} still answers", component.port))
            } else {
                Attempt::Done(())
            }
        },
    )?;
    aside.put_back()?;
    retry(
        &format!(
            "{} to start again with the renewed certificates",
            component.name
        ),
        START_WITHIN,
        || {
            let up = match &api {
                Some(api) => api.started(&format!("127.0.0.1:{}", component.port)),
                None => Ok(answers(component.port)),
            };
            match up {
                Ok(true) => Attempt::Done(()),
                Ok(false) if api.is_some() => {
                    Attempt::Retry("it still presents the old certificate".into())
                }
                Ok(false) => Attempt::Retry(format!("port {} does not answer yet", component.port)),
                Err(why) => Attempt::Retry(why),
            }
        },
    )?;
    if held.is_lost() {
        bail!("the restart lock's lease expired while {} restarted: another master may be restarting too", component.name);
    }
    tracing::info!(
        component = component.name,
        decision = "restarted",
        "{} runs again",
        component.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_client_certificate_of_yaml_and_json_kubeconfigs() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let data = base64::engine::general_purpose::STANDARD.encode(pem);
        let yaml = format!("users:\n- name: a\n  user:\n    client-certificate-data: {data}\n    client-key-data: x\n");
        let json = format!("{{\"users\": [{{\"user\": {{\n  \"client-certificate-data\": \"{data}\",\n  \"client-key-data\": \"x\"}}}}]}}");
        assert_eq!(kubeconfig_cert(&yaml).as_deref(), Some(pem));
        assert_eq!(kubeconfig_cert(&json).as_deref(), Some(pem));
        assert_eq!(kubeconfig_cert("users: []\n"), None);
    }
}
