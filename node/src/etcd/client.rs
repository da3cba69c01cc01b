//! etcd's v3 JSON gateway over mutual TLS: the few calls membership needs.
//! Member IDs travel as decimal strings, as the gateway prints them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use ureq::http::StatusCode;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::versions::Version;

/// Each call gets this long; callers retry with backoff on their own budget.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Peers are on the same network: a dead one should not cost a whole call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemberInfo {
    #[serde(rename = "ID")]
    pub id: String,
    /// Empty for a member added at runtime until it starts; initial members
    /// have their name from `--initial-cluster` even before.
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Empty until the member has started and published itself.
    #[serde(default, rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(default, rename = "isLearner")]
    pub is_learner: bool,
}

impl MemberInfo {
    /// Whether this member does not advertise `own` as a client URL.
    pub fn client_url_differs(&self, own: &str) -> bool {
        !self.client_urls.iter().any(|u| u == own)
    }

    pub fn is_started(&self) -> bool {
        !self.client_urls.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// `"0"` while the member knows no leader.
    #[serde(default)]
    pub leader: String,
    #[serde(default, rename = "isLearner")]
    pub is_learner: bool,
    pub header: StatusHeader,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusHeader {
    pub member_id: String,
}

impl Status {
    pub fn has_leader(&self) -> bool {
        !self.leader.is_empty() && self.leader != "0"
    }
}

/// An error etcd answered with (as opposed to not answering at all).
#[derive(Debug, thiserror::Error)]
#[error("{url} answered: {message}")]
pub struct EtcdRefused {
    pub url: String,
    pub message: String,
}

/// A gateway client presenting the agent's client certificate.
#[derive(Clone)]
pub struct EtcdClient {
    pub(super) agent: ureq::Agent,
}

impl EtcdClient {
    /// The agent's own client: the etcd CA and the agent's client
    /// certificate baked into the node under `root`.
    pub fn for_agent(root: &Path) -> Result<EtcdClient> {
        use crate::layout::{pki, under_root};
        EtcdClient::new(
            &under_root(root, &pki::etcd_ca_cert()),
            &under_root(root, &pki::etcd_agent_client_cert()),
            &under_root(root, &pki::etcd_agent_client_key()),
        )
        .context("loading the agent's etcd client certificate baked into the image")
    }

    /// Loads the etcd CA and the agent's client certificate and key.
    pub fn new(ca: &Path, cert: &Path, key: &Path) -> Result<EtcdClient> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let ca_pem = read(ca)?;
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let ca_cert = Certificate::from_pem(&ca_pem)
            .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
        let client_cert = Certificate::from_pem(&cert_pem)
            .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
        let private_key = PrivateKey::from_pem(&key_pem)
            .with_context(|| format!("{} is not a PEM private key", key.display()))?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(vec![ca_cert.to_owned()])))
            .client_cert(Some(ClientCert::new_with_certs(
                &[client_cert.to_owned()],
                private_key.to_owned(),
            )))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(CALL_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .build();
        Ok(EtcdClient {
            agent: config.into(),
        })
    }

    pub(super) fn post(&self, base: &str, path: &str, body: Value) -> Result<Value> {
        let url = format!("{base}{path}");
        let mut response = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .with_context(|| format!("no answer from {url}"))?;
        let status = response.status();
        let value = json_body(&mut response, &url, status)?;
        if !status.is_success() {
            let message = value["message"]
                .as_str()
                .unwrap_or("(no message)")
                .to_owned();
            return Err(EtcdRefused { url, message }.into());
        }
        Ok(value)
    }

    pub fn member_list(&self, base: &str) -> Result<Vec<MemberInfo>> {
        let value = self.post(base, "/v3/cluster/member/list", json!({}))?;
        members_of(&value)
    }

    /// Adds a member; returns the new member's ID and the new member list.
    pub fn member_add(
        &self,
        base: &str,
        peer_url: &str,
        learner: bool,
    ) -> Result<(String, Vec<MemberInfo>)> {
        let body = json!({ "peerURLs": [peer_url], "isLearner": learner });
        let value = self.post(base, "/v3/cluster/member/add", body)?;
        let member: MemberInfo = serde_json::from_value(value["member"].clone())
            .with_context(|| format!("{base} answered member add without the new member"))?;
        Ok((member.id, members_of(&value)?))
    }

    pub fn member_remove(&self, base: &str, id: &str) -> Result<()> {
        self.post(base, "/v3/cluster/member/remove", json!({ "ID": id }))
            .map(drop)
    }

    pub fn member_promote(&self, base: &str, id: &str) -> Result<()> {
        self.post(base, "/v3/cluster/member/promote", json!({ "ID": id }))
            .map(drop)
    }

    pub fn status(&self, base: &str) -> Result<Status> {
        let value = self.post(base, "/v3/maintenance/status", json!({}))?;
        serde_json::from_value(value)
            .with_context(|| format!("{base} sent a status etcd 3.4+ would not"))
    }

    /// etcd's `/version`: the member's own release and the cluster's
    /// version (`None` while the cluster has not decided it yet).
    pub fn version(&self, base: &str) -> Result<(Version, Option<Version>)> {
        let (url, value) = self.get_json(base, "/version")?;
        let field = |name: &str| value[name].as_str().and_then(|v| v.parse().ok());
        let server = field("etcdserver")
            .with_context(|| format!("{url} answered without an etcdserver version: {value}"))?;
        Ok((server, field("etcdcluster")))
    }

    /// etcd's `/health`: true when the member can serve a quorum read.
    pub fn healthy(&self, base: &str) -> Result<bool> {
        let (_, value) = self.get_json(base, "/health")?;
        Ok(value["health"].as_str() == Some("true"))
    }

    /// GET of one of etcd's plain JSON endpoints; returns the URL with it.
    fn get_json(&self, base: &str, path: &str) -> Result<(String, Value)> {
        let url = format!("{base}{path}");
        let mut response = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("no answer from {url}"))?;
        let status = response.status();
        let value = json_body(&mut response, &url, status)?;
        Ok((url, value))
    }
}

/// etcd's JSON answers kiln reads are kilobytes (member lists, statuses,
/// versions, the watchers' reports, lock keys): an answer over 4 MiB is not
/// one, and reading it whole would cost the agent that much memory.
pub const MAX_JSON_ANSWER: u64 = 4 << 20;

/// The body of `url`'s answer with `status`, as JSON, at most [`MAX_JSON_ANSWER`].
fn json_body(
    response: &mut ureq::http::Response<ureq::Body>,
    url: &str,
    status: StatusCode,
) -> Result<Value> {
    let text = match response
        .body_mut()
        .with_config()
        .limit(MAX_JSON_ANSWER)
        .read_to_string()
    {
        Ok(text) => text,
        Err(ureq::Error::BodyExceedsLimit(_)) => bail!(
            "{url} answered {status} with a body over {} MiB, the cap on etcd's JSON answers",
            MAX_JSON_ANSWER >> 20
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {url}'s answer")),
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{url} answered {status} with a body that is not JSON"))
}

fn members_of(value: &Value) -> Result<Vec<MemberInfo>> {
    match value.get("members") {
        Some(list) => Ok(serde_json::from_value(list.clone()).context("reading the member list")?),
        None => bail!("the member list answer has no members"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateway_member_list_with_unstarted_learner() {
        let value: Value = serde_json::from_str(
            r#"{"header":{"member_id":"1"},"members":[
              {"ID":"3319814642761637952","name":"etcd1","peerURLs":["https://10.77.0.11:2380"],
               "clientURLs":["https://10.77.0.11:2379"]},
              {"ID":"8742292968933192021","peerURLs":["https://10.77.0.12:2380"],"isLearner":true}]}"#,
        )
        .unwrap();
        let members = members_of(&value).unwrap();
        assert!(members[0].is_started() && !members[0].is_learner);
        assert!(!members[1].is_started() && members[1].is_learner);
        assert_eq!(members[1].id, "8742292968933192021");
    }
}
