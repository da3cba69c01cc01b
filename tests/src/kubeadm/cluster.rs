//! The ClusterConfiguration rules kubeadm applies (pinned version matching
//! the API, endpoint, subnets, etcd), shared by init and control-plane join.

use serde_json::Value;

use super::config::str_at;
use super::{rules, Refused, Result};
use crate::refuse;

/// The external etcd a control plane uses (node paths of its TLS files).
#[derive(Debug, Clone)]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

/// What the stand-in uses of a ClusterConfiguration (also read back by joins).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub doc: Value,
    pub endpoint: Option<(String, u16)>,
    pub cert_sans: Vec<String>,
    /// None: stacked (local) etcd.
    pub external: Option<ExternalEtcd>,
}

/// The ClusterConfiguration rules: pinned version, endpoint, subnets, etcd.
pub fn cluster(path: &str, doc: &Value) -> Result<Cluster> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let Some(version) = str_at(doc, &["kubernetesVersion"]) else {
        refuse!("{path}: ClusterConfiguration.kubernetesVersion is missing: kubeadm would look up the latest release online");
    };
    let Some(release) = rules::release(version) else {
        refuse!("{path}: ClusterConfiguration.kubernetesVersion {version:?} is not a pinned release like v1.31.2");
    };
    rules::api_for_version(api, release).map_err(|e| Refused(format!("{path}: {e}")))?;
    let endpoint = match str_at(doc, &["controlPlaneEndpoint"]) {
        None => None,
        Some(ep) => match rules::host_port(ep) {
            Some(hp) => Some(hp),
            None => {
                refuse!("{path}: ClusterConfiguration.controlPlaneEndpoint {ep:?} is not host:port")
            }
        },
    };
    let mut subnets = Vec::new();
    for field in ["podSubnet", "serviceSubnet"] {
        for text in str_at(doc, &["networking", field])
            .into_iter()
            .flat_map(|s| s.split(','))
        {
            match rules::cidr(text.trim()) {
                Some(c) => subnets.push((field, text.trim(), c)),
                None => refuse!(
                    "{path}: ClusterConfiguration.networking.{field} {text:?} is not a CIDR"
                ),
            }
        }
    }
    for (i, a) in subnets.iter().enumerate() {
        for b in &subnets[i + 1..] {
            if a.0 != b.0 && rules::overlap(a.2, b.2) {
                refuse!(
                    "{path}: ClusterConfiguration.networking.{} {} overlaps {} {}",
                    a.0,
                    a.1,
                    b.0,
                    b.1
                );
            }
        }
    }
    let cert_sans = strings(&doc["apiServer"]["certSANs"]);
    let etcd = &doc["etcd"];
    let external = match (etcd.get("external"), etcd.get("local")) {
        (Some(_), Some(_)) => {
            refuse!("{path}: ClusterConfiguration.etcd has both local and external")
        }
        (Some(ext), None) => Some(external_etcd(path, ext)?),
        (None, _) => None,
    };
    Ok(Cluster {
        doc: doc.clone(),
        endpoint,
        cert_sans,
        external,
    })
}

/// The strings of a list (none when it is not one).
fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn external_etcd(path: &str, ext: &Value) -> Result<ExternalEtcd> {
    let endpoints = strings(&ext["endpoints"]);
    if endpoints.is_empty() {
        refuse!("{path}: ClusterConfiguration.etcd.external.endpoints is empty");
    }
    if let Some(bad) = endpoints.iter().find(|e| !e.starts_with("https://")) {
        refuse!("{path}: etcd.external.endpoints entry {bad:?} is not https:// (kiln's etcd requires TLS)");
    }
    let file = |field: &str| match ext[field].as_str() {
        Some(f) if f.starts_with('/') => Ok(f.to_owned()),
        _ => Err(Refused(format!(
            "{path}: ClusterConfiguration.etcd.external.{field} must be an absolute path"
        ))),
    };
    Ok(ExternalEtcd {
        endpoints,
        ca_file: file("caFile")?,
        cert_file: file("certFile")?,
        key_file: file("keyFile")?,
    })
}
