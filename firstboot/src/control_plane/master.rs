//! The master role: keepalived for the VIP, then the init-or-join decision.
//! External etcd: the init lock in etcd picks the one master that runs
//! `kubeadm init`. Stacked etcd: the first listed master initializes when no
//! other control plane answers. Every master then makes sure the bootstrap
//! token exists.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::lock::{self, InitKeys, Step};
use super::{host, keepalived, vip, KubeNode};
use crate::backoff::{retry, Attempt};
use crate::etcd;
use crate::etcd::lease_lock::{self, HeldLock};
use crate::etcd::membership::Decision;
use crate::kubeadm::command;
use kiln_node::etcd::client::EtcdClient;
use kiln_node::etcd::kv::KvCluster;
use kiln_node::fsutil::write_with_parents;
use kiln_node::layout::kube::{
    CLUSTER_CA, ETCD_CA, ETCD_CLIENT_CERT, ETCD_CLIENT_KEY, KEEPALIVED_CHECK, KEEPALIVED_CONFIG,
    KUBEADM_INIT_CONFIG, KUBEADM_JOIN_CONFIG,
};
use kiln_node::node_config::Topology;
use kiln_node::node_config::API_SERVER_PORT;
use kiln_node::tls::{ClusterTls, Probe};

/// What this master does: initialize the control plane, or join it.
enum Choice {
    Init(Option<HeldLock>),
    Join(String),
}

/// `run` on a master: the host, keepalived, then kubeadm init or join;
/// returns the decision as logged.
pub fn converge(agent: &KubeNode) -> Result<String> {
    host::prepare(agent, true)?;
    setup_keepalived(agent)?;
    let (sentence, initialized) = match agent.ctx.config.etcd.topology {
        Topology::External => external(agent)?,
        Topology::Stacked => stacked(agent)?,
    };
    if command::ensure_token(&agent.token)? {
        tracing::info!("created the bootstrap token the images carry");
    }
    tracing::info!(node = %agent.ctx.me.name, initialized, "the control plane runs on this master");
    tracing::info!(node = %agent.ctx.me.name, "converged");
    Ok(sentence)
}

/// External etcd: decide through the init lock and marker.
fn external(agent: &KubeNode) -> Result<(String, bool)> {
    let kv = KvCluster {
        client: EtcdClient::new(
            &agent.ctx.path(ETCD_CA),
            &agent.ctx.path(ETCD_CLIENT_CERT),
            &agent.ctx.path(ETCD_CLIENT_KEY),
        )
        .context("loading the API server's etcd client certificate baked into the image")?,
        endpoints: agent.ctx.config.etcd_client_urls(),
    };
    let keys = InitKeys::new(&agent.ctx.config.cluster);
    let me = agent.ctx.me.name.as_str();
    let choice = retry(
        "the external etcd cluster to answer and the control plane to be initialized (or the init lock to be free)",
        agent.ctx.timeout,
        || {
            let seen = match lock::observe(&kv, &keys) {
                Ok(seen) => seen,
                Err(e) => return Attempt::Retry(format!("{e:#}")),
            };
            match lock::decide(&seen) {
                Step::Join(why) => Attempt::Done(Choice::Join(why)),
                Step::WaitFor(holder) => Attempt::Retry(format!(
                    "{holder} holds the init lock and is running kubeadm init"
                )),
                Step::TakeLock => match lease_lock::try_acquire(&kv, &keys.lock, me) {
                    Ok(Some(held)) => Attempt::Done(Choice::Init(Some(held))),
                    Ok(None) => Attempt::Retry("another master took the init lock first".into()),
                    Err(e) => Attempt::Retry(format!("{e:#}")),
                },
            }
        },
    )?;
    let held = match choice {
        Choice::Join(why) => return join_external(agent, why),
        Choice::Init(held) => held,
    };
    // Someone may have finished between our look and our lock.
    if let Step::Join(why) = lock::decide(&lock::observe(&kv, &keys)?) {
        drop(held);
        return join_external(agent, why);
    }
    let sentence =
        format!("{me} holds the init lock and etcd holds no Kubernetes data: running kubeadm init");
    tracing::info!(node = me, decision = %sentence, "decided");
    command::run(&["init", "--config", KUBEADM_INIT_CONFIG])?;
    if held.as_ref().is_some_and(HeldLock::is_lost) {
        tracing::warn!("the init lock expired while kubeadm init ran; marking success anyway");
    }
    lock::mark_initialized(&kv, &keys, me)?;
    drop(held);
    tracing::info!(
        node = me,
        "kubeadm init succeeded; marked the control plane initialized"
    );
    Ok((sentence, true))
}

/// External etcd, the control plane initialized: waits for the endpoint to
/// answer with the cluster CA, then joins. Right after an init the VIP is
/// still moving to the master that ran it (its health check passes a
/// moment later), and kubeadm reads kubeadm-config, after its discovery,
/// with a retry of only 350 ms.
fn join_external(agent: &KubeNode, why: String) -> Result<(String, bool)> {
    agent.wait_for_control_plane(Path::new(CLUSTER_CA))?;
    join(why).map(|s| (s, false))
}

/// Stacked etcd: no etcd outside the masters to hold a lock in, so the
/// first listed master initializes, and only when no other control plane
/// answers (a replacement of it joins the others).
fn stacked(agent: &KubeNode) -> Result<(String, bool)> {
    let cp = agent.control_plane()?;
    let tls = ClusterTls::new(&agent.ctx.path(CLUSTER_CA))?;
    let others: Vec<String> = std::iter::once(cp.endpoint.clone())
        .chain(
            cp.masters
                .iter()
                .filter(|m| m.name != agent.ctx.me.name && m.ip != agent.ctx.me.ip)
                .map(|m| {
                    format!(
                        "{}:{API_SERVER_PORT}",
                        kiln_node::node_config::bracketed(m.ip)
                    )
                }),
        )
        .collect();
    let answering = || {
        others
            .iter()
            .find(|e| matches!(tls.probe(e), Probe::Trusted))
            .cloned()
    };
    let designated = cp
        .masters
        .first()
        .is_some_and(|m| m.name == agent.ctx.me.name);
    if designated {
        if let Some(endpoint) = answering() {
            return join_stacked(
                agent,
                format!("another control plane answers at {endpoint}"),
            );
        }
        let sentence = format!(
            "{} is the first listed master and no other control plane answers: running kubeadm init",
            agent.ctx.me.name
        );
        tracing::info!(decision = %sentence, "decided");
        command::run(&["init", "--config", KUBEADM_INIT_CONFIG])?;
        return Ok((sentence, true));
    }
    let endpoint = retry(
        "another master's control plane to answer TLS",
        agent.ctx.timeout,
        || {
            answering().map_or_else(
                || Attempt::Retry(format!("none of {} answers yet", others.join(", "))),
                Attempt::Done,
            )
        },
    )?;
    join_stacked(agent, format!("the control plane answers at {endpoint}"))
}

/// `kubeadm join --control-plane` with stacked etcd, which adds this
/// master's etcd member. The etcd agent's membership rules decide first,
/// under the etcd membership lock: masters change the membership one at a
/// time (two joins at once race each other's adds), a master replacing a
/// dead one removes the members dead to the cluster first (etcd refuses
/// kubeadm's `member add` while they count), and none joins past etcd.size.
fn join_stacked(agent: &KubeNode, why: String) -> Result<(String, bool)> {
    let node = etcd::EtcdMember::new(agent.ctx)?;
    let (plan, members, held) = etcd::plan_under_lock(&node)?;
    match &plan.decision {
        Decision::Bootstrap => {
            bail!("no etcd member on the other masters answers, though their control plane does")
        }
        Decision::QuorumLost { .. } | Decision::Conflict(_) | Decision::Wait(_) => {
            bail!("{}", etcd::describe(&node, &plan))
        }
        _ => {}
    }
    if !plan.decision.removals().is_empty() {
        tracing::info!(decision = %etcd::describe(&node, &plan), "removing the etcd members of masters dead to the cluster");
    }
    etcd::remove_dead(&node, &plan.decision, members)?;
    let joined = join(why);
    drop(held);
    joined.map(|s| (s, false))
}

fn join(why: String) -> Result<String> {
    let sentence = format!("{why}: joining it with kubeadm join --control-plane");
    tracing::info!(decision = %sentence, "decided");
    command::run(&["join", "--config", KUBEADM_JOIN_CONFIG])?;
    Ok(sentence)
}

/// Writes keepalived's configuration and health check and starts it, when
/// the profile gives the masters a VIP.
fn setup_keepalived(agent: &KubeNode) -> Result<()> {
    let cp = agent.control_plane()?;
    let Some(vip) = &cp.vip else {
        return Ok(());
    };
    let me = &agent.ctx.me;
    let peers = keepalived::unicast_peers(cp, me.ip, &[]);
    let conf = keepalived::config(cp, vip, &me.name, me.ip, &peers)?;
    for (path, text, mode) in [
        (KEEPALIVED_CONFIG, conf, 0o644),
        (KEEPALIVED_CHECK, keepalived::check_script(), 0o755),
    ] {
        write_with_parents(&agent.ctx.path(path), text.as_bytes(), mode)?;
    }
    tracing::info!(vip = %vip.address, interface = %vip.interface, "wrote keepalived's configuration");
    if !agent.ctx.start {
        return Ok(());
    }
    if vip::needs_learned_peers(agent.ctx) {
        vip::wait_until_known(agent.ctx)?;
    }
    crate::systemd::systemctl(
        &["restart", "keepalived.service"],
        "; see journalctl -u keepalived",
    )
}
