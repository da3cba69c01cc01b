//! The etcd role's first phase, behind `run` and `plan`: observe, decide,
//! then (for `run`) install certificates, change membership and write etcd's
//! configuration, in an order where a crash at any point converges on rerun.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lease_lock::{self, HeldLock};
use super::membership::{decide, Decision, Plan, WaitReason};
use super::node::EtcdMember;
use super::silence::{Silence, BOOTSTRAP_SILENCE};
use super::{certs, restore, settle};
use crate::backoff::{retry, Attempt};
use crate::status::{self, Phase, Status};
use kiln_node::etcd::client::{EtcdRefused, MemberInfo};
use kiln_node::etcd::config::{self, ClusterState, EtcdSettings};
use kiln_node::etcd::kv::KvCluster;
use kiln_node::etcd::version::{cluster_version, join_refusal};
use kiln_node::layout::{self, etcd::SNAPSHOT_DIR};
use kiln_node::node_config::DiscoverySource;
use kiln_node::versions::Version;

/// Observes the cluster until a decision other than "wait" is possible (for
/// at most `budget`); returns it with the member list it was made on.
fn make_plan(node: &EtcdMember, budget: Duration) -> Result<(Plan, Vec<MemberInfo>)> {
    let me = node.as_member();
    let policy = node.policy();
    let mut said: Option<WaitReason> = None;
    let mut saw_cluster = false;
    let mut silence = Silence::default();
    retry("an etcd cluster to answer", budget, || {
        let view = node.observe();
        saw_cluster |= view.is_some();
        let silent_long_enough = silence.long_enough(view.is_some(), Instant::now());
        let mut plan = decide(&me, view.as_ref(), &policy);
        if plan.decision == Decision::Bootstrap && !silent_long_enough && !node.cluster_is_forming() {
            plan.decision = Decision::Wait(WaitReason::BootstrapSilence {
                me: me.name.to_owned(),
                silence: BOOTSTRAP_SILENCE,
            });
        }
        match plan.decision {
            Decision::Wait(reason) => {
                // Once per new reason: the journal shows why the node waits.
                if said.as_ref() != Some(&reason) {
                    tracing::info!(reason = %reason, "waiting");
                    said = Some(reason.clone());
                }
                Attempt::Retry(reason.to_string())
            }
            _ => Attempt::Done((plan, view.map(|v| v.members).unwrap_or_default())),
        }
    })
    .with_context(|| {
        if saw_cluster {
            format!(
                "the etcd cluster answers but {} cannot join it yet",
                node.ctx.me.name
            )
        } else if node.ctx.me.is_initial_member() {
            "the etcd cluster did not become ready for this node".to_owned()
        } else if let Some(endpoint) = &node.ctx.config.etcd.endpoint {
            format!(
                "{} is not an initial member, so it never bootstraps a cluster alone, and no \
                 member answered through discovery {:?} or the endpoint etcd.endpoint = {endpoint}: \
                 check that it forwards TCP to the live members' client port, and rerun",
                node.ctx.me.name, node.ctx.config.etcd.discovery
            )
        } else if node.ctx.config.etcd.discovery == [DiscoverySource::Static] {
            format!(
                "{} is not an initial member, so it never bootstraps a cluster alone, and static \
                 discovery asks only the listed members' addresses: start a listed member, or, \
                 once the cluster runs on other addresses, set etcd.endpoint in the profile to a \
                 load balancer in front of the live members, or etcd.discovery = [\"dns-srv\"] \
                 with SRV records _etcd-server-ssl._tcp.{} for them, rebuild and boot the new \
                 image",
                node.ctx.me.name, node.ctx.config.domain
            )
        } else {
            format!(
                "{} is not an initial member, so it never bootstraps a cluster alone, and no \
                 member answered through discovery {:?}: check that the SRV records \
                 _etcd-server-ssl._tcp.{} name live members, and rerun",
                node.ctx.me.name, node.ctx.config.etcd.discovery, node.ctx.config.domain
            )
        }
    })
}

/// The decision as the sentence an operator reads in the journal.
pub fn describe(node: &EtcdMember, plan: &Plan) -> String {
    let name = &node.ctx.me.name;
    let size = plan.cluster_size;
    let aside = if plan.move_aside_data {
        ", after moving the stale data dir aside"
    } else {
        ""
    };
    let sentence = match &plan.decision {
        Decision::Restart => format!("{name} has a write-ahead log: restarting etcd on it, no membership change"),
        Decision::Bootstrap => format!(
            "no etcd member answers and {name} is an initial member: bootstrapping a new cluster of {}{}",
            node.ctx.config.etcd.members.len(),
            node.ctx.config.etcd.restore_from.as_ref().map_or(String::new(), |p| format!(
                " from the snapshot restore_from = {}",
                p.display()
            ))
        ),
        Decision::StartListed { id, learner } => format!(
            "the cluster lists {name}'s peer URL {} as not started (member {id}{}): starting etcd with state=existing",
            node.peer_url,
            if *learner { ", learner" } else { "" }
        ),
        Decision::Join { remove } if remove.is_empty() => format!(
            "{name} is not a member and the cluster of {size} is below etcd.size = {}: joining it as a learner, then promoting it",
            node.policy().size
        ),
        Decision::Join { remove } => format!(
            "{name} is not a member: taking the place of {}, dead to the cluster for at least etcd.replace_dead_after: removing {}, then adding {name} as a learner",
            names(remove),
            if remove.len() == 1 { "it" } else { "them" }
        ),
        Decision::Replace { dead, also } => format!(
            "joining the existing cluster of {size} as replacement for dead member {} (id {}, peer {}): removing it{}, then adding {name} as a learner",
            dead.name,
            dead.id,
            dead.peer_urls.join(","),
            if also.is_empty() {
                String::new()
            } else {
                format!(" and {}, dead to the cluster too", names(also))
            }
        ),
        Decision::Wait(reason) => format!("waiting: {reason}"),
        Decision::QuorumLost { alive, voting } => format!(
            "etcd quorum is lost: only {alive} of {voting} voting members answer; changing nothing. \
             No member can be removed or added without quorum: bring the dead members back with \
             their data, or rebuild the cluster from a snapshot: set etcd.restore_from in the \
             profile to a `kiln backup` file or a node's {SNAPSHOT_DIR} copy, rebuild, \
             and boot fresh initial members (docs/backup.md)"
        ),
        Decision::Conflict(m) => format!(
            "member {} at {} is alive and has {name}'s name or peer URL; refusing to add a second member for it",
            m.name,
            m.peer_urls.join(",")
        ),
    };
    format!("{sentence}{aside}")
}

fn names(members: &[MemberInfo]) -> String {
    members
        .iter()
        .map(|m| format!("{} (id {})", m.name, m.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes the cluster-wide etcd membership lock (waiting at most `within`),
/// through the voting members of `members`: whoever holds it is the only
/// node changing the membership.
fn membership_lock(
    node: &EtcdMember,
    members: &[MemberInfo],
    within: Duration,
) -> Result<HeldLock> {
    let kv = KvCluster {
        client: node.client.clone(),
        endpoints: node.voting_endpoints(members),
    };
    Ok(lease_lock::acquire(
        &kv,
        &layout::keys::member_lock(&node.ctx.config.cluster),
        &node.ctx.me.name,
        "the etcd membership lock (one membership change at a time)",
        within,
    )?)
}

/// The plan, and for a membership change the membership lock: one change
/// at a time, cluster-wide. Under the lock the node looks once more, on
/// what the cluster holds after the previous change; a plan that no longer
/// changes the membership gives the lock back and waits outside it.
pub fn plan_under_lock(node: &EtcdMember) -> Result<(Plan, Vec<MemberInfo>, Option<HeldLock>)> {
    let deadline = Instant::now() + node.ctx.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (plan, members) = make_plan(node, left)?;
        if !plan.decision.changes_membership() {
            return Ok((plan, members, None));
        }
        let held = membership_lock(
            node,
            &members,
            deadline.saturating_duration_since(Instant::now()),
        )?;
        if let Some(view) = node.observe() {
            let again = decide(&node.as_member(), Some(&view), &node.policy());
            if again.decision.changes_membership() {
                return Ok((again, view.members, Some(held)));
            }
        }
        drop(held);
        if Instant::now() >= deadline {
            bail!(
                "{} held the etcd membership lock, but the cluster changed under it every time \
                 for {}s; rerun",
                node.ctx.me.name,
                node.ctx.timeout.as_secs()
            );
        }
    }
}

/// `kiln-firstboot plan`: prints the decision and why, changes nothing.
pub fn plan(node: &EtcdMember) -> Result<String> {
    let (plan, members) = make_plan(node, node.ctx.timeout)?;
    check_before_change(node, &plan, &members)?;
    Ok(describe(node, &plan))
}

/// `kiln-firstboot run` on an etcd node: configures etcd and, when the
/// agent starts services, starts it and settles. Returns the decision once
/// the member converged; `None` when it is left configured for `settle`.
pub fn run(node: &EtcdMember) -> Result<Option<String>> {
    let (plan, members, mut lock) = plan_under_lock(node)?;
    let sentence = describe(node, &plan);
    if matches!(
        plan.decision,
        Decision::QuorumLost { .. } | Decision::Conflict(_) | Decision::Wait(_)
    ) {
        // Before anything is written: refusing changes nothing.
        bail!("{sentence}");
    }
    let version = check_before_change(node, &plan, &members)?;
    // Verified before anything is written: a corrupt snapshot changes nothing.
    let restore = match plan.decision {
        Decision::Bootstrap => restore::prepare(node)?,
        _ => None,
    };
    if restore.is_none() && node.ctx.config.etcd.restore_from.is_some() {
        tracing::info!(
            "restore_from is ignored: only an initial member bootstrapping with no WAL restores"
        );
    }
    tracing::info!(member = %node.ctx.me.name, peer = %node.peer_url, decision = %sentence, "decided");
    certs::install(&node.ctx.root, &node.ctx.config, &node.ctx.me)?;
    if plan.move_aside_data {
        move_aside(&node.data_dir())?;
    }
    let mut learner_id = None;
    let mut releasing = None;
    let (state, initial_cluster) = match &plan.decision {
        Decision::Bootstrap => (ClusterState::New, listed_cluster(node)),
        Decision::Restart => (
            ClusterState::Existing,
            vec![(node.ctx.me.name.clone(), node.peer_url.clone())],
        ),
        Decision::Join { .. } | Decision::Replace { .. } => {
            // Under the lock only this node changes the membership: the
            // list the plan was made on stays right for the first attempts.
            let left = remove_dead(node, &plan.decision, members.clone())?;
            let (id, members) = add_self(node, left)?;
            learner_id = Some(id);
            // The learner holds its place: the next change may start
            // while this node writes its configuration.
            releasing = lock.take().map(HeldLock::release_in_background);
            (ClusterState::Existing, current_cluster(node, &members))
        }
        Decision::StartListed { id, learner } => {
            learner_id = learner.then(|| id.clone());
            (ClusterState::Existing, current_cluster(node, &members))
        }
        // Refused above, before anything was written.
        Decision::Wait(_) | Decision::QuorumLost { .. } | Decision::Conflict(_) => {
            bail!("{sentence}")
        }
    };
    if let Some(restore) = &restore {
        restore::apply(node, restore, &initial_cluster)?;
    }
    prepare_data_dir(&node.data_dir())?;
    let settings = EtcdSettings {
        name: &node.ctx.me.name,
        data_dir: &node.ctx.config.etcd.data_dir,
        client_url: &node.client_url,
        peer_url: &node.peer_url,
        initial_cluster,
        state,
        token: restore
            .as_ref()
            .map_or(&node.ctx.config.cluster, |r| &r.token),
        version,
    };
    config::write(&node.ctx.root, &settings)?;
    status::write_status(
        &node.ctx.root,
        &Status {
            phase: Phase::Configured,
            role: "etcd".into(),
            member: node.ctx.me.name.clone(),
            decision: sentence,
            learner_id,
            updated: status::now(),
        },
    )?;
    drop(releasing);
    if !node.ctx.start {
        tracing::info!("etcd is configured; not starting it (--no-start): run `kiln-firstboot settle` once it runs");
        return Ok(None);
    }
    start_etcd()?;
    settle::settle(node).map(Some)
}

/// What `run` checks before it changes anything, and `plan` reports alike:
/// the certificates, and the etcd version against the cluster's.
fn check_before_change(node: &EtcdMember, plan: &Plan, members: &[MemberInfo]) -> Result<Version> {
    if plan.decision != Decision::Restart {
        certs::preflight(&node.ctx.root, &node.ctx.me)?;
    }
    let version = Version::installed(&node.ctx.root)?;
    if joins_running_cluster(&plan.decision) {
        check_version(node, version, members)?;
    }
    Ok(version)
}

/// Whether the decision starts this node's etcd against a running cluster
/// (with or without a membership change first).
fn joins_running_cluster(decision: &Decision) -> bool {
    matches!(
        decision,
        Decision::Join { .. } | Decision::Replace { .. } | Decision::StartListed { .. }
    )
}

/// Refuses, before any change, an etcd the cluster's version cannot take:
/// etcd would fail to start after the membership change (a downgrade), or
/// run a cluster two minors apart.
fn check_version(node: &EtcdMember, mine: Version, members: &[MemberInfo]) -> Result<()> {
    // Every member asked at once: a dead one may take a whole timeout.
    let answers: Vec<_> = std::thread::scope(|s| {
        let asked: Vec<_> = members
            .iter()
            .filter_map(|m| m.client_urls.first())
            .map(|url| s.spawn(|| node.client.version(url)))
            .collect();
        asked.into_iter().filter_map(|a| a.join().ok()).collect()
    });
    let mut errors = Vec::new();
    let versions: Vec<(Version, Option<Version>)> = answers
        .into_iter()
        .filter_map(|answer| answer.map_err(|e| errors.push(format!("{e:#}"))).ok())
        .collect();
    let Some(cluster) = cluster_version(&versions) else {
        bail!(
            "no member of the etcd cluster told its version: {} changes nothing; check that the \
             members answer on their client URLs and rerun ({})",
            node.ctx.me.name,
            errors.join("; ")
        );
    };
    if let Some(reason) = join_refusal(mine, cluster) {
        bail!("{} changes nothing: {reason}", node.ctx.me.name);
    }
    tracing::info!(member = %node.ctx.me.name, etcd = %mine, cluster = %cluster, "this etcd can join the cluster's version");
    Ok(())
}

fn listed_cluster(node: &EtcdMember) -> Vec<(String, String)> {
    let port = node.ctx.config.etcd.peer_port;
    node.ctx
        .config
        .etcd
        .members
        .iter()
        .map(|m| (m.name.clone(), kiln_node::node_config::url_for(m.ip, port)))
        .collect()
}

/// `--initial-cluster` for joining: the current membership, with this
/// node's (unstarted, nameless) entry named.
fn current_cluster(node: &EtcdMember, members: &[MemberInfo]) -> Vec<(String, String)> {
    members
        .iter()
        .flat_map(|m| {
            let mine = m.peer_urls.contains(&node.peer_url);
            let name = if mine {
                node.ctx.me.name.clone()
            } else {
                m.name.clone()
            };
            m.peer_urls.iter().map(move |u| (name.clone(), u.clone()))
        })
        .collect()
}

/// Adds this node as a learner (`members`: the list before, as far as
/// known); returns its ID and the member list with it.
fn add_self(node: &EtcdMember, members: Vec<MemberInfo>) -> Result<(String, Vec<MemberInfo>)> {
    let (id, members) = node.cluster_call(
        "add this node as a learner",
        Some(members),
        |members, endpoint| {
            // A timed-out add may have happened anyway: never add a second member.
            if let Some(m) = members
                .iter()
                .find(|m| m.peer_urls.contains(&node.peer_url))
            {
                return Ok((m.id.clone(), members.to_vec()));
            }
            node.client.member_add(endpoint, &node.peer_url, true)
        },
    )?;
    tracing::info!(member = %node.ctx.me.name, id = %id, "added this node to the cluster as a learner");
    Ok((id, members))
}

/// Removes the members `decision` removes before its add
/// ([`Decision::removals`]), one by one, from `members` (the list the
/// decision was made on, under the membership lock); returns the list
/// without them.
pub fn remove_dead(
    node: &EtcdMember,
    decision: &Decision,
    mut members: Vec<MemberInfo>,
) -> Result<Vec<MemberInfo>> {
    for dead in decision.removals() {
        remove_member(node, dead, members.clone())?;
        members.retain(|m| m.id != dead.id);
    }
    Ok(members)
}

fn remove_member(node: &EtcdMember, dead: &MemberInfo, members: Vec<MemberInfo>) -> Result<()> {
    node.cluster_call(
        "remove the dead member",
        Some(members),
        |members, endpoint| {
            if !members.iter().any(|m| m.id == dead.id) {
                return Ok(());
            }
            // The list came from another member, which may not have applied
            // an earlier, timed-out removal yet: "not found" means it is gone.
            match node.client.member_remove(endpoint, &dead.id) {
                Err(e)
                    if e.downcast_ref::<EtcdRefused>()
                        .is_some_and(|r| r.message.contains("member not found")) =>
                {
                    Ok(())
                }
                other => other,
            }
        },
    )?;
    tracing::info!(member = %dead.name, id = %dead.id, "removed the dead member");
    Ok(())
}

/// Renames a data dir etcd must not reuse; it is kept for forensics.
pub(super) fn move_aside(data_dir: &Path) -> Result<()> {
    let target = data_dir.with_file_name(format!(
        "{}.stale-{}",
        data_dir.file_name().unwrap_or_default().to_string_lossy(),
        status::now()
    ));
    std::fs::rename(data_dir, &target)
        .with_context(|| format!("moving the stale data dir {} aside", data_dir.display()))?;
    tracing::warn!(from = %data_dir.display(), to = %target.display(), "moved the stale etcd data dir aside");
    Ok(())
}

fn prepare_data_dir(data_dir: &Path) -> Result<()> {
    kiln_node::fsutil::create_dir_all_mode(data_dir, 0o700)
        .with_context(|| format!("creating the etcd data dir {}", data_dir.display()))?;
    if let Some(owner) = certs::etcd_owner() {
        certs::give_to_etcd(data_dir, owner)?;
    }
    Ok(())
}

fn start_etcd() -> Result<()> {
    // --no-block: a bootstrapping member only reports ready once its peers
    // are up; settle's bounded wait takes over from here.
    for args in [
        &["daemon-reload"][..],
        &["enable", "etcd.service"],
        &["restart", "--no-block", "etcd.service"],
    ] {
        crate::systemd::systemctl(args, "")?;
    }
    Ok(())
}
