//! The cluster's own view of which etcd members are dead: what each
//! member's watcher (kiln-watch) publishes, how often, and how those reports
//! add up. The agent decides membership from it; `kiln health` shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::MemberInfo;
use super::kv::KeyValue;

/// What one watcher publishes at `layout::keys::watch_report(cluster, its ID)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting member's ID (decimal, as the member list has it).
    pub observer: String,
    /// Member ID -> whole seconds since the observer last saw it answer
    /// (or, when it never did, since the observer first saw it listed: a
    /// member that just joined is not dead for having joined).
    pub unseen_seconds: BTreeMap<String, u64>,
}

/// Looks per grace period (`etcd.replace_dead_after`).
pub const BEATS_PER_GRACE: u32 = 6;
/// The watchers' shortest and longest beat.
pub const SHORTEST_BEAT: Duration = Duration::from_secs(1);
const LONGEST_BEAT: Duration = Duration::from_secs(10);

/// [`BEATS_PER_GRACE`] looks per grace period, within the beat bounds.
pub fn beat(replace_dead_after: Duration) -> Duration {
    (replace_dead_after / BEATS_PER_GRACE).clamp(SHORTEST_BEAT, LONGEST_BEAT)
}

/// The shortest grace that tells a dead member from a slow one: a full set
/// of beats at the shortest beat, twice over.
pub const MIN_REPLACE_DEAD_AFTER: Duration =
    Duration::from_secs(SHORTEST_BEAT.as_secs() * BEATS_PER_GRACE as u64 * 2);

/// The reports a read of [`crate::layout::keys::watch_reports`] found that
/// count, and the keys that were left out, each with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReports {
    pub reports: Vec<Report>,
    pub ignored: Vec<(String, String)>,
}

/// Sorts the keys a prefix read of `prefix` found into reports that count
/// and keys left out. A report counts only as its observer's own word: under
/// `prefix` + the observer's ID, with a body whose `observer` is that ID,
/// attached to a lease. A key on a lease exists only while its lease lives:
/// etcd refuses to attach a key to a lease it does not hold and deletes a
/// lease's keys in the same backend transaction that revokes it
/// (server/lease/lessor.go, `Attach` and `Revoke`; an expired lease is
/// revoked by the leader's next check, every 500 ms), so a nonzero `lease`
/// in the range answer is a live one. A key without one outlives its writer
/// and would keep a dead member "seen". A body kiln cannot read (another
/// version's) is left out too, which only makes members less dead. What
/// this cannot rule out is a well-formed report on a live lease from any
/// holder of an etcd client certificate: etcd does not tell a reader who
/// wrote a key.
pub fn parse_reports(prefix: &str, kvs: impl IntoIterator<Item = KeyValue>) -> ReadReports {
    let mut read = ReadReports::default();
    for kv in kvs {
        match counted(prefix, &kv) {
            Ok(report) => read.reports.push(report),
            Err(why) => read.ignored.push((kv.key, why)),
        }
    }
    read
}

fn counted(prefix: &str, kv: &KeyValue) -> Result<Report, String> {
    let id = kv
        .key
        .strip_prefix(prefix)
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| format!("it is not {prefix}<member ID>"))?;
    if kv.lease == 0 {
        return Err("it is on no lease, so it outlives its writer".into());
    }
    let report: Report =
        serde_json::from_str(&kv.value).map_err(|e| format!("its body is no report: {e}"))?;
    if report.observer != id {
        return Err(format!(
            "its body says observer {:?}, its key names {id:?}",
            report.observer
        ));
    }
    Ok(report)
}

impl ReadReports {
    /// The reports that count, after a warning for each ignored key that
    /// this process has not warned about before (a watcher's loop or a
    /// waiting agent reads every beat; one line per key is enough).
    pub fn warn_ignored(self) -> Vec<Report> {
        static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        for (key, why) in &self.ignored {
            if warned.insert(key.clone()) {
                tracing::warn!(key = %key, "ignoring the watcher report under {key}: {why}");
            }
        }
        self.reports
    }
}

/// What the node saw of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub members: Vec<MemberInfo>,
    /// IDs of members that answered a status call.
    pub alive: Vec<String>,
    /// Whether some answering member knows a leader.
    pub has_leader: bool,
    /// What the members' watchers publish: whom they have not seen for how long.
    pub reports: Vec<Report>,
}

/// How long the cluster has not seen member `id` answer: the shortest time
/// any reporting voter has not seen it. `None` when nobody can tell: no
/// voter reports, or a voter that answers has not reported on it (its
/// watcher is not running yet). A member that reports itself is alive: its
/// report went through the cluster's quorum.
pub fn unseen_by_cluster(view: &ClusterView, id: &str) -> Option<Duration> {
    if view.reports.iter().any(|r| r.observer == id) {
        return Some(Duration::ZERO);
    }
    let mut shortest: Option<u64> = None;
    let voters = view
        .members
        .iter()
        .filter(|m| !m.is_learner && m.is_started() && m.id != id);
    for voter in voters {
        match view.reports.iter().find(|r| r.observer == voter.id) {
            Some(report) => {
                let seconds = *report.unseen_seconds.get(id)?;
                shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
            }
            None if view.alive.contains(&voter.id) => return None,
            None => {}
        }
    }
    shortest.map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_grace_is_two_rounds_of_the_shortest_beat() {
        assert_eq!(MIN_REPLACE_DEAD_AFTER, Duration::from_secs(12));
        assert_eq!(beat(MIN_REPLACE_DEAD_AFTER), Duration::from_secs(2));
        assert_eq!(beat(MIN_REPLACE_DEAD_AFTER / 2), SHORTEST_BEAT);
    }

    fn kv(key: &str, value: &str, lease: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            lease,
            create_revision: 0,
        }
    }

    fn body(observer: &str, unseen: &[(&str, u64)]) -> String {
        let report = Report {
            observer: observer.into(),
            unseen_seconds: unseen.iter().map(|(id, s)| ((*id).into(), *s)).collect(),
        };
        serde_json::to_string(&report).unwrap()
    }

    const PREFIX: &str = "/kiln/c/etcd/unseen/";

    #[test]
    fn a_report_counts_only_under_its_observers_key_on_a_lease() {
        let own = body("1", &[("1", 0), ("2", 40)]);
        let read = parse_reports(
            PREFIX,
            [
                kv(&format!("{PREFIX}1"), &own, 7),
                // Another observer's body under a key that sorts first.
                kv(&format!("{PREFIX}0"), &body("3", &[("2", 999)]), 7),
                // A dead member's own claim, left without a lease.
                kv(&format!("{PREFIX}2"), &body("2", &[("2", 0)]), 0),
                kv(&format!("{PREFIX}x/3"), &body("3", &[]), 7),
                kv(PREFIX, &body("", &[]), 7),
                kv(&format!("{PREFIX}4"), "{\"observer\": 4}", 7),
            ],
        );
        assert_eq!(read.reports.len(), 1);
        assert_eq!(serde_json::to_string(&read.reports[0]).unwrap(), own);
        let ignored: Vec<&str> = read.ignored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "/kiln/c/etcd/unseen/0",
                "/kiln/c/etcd/unseen/2",
                "/kiln/c/etcd/unseen/x/3",
                "/kiln/c/etcd/unseen/",
                "/kiln/c/etcd/unseen/4",
            ]
        );
        assert!(
            read.ignored[0].1.contains("observer \"3\""),
            "{:?}",
            read.ignored
        );
        assert!(read.ignored[1].1.contains("no lease"), "{:?}", read.ignored);
    }

    #[test]
    fn forged_reports_change_no_ones_deadness() {
        let member = |id: &str| MemberInfo {
            id: id.into(),
            name: format!("etcd{id}"),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: vec![format!("https://10.0.0.{id}:2379")],
            is_learner: false,
        };
        let honest = [
            kv(
                &format!("{PREFIX}1"),
                &body("1", &[("1", 0), ("2", 50), ("3", 0)]),
                7,
            ),
            kv(
                &format!("{PREFIX}3"),
                &body("3", &[("1", 0), ("2", 60), ("3", 0)]),
                8,
            ),
        ];
        let forged = [
            // Voters 1's and 3's words under keys that sort first: member 2
            // dead for long, before its grace is up.
            kv(&format!("{PREFIX}0"), &body("1", &[("2", 999)]), 9),
            kv(&format!("{PREFIX}00"), &body("3", &[("2", 999)]), 9),
            // Keeps dead member 2 "alive" by its own word, on no lease.
            kv(&format!("{PREFIX}2"), &body("2", &[("2", 0)]), 0),
        ];
        let view = |kvs: Vec<KeyValue>| ClusterView {
            members: ["1", "2", "3"].map(member).to_vec(),
            alive: vec!["1".into(), "3".into()],
            has_leader: true,
            reports: parse_reports(PREFIX, kvs).reports,
        };
        let clean = view(honest.to_vec());
        let dirty = view(forged.iter().chain(&honest).cloned().collect());
        for id in ["1", "2", "3"] {
            assert_eq!(
                unseen_by_cluster(&dirty, id),
                unseen_by_cluster(&clean, id),
                "{id}"
            );
        }
        assert_eq!(
            unseen_by_cluster(&dirty, "2"),
            Some(Duration::from_secs(50))
        );
        assert_eq!(unseen_by_cluster(&dirty, "3"), Some(Duration::ZERO));
    }
}
