//! The master and worker roles: prepare the host, then `kubeadm init` on
//! exactly one master, `kubeadm join --control-plane` on the other masters
//! and `kubeadm join` on workers (docs/kubernetes.md).
//!
//! Like the etcd role, it leaves `status.json` and the done-marker; a rerun
//! after success does nothing.

mod host;
pub mod keepalived;
pub mod lock;
mod master;
pub mod renewal;
pub mod tls;
mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::identity::{identify, HostFacts, NodeIdentity};
use crate::kubeadm::KubeadmInputs;
use crate::layout::{pki, under_root};
use crate::node_config::{ControlPlaneSettings, NodeConfig, Role};
use crate::status::{self, Phase, Status};

/// This node as a master or worker.
pub struct Agent {
    pub config: NodeConfig,
    pub root: PathBuf,
    pub me: NodeIdentity,
    /// The bootstrap token baked into the image.
    pub token: String,
    /// Every wait ends after this long.
    pub timeout: Duration,
    /// Start services (keepalived) through systemctl; off in tests.
    pub start: bool,
}

impl Agent {
    pub fn new(config: NodeConfig, root: &Path, timeout: Duration, start: bool) -> Result<Agent> {
        let listed = match config.role {
            Role::Master => config
                .control_plane
                .as_ref()
                .map(|cp| cp.masters.as_slice()),
            _ => None,
        };
        let me = identify(&HostFacts::detect()?, listed.unwrap_or_default())?;
        let token_file = under_root(root, &pki::bootstrap_token());
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading the bootstrap token {}", token_file.display()))?
            .trim()
            .to_owned();
        if !is_token(&token) {
            bail!(
                "{} does not hold a bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}; \
                 rebuild the image (kiln build keeps the token in the secrets folder)",
                token_file.display()
            );
        }
        Ok(Agent {
            config,
            root: root.to_owned(),
            me,
            token,
            timeout,
            start,
        })
    }

    pub fn control_plane(&self) -> Result<&ControlPlaneSettings> {
        Ok(self.kubeadm_inputs()?.control_plane)
    }

    pub fn kubeadm_inputs(&self) -> Result<KubeadmInputs<'_>> {
        KubeadmInputs::new(&self.config, &self.me.name, self.me.ip, &self.token)
    }

    /// A node path under the agent's root.
    pub fn path(&self, node_path: impl AsRef<Path>) -> PathBuf {
        under_root(&self.root, node_path.as_ref())
    }
}

fn is_token(token: &str) -> bool {
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// `kiln-firstboot run` on a master or worker.
pub fn run(agent: &Agent) -> Result<()> {
    if status::is_done(&agent.root) {
        tracing::info!("already converged (done marker present): nothing to do");
        return Ok(());
    }
    host::prepare(agent)?;
    let decision = match agent.config.role {
        Role::Master => master::converge(agent)?,
        Role::Worker => worker::converge(agent)?,
        Role::Etcd => {
            bail!("the etcd role is converged by the etcd agent, not the control plane's")
        }
    };
    status::write_status(
        &agent.root,
        &Status {
            phase: Phase::Converged,
            role: agent.config.role.to_string(),
            member: agent.me.name.clone(),
            decision,
            learner_id: None,
            updated: status::now(),
        },
    )?;
    status::mark_done(&agent.root)?;
    tracing::info!(node = %agent.me.name, "converged");
    Ok(())
}

/// `kiln-firstboot check-apiserver`: keepalived's health check of the
/// local API server.
pub fn check_apiserver(root: &Path) -> Result<()> {
    let ca = under_root(root, Path::new(crate::layout::kube::CLUSTER_CA));
    let endpoint = format!("127.0.0.1:{}", crate::kubeadm::config::API_SERVER_PORT);
    if tls::ClusterTls::new(&ca)?.healthz(&endpoint)? {
        Ok(())
    } else {
        bail!("the API server at {endpoint} did not answer /healthz with ok")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_bootstrap_tokens() {
        assert!(super::is_token("abcdef.0123456789abcdef"));
        for bad in [
            "",
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdefg",
        ] {
            assert!(!super::is_token(bad), "{bad}");
        }
    }
}
