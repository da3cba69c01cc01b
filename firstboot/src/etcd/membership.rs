//! The membership decision, as a pure function of what the node observed
//! ([`Decision`] lists the cases: a reboot, a listed member not started, a
//! replacement, a join, a bootstrap, a wait), plus the safety rules (never
//! bootstrap alone, never a change that loses quorum, never past the
//! desired size, never remove a member the cluster still sees).

use std::fmt;
use std::time::Duration;

use kiln_node::etcd::client::MemberInfo;
use kiln_node::etcd::reports::{unseen_by_cluster, ClusterView};

/// The profile's rules for changing the membership.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Voting members the cluster keeps (`etcd.size`).
    pub size: usize,
    /// How long the cluster must have seen a member dead before a new node
    /// takes its place (`etcd.replace_dead_after`).
    pub replace_dead_after: Duration,
    /// How often the watchers report; a member that some watcher saw within
    /// three reports counts as seen by the cluster.
    pub beat: Duration,
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
    /// Not in the cluster and it is below its size once the members that are
    /// dead to the cluster are gone: remove those, add ourselves as learner,
    /// start with state=existing.
    Join { remove: Vec<MemberInfo> },
    /// A started member with our name or peer URL is dead: remove it (and
    /// the other members dead to the cluster, which would block the add),
    /// then join.
    Replace {
        dead: MemberInfo,
        also: Vec<MemberInfo>,
    },
    /// Nothing answers and we may not bootstrap, or the cluster is still
    /// forming: look again later.
    Wait(WaitReason),
    /// The cluster answers but cannot reach quorum: change nothing.
    QuorumLost { alive: usize, voting: usize },
    /// Another live member already uses our name or address.
    Conflict(MemberInfo),
}

impl Decision {
    /// The members this decision removes before its add, in order: the
    /// dead member it replaces first, then the others dead to the cluster.
    pub fn removals(&self) -> Vec<&MemberInfo> {
        match self {
            Decision::Join { remove } => remove.iter().collect(),
            Decision::Replace { dead, also } => std::iter::once(dead).chain(also).collect(),
            _ => vec![],
        }
    }

    /// Whether the decision changes the membership (under the member lock).
    pub fn changes_membership(&self) -> bool {
        matches!(self, Decision::Join { .. } | Decision::Replace { .. })
    }
}

/// Why a node changes nothing yet and looks again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// A voter does not answer and the cluster has seen it dead for less
    /// than the grace.
    NotDeadLongEnough {
        member: Box<MemberInfo>,
        unseen: Duration,
        grace: Duration,
    },
    /// A voter does not answer and no live member reports on it.
    Unreported { member: Box<MemberInfo> },
    /// The cluster is at its size with the members that answer or may come back.
    AtSize {
        staying: usize,
        size: usize,
        me: String,
        grace: Duration,
    },
    /// No member answers and this node is not an initial member.
    NotAnInitialMember,
    /// A member with this node's name is alive to the cluster but does not
    /// answer this node.
    NameAliveElsewhere {
        member: Box<MemberInfo>,
        seen_within: Duration,
        me: String,
        grace: Duration,
    },
    /// Too few voters answer for a change, but unstarted ones may come up.
    Forming { alive: usize, voting: usize },
    /// No member answers, but some peer does not refuse the connection.
    BootstrapSilence { me: String, silence: Duration },
}

/// `member NAME (id HEX, peer URLS)`, and the hex ID etcdctl takes.
fn described(m: &MemberInfo) -> (String, String) {
    let hex_id =
        m.id.parse::<u64>()
            .map_or_else(|_| m.id.clone(), |id| format!("{id:x}"));
    let who = format!(
        "member {} (id {hex_id}, peer {})",
        m.name,
        m.peer_urls.join(",")
    );
    (who, hex_id)
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NotDeadLongEnough {
                member,
                unseen,
                grace,
            } => write!(
                f,
                "{} does not answer; the cluster has not seen it for {}s, and it counts as dead \
                 after etcd.replace_dead_after = {}s: nothing changes until then (or until it is \
                 back), since etcd adds no member while a voting member is unreachable",
                described(member).0,
                unseen.as_secs(),
                grace.as_secs()
            ),
            WaitReason::Unreported { member } => {
                let (who, hex_id) = described(member);
                write!(
                    f,
                    "{who} does not answer, and no live member reports how long it has been gone \
                     (kiln-watch.service runs on every etcd member; check `journalctl -u \
                     kiln-watch` on the live ones), so it is not counted dead; etcd adds no member \
                     while a voting member is unreachable. Boot {}'s replacement with its name or \
                     address (its agent removes the dead member), or remove it by hand: `etcdctl \
                     member remove {hex_id}`",
                    member.name
                )
            }
            WaitReason::AtSize {
                staying,
                size,
                me,
                grace,
            } => write!(
                f,
                "the cluster has {staying} members that answer or may come back, and etcd.size is \
                 {size}: {me} takes no one's place (a member counts as dead after the cluster has \
                 not seen it for etcd.replace_dead_after = {}s); raise etcd.size to grow the cluster",
                grace.as_secs()
            ),
            WaitReason::NotAnInitialMember => {
                f.write_str("no etcd member answers and this node is not an initial member")
            }
            WaitReason::NameAliveElsewhere {
                member,
                seen_within,
                me,
                grace,
            } => write!(
                f,
                "member {} at {} is alive to the cluster (seen within the last {}s) but does not \
                 answer this node: it died a moment ago, or two machines claim the name {me}; \
                 waiting until the cluster has not seen it for etcd.replace_dead_after = {}s",
                member.name,
                member.peer_urls.join(","),
                seen_within.as_secs(),
                grace.as_secs()
            ),
            WaitReason::Forming { alive, voting } => write!(
                f,
                "the cluster is not ready for a membership change ({alive} of {voting} voting \
                 members answer)"
            ),
            WaitReason::BootstrapSilence { me, silence } => write!(
                f,
                "no etcd member answers, and some peer does not refuse the connection either \
                 (slow, unreachable or not up yet); {me} bootstraps a new cluster once none has \
                 answered for {}s",
                silence.as_secs()
            ),
        }
    }
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

/// A voting member this node cannot reach, as the cluster sees it.
enum Unreachable<'a> {
    /// Dead to the cluster for at least `replace_dead_after`: may be removed.
    Dead(&'a MemberInfo),
    /// The cluster sees it answer: only this node is cut off from it.
    SeenByCluster,
    /// Not (yet) dead long enough, or nobody can tell: blocks any change.
    Blocking(WaitReason),
}

fn classify<'a>(view: &ClusterView, policy: &Policy, m: &'a MemberInfo) -> Unreachable<'a> {
    let grace = policy.replace_dead_after;
    match unseen_by_cluster(view, &m.id) {
        Some(unseen) if unseen >= grace => Unreachable::Dead(m),
        Some(unseen) if unseen <= policy.beat * 3 => Unreachable::SeenByCluster,
        Some(unseen) => Unreachable::Blocking(WaitReason::NotDeadLongEnough {
            member: Box::new(m.clone()),
            unseen,
            grace,
        }),
        None => Unreachable::Blocking(WaitReason::Unreported {
            member: Box::new(m.clone()),
        }),
    }
}

/// The unreachable voters other than `except`: those dead to the cluster,
/// or the reason one of them blocks every change.
fn dead_voters(
    view: &ClusterView,
    policy: &Policy,
    except: Option<&str>,
) -> Result<Vec<MemberInfo>, WaitReason> {
    let mut dead = Vec::new();
    let unreachable = view.members.iter().filter(|m| {
        !m.is_learner
            && m.is_started()
            && !view.alive.contains(&m.id)
            && except != Some(m.id.as_str())
    });
    for m in unreachable {
        match classify(view, policy, m) {
            Unreachable::Dead(m) => dead.push(m.clone()),
            Unreachable::SeenByCluster => {}
            Unreachable::Blocking(reason) => return Err(reason),
        }
    }
    Ok(dead)
}

/// An unlisted node: join when the cluster is below its size once the
/// members dead to the cluster are removed.
fn place(me: &Me, view: &ClusterView, policy: &Policy) -> Decision {
    let dead = match dead_voters(view, policy, None) {
        Ok(dead) => dead,
        Err(reason) => return Decision::Wait(reason),
    };
    let staying = view.members.len() - dead.len();
    if staying >= policy.size {
        return Decision::Wait(WaitReason::AtSize {
            staying,
            size: policy.size,
            me: me.name.to_owned(),
            grace: policy.replace_dead_after,
        });
    }
    Decision::Join { remove: dead }
}

pub fn decide(me: &Me, cluster: Option<&ClusterView>, policy: &Policy) -> Plan {
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
            Decision::Wait(WaitReason::NotAnInitialMember)
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
        // Named after it, on another address: the cluster must not see it.
        // It may have died a moment ago (the watchers saw it within three
        // beats), or live beyond this node's reach: wait, never remove it.
        Some(m)
            if by_peer.is_none()
                && matches!(classify(view, policy, m), Unreachable::SeenByCluster) =>
        {
            Decision::Wait(WaitReason::NameAliveElsewhere {
                member: Box::new(m.clone()),
                seen_within: policy.beat * 3,
                me: me.name.to_owned(),
                grace: policy.replace_dead_after,
            })
        }
        Some(dead) => check_quorum(view, Some(dead)).unwrap_or_else(|| {
            match dead_voters(view, policy, Some(&dead.id)) {
                Ok(also) => Decision::Replace {
                    dead: dead.clone(),
                    also,
                },
                Err(reason) => Decision::Wait(reason),
            }
        }),
        None => check_quorum(view, None).unwrap_or_else(|| place(me, view, policy)),
    };
    Plan {
        decision,
        move_aside_data,
        cluster_size,
    }
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
        return Some(Decision::Wait(WaitReason::Forming {
            alive,
            voting: voting.len(),
        }));
    }
    Some(Decision::QuorumLost {
        alive,
        voting: voting.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_node::etcd::reports::Report;

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
            reports: vec![],
        }
    }

    /// Members 1..=5, of which `alive` answer.
    fn five(alive: &[u32]) -> ClusterView {
        let mut v = view(alive, true);
        v.members
            .extend([member(4, "etcd4", false), member(5, "etcd5", false)]);
        v
    }

    /// `observer` has not seen each listed member for so many seconds (and
    /// sees every other started member).
    fn report(v: &mut ClusterView, observer: u32, unseen: &[(u32, u64)]) {
        let unseen_seconds = v
            .members
            .iter()
            .map(|m| {
                let secs = unseen
                    .iter()
                    .find(|(id, _)| id.to_string() == m.id)
                    .map_or(0, |(_, s)| *s);
                (m.id.clone(), secs)
            })
            .collect();
        v.reports.push(Report {
            observer: observer.to_string(),
            unseen_seconds,
        });
    }

    const GRACE: Duration = Duration::from_secs(12);

    fn policy(size: usize) -> Policy {
        Policy {
            size,
            replace_dead_after: GRACE,
            beat: Duration::from_secs(2),
        }
    }

    fn me(peer: u32, initial: bool) -> (String, bool) {
        (format!("https://10.77.0.1{peer}:2380"), initial)
    }

    fn run(peer: u32, name: &str, initial: bool, wal: bool, view: Option<&ClusterView>) -> Plan {
        run_at(3, peer, name, initial, wal, view)
    }

    fn run_at(
        size: usize,
        peer: u32,
        name: &str,
        initial: bool,
        wal: bool,
        view: Option<&ClusterView>,
    ) -> Plan {
        let (peer_url, initial_member) = me(peer, initial);
        let me = Me {
            name,
            peer_url: &peer_url,
            initial_member,
            has_wal: wal,
        };
        decide(&me, view, &policy(size))
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
                dead: member(2, "etcd2", false),
                also: vec![]
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
    fn removed_member_with_old_data_moves_it_aside_and_joins_below_size_only() {
        let mut v = view(&[1, 2, 3], true);
        v.members.retain(|m| m.id != "3");
        v.members.push(member(4, "etcd4", false));
        v.alive.push("4".into());
        let plan = run_at(4, 3, "etcd3", true, true, Some(&v));
        assert_eq!(
            plan,
            Plan {
                decision: Decision::Join { remove: vec![] },
                move_aside_data: true,
                cluster_size: 3
            }
        );
        let Decision::Wait(why) = run(3, "etcd3", true, true, Some(&v)).decision else {
            panic!("a cluster at its size takes no one in");
        };
        assert!(
            matches!(
                why,
                WaitReason::AtSize {
                    staying: 3,
                    size: 3,
                    ..
                }
            ),
            "{why}"
        );
    }

    #[test]
    fn unlisted_node_waits_until_the_cluster_has_seen_a_member_dead_long_enough() {
        let mut v = view(&[1, 3], true);
        v.members[1].id = "1234".into();
        let Decision::Wait(reason) = run(9, "etcd9", false, false, Some(&v)).decision else {
            panic!("a member nobody reports on must block the add");
        };
        assert!(
            matches!(&reason, WaitReason::Unreported { member } if member.name == "etcd2"),
            "{reason}"
        );
        let said = reason.to_string();
        assert!(said.contains("member etcd2 (id 4d2"), "{said}");
        assert!(said.contains("etcdctl member remove 4d2"), "{said}");

        report(&mut v, 1, &[(1234, 8)]);
        report(&mut v, 3, &[(1234, 9)]);
        let Decision::Wait(reason) = run(9, "etcd9", false, false, Some(&v)).decision else {
            panic!("dead for 8 s is not dead for 12 s");
        };
        assert!(
            matches!(
                &reason,
                WaitReason::NotDeadLongEnough { member, unseen, .. }
                    if member.name == "etcd2" && unseen.as_secs() == 8
            ),
            "{reason}"
        );

        v.reports.clear();
        report(&mut v, 1, &[(1234, 13)]);
        report(&mut v, 3, &[(1234, 40)]);
        let Decision::Join { remove } = run(9, "etcd9", false, false, Some(&v)).decision else {
            panic!("dead to the cluster for 13 s: its place is free");
        };
        assert_eq!(
            remove.iter().map(|m| &m.name).collect::<Vec<_>>(),
            ["etcd2"]
        );
    }

    #[test]
    fn a_member_only_the_new_node_cannot_reach_is_never_removed() {
        let mut v = view(&[1, 3], true);
        report(&mut v, 1, &[(2, 40)]);
        report(&mut v, 3, &[]);
        let Decision::Wait(reason) = run(9, "etcd9", false, false, Some(&v)).decision else {
            panic!("etcd3 still sees etcd2");
        };
        assert!(
            matches!(reason, WaitReason::AtSize { size: 3, .. }),
            "{reason}"
        );
        // Named after it: it just died, or a second machine claims etcd2.
        let Decision::Wait(reason) = run(9, "etcd2", false, false, Some(&v)).decision else {
            panic!("the cluster still sees etcd2");
        };
        assert!(
            matches!(&reason, WaitReason::NameAliveElsewhere { member, .. } if member.name == "etcd2"),
            "{reason}"
        );
        // A live voter that has not reported yet: nobody can tell.
        let mut quiet = view(&[1, 3], true);
        report(&mut quiet, 1, &[(2, 40)]);
        assert_eq!(unseen_by_cluster(&quiet, "2"), None);
        report(&mut quiet, 3, &[(2, 30)]);
        assert_eq!(
            unseen_by_cluster(&quiet, "2"),
            Some(Duration::from_secs(30))
        );
        report(&mut quiet, 2, &[]);
        assert_eq!(unseen_by_cluster(&quiet, "2"), Some(Duration::ZERO));
    }

    #[test]
    fn a_full_cluster_with_every_member_answering_takes_no_one() {
        let v = view(&[1, 2, 3], true);
        assert!(matches!(
            run(9, "etcd9", false, false, Some(&v)).decision,
            Decision::Wait(_)
        ));
        assert_eq!(
            run_at(5, 9, "etcd9", false, false, Some(&v)).decision,
            Decision::Join { remove: vec![] }
        );
    }

    #[test]
    fn every_member_dead_to_the_cluster_goes_before_the_add() {
        let mut v = five(&[1, 4, 5]);
        for observer in [1, 4, 5] {
            report(&mut v, observer, &[(2, 20), (3, 30)]);
        }
        assert_eq!(
            run_at(5, 9, "etcd9", false, false, Some(&v)).decision,
            Decision::Join {
                remove: vec![member(2, "etcd2", false), member(3, "etcd3", false)]
            }
        );
        // The same-address replacement of etcd2 removes etcd3 too ...
        assert_eq!(
            run_at(5, 2, "etcd2", true, false, Some(&v)).decision,
            Decision::Replace {
                dead: member(2, "etcd2", false),
                also: vec![member(3, "etcd3", false)]
            }
        );
        // ... and changes nothing while etcd3 is not dead long enough.
        v.reports.clear();
        for observer in [1, 4, 5] {
            report(&mut v, observer, &[(2, 20), (3, 8)]);
        }
        assert!(matches!(
            run_at(5, 2, "etcd2", true, false, Some(&v)).decision,
            Decision::Wait(WaitReason::NotDeadLongEnough { member, .. }) if member.name == "etcd3"
        ));
    }

    #[test]
    fn live_member_with_my_name_is_a_conflict() {
        let plan = run(9, "etcd1", false, false, Some(&view(&[1, 2, 3], true)));
        assert!(matches!(plan.decision, Decision::Conflict(_)));
    }
}
