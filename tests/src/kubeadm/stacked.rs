//! Stacked topology: the etcd kubeadm runs on each control-plane node (a
//! static pod in real kubeadm; here /usr/local/bin/etcd as a service), with
//! member certificates minted from /etc/kubernetes/pki/etcd/ca.{crt,key}.

use std::time::{Duration, Instant};

use super::config::ExternalEtcd;
use super::etcd::Etcd;
use super::openssl::{self, Eku};
use super::service::{self, Service};
use super::{Refused, Result, Root};
use crate::refuse;

/// Tests copy the primary etcd release here (under the root in tier 1).
pub const ETCD_BINARY: &str = "/usr/local/bin/etcd";
pub const NAME: &str = "kubeadm-standin-etcd";
/// kubeadm's EtcdAPICallTimeout: how long it retries etcd calls.
const MEMBER_ADD_TIMEOUT: Duration = Duration::from_secs(120);
const PKI: &str = "/etc/kubernetes/pki";

/// This node as an etcd member.
pub struct Member<'a> {
    pub node: &'a str,
    pub ip: &'a str,
    pub data_dir: &'a str,
}

/// How the API server reaches etcd (kubeadm's apiserver-etcd-client).
pub fn client(endpoints: Vec<String>) -> ExternalEtcd {
    ExternalEtcd {
        endpoints,
        ca_file: format!("{PKI}/etcd/ca.crt"),
        cert_file: format!("{PKI}/apiserver-etcd-client.crt"),
        key_file: format!("{PKI}/apiserver-etcd-client.key"),
    }
}

fn mint_certs(root: &Root, member: &Member) -> Result<()> {
    let ca = (
        root.path(&format!("{PKI}/etcd/ca.crt")),
        root.path(&format!("{PKI}/etcd/ca.key")),
    );
    let sans: Vec<String> = [member.node, member.ip, "127.0.0.1", "localhost"]
        .map(String::from)
        .to_vec();
    let mut leaves = vec![
        ("etcd/server", Eku::Both, sans.clone()),
        ("etcd/peer", Eku::Both, sans),
    ];
    // kubeadm signs the API server's client certificate when it is not pre-placed.
    if !root
        .path(&format!("{PKI}/apiserver-etcd-client.crt"))
        .exists()
    {
        leaves.push(("apiserver-etcd-client", Eku::Client, vec![]));
    }
    for (stem, eku, sans) in leaves {
        let out = (
            root.path(&format!("{PKI}/{stem}.crt")),
            root.path(&format!("{PKI}/{stem}.key")),
        );
        openssl::mint((&ca.0, &ca.1), member.node, eku, &sans, (&out.0, &out.1)).map_err(|e| {
            Refused(format!(
                "signing {PKI}/{stem}.crt with {PKI}/etcd/ca.key: {e}"
            ))
        })?;
    }
    Ok(())
}

fn launch(root: &Root, member: &Member, initial_cluster: &str, state: &str) -> Result<()> {
    let file = |f: &str| root.path(f).display().to_string();
    let url = |port: u16| format!("https://{}:{port}", member.ip);
    let args = [
        ("name", member.node.to_owned()),
        ("data-dir", file(member.data_dir)),
        (
            "listen-client-urls",
            format!("{},https://127.0.0.1:2379", url(2379)),
        ),
        ("advertise-client-urls", url(2379)),
        ("listen-peer-urls", url(2380)),
        ("initial-advertise-peer-urls", url(2380)),
        ("initial-cluster", initial_cluster.to_owned()),
        ("initial-cluster-state", state.to_owned()),
        ("client-cert-auth", "true".to_owned()),
        ("peer-client-cert-auth", "true".to_owned()),
        ("cert-file", file(&format!("{PKI}/etcd/server.crt"))),
        ("key-file", file(&format!("{PKI}/etcd/server.key"))),
        ("trusted-ca-file", file(&format!("{PKI}/etcd/ca.crt"))),
        ("peer-cert-file", file(&format!("{PKI}/etcd/peer.crt"))),
        ("peer-key-file", file(&format!("{PKI}/etcd/peer.key"))),
        ("peer-trusted-ca-file", file(&format!("{PKI}/etcd/ca.crt"))),
    ];
    let program = root.path(ETCD_BINARY);
    if !program.exists() {
        refuse!("stacked etcd: {ETCD_BINARY} is missing (tests copy an etcd release there)");
    }
    service::start(
        root,
        &Service {
            name: NAME,
            description: "stacked etcd member",
            program: program.display().to_string(),
            args: args.iter().map(|(k, v)| format!("--{k}={v}")).collect(),
        },
    )
}

fn wait_ready(root: &Root, ext: &ExternalEtcd) -> Result<()> {
    let local = client(vec![ext.endpoints[0].clone()]);
    let start = Instant::now();
    loop {
        match Etcd::connect(root, &local)?.get("/kiln-standin/probe") {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                refuse!(
                    "stacked etcd at {} not ready within 30 s: {e}",
                    local.endpoints[0]
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `kubeadm init`: a new single-member cluster on this node.
pub fn start_first(root: &Root, member: &Member) -> Result<ExternalEtcd> {
    mint_certs(root, member)?;
    let peer = format!("{}=https://{}:2380", member.node, member.ip);
    launch(root, member, &peer, "new")?;
    let ext = client(vec![format!("https://{}:2379", member.ip)]);
    wait_ready(root, &ext)?;
    Ok(ext)
}

/// `kubeadm join --control-plane`: member-add this node to the cluster
/// `existing` reaches, then start its etcd; endpoints with this one first.
pub fn join(root: &Root, member: &Member, existing: &ExternalEtcd) -> Result<ExternalEtcd> {
    mint_certs(root, member)?;
    let peer_url = format!("https://{}:2380", member.ip);
    // Like kubeadm, retry for EtcdAPICallTimeout: etcd refuses a member add
    // ("unhealthy cluster") while another joining master's member has not
    // started yet.
    let etcd = Etcd::connect(root, existing)?;
    let start = Instant::now();
    let members = loop {
        match etcd.member_add(&peer_url) {
            Ok(members) => break members,
            Err(e) if start.elapsed() > MEMBER_ADD_TIMEOUT => refuse!(
                "stacked etcd: adding {peer_url} failed for {MEMBER_ADD_TIMEOUT:?} ({e}); a replaced master's stale member must be removed first"
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let mut initial = Vec::new();
    for (name, urls) in members {
        let name = if name.is_empty() {
            member.node.to_owned()
        } else {
            name
        };
        initial.extend(urls.iter().map(|u| format!("{name}={u}")));
    }
    launch(root, member, &initial.join(","), "existing")?;
    let mut endpoints = vec![format!("https://{}:2379", member.ip)];
    endpoints.extend(existing.endpoints.iter().cloned());
    let ext = client(endpoints);
    wait_ready(root, &ext)?;
    Ok(ext)
}
