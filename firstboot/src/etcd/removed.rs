//! A converged member that comes back after the cluster replaced it (it was
//! partitioned or off for longer than `etcd.replace_dead_after`, and a new
//! node took its place): its watcher sees that the cluster no longer lists
//! its peer URL, stops etcd, moves the data dir aside, drops its etcd
//! configuration and done marker, and says in status.json what it would do
//! now. With the cluster at `etcd.size` that is nothing, and why. On a real
//! node it then runs the agent again, which joins when the cluster has room
//! and otherwise waits its bounded time and fails with the same reason.

use anyhow::{Context, Result};

use super::configure::{describe, move_aside};
use super::membership::decide;
use super::node::EtcdMember;
use crate::status::{self, Phase, Status};
use crate::systemd::systemctl;
use kiln_node::etcd::reports::ClusterView;
use kiln_node::layout::{self, etcd::ENV_FILE};

/// The cluster's view when it shows that this member was removed: the node
/// converged and has a write-ahead log, the cluster answers with a leader,
/// and no member has this node's peer URL. `None` otherwise, including
/// when the cluster cannot be asked.
fn removed_by(node: &EtcdMember) -> Option<ClusterView> {
    if !status::is_done(&node.ctx.root) || !node.has_wal() {
        return None;
    }
    let view = node.observe()?;
    let listed = view
        .members
        .iter()
        .any(|m| m.peer_urls.contains(&node.peer_url));
    (view.has_leader && !listed).then_some(view)
}

/// Checks whether this member was removed, and if so leaves the cluster's
/// way as described above; true when it did.
pub fn leave_if_removed(node: &EtcdMember) -> Result<bool> {
    let Some(view) = removed_by(node) else {
        return Ok(false);
    };
    let ctx = node.ctx;
    let others: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
    tracing::warn!(
        member = %ctx.me.name,
        peer = %node.peer_url,
        "this member was removed from the cluster while it was away (the cluster lists {}): \
         stopping etcd and moving its data aside",
        others.join(", ")
    );
    if ctx.start {
        systemctl(&["stop", "etcd.service"], "; see journalctl -u etcd")?;
    }
    move_aside(&node.data_dir())?;
    let env = ctx.path(ENV_FILE);
    match std::fs::remove_file(&env) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", env.display()))
        }
        _ => {}
    }
    let done = ctx.path(layout::DONE_MARKER);
    std::fs::remove_file(&done).with_context(|| format!("removing {}", done.display()))?;
    let plan = decide(&node.as_member(), Some(&view), &node.policy());
    let sentence = format!(
        "{} was removed from the cluster while it was away and its data moved aside; now: {}",
        ctx.me.name,
        describe(node, &plan)
    );
    tracing::warn!(decision = %sentence, "left the cluster");
    status::write_status(
        &ctx.root,
        &Status {
            phase: Phase::Removed,
            role: "etcd".into(),
            member: ctx.me.name.clone(),
            decision: sentence,
            learner_id: None,
            updated: status::now(),
        },
    )?;
    if ctx.start {
        systemctl(
            &["restart", "--no-block", layout::AGENT_UNIT],
            "; see journalctl -u kiln-firstboot",
        )?;
    }
    Ok(true)
}
