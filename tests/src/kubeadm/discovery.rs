//! Token discovery as kubeadm does it: fetch cluster-info without trust, pin
//! its CA by the configured SHA-256 hashes, then talk to the API server only
//! through a TLS session verified against that CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::{openssl, Refused, Result};
use crate::refuse;

pub const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
pub const KUBEADM_CONFIG: &str = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config";

/// An API server session that verifies the pinned cluster CA.
pub struct Trusted {
    agent: ureq::Agent,
    base: String,
    pub ca_pem: Vec<u8>,
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    bearer: Option<&str>,
) -> std::result::Result<(u16, String), String> {
    let mut request = agent.get(url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((response.status().as_u16(), body))
}

/// The CA certificate (PEM) a cluster-info ConfigMap carries.
pub fn ca_of_cluster_info(body: &str) -> Option<Vec<u8>> {
    let map: Value = serde_json::from_str(body).ok()?;
    let kubeconfig: Value = serde_json::from_str(map["data"]["kubeconfig"].as_str()?).ok()?;
    let data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"].as_str()?;
    B64.decode(data).ok()
}

/// Discovers `endpoint` (host:port), retrying while it does not answer, and
/// pins its CA to one of `pins` (a mismatch is final, as in kubeadm).
pub fn discover(endpoint: &str, pins: &[String], retry_for: Duration) -> Result<Trusted> {
    let base = format!("https://{endpoint}");
    let insecure = agent(TlsConfig::builder().disable_verification(true).build());
    let start = Instant::now();
    let body = loop {
        match get(&insecure, &format!("{base}{CLUSTER_INFO}"), None) {
            Ok((200, body)) => break body,
            Ok((status, _)) => refuse!("discovery: {base}{CLUSTER_INFO} answered {status}"),
            Err(e) if start.elapsed() > retry_for => {
                refuse!("discovery: {endpoint} did not answer within {retry_for:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let Some(ca_pem) = ca_of_cluster_info(&body) else {
        refuse!("discovery: cluster-info from {endpoint} carries no CA certificate");
    };
    let hash = openssl::spki_sha256(&ca_pem).map_err(|e| {
        Refused(format!(
            "discovery: cluster-info CA of {endpoint} is not a certificate: {e}"
        ))
    })?;
    if !pins.contains(&hash) {
        refuse!("discovery: the CA of {endpoint} has hash sha256:{hash}, not one of caCertHashes {pins:?}");
    }
    let ca = Certificate::from_pem(&ca_pem)
        .map_err(|e| Refused(format!("discovery: cluster-info CA is not PEM: {e}")))?
        .to_owned();
    let trusted = Trusted {
        agent: agent(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
                .build(),
        ),
        base,
        ca_pem,
    };
    match trusted.get("/healthz", None)? {
        (200, body) if body.trim() == "ok" => Ok(trusted),
        (status, body) => refuse!("discovery: {endpoint}/healthz answered {status} {body:?}"),
    }
}

impl Trusted {
    /// GET through the verified session; a TLS failure means the server's
    /// certificate does not chain to the pinned CA.
    pub fn get(&self, path: &str, bearer: Option<&str>) -> Result<(u16, String)> {
        get(&self.agent, &format!("{}{path}", self.base), bearer).map_err(|e| {
            Refused(format!(
                "discovery: {}{path} failed with the pinned CA (certificate from another CA?): {e}",
                self.base
            ))
        })
    }

    /// An empty POST authenticated by the bootstrap token; the status.
    pub fn post(&self, path: &str, token: &str) -> Result<u16> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .send_empty()
            .map_err(|e| Refused(format!("POST {url} with the pinned CA failed: {e}")))?;
        Ok(response.status().as_u16())
    }

    /// The client URLs of the cluster's etcd members (stacked topology),
    /// which real kubeadm reads from the etcd pods' annotations.
    pub fn etcd_endpoints(&self, token: &str) -> Result<Vec<String>> {
        let path = super::apiserver::ETCD_ENDPOINTS;
        let (status, body) = self.get(path, Some(token))?;
        let endpoints: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::from_value(v["endpoints"].clone()).ok())
            .unwrap_or_default();
        if status != 200 || endpoints.is_empty() {
            refuse!(
                "discovery: {}{path} answered {status} {body:?}: no etcd members to join",
                self.base
            );
        }
        Ok(endpoints)
    }

    /// Whether the API server knows `token` (id.secret) as a bootstrap
    /// token. A server error or a request that timed out is retried for a
    /// while, as kubeadm's discovery retries until its timeout (an API
    /// server whose etcd is busy with a membership change, or a loaded
    /// node, answers 500 or late for a moment).
    pub fn token_known(&self, token: &str) -> Result<bool> {
        const RETRY_FOR: Duration = Duration::from_secs(60);
        let id = token.split('.').next().unwrap_or_default();
        let url = format!("{}/kiln-standin/tokens/{id}", self.base);
        let start = Instant::now();
        loop {
            let retry = start.elapsed() < RETRY_FOR;
            match get(&self.agent, &url, Some(token)) {
                Ok((200, _)) => return Ok(true),
                Ok((404 | 401, _)) => return Ok(false),
                Ok((status, _)) if status >= 500 && retry => {}
                Err(e) if e.contains("timeout") && retry => {}
                Ok((status, body)) => refuse!("discovery: token check answered {status}: {body}"),
                Err(e) => refuse!("discovery: {url} failed with the pinned CA (certificate from another CA?): {e}"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
