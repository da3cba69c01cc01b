//! The membership decision, as a pure function of what the node observed:
//! design.md's "etcd membership at first boot" table, plus the safety rules
//! (never bootstrap alone, never a change that loses quorum).

use super::client::MemberInfo;

/// What the node saw of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub members: Vec<MemberInfo>,
    /// IDs of members that answered a status call.
    pub alive: Vec<String>,
    /// Whether some answering member knows a leader.
    pub has_leader: bool,
}

/// The node itself, as the decision needs it.
#[derive(Debug, Clone)]
pub struct Me<'a> {
    pub name: &'a str,
    pub peer_url: &'a str,
    pub initial_member: bool,
    /// The data dir holds a write-ahead log from an earlier run.
    pub has_wal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Data dir has a WAL and the cluster (if any answers) still lists us: a reboot.
    Restart,
    /// No cluster answers and we are an initial member: state=new, full list.
    Bootstrap,
    /// The cluster lists our peer URL, unstarted: a late initial member or
    /// a crashed earlier run after `member add`. Start with state=existing.
    StartListed { id: String, learner: bool },
    /// Not in the cluster: add ourselves as learner, start with state=existing.
    Join,
    /// A started member with our name or peer URL is dead: remove it, then join.
    Replace { dead: MemberInfo },
    /// Nothing answers and we may not bootstrap, or the cluster is still
    /// forming: look again later.
    Wait(String),
    /// The cluster answers but cannot reach quorum: change nothing.
    QuorumLost { alive: usize, voting: usize },
    /// Another live member already uses our name or address.
    Conflict(MemberInfo),
}

/// The decision and whether a stale data dir must be moved aside first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    pub move_aside_data: bool,
    /// Members the cluster lists (0 when none answered), for the log sentence.
    pub cluster_size: usize,
}

fn quorum(voting: usize) -> usize {
    voting / 2 + 1
}

pub fn decide(me: &Me, cluster: Option<&ClusterView>) -> Plan {
    let cluster_size = cluster.map_or(0, |v| v.members.len());
    let plan = |decision| Plan {
        decision,
        move_aside_data: false,
        cluster_size,
    };
    let Some(view) = cluster else {
        return plan(if me.has_wal {
            Decision::Restart
        } else if me.initial_member {
            Decision::Bootstrap
        } else {
            Decision::Wait("no etcd member answers and this node is not an initial member".into())
        });
    };
    let by_peer = view
        .members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == me.peer_url));
    let by_name = view
        .members
        .iter()
        .find(|m| m.is_started() && m.name == me.name);
    let is_alive = |m: &MemberInfo| view.alive.contains(&m.id);

    if me.has_wal && by_peer.is_some_and(MemberInfo::is_started) {
        return plan(Decision::Restart);
    }
    // With a WAL but no started member of ours listed, the cluster removed us:
    // the old data would make etcd exit "permanently removed".
    let move_aside_data = me.has_wal;
    let decision = match by_peer.or(by_name) {
        Some(m) if !m.is_started() => Decision::StartListed {
            id: m.id.clone(),
            learner: m.is_learner,
        },
        Some(m) if is_alive(m) => Decision::Conflict(m.clone()),
        Some(dead) => {
            check_quorum(view, Some(dead)).unwrap_or(Decision::Replace { dead: dead.clone() })
        }
        None => check_quorum(view, None)
            .or_else(|| dead_member_blocks_add(view))
            .unwrap_or(Decision::Join),
    };
    Plan {
        decision,
        move_aside_data,
        cluster_size,
    }
}

/// etcd refuses every `member add` ("unhealthy cluster") while a voting
/// member is unreachable; a node that replaces no one cannot remove it, so
/// it says which member is dead and what the operator can do.
fn dead_member_blocks_add(view: &ClusterView) -> Option<Decision> {
    let dead = view
        .members
        .iter()
        .find(|m| !m.is_learner && m.is_started() && !view.alive.contains(&m.id))?;
    let hex_id = dead
        .id
        .parse::<u64>()
        .map_or_else(|_| dead.id.clone(), |id| format!("{id:x}"));
    Some(Decision::Wait(format!(
        "member {} (id {hex_id}, peer {}) is listed but does not answer, and etcd adds no \
         member while a voting member is unreachable. Boot {}'s replacement with its name or \
         address (its agent removes the dead member), or remove it: \
         `etcdctl member remove {hex_id}`; this node joins as soon as it is gone",
        dead.name,
        dead.peer_urls.join(","),
        dead.name
    )))
}

/// Whether a membership change (removing `dead`, if given, then adding a
/// learner) is safe now; `None` when it is.
fn check_quorum(view: &ClusterView, dead: Option<&MemberInfo>) -> Option<Decision> {
    let voting: Vec<&MemberInfo> = view.members.iter().filter(|m| !m.is_learner).collect();
    let alive = voting.iter().filter(|m| view.alive.contains(&m.id)).count();
    let unstarted = voting.iter().filter(|m| !m.is_started()).count();
    let after = voting.len() - usize::from(dead.is_some_and(|d| !d.is_learner));
    if view.has_leader && alive >= quorum(after) {
        return None;
    }
    // Members not started yet may still come up: a cluster that is forming.
    if alive + unstarted >= quorum(voting.len()) {
        return Some(Decision::Wait(format!(
            "the cluster is not ready for a membership change ({alive} of {} voting members answer)",
            voting.len()
        )));
    }
    Some(Decision::QuorumLost {
        alive,
        voting: voting.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, name: &str, learner: bool) -> MemberInfo {
        MemberInfo {
            id: id.to_string(),
            name: name.into(),
            peer_urls: vec![format!("https://10.77.0.1{id}:2380")],
            client_urls: vec![format!("https://10.77.0.1{id}:2379")],
            is_learner: learner,
        }
    }

    fn view(alive: &[u32], has_leader: bool) -> ClusterView {
        ClusterView {
            members: vec![
                member(1, "etcd1", false),
                member(2, "etcd2", false),
                member(3, "etcd3", false),
            ],
            alive: alive.iter().map(u32::to_string).collect(),
            has_leader,
        }
    }

    fn me(peer: u32, initial: bool) -> (String, bool) {
        (format!("https://10.77.0.1{peer}:2380"), initial)
    }

    fn run(peer: u32, name: &str, initial: bool, wal: bool, view: Option<&ClusterView>) -> Plan {
        let (peer_url, initial_member) = me(peer, initial);
        let me = Me {
            name,
            peer_url: &peer_url,
            initial_member,
            has_wal: wal,
        };
        decide(&me, view)
    }

    #[test]
    fn initial_member_bootstraps_only_when_nothing_answers() {
        assert_eq!(
            run(1, "etcd1", true, false, None).decision,
            Decision::Bootstrap
        );
        assert!(matches!(
            run(7, "spare", false, false, None).decision,
            Decision::Wait(_)
        ));
        assert_eq!(
            run(1, "etcd1", true, true, None).decision,
            Decision::Restart
        );
    }

    #[test]
    fn dead_member_with_my_address_is_replaced_when_quorum_allows() {
        let plan = run(
            2,
            "etcd2",
            true,
            false,
            Some(&view(&["1", "3"].map(|s| s.parse().unwrap()), true)),
        );
        assert_eq!(
            plan.decision,
            Decision::Replace {
                dead: member(2, "etcd2", false)
            }
        );
    }

    #[test]
    fn two_of_three_dead_is_quorum_lost() {
        let plan = run(2, "etcd2", true, false, Some(&view(&[1], false)));
        assert_eq!(
            plan.decision,
            Decision::QuorumLost {
                alive: 1,
                voting: 3
            }
        );
    }

    #[test]
    fn unstarted_entry_for_me_is_resumed_not_added_again() {
        let mut v = view(&[1, 3], true);
        v.members[1].name.clear();
        v.members[1].client_urls.clear();
        v.members[1].is_learner = true;
        let plan = run(2, "etcd2", true, false, Some(&v));
        assert_eq!(
            plan.decision,
            Decision::StartListed {
                id: "2".into(),
                learner: true
            }
        );
    }

    #[test]
    fn forming_cluster_is_awaited_not_declared_lost() {
        let mut v = view(&[1], false);
        // Initial members keep their names before they start.
        v.members[1].client_urls.clear();
        v.members[2].client_urls.clear();
        assert!(matches!(
            run(7, "spare", false, false, Some(&v)).decision,
            Decision::Wait(_)
        ));
    }

    #[test]
    fn removed_member_with_old_data_moves_it_aside_and_joins() {
        let mut v = view(&[1, 2, 3], true);
        v.members.retain(|m| m.id != "3");
        v.members.push(member(4, "etcd4", false));
        v.alive.push("4".into());
        let plan = run(3, "etcd3", true, true, Some(&v));
        assert_eq!(
            plan,
            Plan {
                decision: Decision::Join,
                move_aside_data: true,
                cluster_size: 3
            }
        );
    }

    #[test]
    fn unlisted_node_names_the_dead_member_instead_of_adding() {
        let mut v = view(&[1, 3], true);
        v.members[1].id = "1234".into();
        let Decision::Wait(reason) = run(9, "etcd9", false, false, Some(&v)).decision else {
            panic!("a dead voting member must block the add");
        };
        assert!(reason.contains("member etcd2 (id 4d2"), "{reason}");
        assert!(reason.contains("etcdctl member remove 4d2"), "{reason}");
        assert_eq!(
            run(9, "etcd9", false, false, Some(&view(&[1, 2, 3], true))).decision,
            Decision::Join
        );
    }

    #[test]
    fn live_member_with_my_name_is_a_conflict() {
        let plan = run(9, "etcd1", false, false, Some(&view(&[1, 2, 3], true)));
        assert!(matches!(plan.decision, Decision::Conflict(_)));
    }
}
