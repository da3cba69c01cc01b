//! The second phase: once the local etcd runs, wait until it has caught up,
//! promote it if it joined as a learner and confirm it is healthy; the agent
//! then records that the node converged.

use anyhow::{bail, Context, Result};

use super::node::EtcdMember;
use crate::backoff::{retry, Attempt};
use crate::status::{self, Status};

/// `kiln-firstboot settle` (also the tail of `run` when it starts etcd).
/// Returns the decision of the `run` that configured the member, for the
/// agent to record.
pub fn settle(node: &EtcdMember) -> Result<String> {
    let url = &node.client_url;
    let configured = status::read_status(&node.ctx.root);
    // A learner `run` added is promoted as soon as it caught up; otherwise
    // the local etcd says who it is once it knows a leader.
    let learner = match configured.as_ref().and_then(|s| s.learner_id.clone()) {
        Some(id) => Some(id),
        None => {
            let local = retry(
                "the local etcd member to know a leader",
                node.ctx.timeout,
                || match node.client.status(url) {
                    Ok(s) if s.has_leader() => Attempt::Done(s),
                    Ok(_) => Attempt::Retry(format!("{url} knows no leader yet")),
                    Err(e) => Attempt::Retry(format!("{e:#}")),
                },
            )
            .with_context(|| {
                format!("etcd on this node ({url}) did not come up; see `journalctl -u etcd`")
            })?;
            local.is_learner.then_some(local.header.member_id)
        }
    };
    if let Some(id) = learner {
        node.cluster_call("promote this learner to a voting member", None, |members, endpoint| {
            match members.iter().find(|m| m.id == id) {
                Some(m) if !m.is_learner => Ok(()),
                Some(_) => node.client.member_promote(endpoint, &id),
                None => bail!("member {id} (this node) is no longer in the cluster; it was removed while joining"),
            }
        })
        .with_context(|| format!("etcd on this node ({url}) did not catch up; see `journalctl -u etcd`"))?;
        tracing::info!(member = %node.ctx.me.name, id = %id, "promoted this learner to a voting member");
    }
    retry(
        "the local etcd member to be healthy",
        node.ctx.timeout,
        || match node.client.healthy(url) {
            Ok(true) => Attempt::Done(()),
            Ok(false) => Attempt::Retry(format!("{url}/health says false")),
            Err(e) => Attempt::Retry(format!("{e:#}")),
        },
    )?;
    tracing::info!(member = %node.ctx.me.name, "etcd member is healthy and voting: node converged");
    // Outside systemd there is no socket to notify, which is fine.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    Ok(describe_existing(configured.as_ref()))
}

/// The decision recorded by the `run` that configured this node.
fn describe_existing(status: Option<&Status>) -> String {
    status.map_or_else(
        || "configured outside kiln-firstboot run".into(),
        |s| s.decision.clone(),
    )
}
