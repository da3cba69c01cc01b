//! What a master or worker needs on disk before kubeadm runs: kubelet's
//! node IP and kubeadm's configuration files (modules, sysctls, swap and
//! containerd are baked into the image by the builder).

use anyhow::{Context, Result};

use super::KubeNode;
use kiln_node::fsutil::{create_dir_all_mode, write_with_parents};
use kiln_node::layout::kube::{
    KUBEADM_DIR, KUBEADM_INIT_CONFIG, KUBEADM_JOIN_CONFIG, KUBELET_DEFAULTS,
};

/// `master`: a master's files (kubeadm init's configuration, the
/// control-plane join), else a worker's.
pub fn prepare(agent: &KubeNode, master: bool) -> Result<()> {
    let inputs = agent.kubeadm_inputs()?;
    // kubelet would otherwise pick the first interface's address, which on
    // multi-homed nodes is not the one the cluster reaches it by.
    write_with_parents(
        &agent.ctx.path(KUBELET_DEFAULTS),
        format!("KUBELET_EXTRA_ARGS=--node-ip={}\n", agent.ctx.me.ip).as_bytes(),
        0o644,
    )?;
    let dir = agent.ctx.path(KUBEADM_DIR);
    create_dir_all_mode(&dir, 0o700).with_context(|| format!("creating {}", dir.display()))?;
    if master {
        write_with_parents(
            &agent.ctx.path(KUBEADM_INIT_CONFIG),
            inputs.init_config().as_bytes(),
            0o600,
        )?;
    }
    write_with_parents(
        &agent.ctx.path(KUBEADM_JOIN_CONFIG),
        inputs.join_config(master).as_bytes(),
        0o600,
    )?;
    tracing::info!(
        node = %agent.ctx.me.name,
        ip = %agent.ctx.me.ip,
        api = ?inputs.version,
        "wrote kubelet's node IP and kubeadm's configuration"
    );
    Ok(())
}
