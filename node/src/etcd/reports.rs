//! The cluster's own view of which etcd members are dead: what each
//! member's watcher (kiln-watch) publishes, how often, and how those reports
//! add up. The agent decides membership from it; `kiln health` shows it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::MemberInfo;

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

/// Parses the reports a prefix read found; a report kiln cannot read
/// (another version's) is left out, which only makes members less dead.
pub fn parse_reports(values: impl IntoIterator<Item = String>) -> Vec<Report> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_str(&v).ok())
        .collect()
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

    #[test]
    fn reports_round_trip_and_unreadable_ones_are_left_out() {
        let report = Report {
            observer: "1".into(),
            unseen_seconds: BTreeMap::from([("1".into(), 0), ("2".into(), 40)]),
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(
            parse_reports([text, "{\"observer\": 3}".to_owned()]),
            vec![report]
        );
    }
}
