//! A minimal etcd v3 JSON-gateway client (mutual TLS): the reads and writes
//! the stand-in makes, as a real API server would store its objects.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::config::ExternalEtcd;
use super::{Refused, Result, Root};
use crate::refuse;

/// The key a successful init writes; joins require it.
pub const INITIALIZED_BY: &str = "/registry/kiln-standin/initialized-by";
/// Where init stores its ClusterConfiguration (kubeadm's kubeadm-config).
pub const KUBEADM_CONFIG: &str = "/registry/configmaps/kube-system/kubeadm-config";

pub struct Etcd {
    agent: ureq::Agent,
    endpoints: Vec<String>,
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// The end of the key range that holds every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    B64.encode(bytes)
}

impl Etcd {
    /// Connects with the TLS files etcd.external names (node paths under `root`).
    pub fn connect(root: &Root, ext: &ExternalEtcd) -> Result<Etcd> {
        let read =
            |f: &str| std::fs::read(root.path(f)).map_err(|e| Refused(format!("reading {f}: {e}")));
        let (ca, cert, key) = (
            read(&ext.ca_file)?,
            read(&ext.cert_file)?,
            read(&ext.key_file)?,
        );
        fn bad(f: &str) -> impl Fn(ureq::Error) -> Refused + '_ {
            move |e| Refused(format!("{f} is not PEM: {e}"))
        }
        let ca = Certificate::from_pem(&ca)
            .map_err(bad(&ext.ca_file))?
            .to_owned();
        let cert = Certificate::from_pem(&cert)
            .map_err(bad(&ext.cert_file))?
            .to_owned();
        let key = PrivateKey::from_pem(&key)
            .map_err(bad(&ext.key_file))?
            .to_owned();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Etcd {
            agent,
            endpoints: ext.endpoints.clone(),
        })
    }

    /// POSTs to the first endpoint that answers.
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let mut errors = Vec::new();
        for base in &self.endpoints {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            match self.agent.post(&url).send(body.to_string()) {
                Ok(mut response) => {
                    let status = response.status();
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    if !status.is_success() {
                        refuse!("etcd {url} answered {status}: {text}");
                    }
                    return serde_json::from_str(&text)
                        .map_err(|e| Refused(format!("etcd {url} answered non-JSON: {e}")));
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        refuse!("no etcd endpoint answered: {}", errors.join("; "))
    }

    /// `GET <endpoint>/version` of every endpoint over the same mutual TLS
    /// (what kubeadm's ExternalEtcdVersionCheck asks): each endpoint's URL
    /// and the body it answered, or why it did not.
    pub fn versions(&self) -> Vec<(String, std::result::Result<String, String>)> {
        self.endpoints
            .iter()
            .map(|base| {
                let url = format!("{}/version", base.trim_end_matches('/'));
                let answer = match self.agent.get(&url).call() {
                    Ok(mut response) if response.status().is_success() => response
                        .body_mut()
                        .read_to_string()
                        .map_err(|e| format!("reading the answer: {e}")),
                    Ok(response) => Err(format!("answered {}", response.status())),
                    Err(e) => Err(e.to_string()),
                };
                (url, answer)
            })
            .collect()
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let value = self.post("/v3/kv/range", &json!({"key": b64(key)}))?;
        let Some(kv) = value["kvs"].as_array().and_then(|l| l.first()) else {
            return Ok(None);
        };
        let raw = B64
            .decode(kv["value"].as_str().unwrap_or_default())
            .unwrap_or_default();
        Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
    }

    /// Keys (not values) under `prefix`, at most `limit`.
    pub fn keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let body = json!({"key": b64(prefix), "range_end": prefix_end(prefix), "keys_only": true, "limit": limit});
        self.range_field(&body, "key")
    }

    /// Values under `prefix`.
    pub fn values(&self, prefix: &str) -> Result<Vec<String>> {
        let body = json!({"key": b64(prefix), "range_end": prefix_end(prefix)});
        self.range_field(&body, "value")
    }

    /// `field` ("key" or "value") of every key a range read returns.
    fn range_field(&self, body: &Value, field: &str) -> Result<Vec<String>> {
        let value = self.post("/v3/kv/range", body)?;
        Ok(value["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| B64.decode(kv[field].as_str()?).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect())
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.post("/v3/kv/put", &json!({"key": b64(key), "value": b64(value)}))
            .map(drop)
    }

    /// Writes `key` only if it does not exist; false if it already did.
    pub fn create(&self, key: &str, value: &str) -> Result<bool> {
        let body = json!({
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
        });
        let answer = self.post("/v3/kv/txn", &body)?;
        Ok(answer["succeeded"].as_bool() == Some(true))
    }

    /// Adds a member by its peer URL; every member's (name, peer URLs)
    /// afterwards, the new one with an empty name (it has not started).
    /// As kubeadm's AddMember does (cmd/kubeadm/app/util/etcd/etcd.go: "List
    /// members and quickly return if the member already exists"), a peer URL
    /// already listed is not added again: an earlier attempt whose answer was
    /// lost took effect.
    pub fn member_add(&self, peer_url: &str) -> Result<Vec<(String, Vec<String>)>> {
        let listed = members(&self.post("/v3/cluster/member/list", &json!({}))?);
        if listed
            .iter()
            .any(|(_, urls)| urls.first().is_some_and(|u| u == peer_url))
        {
            return Ok(listed);
        }
        let answer = self.post("/v3/cluster/member/add", &json!({"peerURLs": [peer_url]}))?;
        Ok(members(&answer))
    }
}

/// Every member's (name, peer URLs) in a member list or member add answer.
fn members(answer: &Value) -> Vec<(String, Vec<String>)> {
    answer["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let urls = m["peerURLs"].as_array().into_iter().flatten();
            let urls = urls.filter_map(|u| u.as_str().map(str::to_owned)).collect();
            (m["name"].as_str().unwrap_or_default().to_owned(), urls)
        })
        .collect()
}
