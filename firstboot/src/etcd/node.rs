//! This node as an etcd member: its identity, URLs and gateway client, and
//! how it looks at the cluster (probing every candidate in parallel).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::membership::{Me, Policy};
use super::silence::{forming, Probe};
use crate::backoff::{retry_steady, Attempt};
use crate::context::NodeContext;
use crate::discovery::Sources;
use kiln_node::etcd::client::{EtcdClient, EtcdRefused, MemberInfo};
use kiln_node::etcd::reports::{beat, parse_reports, ClusterView, Report};
use kiln_node::layout;
use kiln_node::node_config::url_for;

/// A host that is up refuses a connection at once; one that does not
/// answer in this long counts as "may be there".
const REFUSAL_PROBE: Duration = Duration::from_secs(1);
/// etcd answers "not now" to a learner's promotion until it has caught up,
/// typically well within a second of its start: membership calls are retried
/// at this pace for `STEADY_CALLS_FOR`, so the learner is promoted as soon
/// as etcd allows, and back off after that.
const CALL_PACE: Duration = Duration::from_millis(4);
const STEADY_CALLS_FOR: Duration = Duration::from_secs(2);

pub struct EtcdMember<'a> {
    pub ctx: &'a NodeContext,
    pub peer_url: String,
    pub client_url: String,
    pub client: EtcdClient,
    sources: Sources,
}

impl<'a> EtcdMember<'a> {
    pub fn new(ctx: &'a NodeContext) -> Result<EtcdMember<'a>> {
        let etcd = &ctx.config.etcd;
        Ok(EtcdMember {
            peer_url: url_for(ctx.me.ip, etcd.peer_port),
            client_url: url_for(ctx.me.ip, etcd.client_port),
            client: EtcdClient::for_agent(&ctx.root)?,
            sources: Sources::new(&ctx.config, &ctx.root),
            ctx,
        })
    }

    /// The data dir on this root.
    pub fn data_dir(&self) -> PathBuf {
        self.ctx.path(&self.ctx.config.etcd.data_dir)
    }

    pub fn has_wal(&self) -> bool {
        std::fs::read_dir(self.data_dir().join("member/wal"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    pub fn as_member(&self) -> Me<'_> {
        Me {
            name: &self.ctx.me.name,
            peer_url: &self.peer_url,
            initial_member: self.ctx.me.is_initial_member(),
            has_wal: self.has_wal(),
        }
    }

    /// Asks the discovered peers for the member list, then every member for
    /// its status while the peer that answered gives the watchers' reports.
    /// `None` when no peer answers at all.
    pub fn observe(&self) -> Option<ClusterView> {
        let (answered, members) = self.first_member_list()?;
        let (statuses, reports) = std::thread::scope(|s| {
            let reports = s.spawn(|| self.reports(&answered));
            (self.statuses(&members), reports.join().ok().flatten())
        });
        // A peer that lists the members but serves no reads (a learner):
        // the reports come from a member that answered its status.
        let reports = reports
            .or_else(|| {
                statuses
                    .iter()
                    .filter_map(|(id, _)| members.iter().find(|m| &m.id == id))
                    .find_map(|m| self.reports(m.client_urls.first()?))
            })
            .unwrap_or_default();
        Some(ClusterView {
            alive: statuses.iter().map(|(id, _)| id.clone()).collect(),
            has_leader: statuses.iter().any(|(_, leader)| *leader),
            members,
            reports,
        })
    }

    /// The members that answer a status call (all asked at once), each
    /// with whether it knows a leader.
    pub fn statuses(&self, members: &[MemberInfo]) -> Vec<(String, bool)> {
        std::thread::scope(|s| {
            let probes: Vec<_> = members
                .iter()
                .filter_map(|m| Some((m.id.clone(), m.client_urls.first()?.clone())))
                .map(|(id, url)| s.spawn(move || (id, self.client.status(&url))))
                .collect();
            probes
                .into_iter()
                .filter_map(|p| p.join().ok())
                .filter_map(|(id, status)| Some((id, status.ok()?.has_leader())))
                .collect()
        })
    }

    /// The watchers' reports, read from the member at `url`.
    fn reports(&self, url: &str) -> Option<Vec<Report>> {
        let prefix = layout::keys::watch_reports(&self.ctx.config.cluster);
        let found = self.client.range(url, &prefix, true, 0).ok()?;
        Some(parse_reports(&prefix, found.kvs).warn_ignored())
    }

    /// The profile's membership rules, as the decision takes them.
    pub fn policy(&self) -> Policy {
        let grace = Duration::from_secs(self.ctx.config.etcd.replace_dead_after_seconds);
        Policy {
            size: self.ctx.config.etcd_size(),
            replace_dead_after: grace,
            beat: beat(grace),
        }
    }

    /// The member list from the first discovered peer that answers (all are
    /// asked at once: a dead peer may take a whole timeout to fail).
    pub fn members_now(&self) -> Option<Vec<MemberInfo>> {
        self.first_member_list().map(|(_, members)| members)
    }

    /// [`EtcdMember::members_now`], with the client URL of the peer that answered.
    fn first_member_list(&self) -> Option<(String, Vec<MemberInfo>)> {
        let (answers, first) = std::sync::mpsc::channel();
        for url in self.sources.candidate_urls(&self.client_url) {
            let (answers, client) = (answers.clone(), self.client.clone());
            // Detached: the first answer wins, slow probes end on their timeout.
            std::thread::spawn(move || {
                let list = client.member_list(&url);
                answers.send(list.map(|members| (url, members)))
            });
        }
        drop(answers);
        first.iter().find_map(Result::ok)
    }

    /// Whether the cluster is forming ([`forming`]): every other listed
    /// member's host, and every discovered candidate's, refuses the
    /// connection on the client port. All are probed at once; the
    /// candidates are as many as discovery gives at most
    /// ([`crate::discovery::MAX_CANDIDATES`]).
    pub fn cluster_is_forming(&self) -> bool {
        let listed: Vec<String> = self
            .ctx
            .config
            .etcd_client_urls()
            .into_iter()
            .filter(|url| *url != self.client_url)
            .collect();
        let discovered: Vec<String> = self
            .sources
            .candidate_urls(&self.client_url)
            .into_iter()
            .filter(|url| !listed.contains(url))
            .collect();
        let (listed, discovered) = std::thread::scope(|s| {
            let listed = s.spawn(|| probe_all(&listed));
            (listed.join().unwrap_or_default(), probe_all(&discovered))
        });
        forming(&listed, &discovered)
    }

    /// Client URLs of the started voting members: where membership calls go.
    pub fn voting_endpoints(&self, members: &[MemberInfo]) -> Vec<String> {
        members
            .iter()
            .filter(|m| !m.is_learner && m.client_url_differs(&self.client_url))
            .flat_map(|m| m.client_urls.iter().cloned())
            .collect()
    }

    /// Runs a membership call against the cluster until it succeeds, retrying
    /// the answers etcd gives while a change is not yet safe.
    ///
    /// `call` gets the member list and an endpoint, so it can first check
    /// whether an earlier, interrupted attempt already took effect. The
    /// list is `known` (taken under the membership lock) for the first
    /// attempt, and asked for again after any attempt that did not get
    /// etcd's answer: only a call that may have happened changes it.
    pub fn cluster_call<T>(
        &self,
        what: &str,
        mut known: Option<Vec<MemberInfo>>,
        mut call: impl FnMut(&[MemberInfo], &str) -> Result<T>,
    ) -> Result<T> {
        let outcome = retry_steady(CALL_PACE, STEADY_CALLS_FOR, what, self.ctx.timeout, || {
            let Some(members) = known.take().or_else(|| self.members_now()) else {
                return Attempt::Retry("no etcd member answers".into());
            };
            let mut last = "no voting member to ask".to_owned();
            // Some endpoint answered "not now", and none left the call in doubt.
            let (mut answered, mut in_doubt) = (false, false);
            for endpoint in self.voting_endpoints(&members) {
                match call(&members, &endpoint) {
                    Ok(value) => return Attempt::Done(Ok(value)),
                    Err(e) => match e.downcast_ref::<EtcdRefused>() {
                        Some(refused) if !is_transient(&refused.message) => {
                            return Attempt::Done(Err(e.context(format!("etcd refused to {what}"))))
                        }
                        Some(_) => {
                            // "Not now" comes from the leader whichever
                            // member forwards the call: asking the next
                            // one at once would only hear it again.
                            answered = true;
                            last = format!("{e:#}");
                            break;
                        }
                        None => {
                            in_doubt = true;
                            last = format!("{e:#}");
                        }
                    },
                }
            }
            if answered && !in_doubt {
                known = Some(members);
            }
            Attempt::Retry(last)
        })?;
        outcome
    }
}

/// Probes every URL's host at once (one thread each; callers bound the list).
fn probe_all(urls: &[String]) -> Vec<Probe> {
    std::thread::scope(|s| {
        let probes: Vec<_> = urls.iter().map(|url| s.spawn(|| probe(url))).collect();
        probes
            .into_iter()
            .map(|p| p.join().unwrap_or(Probe::MayBeThere))
            .collect()
    })
}

/// Whether the host behind a client URL refuses a connection to it: a name
/// (not an address) may be anything, so it may be there.
fn probe(url: &str) -> Probe {
    let refused = url
        .strip_prefix("https://")
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .is_some_and(|addr| {
            TcpStream::connect_timeout(&addr, REFUSAL_PROBE)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        });
    if refused {
        Probe::Refused
    } else {
        Probe::MayBeThere
    }
}

/// etcd's answers that mean "not now" rather than "no".
fn is_transient(message: &str) -> bool {
    [
        "unhealthy cluster",
        "too many learner",
        "in sync with leader",
        "not supported for learner",
        "leader changed",
        "no leader",
        "timed out",
        "request timed out",
    ]
    .iter()
    .any(|m| message.contains(m))
}
