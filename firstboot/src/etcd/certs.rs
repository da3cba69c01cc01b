//! Puts the node's etcd certificates where etcd reads them, minted on the
//! node from the baked etcd CA key at first boot: no member's key is in any
//! config, so it never leaves the member (listed or not).

use std::path::Path;

use anyhow::{Context, Result};

use crate::identity::NodeIdentity;
use kiln_node::fsutil::{create_dir_all_mode, write_atomic};
use kiln_node::layout::etcd::{
    cert_path, CA_CERT, CERT_DIR, PEER_CERT, PEER_KEY, SERVER_CERT, SERVER_KEY,
};
use kiln_node::layout::{pki, under_root};
use kiln_node::node_config::NodeConfig;
use kiln_node::pki::{member_sans, Authority, LeafSpec, Usage};

/// The user Debian's etcd.service runs as.
const ETCD_USER: &str = "etcd";
/// A member's certificates and keys, by usage, in [`CERT_DIR`].
const MEMBER_PAIRS: [(Usage, &str, &str); 2] = [
    (Usage::Server, SERVER_CERT, SERVER_KEY),
    (Usage::Peer, PEER_CERT, PEER_KEY),
];

/// Installs ca.crt, server.{crt,key} and peer.{crt,key} into [`CERT_DIR`].
pub fn install(root: &Path, config: &NodeConfig, me: &NodeIdentity) -> Result<()> {
    let read = |p: &Path| read_node_file(root, p);
    let dir = under_root(root, Path::new(CERT_DIR));
    create_dir_all_mode(&dir, 0o755).with_context(|| format!("creating {}", dir.display()))?;
    let ca_pem = read(&pki::etcd_ca_cert())?;
    let mut files = vec![(CA_CERT, ca_pem.clone(), 0o644)];
    if minted_already(&dir) {
        tracing::info!("keeping the certificates minted by an earlier run");
    } else {
        let key_path = pki::etcd_ca_key();
        let key_pem = read(&key_path).with_context(|| {
            format!(
                "node {} ({}) mints its etcd certificates, but its config has no etcd CA key; \
                 rebuild the config with kiln build",
                me.name, me.ip
            )
        })?;
        let ca = Authority::load(&ca_pem, &key_pem)
            .with_context(|| format!("loading the etcd CA from {}", key_path.display()))?;
        for (usage, crt, key) in MEMBER_PAIRS {
            let leaf = ca.issue(&leaf_spec(config, me, usage))?;
            files.push((crt, leaf.cert_pem, 0o644));
            files.push((key, leaf.key_pem, 0o600));
        }
        tracing::info!(member = %me.name, ip = %me.ip, "minted server and peer certificates from the etcd CA");
    }
    let owner = etcd_owner();
    for (name, pem, mode) in files {
        let path = under_root(root, &cert_path(name));
        write_atomic(&path, pem.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(owner) = owner {
            give_to_etcd(&path, owner)?;
        }
    }
    Ok(())
}

/// What `run` needs of the node's certificates, checked before anything
/// changes, so `plan` reports the same failures `run` would: the agent's
/// client certificate and the CA key to mint the member's certificates (or
/// those minted by an earlier run) are there, keys are 0600, and the
/// agent's certificate is signed by the etcd CA of this node's cluster.
pub fn preflight(root: &Path, me: &NodeIdentity) -> Result<()> {
    let read = |p: &Path| read_node_file(root, p);
    let ca_path = pki::etcd_ca_cert();
    let ca = read(&ca_path)?;
    let installed = under_root(root, Path::new(CERT_DIR));
    if !minted_already(&installed) {
        let key = pki::etcd_ca_key();
        if !under_root(root, &key).exists() {
            anyhow::bail!(
                "node {} ({}) mints its etcd certificates, but its config has no etcd CA key \
                 {}; rebuild the config with kiln build",
                me.name,
                me.ip,
                key.display()
            );
        }
        private(root, &key)?;
    }
    let (cert, key) = (pki::etcd_agent_client_cert(), pki::etcd_agent_client_key());
    private(root, &key)?;
    kiln_node::pki::verify_chain(&ca, &read(&cert)?).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid certificate of this cluster's etcd CA {}: {e}; the image \
             mixes certificates of two clusters or they expired: rebuild it from one \
             secrets folder",
            cert.display(),
            ca_path.display()
        )
    })?;
    Ok(())
}

/// A node file under `root`, as text; the error names it.
fn read_node_file(root: &Path, node_path: &Path) -> Result<String> {
    let path = under_root(root, node_path);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Refuses a key file others may read.
fn private(root: &Path, key: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = under_root(root, key);
    let mode = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} has mode {mode:o}: a private key must be 0600; rebuild the image (kiln writes \
             keys 0600) or run `chmod 600 {}`",
            key.display(),
            key.display()
        );
    }
    Ok(())
}

fn minted_already(dir: &Path) -> bool {
    MEMBER_PAIRS
        .iter()
        .all(|(_, crt, key)| dir.join(crt).exists() && dir.join(key).exists())
}

fn leaf_spec(config: &NodeConfig, me: &NodeIdentity, usage: Usage) -> LeafSpec {
    let (dns_names, ips) = member_sans(
        &me.name,
        &config.domain,
        &me.dns_names,
        me.ip,
        config.etcd_endpoint_host(),
    );
    LeafSpec {
        common_name: me.name.clone(),
        organization: None,
        usage,
        dns_names,
        ips,
        algorithm: config.pki.key_algorithm,
        validity_seconds: config.pki.leaf_validity_seconds,
    }
}

/// etcd runs as user etcd: its keys must be its own (0600). Absent user
/// (a test root on a machine without etcd's package): leave them to root.
pub fn etcd_owner() -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    nix::unistd::User::from_name(ETCD_USER)
        .ok()
        .flatten()
        .map(|u| (u.uid, u.gid))
}

/// Gives `path` to user etcd, as [`etcd_owner`] found it.
pub fn give_to_etcd(path: &Path, (uid, gid): (nix::unistd::Uid, nix::unistd::Gid)) -> Result<()> {
    nix::unistd::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to user {ETCD_USER}", path.display()))
}
