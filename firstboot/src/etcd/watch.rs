//! `kiln-firstboot watch` (kiln-watch.service on every etcd member): the
//! cluster's own view of which members are dead.
//!
//! Every beat the watcher asks each started member for its status and
//! publishes through its own member, on a lease that ends three beats after
//! its last report, for how long it has not seen each member answer. A
//! member is dead to the cluster only when every reporting voter says so
//! ([`kiln_node::etcd::reports::unseen_by_cluster`]); a new node that cannot reach
//! a member itself never makes it dead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::node::EtcdMember;
use crate::backoff::{every_beat, Beat};
use kiln_node::etcd::client::MemberInfo;
use kiln_node::etcd::kv::{KeptLease, KvCluster};
use kiln_node::etcd::reports::{beat, Report};
use kiln_node::layout;

/// A report dies three beats after it was written.
fn report_ttl(beat: Duration) -> i64 {
    i64::try_from(beat.as_secs() * 3).unwrap_or(30).max(3)
}

/// The watcher's memory between beats.
struct Watcher<'a> {
    node: &'a EtcdMember<'a>,
    /// The local member only: a report proves this member reaches quorum.
    local: KvCluster,
    /// When each member was first seen listed, and last seen answering.
    first_listed: HashMap<String, Instant>,
    last_seen: HashMap<String, Instant>,
    lease: KeptLease,
}

/// Runs until stopped: one report per beat. Failed beats are logged when
/// their reason changes, and the next beat tries again.
pub fn run(node: &EtcdMember) -> Result<()> {
    let beat = beat(node.policy().replace_dead_after);
    let mut watcher = Watcher {
        node,
        local: KvCluster {
            client: node.client.clone(),
            endpoints: vec![node.client_url.clone()],
        },
        first_listed: HashMap::new(),
        last_seen: HashMap::new(),
        lease: KeptLease::new(report_ttl(beat), "report's"),
    };
    tracing::info!(every = ?beat, "reporting which etcd members answer");
    every_beat(beat, "reporting again", "no report this beat", || {
        match watcher.report() {
            Ok(()) => Ok(Beat::Done),
            // A local member that does not answer may have been removed.
            Err(_) if super::removed::leave_if_removed(node)? => Ok(Beat::Stop),
            Err(e) => Ok(Beat::Missed(e)),
        }
    })
}

impl Watcher<'_> {
    fn report(&mut self) -> Result<()> {
        let node = self.node;
        let members = node
            .client
            .member_list(&node.client_url)
            .context("asking the local etcd member for the member list")?;
        let me = members
            .iter()
            .find(|m| m.client_urls.contains(&node.client_url))
            .context("this node is not a started member of the cluster yet")?;
        let now = Instant::now();
        for m in &members {
            self.first_listed.entry(m.id.clone()).or_insert(now);
        }
        for (id, _) in node.statuses(&members) {
            self.last_seen.insert(id, now);
        }
        let listed = |id: &String| members.iter().any(|m| &m.id == id);
        self.first_listed.retain(|id, _| listed(id));
        self.last_seen.retain(|id, _| listed(id));
        let report = Report {
            observer: me.id.clone(),
            unseen_seconds: members
                .iter()
                .filter(|m| m.is_started())
                .map(|m: &MemberInfo| {
                    let seen = self
                        .last_seen
                        .get(&m.id)
                        .unwrap_or(&self.first_listed[&m.id]);
                    (m.id.clone(), now.duration_since(*seen).as_secs())
                })
                .collect(),
        };
        let lease = self.lease.renew(&self.local)?;
        let key = layout::keys::watch_report(&node.ctx.config.cluster, &me.id);
        let value = serde_json::to_string(&report).expect("a report always serializes");
        self.local.call("publish this member's report", |c, ep| {
            c.put(ep, &key, &value, lease)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_a_sixth_of_the_grace_within_bounds() {
        assert_eq!(beat(Duration::from_secs(120)), Duration::from_secs(10));
        assert_eq!(beat(Duration::from_secs(12)), Duration::from_secs(2));
        assert_eq!(beat(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(report_ttl(Duration::from_secs(2)), 6);
        assert_eq!(report_ttl(Duration::from_secs(1)), 3);
    }
}
