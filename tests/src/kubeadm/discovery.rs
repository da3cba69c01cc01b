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
/// Where a stacked control-plane join finds the cluster's etcd members.
pub const ETCD_ENDPOINTS: &str = "/kiln-standin/etcd";

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

/// cluster-info's embedded kubeconfig, the part kubeadm compares between
/// its insecure and its verified fetch.
fn kubeconfig_of_cluster_info(body: &str) -> Option<String> {
    let map: Value = serde_json::from_str(body).ok()?;
    map["data"]["kubeconfig"].as_str().map(str::to_owned)
}

/// GETs cluster-info through `agent`, retrying a request that fails for
/// `retry_for`, as kubeadm's `getClusterInfo` polls until the discovery
/// timeout; `trust` names the TLS used, for the message.
fn cluster_info(
    agent: &ureq::Agent,
    endpoint: &str,
    retry_for: Duration,
    trust: &str,
) -> Result<String> {
    let url = format!("https://{endpoint}{CLUSTER_INFO}");
    let start = Instant::now();
    loop {
        match get(agent, &url, None) {
            Ok((200, body)) => return Ok(body),
            Ok((status, _)) => refuse!("discovery: {url} answered {status}"),
            Err(e) if start.elapsed() > retry_for => {
                refuse!("discovery: {endpoint} did not answer {trust} within {retry_for:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Discovers `endpoint` (host:port) as kubeadm's token discovery does
/// (cmd/kubeadm/app/discovery/token/token.go, `retrieveValidatedConfigInfo`):
/// cluster-info fetched without trust, its CA pinned to one of `pins` (a
/// mismatch is final), then cluster-info fetched again through TLS verified
/// against that CA, which must carry the same kubeconfig. Both fetches
/// retry for `retry_for` (the discovery timeout) while the endpoint does
/// not answer: a VIP that moves between them costs a retry, not the join.
pub fn discover(endpoint: &str, pins: &[String], retry_for: Duration) -> Result<Trusted> {
    let insecure = agent(TlsConfig::builder().disable_verification(true).build());
    let body = cluster_info(&insecure, endpoint, retry_for, "without TLS verification")?;
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
        base: format!("https://{endpoint}"),
        ca_pem,
    };
    let secure = cluster_info(
        &trusted.agent,
        endpoint,
        retry_for,
        "with the pinned CA (certificate from another CA?)",
    )?;
    if kubeconfig_of_cluster_info(&secure) != kubeconfig_of_cluster_info(&body) {
        refuse!("discovery: the second kubeconfig from cluster-info of {endpoint} (using validated TLS) was different from the first");
    }
    Ok(trusted)
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

    /// A ConfigMap's GET as kubeadm's `GetConfigMapWithShortRetry`
    /// (cmd/kubeadm/app/util/apiclient/idempotency.go), which
    /// `getInitConfigurationFromCluster` (cmd/kubeadm/app/util/config/cluster.go)
    /// reads kubeadm-config with, does it: every failure retried each 50 ms
    /// for 350 ms, then the last answer.
    pub fn get_config_map(&self, path: &str, bearer: Option<&str>) -> Result<(u16, String)> {
        let start = Instant::now();
        loop {
            let answer = self.get(path, bearer);
            if matches!(answer, Ok((200, _))) || start.elapsed() >= Duration::from_millis(350) {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An empty POST authenticated by the bootstrap token, retried as an
    /// API call ([`api_call`]); the status.
    pub fn post(&self, path: &str, token: &str) -> Result<u16> {
        let url = format!("{}{path}", self.base);
        let (status, ()) = api_call(&format!("POST {url}"), || {
            self.agent
                .post(&url)
                .header("authorization", format!("Bearer {token}"))
                .send_empty()
                .map(|response| (response.status().as_u16(), ()))
                .map_err(|e| e.to_string())
        })?;
        Ok(status)
    }

    /// The client URLs of the cluster's etcd members (stacked topology),
    /// which real kubeadm reads from the etcd pods' annotations, retried as
    /// an API call ([`api_call`]).
    pub fn etcd_endpoints(&self, token: &str) -> Result<Vec<String>> {
        let url = format!("{}{}", self.base, ETCD_ENDPOINTS);
        let (status, body) = api_call(&url, || get(&self.agent, &url, Some(token)))?;
        let endpoints: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::from_value(v["endpoints"].clone()).ok())
            .unwrap_or_default();
        if status != 200 || endpoints.is_empty() {
            refuse!("discovery: {url} answered {status} {body:?}: no etcd members to join");
        }
        Ok(endpoints)
    }

    /// Whether the API server knows `token` (id.secret) as a bootstrap
    /// token, retried as an API call ([`api_call`]).
    pub fn token_known(&self, token: &str) -> Result<bool> {
        let id = token.split('.').next().unwrap_or_default();
        let url = format!("{}/kiln-standin/tokens/{id}", self.base);
        match api_call(&url, || get(&self.agent, &url, Some(token)))? {
            (200, _) => Ok(true),
            (404 | 401, _) => Ok(false),
            (status, body) => refuse!("discovery: token check answered {status}: {body}"),
        }
    }
}

/// kubeadm's `KubernetesAPICallTimeout` and `KubernetesAPICallRetryInterval`
/// (cmd/kubeadm/app/constants/constants.go): its API calls poll this long.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(60);
const API_CALL_RETRY: Duration = Duration::from_millis(500);

/// Runs `call` (an answer's status and body, or why no answer came) until
/// it gets an answer below 500, for at most [`API_CALL_TIMEOUT`], as
/// kubeadm polls its API calls: a VIP moving between masters, an API server
/// whose etcd is busy with a membership change, or a loaded node answer
/// late, 5xx or not at all for a moment.
fn api_call<T>(
    what: &str,
    mut call: impl FnMut() -> std::result::Result<(u16, T), String>,
) -> Result<(u16, T)> {
    let start = Instant::now();
    loop {
        let answer = call();
        let retries = match &answer {
            Ok((status, _)) => *status >= 500,
            Err(_) => true,
        };
        if !retries || start.elapsed() >= API_CALL_TIMEOUT {
            return answer.map_err(|e| {
                Refused(format!(
                    "discovery: {what} failed with the pinned CA (certificate from another CA?) for {API_CALL_TIMEOUT:?}: {e}"
                ))
            });
        }
        std::thread::sleep(API_CALL_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::path::Path;

    use super::*;
    use crate::kubeadm::openssl::{self, Eku};

    /// cluster-info as the API server serves it, carrying `ca_pem`.
    fn cluster_info_body(ca_pem: &[u8], server: &str) -> String {
        let kubeconfig = serde_json::json!({"clusters": [{"cluster": {
            "certificate-authority-data": B64.encode(ca_pem), "server": server}}]});
        serde_json::json!({"data": {"kubeconfig": kubeconfig.to_string()}}).to_string()
    }

    /// A TLS endpoint on loopback that answers each connection with the body
    /// `answers` gives for its number (0, 1, ...), or drops it on `None`.
    fn endpoint(dir: &Path, answers: Answers) -> (String, String) {
        let ca = (dir.join("ca.crt"), dir.join("ca.key"));
        let leaf = (dir.join("server.crt"), dir.join("server.key"));
        openssl::self_signed("discovery-test-ca", (&ca.0, &ca.1)).unwrap();
        openssl::mint(
            (&ca.0, &ca.1),
            "server",
            Eku::Server,
            &["127.0.0.1".to_owned()],
            (&leaf.0, &leaf.1),
        )
        .unwrap();
        let ca_pem = std::fs::read(&ca.0).unwrap();
        let tls = crate::kubeadm::tls::server_config(
            &std::fs::read(&leaf.0).unwrap(),
            &std::fs::read(&leaf.1).unwrap(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pin = openssl::spki_sha256(&ca_pem).unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let Some(body) = answers(n, &ca_pem) else {
                    drop(stream);
                    continue;
                };
                let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
                let mut tls_stream = rustls::StreamOwned::new(conn, stream);
                let mut line = String::new();
                let mut reader = BufReader::new(&mut tls_stream);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    tls_stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls_stream.flush();
            }
        });
        (address, pin)
    }

    type Answers = fn(usize, &[u8]) -> Option<String>;

    /// Discovery of a loopback endpoint ([`endpoint`]) answering as `answers`.
    fn discover_from(answers: Answers, retry_for: Duration) -> Result<Trusted> {
        let dir = tempfile::tempdir().unwrap();
        let (address, pin) = endpoint(dir.path(), answers);
        discover(&address, &[pin], retry_for)
    }

    /// Why discovery of such an endpoint was refused.
    fn refusal(answers: Answers, retry_for: Duration) -> String {
        match discover_from(answers, retry_for) {
            Ok(_) => panic!("discovery accepted the endpoint"),
            Err(refused) => refused.0,
        }
    }

    #[test]
    fn an_endpoint_lost_between_the_two_fetches_is_retried_like_kubeadm() {
        // Connections 1 and 2, the first verified fetch and its first
        // retry, find nobody: the VIP moving between two masters.
        let trusted = discover_from(
            |n, ca| (n == 0 || n > 2).then(|| cluster_info_body(ca, "https://10.0.0.1:6443")),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{}", e.0));
        assert!(trusted.ca_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_verified_cluster_info_unlike_the_first_is_refused() {
        let refused = refusal(
            |n, ca| {
                Some(cluster_info_body(
                    ca,
                    &format!("https://10.0.0.{}:6443", n + 1),
                ))
            },
            Duration::from_secs(10),
        );
        assert!(
            refused.contains("was different from the first"),
            "{refused}"
        );
    }

    #[test]
    fn an_endpoint_that_stays_away_is_refused_after_the_discovery_timeout() {
        let refused = refusal(
            |n, ca| (n == 0).then(|| cluster_info_body(ca, "https://10.0.0.1:6443")),
            Duration::from_secs(2),
        );
        assert!(
            refused.contains("did not answer with the pinned CA"),
            "{refused}"
        );
    }
}
