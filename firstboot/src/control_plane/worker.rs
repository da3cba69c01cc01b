//! The worker role: wait (bounded) until the control-plane endpoint answers
//! TLS with a certificate of the cluster CA, then `kubeadm join`.

use anyhow::{bail, Result};

use super::tls::{ClusterTls, Probe};
use super::{host, Agent};
use crate::backoff::{retry, Attempt};
use crate::kubeadm::command;
use crate::layout::kube::KUBEADM_JOIN_CONFIG;
use crate::layout::pki;

/// `run` on a worker: the host, then kubeadm join; returns the decision as
/// logged.
pub fn converge(agent: &Agent) -> Result<String> {
    host::prepare(agent, false)?;
    let endpoint = agent.control_plane()?.endpoint.clone();
    wait_for_control_plane(agent, &endpoint)?;
    let sentence = format!(
        "the control plane at {endpoint} answers with the cluster CA: joining it as worker {}",
        agent.ctx.me.name
    );
    tracing::info!(node = %agent.ctx.me.name, endpoint = %endpoint, decision = %sentence, "decided");
    command::run(&["join", "--config", KUBEADM_JOIN_CONFIG])?;
    tracing::info!(node = %agent.ctx.me.name, "converged");
    Ok(sentence)
}

/// Waits for a verified TLS handshake with `endpoint`; an endpoint that
/// answers with another CA's certificate is refused at once: kubeadm would
/// refuse it too, after its whole discovery timeout.
pub fn wait_for_control_plane(agent: &Agent, endpoint: &str) -> Result<()> {
    let tls = ClusterTls::new(&agent.ctx.path(pki::cluster_ca_cert()))?;
    tracing::info!(endpoint, "waiting for the control plane to answer TLS");
    let what = format!("the control-plane endpoint {endpoint} to answer TLS");
    let outcome = retry(&what, agent.ctx.timeout, || match tls.probe(endpoint) {
        Probe::Trusted => Attempt::Done(Ok(())),
        Probe::Untrusted(sentence) => Attempt::Done(Err(sentence)),
        Probe::Down(reason) => Attempt::Retry(reason),
    })?;
    if let Err(sentence) = outcome {
        bail!(
            "refusing to join: {sentence}. The endpoint belongs to another cluster, or \
             control_plane.endpoint in the profile points at the wrong address"
        );
    }
    Ok(())
}
