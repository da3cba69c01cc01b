//! kubeadm's own certificates on a control plane: the certs and kubeconfig
//! phases of init and control-plane join (create what is missing), and
//! `kubeadm certs renew all`. The rules, from kubeadm's source:
//!
//! - which certificates, signed by which CA: phases/certs/certlist.go
//!   (GetDefaultCertList; GetCertsWithoutEtcd when etcd is external, so the
//!   external etcd's client certificate is never kubeadm's to renew);
//! - renewal: phases/certs/renewal/manager.go (NewManager renews every
//!   signed certificate and the client certificates embedded in admin.conf,
//!   super-admin.conf, controller-manager.conf and scheduler.conf, never
//!   kubelet.conf, whose certificate the kubelet rotates; RenewUsingLocalCA
//!   skips a CA whose key is absent, the external CA mode) and
//!   renewal/filerenewer.go (a new key, the old certificate's names and
//!   usages, the ClusterConfiguration's certificateValidityPeriod);
//! - renewal runs unconditionally, whatever the expiry: cmd/certs.go.
//!
//! The stand-in signs with kiln-firstboot's PKI code because openssl 3.0's
//! command line cannot give a certificate a life shorter than a day, and the
//! tests renew certificates that live minutes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kiln_node::pki::{Authority, CertInfo, KeyAlgorithm, LeafSpec, Usage};
use serde_json::Value;

use super::cli::ADMIN_CONF;
use super::config::Cluster;
use super::etcd::{self, Etcd};
use super::yaml::str_at;
use super::{rules, tokens, Refused, Result, Root};
use crate::refuse;

const PKI: &str = "/etc/kubernetes/pki";
/// kubeadm's default certificateValidityPeriod (constants.go).
pub const DEFAULT_VALIDITY_SECS: u64 = 365 * 24 * 3600;

/// A certificate of kubeadm's PKI, under /etc/kubernetes/pki.
struct PkiCert {
    stem: &'static str,
    ca: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    usage: Usage,
    /// Only with local (stacked) etcd.
    etcd: bool,
}

/// certlist.go's signed certificates: the API server's serving and kubelet
/// client certificates, the front proxy's client, and the etcd ones.
const PKI_CERTS: [PkiCert; 7] = [
    PkiCert {
        stem: "apiserver",
        ca: "ca",
        common_name: "kube-apiserver",
        organization: None,
        usage: Usage::Server,
        etcd: false,
    },
    PkiCert {
        stem: "apiserver-kubelet-client",
        ca: "ca",
        common_name: "kube-apiserver-kubelet-client",
        organization: Some("kubeadm:cluster-admins"),
        usage: Usage::Client,
        etcd: false,
    },
    PkiCert {
        stem: "front-proxy-client",
        ca: "front-proxy-ca",
        common_name: "front-proxy-client",
        organization: None,
        usage: Usage::Client,
        etcd: false,
    },
    PkiCert {
        stem: "etcd/server",
        ca: "etcd/ca",
        common_name: "",
        organization: None,
        usage: Usage::Server,
        etcd: true,
    },
    PkiCert {
        stem: "etcd/peer",
        ca: "etcd/ca",
        common_name: "",
        organization: None,
        usage: Usage::Peer,
        etcd: true,
    },
    PkiCert {
        stem: "etcd/healthcheck-client",
        ca: "etcd/ca",
        common_name: "kube-etcd-healthcheck-client",
        organization: None,
        usage: Usage::Client,
        etcd: true,
    },
    PkiCert {
        stem: "apiserver-etcd-client",
        ca: "etcd/ca",
        common_name: "kube-apiserver-etcd-client",
        organization: None,
        usage: Usage::Client,
        etcd: true,
    },
];

/// The kubeconfigs whose embedded client certificates kubeadm writes and
/// renews (constants.go's file names; super-admin.conf on the init node only).
pub const KUBECONFIGS: [(&str, &str, Option<&str>); 4] = [
    (
        ADMIN_CONF,
        "kubernetes-admin",
        Some("kubeadm:cluster-admins"),
    ),
    (
        "/etc/kubernetes/super-admin.conf",
        "kubernetes-super-admin",
        Some("system:masters"),
    ),
    (
        "/etc/kubernetes/controller-manager.conf",
        "system:kube-controller-manager",
        None,
    ),
    (
        "/etc/kubernetes/scheduler.conf",
        "system:kube-scheduler",
        None,
    ),
];

/// How long kubeadm's certificates of `cluster` live.
pub fn validity_secs(cluster: &Cluster) -> u64 {
    str_at(&cluster.doc, &["certificateValidityPeriod"])
        .and_then(rules::go_duration_secs)
        .unwrap_or(DEFAULT_VALIDITY_SECS)
}

/// encryptionAlgorithm, as kiln's PKI code names it (the ones kiln writes).
fn algorithm(cluster: &Cluster) -> KeyAlgorithm {
    match str_at(&cluster.doc, &["encryptionAlgorithm"]) {
        Some("ECDSA-P384") => KeyAlgorithm::EcdsaP384,
        _ => KeyAlgorithm::EcdsaP256,
    }
}

fn read(root: &Root, node_path: &str) -> Result<String> {
    std::fs::read_to_string(root.path(node_path))
        .map_err(|e| Refused(format!("reading {node_path}: {e}")))
}

/// The CA `name` (`ca`, `front-proxy-ca`, `etcd/ca`) if its key is here.
fn authority(root: &Root, name: &str) -> Result<Option<Authority>> {
    let key_path = format!("{PKI}/{name}.key");
    if !root.path(&key_path).exists() {
        return Ok(None);
    }
    let loaded = Authority::load(
        &read(root, &format!("{PKI}/{name}.crt"))?,
        &read(root, &key_path)?,
    );
    loaded
        .map(Some)
        .map_err(|e| Refused(format!("loading the CA {PKI}/{name}: {e}")))
}

fn spec(
    common_name: &str,
    organization: Option<&str>,
    usage: Usage,
    sans: &[String],
    cluster: &Cluster,
) -> LeafSpec {
    let (ips, dns_names): (Vec<_>, Vec<_>) = sans
        .iter()
        .partition(|s| s.parse::<std::net::IpAddr>().is_ok());
    LeafSpec {
        common_name: common_name.to_owned(),
        organization: organization.map(str::to_owned),
        usage,
        dns_names: dns_names.into_iter().cloned().collect(),
        ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        algorithm: algorithm(cluster),
        validity_seconds: validity_secs(cluster),
    }
}

/// Writes a certificate (0644) and its new key (0600).
fn write_pair(root: &Root, stem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
    let cert_path = root.path(&format!("{PKI}/{stem}.crt"));
    kiln_node::fsutil::write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)
        .map_err(|e| Refused(format!("writing {PKI}/{stem}.crt: {e}")))?;
    super::write_private(root, &format!("{PKI}/{stem}.key"), key_pem)
}

/// The certs phase for the API server: its serving certificate for `sans`,
/// its kubelet client and the front proxy's client, each created unless it
/// exists ("Using existing ... certificate and key on disk").
pub fn create_missing(root: &Root, cluster: &Cluster, sans: &[String]) -> Result<()> {
    for cert in PKI_CERTS.iter().filter(|c| !c.etcd) {
        if root.path(&format!("{PKI}/{}.crt", cert.stem)).exists() {
            continue;
        }
        let Some(ca) = authority(root, cert.ca)? else {
            refuse!(
                "[certs] {PKI}/{}.key is missing: kubeadm cannot sign {}",
                cert.ca,
                cert.stem
            );
        };
        let names: &[String] = if cert.stem == "apiserver" { sans } else { &[] };
        let issued = ca
            .issue(&spec(
                cert.common_name,
                cert.organization,
                cert.usage,
                names,
                cluster,
            ))
            .map_err(|e| Refused(format!("[certs] signing {}: {e}", cert.stem)))?;
        write_pair(root, cert.stem, &issued.cert_pem, &issued.key_pem)?;
    }
    Ok(())
}

/// A kubeconfig's client certificate and key for `user`, signed by the cluster CA.
pub fn kubeconfig_user(root: &Root, cluster: &Cluster, path: &str) -> Result<Value> {
    let Some((_, cn, org)) = KUBECONFIGS.iter().find(|(p, _, _)| *p == path) else {
        return Ok(serde_json::json!({}));
    };
    let Some(ca) = authority(root, "ca")? else {
        refuse!(
            "[kubeconfig] {PKI}/ca.key is missing: kubeadm cannot sign {path}'s client certificate"
        );
    };
    let issued = ca
        .issue(&spec(cn, *org, Usage::Client, &[], cluster))
        .map_err(|e| Refused(format!("[kubeconfig] signing {path}: {e}")))?;
    Ok(serde_json::json!({
        "client-certificate-data": B64.encode(&issued.cert_pem),
        "client-key-data": B64.encode(&issued.key_pem),
    }))
}

/// The client certificate (PEM) a kubeconfig embeds.
pub fn kubeconfig_cert(root: &Root, path: &str) -> Result<String> {
    let config: Value = serde_json::from_str(&read(root, path)?)
        .map_err(|e| Refused(format!("{path} is not a kubeconfig: {e}")))?;
    let data = config["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .unwrap_or_default();
    let pem = B64.decode(data).map_err(|e| {
        Refused(format!(
            "{path}: client-certificate-data is not base64: {e}"
        ))
    })?;
    String::from_utf8(pem).map_err(|e| Refused(format!("{path}: client-certificate-data: {e}")))
}

/// `kubeadm certs renew all`: reads the ClusterConfiguration from the
/// cluster (through admin.conf), renews every certificate present whose CA
/// key is here, and returns what it printed.
pub fn renew_all(root: &Root) -> Result<Vec<String>> {
    let etcd = Etcd::connect(root, &tokens::etcd_of_kubeconfig(root, ADMIN_CONF)?)?;
    let Some(map) = etcd.get(etcd::KUBEADM_CONFIG)? else {
        refuse!("[renew] the kubeadm-config ConfigMap is missing: run kubeadm init first");
    };
    let map: Value =
        serde_json::from_str(&map).map_err(|e| Refused(format!("kubeadm-config: {e}")))?;
    let doc: Value = serde_json::from_str(
        map["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap_or_default(),
    )
    .map_err(|e| Refused(format!("kubeadm-config ClusterConfiguration: {e}")))?;
    let cluster = super::config::cluster("kubeadm-config", &doc)?;
    let mut said = vec!["[renew] Reading configuration from the cluster...".to_owned()];
    for cert in PKI_CERTS
        .iter()
        .filter(|c| !(c.etcd && cluster.external.is_some()))
    {
        let path = format!("{PKI}/{}.crt", cert.stem);
        if !root.path(&path).exists() {
            said.push(format!("MISSING! {}", cert.stem));
            continue;
        }
        let Some(ca) = authority(root, cert.ca)? else {
            said.push(format!(
                "{} is externally managed (no {PKI}/{}.key): not renewed",
                cert.stem, cert.ca
            ));
            continue;
        };
        let old = info(&read(root, &path)?, &path)?;
        let cn = old
            .common_name
            .clone()
            .unwrap_or_else(|| cert.common_name.to_owned());
        let issued = ca
            .issue(&spec(
                &cn,
                old.organization.as_deref(),
                cert.usage,
                &old.sans,
                &cluster,
            ))
            .map_err(|e| Refused(format!("[renew] {}: {e}", cert.stem)))?;
        write_pair(root, cert.stem, &issued.cert_pem, &issued.key_pem)?;
        said.push(format!("certificate {} renewed", cert.stem));
    }
    for (path, _, _) in KUBECONFIGS {
        if !root.path(path).exists() {
            continue;
        }
        let mut config: Value = serde_json::from_str(&read(root, path)?)
            .map_err(|e| Refused(format!("{path} is not a kubeconfig: {e}")))?;
        config["users"][0]["user"] = kubeconfig_user(root, &cluster, path)?;
        super::write_private(
            root,
            path,
            &serde_json::to_string_pretty(&config).unwrap_or_default(),
        )?;
        said.push(format!(
            "certificate embedded in the kubeconfig file {path} renewed"
        ));
    }
    said.push(
        "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, \
         kube-scheduler and etcd, so that they can use the new certificates."
            .to_owned(),
    );
    Ok(said)
}

fn info(pem: &str, path: &str) -> Result<CertInfo> {
    CertInfo::from_pem(pem).map_err(|e| Refused(format!("{path}: {e}")))
}

/// Whether the certificate at `path` (a node path) is valid now and chains
/// to the cluster CA: what a component checks of its kubeconfig at start.
pub fn usable(root: &Root, pem: &str, what: &str) -> Result<()> {
    let ca = read(root, &format!("{PKI}/ca.crt"))?;
    kiln_node::pki::verify_chain(&ca, pem).map_err(|e| Refused(format!("{what}: {e}")))?;
    let cert = info(pem, what)?;
    let now = time::OffsetDateTime::now_utc();
    if cert.not_after <= now {
        refuse!(
            "{what}: x509: certificate has expired (not after {})",
            cert.not_after
        );
    }
    Ok(())
}
