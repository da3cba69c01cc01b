//! The worker role: wait (bounded) until the control-plane endpoint answers
//! TLS with a certificate of the cluster CA, then `kubeadm join`.

use anyhow::Result;

use super::{host, KubeNode};
use crate::kubeadm::command;
use kiln_node::layout::kube::KUBEADM_JOIN_CONFIG;
use kiln_node::layout::pki;

/// `run` on a worker: the host, then kubeadm join; returns the decision as
/// logged.
pub fn converge(agent: &KubeNode) -> Result<String> {
    host::prepare(agent, false)?;
    let endpoint = agent.wait_for_control_plane(&pki::cluster_ca_cert())?;
    let sentence = format!(
        "the control plane at {endpoint} answers with the cluster CA: joining it as worker {}",
        agent.ctx.me.name
    );
    tracing::info!(node = %agent.ctx.me.name, endpoint = %endpoint, decision = %sentence, "decided");
    command::run(&["join", "--config", KUBEADM_JOIN_CONFIG])?;
    tracing::info!(node = %agent.ctx.me.name, "converged");
    Ok(sentence)
}
