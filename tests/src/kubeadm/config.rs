//! Reads a kubeadm config file strictly: YAML documents, schema per kind, then
//! the semantic rules kubeadm applies, into what init and join need.

use serde_json::Value;

pub use super::cluster::{cluster, Cluster, ExternalEtcd};
use super::yaml::str_at;
use super::{bootstrap_token, networking, rules, schema, yaml, Refused, Result, Root};
use crate::refuse;

pub const INIT: &str = "InitConfiguration";
pub const CLUSTER: &str = "ClusterConfiguration";
pub const JOIN: &str = "JoinConfiguration";

pub use super::bootstrap_token::Token;

/// Where this node's API server listens.
#[derive(Debug, Clone)]
pub struct LocalEndpoint {
    pub advertise: Option<String>,
    pub bind_port: u16,
}

#[derive(Debug, Clone)]
pub struct InitPlan {
    pub node: String,
    pub local: LocalEndpoint,
    pub tokens: Vec<Token>,
    pub cluster: Cluster,
}

#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub node: String,
    pub token: String,
    pub endpoint: String,
    pub ca_hashes: Vec<String>,
    /// How long discovery retries an endpoint that does not answer.
    pub discovery_timeout: std::time::Duration,
    pub control_plane: Option<LocalEndpoint>,
    /// JoinConfiguration.caCertPath: where the join leaves the CA it discovered.
    pub ca_cert_path: String,
}

/// Parses and schema-checks every document; all must share one apiVersion.
pub fn load(root: &Root, path: &str) -> Result<Vec<Value>> {
    let file = root.path(path);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Refused(format!("reading config {path} ({}): {e}", file.display())))?;
    let docs = yaml::parse_documents(&text)
        .map_err(|e| Refused(format!("{path}: not valid YAML: {e}")))?;
    let mut api = None;
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or("(no kind)");
        if let Err(errors) = schema::check(doc) {
            refuse!(
                "{path}: {kind} does not match kubeadm's schema: {}",
                errors.join("; ")
            );
        }
        let this = doc["apiVersion"].as_str().unwrap_or_default();
        match api {
            None => api = Some(this),
            Some(first) if first != this => {
                refuse!("{path}: {kind} is {this} but an earlier document is {first}: kubeadm reads one API version per file")
            }
            Some(_) => {}
        }
        if !matches!(this, "kubeadm.k8s.io/v1beta3" | "kubeadm.k8s.io/v1beta4") {
            refuse!("{path}: {kind} apiVersion {this:?} is not kubeadm.k8s.io/v1beta3 or v1beta4");
        }
    }
    Ok(docs)
}

fn only_kinds<'a>(
    path: &str,
    docs: &'a [Value],
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a Value)>> {
    let mut seen: Vec<(&str, &Value)> = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or("(no kind)");
        if !allowed.contains(&kind) {
            refuse!("{path}: unexpected kind {kind} (this command reads {allowed:?})");
        }
        if seen.iter().any(|(k, _)| *k == kind) {
            refuse!("{path}: {kind} appears twice");
        }
        seen.push((kind, doc));
    }
    Ok(seen)
}

fn node_name(path: &str, kind: &str, doc: &Value, root: &Root) -> Result<String> {
    let name = match str_at(doc, &["nodeRegistration", "name"]) {
        Some(name) => name.to_owned(),
        None => std::fs::read_to_string(root.path("/etc/hostname"))
            .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    };
    if !networking::is_dns_subdomain(&name) {
        refuse!("{path}: {kind}.nodeRegistration.name {name:?} is not a lowercase RFC 1123 name");
    }
    Ok(name)
}

fn local_endpoint(path: &str, at: &str, value: Option<&Value>) -> Result<LocalEndpoint> {
    let advertise = value
        .and_then(|v| v["advertiseAddress"].as_str())
        .map(str::to_owned);
    if let Some(addr) = &advertise {
        if addr.parse::<std::net::IpAddr>().is_err() {
            refuse!("{path}: {at}.advertiseAddress {addr:?} is not an IP address");
        }
    }
    let bind_port = match value.and_then(|v| v.get("bindPort")) {
        None => 6443,
        Some(port) => match port.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => p as u16,
            None => refuse!("{path}: {at}.bindPort {port} is not a port 1-65535"),
        },
    };
    Ok(LocalEndpoint {
        advertise,
        bind_port,
    })
}

/// The InitConfiguration of `path`, checked as kubeadm checks it wherever
/// it reads one, and the ClusterConfiguration beside it, if any.
fn init_documents(
    root: &Root,
    path: &str,
) -> Result<(String, LocalEndpoint, Vec<Token>, Option<Value>)> {
    let docs = load(root, path)?;
    let kinds = only_kinds(path, &docs, &[INIT, CLUSTER])?;
    let find = |k: &str| kinds.iter().find(|(kind, _)| *kind == k).map(|(_, d)| *d);
    let Some(init) = find(INIT) else {
        refuse!(
            "{path}: no InitConfiguration (kinds here: {:?})",
            kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>()
        );
    };
    let node = node_name(path, INIT, init, root)?;
    let local = local_endpoint(
        path,
        "InitConfiguration.localAPIEndpoint",
        init.get("localAPIEndpoint"),
    )?;
    let tokens = bootstrap_token::from_init(path, init)?;
    Ok((node, local, tokens, find(CLUSTER).cloned()))
}

/// `kubeadm init --config`: InitConfiguration plus ClusterConfiguration.
pub fn init(root: &Root, path: &str) -> Result<InitPlan> {
    let (node, local, tokens, cluster_doc) = init_documents(root, path)?;
    let Some(cluster_doc) = cluster_doc else {
        refuse!("{path}: an init config needs both InitConfiguration and ClusterConfiguration");
    };
    Ok(InitPlan {
        node,
        local,
        tokens,
        cluster: cluster(path, &cluster_doc)?,
    })
}

/// `kubeadm token create --config`: the bootstrapTokens of an
/// InitConfiguration, loaded and validated like init's, with its
/// ClusterConfiguration when there is one (RunCreateToken in
/// cmd/kubeadm/app/cmd/token.go calls LoadOrDefaultInitConfiguration).
pub fn token_create(root: &Root, path: &str) -> Result<Vec<Token>> {
    let (_, _, tokens, cluster_doc) = init_documents(root, path)?;
    if let Some(doc) = cluster_doc {
        cluster(path, &doc)?;
    }
    Ok(tokens)
}

/// `kubeadm join --config`: one JoinConfiguration with bootstrap-token discovery.
pub fn join(root: &Root, path: &str) -> Result<JoinPlan> {
    let docs = load(root, path)?;
    let kinds = only_kinds(path, &docs, &[JOIN])?;
    let Some((_, join)) = kinds.first() else {
        refuse!("{path}: a join config needs a JoinConfiguration");
    };
    let node = node_name(path, JOIN, join, root)?;
    let bt = &join["discovery"]["bootstrapToken"];
    if bt.is_null() {
        refuse!("{path}: JoinConfiguration.discovery.bootstrapToken is missing (kiln discovers by token and CA pin)");
    }
    let token = bt["token"]
        .as_str()
        .or_else(|| join["discovery"]["tlsBootstrapToken"].as_str())
        .unwrap_or_default();
    if !rules::is_token(token) {
        refuse!("{path}: JoinConfiguration.discovery.bootstrapToken.token does not match [a-z0-9]{{6}}.[a-z0-9]{{16}}");
    }
    if let Some(tls) = join["discovery"]["tlsBootstrapToken"].as_str() {
        if !rules::is_token(tls) {
            refuse!("{path}: JoinConfiguration.discovery.tlsBootstrapToken does not match [a-z0-9]{{6}}.[a-z0-9]{{16}}");
        }
    }
    let endpoint = bt["apiServerEndpoint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if networking::host_port(&endpoint).is_none() {
        refuse!("{path}: JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint {endpoint:?} is not host:port");
    }
    let mut ca_hashes = Vec::new();
    for pin in bt["caCertHashes"].as_array().into_iter().flatten() {
        match pin.as_str().and_then(rules::ca_hash_digest) {
            Some(digest) => ca_hashes.push(digest),
            None => refuse!("{path}: JoinConfiguration.discovery.bootstrapToken.caCertHashes entry {pin} is not sha256:<64 hex>"),
        }
    }
    if ca_hashes.is_empty() {
        refuse!("{path}: JoinConfiguration.discovery.bootstrapToken.caCertHashes is empty: discovery would trust any server");
    }
    // v1beta4 moved discovery.timeout to timeouts.discovery; kubeadm's default is 5m.
    let timeout = join["timeouts"]["discovery"]
        .as_str()
        .or_else(|| join["discovery"]["timeout"].as_str());
    let discovery_timeout = match timeout.map(|t| (t, rules::go_duration_secs(t))) {
        None => std::time::Duration::from_secs(300),
        Some((_, Some(secs))) => std::time::Duration::from_secs(secs),
        Some((t, None)) => {
            refuse!("{path}: JoinConfiguration discovery timeout {t:?} is not a Go duration")
        }
    };
    let control_plane = match join.get("controlPlane") {
        None => None,
        Some(cp) => Some(local_endpoint(
            path,
            "JoinConfiguration.controlPlane.localAPIEndpoint",
            cp.get("localAPIEndpoint"),
        )?),
    };
    let ca_cert_path = join["caCertPath"]
        .as_str()
        .unwrap_or("/etc/kubernetes/pki/ca.crt")
        .to_owned();
    Ok(JoinPlan {
        node,
        token: token.to_owned(),
        endpoint,
        ca_hashes,
        discovery_timeout,
        control_plane,
        ca_cert_path,
    })
}
