//! `kiln health`: the operator's view of the etcd cluster, from the secrets
//! folder's client certificate and the profile's members: every member, its
//! state, and whether the cluster as a whole is healthy. With `--wait` it is
//! the gate a pipeline runs between two node replacements.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kiln_firstboot::etcd::client::{EtcdClient, MemberInfo};
use kiln_firstboot::node_config::url_for;
use serde_json::json;

use crate::node_toml::etcd_members;
use crate::profile::LoadedProfile;

/// The operator's etcd client, from the secrets folder of `kiln build`.
pub fn operator_client(secrets: &Path) -> Result<EtcdClient> {
    let file = |name: &str| secrets.join("etcd").join(name);
    EtcdClient::new(
        &file("ca.crt"),
        &file("kiln-agent.crt"),
        &file("kiln-agent.key"),
    )
    .with_context(|| {
        format!(
            "loading the etcd client certificate from {} (the secrets folder of `kiln build`; \
             pass --secrets DIR)",
            secrets.display()
        )
    })
}

/// `endpoints`, or the client URLs of the profile's members when empty.
pub fn endpoints_or_listed(loaded: &LoadedProfile, endpoints: Vec<String>) -> Vec<String> {
    if !endpoints.is_empty() {
        return endpoints;
    }
    let port = loaded.profile.etcd.client_port;
    etcd_members(&loaded.profile)
        .iter()
        .map(|m| url_for(m.ip, port))
        .collect()
}

/// One member as the cluster reports it.
pub struct MemberHealth {
    pub name: String,
    pub id: String,
    pub client_url: Option<String>,
    pub peer_urls: Vec<String>,
    pub state: &'static str,
    pub healthy: bool,
}

/// What one look at the cluster found.
pub struct ClusterHealth {
    pub members: Vec<MemberHealth>,
    /// Why the cluster is not healthy; `None` when it is.
    pub problem: Option<String>,
}

/// Where to ask and with which certificate.
pub struct HealthCheck {
    client: EtcdClient,
    endpoints: Vec<String>,
    /// How many members the profile lists: fewer means a replacement is
    /// half done (the dead member removed, the new one not yet added).
    listed: usize,
}

impl HealthCheck {
    /// `endpoints` overrides the profile's members' client URLs.
    pub fn new(loaded: &LoadedProfile, secrets: &Path, endpoints: Vec<String>) -> Result<Self> {
        Ok(HealthCheck {
            client: operator_client(secrets)?,
            endpoints: endpoints_or_listed(loaded, endpoints),
            listed: etcd_members(&loaded.profile).len(),
        })
    }

    /// One look: the member list from the first endpoint that answers, then
    /// each member's own health.
    pub fn check(&self) -> ClusterHealth {
        let mut errors = Vec::new();
        let list = self.endpoints.iter().find_map(|e| {
            self.client
                .member_list(e)
                .map_err(|err| errors.push(format!("{e}: {err:#}")))
                .ok()
        });
        let Some(list) = list else {
            return ClusterHealth {
                members: vec![],
                problem: Some(format!("no etcd endpoint answered: {}", errors.join("; "))),
            };
        };
        let members: Vec<MemberHealth> = list.iter().map(|m| self.member(m)).collect();
        let mut bad: Vec<String> = members
            .iter()
            .filter(|m| m.state != "voter" || !m.healthy)
            .map(|m| format!("{} is {}", display_name(m), describe(m)))
            .collect();
        if members.len() < self.listed {
            bad.push(format!(
                "the cluster has {} members, the profile lists {}",
                members.len(),
                self.listed
            ));
        }
        let problem = (!bad.is_empty()).then(|| bad.join(", "));
        ClusterHealth { members, problem }
    }

    fn member(&self, m: &MemberInfo) -> MemberHealth {
        let client_url = m.client_urls.first().cloned();
        let healthy = client_url
            .as_deref()
            .is_some_and(|url| self.client.healthy(url).unwrap_or(false));
        let state = match (m.is_started(), m.is_learner) {
            (false, _) => "unstarted",
            (true, true) => "learner",
            (true, false) => "voter",
        };
        MemberHealth {
            name: m.name.clone(),
            id: m.id.clone(),
            client_url,
            peer_urls: m.peer_urls.clone(),
            state,
            healthy,
        }
    }

    /// Checks until healthy or `wait` has passed (one check without it).
    pub fn wait(&self, wait: Option<Duration>) -> ClusterHealth {
        let start = Instant::now();
        loop {
            let health = self.check();
            let waited_out = wait.is_none_or(|w| start.elapsed() >= w);
            if health.problem.is_none() || waited_out {
                return health;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn display_name(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        format!("member {}", m.id)
    } else {
        m.name.clone()
    }
}

fn describe(m: &MemberHealth) -> &'static str {
    match (m.state, m.healthy) {
        ("unstarted", _) => "added but not started",
        ("learner", _) => "a learner, not yet promoted",
        (_, false) => "not healthy (no answer or no quorum)",
        _ => "healthy",
    }
}

/// Prints the report; fails with the reason when the cluster is unhealthy.
pub fn report(health: &ClusterHealth, as_json: bool, waited: Option<Duration>) -> Result<()> {
    if as_json {
        let members: Vec<_> = health
            .members
            .iter()
            .map(|m| {
                json!({"name": m.name, "id": m.id, "client_url": m.client_url,
                       "peer_urls": m.peer_urls, "state": m.state, "healthy": m.healthy})
            })
            .collect();
        let value = json!({"healthy": health.problem.is_none(), "problem": health.problem,
                           "members": members});
        println!("{value:#}");
    } else {
        for m in &health.members {
            println!(
                "{:<12} {:<24} {:<10} {}",
                display_name(m),
                m.client_url.as_deref().unwrap_or("-"),
                m.state,
                describe(m)
            );
        }
    }
    match (&health.problem, waited) {
        (None, _) => {
            if !as_json {
                println!(
                    "cluster healthy: {} members started and voting",
                    health.members.len()
                );
            }
            Ok(())
        }
        (Some(problem), Some(w)) => bail!("cluster not healthy after {}s: {problem}", w.as_secs()),
        (Some(problem), None) => bail!("cluster not healthy: {problem}"),
    }
}
