//! The ClusterConfiguration rules kubeadm applies (pinned version matching
//! the API, endpoint, networking, certificate SANs, encryption algorithm,
//! etcd), shared by init and control-plane join. The rules themselves live
//! in rules.rs and networking.rs, each citing kubeadm's source.

use serde_json::Value;

use super::networking::{self, Cidr};
use super::yaml::str_at;
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
    /// kubernetesVersion: the stand-in behaves as kubeadm of this release.
    pub version: (u32, u32, u32),
    pub endpoint: Option<(String, u16)>,
    pub cert_sans: Vec<String>,
    /// None: stacked (local) etcd.
    pub external: Option<ExternalEtcd>,
}

/// kubeadm's defaults (cmd/kubeadm/app/apis/kubeadm/v1beta4/defaults.go),
/// applied before validation as SetDefaults_* does.
const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
const DEFAULT_BIND_PORT: u16 = 6443;
/// CertificateValidityPeriod / CACertificateValidityPeriod in constants.go:
/// ValidateCertValidity only warns above them.
const LEAF_VALIDITY_SECS: u64 = 365 * 24 * 3600;
const CA_VALIDITY_SECS: u64 = 10 * LEAF_VALIDITY_SECS;

/// The ClusterConfiguration rules: pinned version, endpoint, networking,
/// SANs, encryption algorithm, etcd.
pub fn cluster(path: &str, doc: &Value) -> Result<Cluster> {
    let fail = |e: String| Refused(format!("{path}: ClusterConfiguration.{e}"));
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let Some(version) = str_at(doc, &["kubernetesVersion"]) else {
        refuse!("{path}: ClusterConfiguration.kubernetesVersion is missing: kubeadm would look up the latest release online");
    };
    let Some(release) = rules::release(version) else {
        refuse!("{path}: ClusterConfiguration.kubernetesVersion {version:?} is not a pinned release like v1.36.2");
    };
    rules::api_for_version(api, release).map_err(|e| Refused(format!("{path}: {e}")))?;
    // ValidateHostPort(controlPlaneEndpoint); a missing port becomes
    // localAPIEndpoint.bindPort (SetClusterDynamicDefaults), 6443 for kiln.
    let endpoint = match str_at(doc, &["controlPlaneEndpoint"]) {
        None | Some("") => None,
        Some(ep) => {
            let (host, port) = networking::parse_host_port(ep).map_err(|e| {
                fail(format!(
                    "controlPlaneEndpoint {ep:?}: endpoint is not valid: {e}"
                ))
            })?;
            Some((host, port.unwrap_or(DEFAULT_BIND_PORT)))
        }
    };
    networking(doc).map_err(fail)?;
    let cert_sans = strings(&doc["apiServer"]["certSANs"]);
    // LowercaseSANs (cmd/kubeadm/app/util/config/common.go) runs first.
    let cert_sans: Vec<String> = cert_sans.iter().map(|s| s.to_lowercase()).collect();
    check_sans("apiServer.certSANs", &cert_sans).map_err(fail)?;
    for field in ["serverCertSANs", "peerCertSANs"] {
        let sans = strings(&doc["etcd"]["local"][field]);
        check_sans(&format!("etcd.local.{field}"), &sans).map_err(fail)?;
    }
    if api == "kubeadm.k8s.io/v1beta4" {
        // Defaulted to RSA-2048 when absent (SetDefaults_ClusterConfiguration).
        if let Some(algorithm) = str_at(doc, &["encryptionAlgorithm"]) {
            rules::encryption_algorithm(algorithm, release.1)
                .map_err(|e| fail(format!("encryptionAlgorithm: {e}")))?;
        }
        warn_validity(doc);
    }
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
        version: release,
        endpoint,
        cert_sans,
        external,
    })
}

/// ValidateNetworking: dnsDomain, serviceSubnet, podSubnet; then kiln's
/// own rule that pod and service subnets do not overlap.
fn networking(doc: &Value) -> std::result::Result<(), String> {
    let net = &doc["networking"];
    let domain = net["dnsDomain"].as_str().unwrap_or(DEFAULT_DNS_DOMAIN);
    if !networking::is_dns_subdomain(domain) {
        return Err(format!(
            "networking.dnsDomain {domain:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    let service = net["serviceSubnet"]
        .as_str()
        .unwrap_or(DEFAULT_SERVICE_SUBNET);
    let services = networking::subnets(service, networking::MIN_SERVICE_ADDRESSES)
        .and_then(|s| networking::service_subnet_size(&s).map(|()| s))
        .map_err(|e| format!("networking.serviceSubnet: {e}"))?;
    let mut pods: Vec<Cidr> = Vec::new();
    if let Some(pod) = net["podSubnet"].as_str().filter(|p| !p.is_empty()) {
        pods = networking::subnets(pod, networking::MIN_POD_ADDRESSES)
            .map_err(|e| format!("networking.podSubnet: {e}"))?;
        let arg = |name: &str| extra_arg(&doc["controllerManager"]["extraArgs"], name);
        networking::pod_subnet_node_mask(&pods, &arg)
            .map_err(|e| format!("networking.podSubnet: {e}"))?;
    }
    for s in &services {
        if let Some(p) = pods.iter().find(|p| networking::overlap(**p, *s)) {
            return Err(format!(
                "networking.serviceSubnet {}/{} overlaps podSubnet {}/{}",
                s.0, s.1, p.0, p.1
            ));
        }
    }
    Ok(())
}

/// The last value of a component's extra argument `name` (GetArgValue with
/// index -1): a v1beta4 list of {name, value} or a v1beta3 map.
fn extra_arg(args: &Value, name: &str) -> Option<String> {
    match args {
        Value::Array(list) => list
            .iter()
            .rev()
            .find(|a| a["name"].as_str() == Some(name))
            .and_then(|a| a["value"].as_str().map(str::to_owned)),
        Value::Object(map) => map.get(name).and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// ValidateCertSANs.
fn check_sans(field: &str, sans: &[String]) -> std::result::Result<(), String> {
    match sans.iter().position(|s| !networking::is_cert_san(s)) {
        Some(i) => Err(format!(
            "{field}[{i}] {:?}: altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards",
            sans[i]
        )),
        None => Ok(()),
    }
}

/// ValidateCertValidity: only warnings, as kubeadm's klog lines.
fn warn_validity(doc: &Value) {
    for (field, default, shown) in [
        ("certificateValidityPeriod", LEAF_VALIDITY_SECS, "8760h0m0s"),
        (
            "caCertificateValidityPeriod",
            CA_VALIDITY_SECS,
            "87600h0m0s",
        ),
    ] {
        let Some(value) = str_at(doc, &[field]) else {
            continue;
        };
        if rules::go_duration_secs(value).is_some_and(|secs| secs > default) {
            eprintln!(
                "[WARNING] {field}: the value {value} is more than the recommended default for certificate expiration: {shown}"
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(api: &str, version: &str, extra: Value) -> Value {
        let mut d = json!({
            "apiVersion": api, "kind": "ClusterConfiguration",
            "kubernetesVersion": version,
            "controlPlaneEndpoint": "10.77.150.21:6443",
            "networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"},
            "apiServer": {"certSANs": ["10.77.150.21", "master1.kiln.test"]},
        });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    }

    fn v4(extra: Value) -> Value {
        doc("kubeadm.k8s.io/v1beta4", "v1.36.2", extra)
    }

    fn refusal(d: &Value) -> String {
        cluster("c.yaml", d).unwrap_err().0
    }

    #[test]
    fn a_kiln_like_config_passes() {
        let c = cluster("c.yaml", &v4(json!({}))).unwrap();
        assert_eq!(c.version, (1, 36, 2));
        assert_eq!(c.endpoint, Some(("10.77.150.21".into(), 6443)));
    }

    #[test]
    fn endpoint_follows_parse_host_port() {
        let c = cluster(
            "c.yaml",
            &v4(json!({"controlPlaneEndpoint": "api.kiln.test"})),
        )
        .unwrap();
        assert_eq!(c.endpoint, Some(("api.kiln.test".into(), 6443)));
        let v6 = cluster(
            "c.yaml",
            &v4(json!({"controlPlaneEndpoint": "fd00::21:6443"})),
        )
        .unwrap();
        assert_eq!(
            v6.endpoint,
            Some(("fd00::21:6443".into(), 6443)),
            "the whole value is the host"
        );
        let bad = refusal(&v4(json!({"controlPlaneEndpoint": "API.kiln.test:6443"})));
        assert!(bad.contains("endpoint is not valid"), "{bad}");
    }

    #[test]
    fn networking_rules_apply() {
        let net = |n: Value| refusal(&v4(json!({ "networking": n })));
        let e = net(json!({"serviceSubnet": "10.0.0.0/11"}));
        assert!(
            e.contains("serviceSubnet") && e.contains("too large"),
            "{e}"
        );
        let e = net(json!({"serviceSubnet": "10.96.0.0/29"}));
        assert!(e.contains("too small, the minimum is 10"), "{e}");
        let e = net(json!({"podSubnet": "10.244.0.0/25"}));
        assert!(e.contains("smaller than the size of node subnet"), "{e}");
        let e = net(json!({"podSubnet": "16.0.0.0/6"}));
        assert!(e.contains("difference is greater than 16"), "{e}");
        let e = net(json!({"dnsDomain": "Cluster_Example"}));
        assert!(e.contains("dnsDomain"), "{e}");
        let e = net(json!({"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.244.128.0/20"}));
        assert!(e.contains("overlaps"), "{e}");
        // Defaults fill what is absent: no podSubnet is fine.
        assert!(cluster("c.yaml", &v4(json!({"networking": {}}))).is_ok());
        // A node mask from the controller manager's extra args (v1beta4 list).
        let cm = json!({"extraArgs": [{"name": "node-cidr-mask-size-ipv4", "value": "26"}]});
        let narrow =
            v4(json!({"networking": {"podSubnet": "10.244.0.0/25"}, "controllerManager": cm}));
        assert!(cluster("c.yaml", &narrow).is_ok());
    }

    #[test]
    fn sans_and_encryption_algorithm() {
        let e = refusal(&v4(json!({"apiServer": {"certSANs": ["api_1.kiln.test"]}})));
        assert!(e.contains("altname is not a valid IP address"), "{e}");
        let upper = cluster(
            "c.yaml",
            &v4(json!({"apiServer": {"certSANs": ["API.kiln.test", "*.kiln.test"]}})),
        );
        assert_eq!(
            upper.unwrap().cert_sans,
            ["api.kiln.test", "*.kiln.test"],
            "lowercased first"
        );
        let p384 = json!({"encryptionAlgorithm": "ECDSA-P384"});
        assert!(cluster("c.yaml", &v4(p384.clone())).is_ok());
        let old = doc("kubeadm.k8s.io/v1beta4", "v1.33.7", p384);
        assert!(refusal(&old).contains("Invalid encryption algorithm"));
    }

    #[test]
    fn api_versions_by_release() {
        let e = refusal(&doc("kubeadm.k8s.io/v1beta3", "v1.36.0", json!({})));
        assert!(e.contains("removed in Kubernetes 1.36"), "{e}");
        assert!(cluster(
            "c.yaml",
            &doc("kubeadm.k8s.io/v1beta3", "v1.35.0", json!({}))
        )
        .is_ok());
        let e = refusal(&doc("kubeadm.k8s.io/v1beta4", "v1.30.6", json!({})));
        assert!(e.contains("needs Kubernetes >= 1.31"), "{e}");
    }
}
