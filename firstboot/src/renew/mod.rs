//! `kiln-firstboot renew`, run by kiln-renew.timer: renews the leaf
//! certificates kiln issued on this node before they expire, with their
//! existing keys and names, so nothing restarts and no rebuild is needed.
//! etcd reads its certificate files at every new TLS handshake, so a renewed
//! member keeps serving; the agent reads its own at every run.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use time::OffsetDateTime;

use crate::control_plane::renewal;
use crate::identity::{identify, HostFacts};
use kiln_node::etcd::client::EtcdClient;
use kiln_node::etcd::kv::KvCluster;
use kiln_node::fsutil::write_atomic;
use kiln_node::layout::etcd::{cert_path, PEER_CERT, PEER_KEY, SERVER_CERT, SERVER_KEY};
use kiln_node::layout::{kube, pki, under_root};
use kiln_node::node_config::{NodeConfig, Role};
use kiln_node::pki::{public_key_of, signing_request, Authority, CertInfo, LeafSpec, Usage};
use request::{RenewalRequest, ISSUED, REQUESTS};

mod request;
mod signer;

/// A leaf certificate of this node that kiln renews, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLeaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub usage: Usage,
}

/// The kiln-issued leaves a node of `role` holds (node paths): an etcd
/// member's serving and peer certificates and the agent's client
/// certificate; on masters the API server's etcd client certificate too.
pub fn node_leaves(role: Role) -> Vec<NodeLeaf> {
    let leaf = |cert: PathBuf, key: PathBuf, usage| NodeLeaf { cert, key, usage };
    let agent = leaf(
        pki::etcd_agent_client_cert(),
        pki::etcd_agent_client_key(),
        Usage::Client,
    );
    match role {
        Role::Etcd => vec![
            leaf(cert_path(SERVER_CERT), cert_path(SERVER_KEY), Usage::Server),
            leaf(cert_path(PEER_CERT), cert_path(PEER_KEY), Usage::Peer),
            agent,
        ],
        Role::Master => vec![
            agent,
            leaf(
                kube::ETCD_CLIENT_CERT.into(),
                kube::ETCD_CLIENT_KEY.into(),
                Usage::Client,
            ),
        ],
        Role::Worker => vec![],
    }
}

/// What `renew` did with one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not due: this long is left.
    Kept(i64),
    Renewed,
    /// Asked an etcd node to sign; the next run installs the answer.
    Requested,
    /// Not on this node (e.g. a master before kubeadm ran).
    Absent,
}

/// The same certificate again: its subject name, names and addresses, for
/// the node configuration's validity.
pub fn respec(info: &CertInfo, usage: Usage, config: &NodeConfig) -> LeafSpec {
    let (ips, dns_names): (Vec<_>, Vec<_>) = info
        .sans
        .iter()
        .partition(|name| name.parse::<IpAddr>().is_ok());
    LeafSpec {
        common_name: info.common_name.clone().unwrap_or_default(),
        organization: info.organization.clone(),
        usage,
        dns_names: dns_names.into_iter().cloned().collect(),
        ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        algorithm: config.pki.key_algorithm,
        validity_seconds: config.pki.leaf_validity_seconds,
    }
}

/// Who signs a renewed certificate: the etcd CA when the node holds its
/// key (etcd nodes, stacked masters), else an etcd node, through etcd.
enum Signer {
    Local(Box<Authority>),
    ThroughEtcd { cluster: KvCluster, node: String },
}

impl Signer {
    /// The new certificate for `leaf`, or `None` while the request waits
    /// for an etcd node.
    fn sign(
        &self,
        leaf: &NodeLeaf,
        spec: &LeafSpec,
        key: &str,
        current: &CertInfo,
        current_pem: &str,
        ca_pem: &str,
    ) -> Result<Option<String>> {
        match self {
            Signer::Local(ca) => Ok(Some(ca.reissue(spec, key)?.cert_pem)),
            Signer::ThroughEtcd { cluster, node } => {
                let stem = leaf_stem(leaf);
                let issued = format!("{ISSUED}{node}/{stem}");
                let answer =
                    cluster.call("read a renewed certificate", |c, e| c.get(e, &issued))?;
                let mine = public_key_of(key)?;
                if let Some(kv) = answer {
                    // Anyone with an etcd client certificate could have put
                    // it there: install it only if it is what was asked for.
                    let fits = acceptable(&kv.value, ca_pem, &mine, spec, current);
                    cluster.call("clear the renewed certificate", |c, e| c.delete(e, &issued))?;
                    match fits {
                        Ok(()) => return Ok(Some(kv.value)),
                        Err(why) => {
                            tracing::warn!(key = %issued, "ignoring the certificate under {issued}: {why}")
                        }
                    }
                }
                let request = format!("{REQUESTS}{node}/{stem}");
                let body = RenewalRequest {
                    csr: signing_request(&spec.common_name, key)?,
                    current: current_pem.to_owned(),
                }
                .to_json();
                cluster.call("ask for a renewed certificate", |c, e| {
                    c.put(e, &request, &body, 0)
                })?;
                tracing::info!(cert = %leaf.cert.display(), decision = "requested", "asked the etcd nodes to renew {} (this node holds no etcd CA key)", leaf.cert.display());
                Ok(None)
            }
        }
    }
}

/// Whether a certificate handed out through etcd is the renewal asked
/// for: signed by this cluster's etcd CA, for this node's key and name,
/// ending later than the current one.
fn acceptable(
    pem: &str,
    ca_pem: &str,
    key: &[u8],
    spec: &LeafSpec,
    current: &CertInfo,
) -> Result<(), String> {
    kiln_node::pki::verify_chain(ca_pem, pem).map_err(|e| e.to_string())?;
    let info = CertInfo::from_pem(pem).map_err(|e| e.to_string())?;
    if info.public_key != key {
        return Err("it is for another key".into());
    }
    if info.common_name.as_deref() != Some(spec.common_name.as_str()) {
        return Err(format!(
            "it names {:?}, not {:?}",
            info.common_name, spec.common_name
        ));
    }
    if info.not_after <= current.not_after {
        return Err("it ends no later than the current certificate".into());
    }
    Ok(())
}

fn leaf_stem(leaf: &NodeLeaf) -> String {
    leaf.cert
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Renews the node's due leaves; returns what happened to each.
pub fn renew_leaves(
    root: &Path,
    config: &NodeConfig,
    now: OffsetDateTime,
) -> Result<Vec<(NodeLeaf, Outcome)>> {
    // Read once: every leaf is judged against, and checked to chain to, it.
    let ca_pem = std::fs::read_to_string(under_root(root, &pki::etcd_ca_cert()))
        .context("reading the etcd CA certificate")?;
    let ca_info = CertInfo::from_pem(&ca_pem).context("the etcd CA")?;
    let mut signer = None;
    let mut outcomes = Vec::new();
    for leaf in node_leaves(config.role) {
        let cert_file = under_root(root, &leaf.cert);
        let Ok(pem) = std::fs::read_to_string(&cert_file) else {
            outcomes.push((leaf, Outcome::Absent));
            continue;
        };
        let info = CertInfo::from_pem(&pem).with_context(|| cert_file.display().to_string())?;
        if !info.due(now, config.pki.renew_before_seconds, &ca_info) {
            if info.inside_window(now, config.pki.renew_before_seconds) {
                tracing::warn!(cert = %leaf.cert.display(), "{} is inside the renewal window but the etcd CA ends first: rotate the CA", leaf.cert.display());
            }
            outcomes.push((leaf, Outcome::Kept(info.seconds_left(now))));
            continue;
        }
        let signer = match &signer {
            Some(s) => s,
            None => signer.insert(signer_for(root, config)?),
        };
        let key_file = under_root(root, &leaf.key);
        let key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        let spec = respec(&info, leaf.usage, config);
        let Some(renewed) = signer.sign(&leaf, &spec, &key, &info, &pem, &ca_pem)? else {
            outcomes.push((leaf, Outcome::Requested));
            continue;
        };
        write_atomic(&cert_file, renewed.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", cert_file.display()))?;
        tracing::info!(
            cert = %leaf.cert.display(),
            decision = "renewed",
            "renewed {} with its key: it had {} s left, less than renew_before",
            leaf.cert.display(),
            info.seconds_left(now)
        );
        outcomes.push((leaf, Outcome::Renewed));
    }
    Ok(outcomes)
}

/// The local etcd CA if the node holds its key, else etcd's members.
fn signer_for(root: &Path, config: &NodeConfig) -> Result<Signer> {
    if let Some(ca) = local_ca(root)? {
        return Ok(Signer::Local(Box::new(ca)));
    }
    // The name it registers under as a keepalived peer too: the signer
    // knows a master by its listing or that registration.
    let masters = config
        .control_plane
        .as_ref()
        .map_or(&[][..], |cp| &cp.masters);
    Ok(Signer::ThroughEtcd {
        cluster: agent_cluster(root, config)?,
        node: identify(&HostFacts::detect()?, masters)?.name,
    })
}

/// This node's name in etcd's renewal keys and locks.
fn hostname() -> Result<String> {
    Ok(nix::unistd::gethostname()
        .context("reading this node's hostname")?
        .to_string_lossy()
        .into_owned())
}

/// The etcd cluster as this node's agent reaches it.
fn agent_cluster(root: &Path, config: &NodeConfig) -> Result<KvCluster> {
    Ok(KvCluster {
        client: EtcdClient::for_agent(root)?,
        endpoints: config.etcd_client_urls(),
    })
}

/// The etcd CA, when its key is on this node: baked for etcd nodes, or
/// kubeadm's on stacked masters.
fn local_ca(root: &Path) -> Result<Option<Authority>> {
    let pairs = [
        (pki::etcd_ca_cert(), pki::etcd_ca_key()),
        (
            PathBuf::from(kube::ETCD_CA),
            PathBuf::from(kube::ETCD_CA_KEY),
        ),
    ];
    for (cert, key) in pairs {
        let (cert, key) = (under_root(root, &cert), under_root(root, &key));
        if let (Ok(cert_pem), Ok(key_pem)) = (
            std::fs::read_to_string(&cert),
            std::fs::read_to_string(&key),
        ) {
            let ca = Authority::load(&cert_pem, &key_pem)
                .with_context(|| format!("loading the etcd CA {}", key.display()))?;
            return Ok(Some(ca));
        }
    }
    Ok(None)
}

/// `kiln-firstboot renew`.
pub fn run(root: &Path, config: &NodeConfig) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let outcomes = renew_leaves(root, config, now)?;
    let signed = match config.role {
        Role::Etcd => match local_ca(root)? {
            Some(ca) => {
                let cluster = agent_cluster(root, config)?;
                signer::sign_waiting_requests(&ca, ca.cert_pem(), &cluster, config)?
            }
            None => 0,
        },
        Role::Master => {
            let etcd_client_renewed = outcomes.iter().any(|(leaf, outcome)| {
                *outcome == Outcome::Renewed && leaf.cert == Path::new(kube::ETCD_CLIENT_CERT)
            });
            let done = renewal::renew(
                root,
                config,
                &agent_cluster(root, config)?,
                &hostname()?,
                etcd_client_renewed,
            )?;
            tracing::info!(
                kubeadm_renewed = done.kubeadm_renewed,
                restarted = done.restarted,
                "kubeadm's certificates: {}; control plane {}",
                if done.kubeadm_renewed {
                    "renewed"
                } else {
                    "not due"
                },
                if done.restarted {
                    "restarted"
                } else {
                    "left running"
                }
            );
            0
        }
        Role::Worker => 0,
    };
    let count = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    tracing::info!(
        renewed = count(Outcome::Renewed),
        requested = count(Outcome::Requested),
        signed,
        "certificate renewal done: {} renewed, {} waiting for an etcd node, {signed} signed for others",
        count(Outcome::Renewed),
        count(Outcome::Requested)
    );
    Ok(())
}
