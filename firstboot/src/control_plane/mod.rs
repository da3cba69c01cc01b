//! The master and worker roles: prepare the host, then `kubeadm init` on
//! exactly one master, `kubeadm join --control-plane` on the other masters
//! and `kubeadm join` on workers (docs/kubernetes.md).
//!
//! The agent ([`crate::agent`]) calls [`master::converge`] or
//! [`worker::converge`] and records the outcome.

mod host;
pub mod keepalived;
pub mod lock;
pub mod master;
pub mod renewal;
pub mod vip;
mod vip_admission;
pub mod worker;

use std::path::Path;

use anyhow::{bail, Context, Result};
use kiln_node::tls;

use crate::backoff::{retry, Attempt};
use crate::context::NodeContext;
use crate::kubeadm::KubeadmInputs;
use kiln_node::layout::{pki, under_root};
use kiln_node::node_config::ControlPlaneSettings;

/// This node as a master or worker.
pub struct KubeNode<'a> {
    pub ctx: &'a NodeContext,
    /// The bootstrap token baked into the image.
    pub token: String,
}

impl<'a> KubeNode<'a> {
    pub fn new(ctx: &'a NodeContext) -> Result<KubeNode<'a>> {
        let token_file = ctx.path(pki::bootstrap_token());
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading the bootstrap token {}", token_file.display()))?
            .trim()
            .to_owned();
        // Hidden from every log line and repeated stderr from here on.
        crate::redact::remember(&token);
        if !is_token(&token) {
            bail!(
                "{} does not hold a bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}; \
                 rebuild the image (kiln build keeps the token in the secrets folder)",
                token_file.display()
            );
        }
        Ok(KubeNode { ctx, token })
    }

    pub fn control_plane(&self) -> Result<&ControlPlaneSettings> {
        Ok(self.kubeadm_inputs()?.control_plane)
    }

    pub fn kubeadm_inputs(&self) -> Result<KubeadmInputs<'_>> {
        let me = &self.ctx.me;
        KubeadmInputs::new(&self.ctx.config, &me.name, me.ip, &self.token)
    }

    /// Waits (bounded) for a verified TLS handshake with the control-plane
    /// endpoint, trusting the cluster CA certificate at `ca` (under the
    /// root), and returns the endpoint. One that answers with another CA's
    /// certificate is refused at once: kubeadm would refuse it too, after
    /// its whole discovery timeout.
    pub fn wait_for_control_plane(&self, ca: &Path) -> Result<String> {
        let endpoint = self.control_plane()?.endpoint.clone();
        let tls = tls::ClusterTls::new(&self.ctx.path(ca))?;
        tracing::info!(endpoint, "waiting for the control plane to answer TLS");
        let what = format!("the control-plane endpoint {endpoint} to answer TLS");
        let outcome = retry(&what, self.ctx.timeout, || match tls.probe(&endpoint) {
            tls::Probe::Trusted => Attempt::Done(Ok(())),
            tls::Probe::Untrusted(sentence) => Attempt::Done(Err(sentence)),
            tls::Probe::Down(reason) => Attempt::Retry(reason),
        })?;
        if let Err(sentence) = outcome {
            bail!(
                "refusing to join: {sentence}. The endpoint belongs to another cluster, or \
                 control_plane.endpoint in the profile points at the wrong address"
            );
        }
        Ok(endpoint)
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

/// `kiln-firstboot check-apiserver`: keepalived's health check of the
/// local API server.
pub fn check_apiserver(root: &Path) -> Result<()> {
    let ca = under_root(root, Path::new(kiln_node::layout::kube::CLUSTER_CA));
    let endpoint = format!("127.0.0.1:{}", kiln_node::node_config::API_SERVER_PORT);
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
