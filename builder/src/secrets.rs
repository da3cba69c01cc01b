//! The secrets folder: the cluster's CAs, keys and bootstrap token, created
//! once and reused by every later build so that rebuilt images join the same
//! cluster. The folder is 0700 and its keys 0600 from the moment they exist.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kiln_node::fsutil::{create_dir_all_mode, write_atomic};
use kiln_node::pki::{Authority, CertInfo, CertifiedKey, LeafSpec, Usage};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// Identifies the cluster a secrets folder belongs to.
const IDENTITY_FILE: &str = "kiln-secrets.toml";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    cluster: String,
}

/// A CA or leaf certificate with its key, as stored in the folder.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl From<CertifiedKey> for Pair {
    fn from(c: CertifiedKey) -> Pair {
        Pair {
            cert: c.cert_pem,
            key: c.key_pem,
        }
    }
}

/// Everything the role layers need from the secrets folder.
pub struct Secrets {
    pub etcd_ca: Pair,
    pub cluster_ca: Pair,
    pub front_proxy_ca: Pair,
    /// Service-account signing key (private PEM, public PEM).
    pub service_account: Pair,
    pub apiserver_etcd_client: Pair,
    /// For operators (`etcdctl`, `kiln health`).
    pub etcd_operator_client: Pair,
    /// For the agent's own etcd calls.
    pub etcd_agent_client: Pair,
    /// `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: String,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo.
    pub discovery_hash: String,
}

/// Files of a CA, an ordinary key pair, or a leaf, relative to the folder.
const ETCD_CA: &str = "etcd/ca";
const CLUSTER_CA: &str = "ca";
const FRONT_PROXY_CA: &str = "front-proxy-ca";
const SERVICE_ACCOUNT: &str = "sa";
const APISERVER_ETCD_CLIENT: &str = "apiserver-etcd-client";
const ETCD_OPERATOR_CLIENT: &str = "etcd/operator";
const ETCD_AGENT_CLIENT: &str = "etcd/kiln-agent";
const BOOTSTRAP_TOKEN: &str = "bootstrap-token";
/// The etcd client certificates of the folder, with their common names.
const CLIENT_LEAVES: [(&str, &str); 3] = [
    (APISERVER_ETCD_CLIENT, "kube-apiserver-etcd-client"),
    (ETCD_OPERATOR_CLIENT, "kiln-operator"),
    (ETCD_AGENT_CLIENT, "kiln-agent"),
];
/// The folder's CAs; a build warns when one has less than a year left.
const CAS: [&str; 3] = [ETCD_CA, CLUSTER_CA, FRONT_PROXY_CA];
const CA_WARN_SECONDS: i64 = 365 * 86_400;

impl Secrets {
    /// Opens the secrets folder of `profile`'s cluster at `dir`, creating it
    /// (complete, or not at all) on first use. No etcd member's key is here:
    /// each member mints its own at first boot, so its key never leaves it.
    /// A folder of an older kiln keeps its `etcd/members/` untouched (no
    /// secret is deleted by a build), unused.
    pub fn open_or_create(dir: &Path, profile: &Profile) -> Result<Secrets> {
        if !dir.exists() {
            create(dir, profile)
                .with_context(|| format!("creating secrets folder {}", dir.display()))?;
            tracing::info!(
                "created secrets folder {} (back it up: it holds the cluster's CA keys)",
                dir.display()
            );
        }
        check_folder(dir, &profile.cluster.name)?;
        let store = Store { dir };
        store.rotate_token_if_deleted()?;
        let cluster_ca = store.read_pair(CLUSTER_CA)?;
        let discovery_hash = Authority::load(&cluster_ca.cert, &cluster_ca.key)
            .with_context(|| format!("loading the cluster CA from {}", dir.display()))?
            .discovery_hash();
        let etcd_ca = store.read_pair(ETCD_CA)?;
        store.warn_about_expiring_cas()?;
        let mut renewer = Renewer::new(&etcd_ca, profile)?;
        for (stem, common_name) in CLIENT_LEAVES {
            renewer.renew_if_due(&store, stem, &client_spec(common_name, profile))?;
        }
        Ok(Secrets {
            etcd_ca,
            cluster_ca,
            front_proxy_ca: store.read_pair(FRONT_PROXY_CA)?,
            service_account: Pair {
                key: store.read(&format!("{SERVICE_ACCOUNT}.key"))?,
                cert: store.read(&format!("{SERVICE_ACCOUNT}.pub"))?,
            },
            apiserver_etcd_client: store.read_pair(APISERVER_ETCD_CLIENT)?,
            etcd_operator_client: store.read_pair(ETCD_OPERATOR_CLIENT)?,
            etcd_agent_client: store.read_pair(ETCD_AGENT_CLIENT)?,
            bootstrap_token: store.read(BOOTSTRAP_TOKEN)?.trim().to_owned(),
            discovery_hash,
        })
    }
}

/// Generates the cluster-wide material into a private staging folder beside
/// `dir` and renames it into place, so a crash never leaves half a folder.
fn create(dir: &Path, profile: &Profile) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-secrets-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging folder in {}", parent.display()))?;
    let store = Store {
        dir: staging.path(),
    };
    let pki = &profile.pki;
    let alg = pki.key_algorithm;
    let name = &profile.cluster.name;

    let (etcd_ca, etcd_pair) =
        Authority::generate(&format!("{name}-etcd-ca"), alg, pki.ca_validity_days)?;
    store.write_pair(ETCD_CA, &etcd_pair.into())?;
    let (_, cluster_pair) = Authority::generate("kubernetes", alg, pki.ca_validity_days)?;
    store.write_pair(CLUSTER_CA, &cluster_pair.into())?;
    let (_, front_proxy) = Authority::generate("front-proxy-ca", alg, pki.ca_validity_days)?;
    store.write_pair(FRONT_PROXY_CA, &front_proxy.into())?;
    let (sa_key, sa_pub) = kiln_node::pki::generate_key_pair(alg)?;
    store.write(&format!("{SERVICE_ACCOUNT}.key"), &sa_key, KEY_MODE)?;
    store.write(&format!("{SERVICE_ACCOUNT}.pub"), &sa_pub, CERT_MODE)?;
    for (stem, common_name) in CLIENT_LEAVES {
        let spec = client_spec(common_name, profile);
        store.write_pair(stem, &etcd_ca.issue(&spec)?.into())?;
    }
    store.write(
        BOOTSTRAP_TOKEN,
        &format!("{}\n", bootstrap_token()?),
        KEY_MODE,
    )?;
    store.write(
        IDENTITY_FILE,
        &toml::to_string(&Identity {
            cluster: name.clone(),
        })?,
        CERT_MODE,
    )?;
    let staging = staging.keep();
    fs::rename(&staging, dir)
        .with_context(|| format!("moving {} to {}", staging.display(), dir.display()))?;
    Ok(())
}

/// Refuses a folder others can read, that another user owns, or that holds
/// another cluster's secrets.
fn check_folder(dir: &Path, cluster: &str) -> Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("secrets folder {} is not a folder", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "secrets folder {} is accessible to group or others (mode {:o}): it holds CA keys; \
             run `chmod 700 {}` after checking nobody copied them",
            dir.display(),
            meta.mode() & 0o777,
            dir.display()
        );
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "secrets folder {} belongs to uid {}, not to the user running kiln",
            dir.display(),
            meta.uid()
        );
    }
    let identity_path = dir.join(IDENTITY_FILE);
    let text = fs::read_to_string(&identity_path).with_context(|| {
        format!(
            "reading {}: {} is not a kiln secrets folder (point --secrets at an empty or missing folder to create one)",
            identity_path.display(),
            dir.display()
        )
    })?;
    let identity: Identity =
        toml::from_str(&text).with_context(|| format!("parsing {}", identity_path.display()))?;
    if identity.cluster != cluster {
        bail!(
            "secrets folder {} belongs to cluster {:?}, not {:?}: use --secrets with the folder of cluster {:?}, \
             or a new folder to create fresh secrets",
            dir.display(),
            identity.cluster,
            cluster,
            cluster
        );
    }
    Ok(())
}

/// Reads and writes the folder's files by their relative stem.
struct Store<'a> {
    dir: &'a Path,
}

impl Store<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn read(&self, rel: &str) -> Result<String> {
        let path = self.path(rel);
        let meta = fs::metadata(&path).with_context(|| {
            format!(
                "secrets folder {} is incomplete: {} is missing; restore the folder from its backup \
                 (a new CA would split the cluster)",
                self.dir.display(),
                path.display()
            )
        })?;
        if rel.ends_with(".key") && meta.mode() & 0o077 != 0 {
            bail!(
                "{} is accessible to group or others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            );
        }
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Deleting the bootstrap token file is how an operator rotates the
    /// token alone: the CAs stay, so the cluster is still the same.
    fn rotate_token_if_deleted(&self) -> Result<()> {
        let path = self.path(BOOTSTRAP_TOKEN);
        if path.exists() {
            return Ok(());
        }
        self.write(
            BOOTSTRAP_TOKEN,
            &format!("{}\n", bootstrap_token()?),
            KEY_MODE,
        )?;
        tracing::info!(
            "generated a new bootstrap token in {} (the previous one was deleted): a master \
             booted from the new images adds it to the cluster, or run `kubeadm token create \
             <token> --ttl 0s` on a master before workers boot from them; retire the old one \
             with `kubeadm token delete <old token id>`",
            path.display()
        );
        Ok(())
    }

    /// Warns about every CA with less than a year left: kiln never replaces
    /// a CA by itself (a new CA is a new cluster to every node).
    fn warn_about_expiring_cas(&self) -> Result<()> {
        let now = time::OffsetDateTime::now_utc();
        for stem in CAS {
            let info = CertInfo::from_pem(&self.read(&format!("{stem}.crt"))?)
                .with_context(|| format!("{}.crt", self.path(stem).display()))?;
            let left = info.seconds_left(now);
            if left < CA_WARN_SECONDS {
                tracing::warn!(
                    "the CA {stem}.crt in {} expires on {} ({}): leaves cannot outlive it; \
                     plan its rotation now (docs/certificates.md)",
                    self.dir.display(),
                    info.not_after.date(),
                    crate::certs::span_text(left)
                );
            }
        }
        Ok(())
    }

    fn read_pair(&self, stem: &str) -> Result<Pair> {
        Ok(Pair {
            cert: self.read(&format!("{stem}.crt"))?,
            key: self.read(&format!("{stem}.key"))?,
        })
    }

    fn write(&self, rel: &str, contents: &str, mode: u32) -> Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            create_dir_all_mode(parent, 0o700)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        write_atomic(&path, contents.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn write_pair(&self, stem: &str, pair: &Pair) -> Result<()> {
        self.write(&format!("{stem}.key"), &pair.key, KEY_MODE)?;
        self.write(&format!("{stem}.crt"), &pair.cert, CERT_MODE)
    }
}

/// Reissues leaves with their existing keys: never a new key, never a
/// deleted one; the etcd CA is loaded only when a leaf needs it.
struct Renewer<'a> {
    etcd_ca: &'a Pair,
    /// The etcd CA's certificate, read once: every leaf is judged against it.
    ca_info: CertInfo,
    authority: Option<Authority>,
    renew_before: u64,
    now: time::OffsetDateTime,
}

impl<'a> Renewer<'a> {
    fn new(etcd_ca: &'a Pair, profile: &Profile) -> Result<Renewer<'a>> {
        let ca_info =
            CertInfo::from_pem(&etcd_ca.cert).context("the etcd CA of the secrets folder")?;
        Ok(Renewer {
            etcd_ca,
            ca_info,
            authority: None,
            renew_before: profile.pki.renew_before_seconds(),
            now: time::OffsetDateTime::now_utc(),
        })
    }

    fn authority(&mut self) -> Result<&Authority> {
        let ca = match self.authority.take() {
            Some(ca) => ca,
            None => Authority::load(&self.etcd_ca.cert, &self.etcd_ca.key)
                .context("loading the etcd CA of the secrets folder")?,
        };
        Ok(self.authority.insert(ca))
    }

    /// Reissues `stem`.crt when it has less than `renew_before` left.
    fn renew_if_due(&mut self, store: &Store, stem: &str, spec: &LeafSpec) -> Result<()> {
        let path = store.path(&format!("{stem}.crt"));
        let info = CertInfo::from_pem(&store.read(&format!("{stem}.crt"))?)
            .with_context(|| path.display().to_string())?;
        let ca = &self.ca_info;
        if !info.due(self.now, self.renew_before, ca) {
            if info.inside_window(self.now, self.renew_before) {
                tracing::warn!(
                    "{stem}.crt is inside the renewal window but cannot be renewed: \
                     the etcd CA ends first ({}); rotate the CA",
                    ca.not_after.date()
                );
            }
            return Ok(());
        }
        let left = info.seconds_left(self.now);
        let why = if left <= 0 {
            "it had expired".to_owned()
        } else {
            format!(
                "{} left, inside the renewal window",
                crate::certs::span_text(left)
            )
        };
        self.reissue(store, stem, spec, &why)
    }

    /// A new certificate for the key of `stem`; the key file is not touched.
    fn reissue(&mut self, store: &Store, stem: &str, spec: &LeafSpec, why: &str) -> Result<()> {
        let key = store.read(&format!("{stem}.key"))?;
        let leaf = self.authority()?.reissue(spec, &key)?;
        store.write(&format!("{stem}.crt"), &leaf.cert_pem, CERT_MODE)?;
        tracing::info!("reissued {stem}.crt with its key ({why})");
        Ok(())
    }
}

/// The LeafSpec of one of the folder's etcd client certificates.
fn client_spec(common_name: &str, profile: &Profile) -> LeafSpec {
    LeafSpec {
        common_name: common_name.to_owned(),
        organization: None,
        usage: Usage::Client,
        dns_names: vec![],
        ips: vec![],
        algorithm: profile.pki.key_algorithm,
        validity_seconds: profile.pki.leaf_validity_seconds(),
    }
}

/// A kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, from the OS's CSPRNG.
fn bootstrap_token() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    while out.len() < 23 {
        if out.len() == 6 {
            out.push('.');
        }
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte).context("reading random bytes")?;
        // 252 = 7 * 36: rejecting larger bytes keeps every character equally likely.
        if byte[0] < 252 {
            out.push(ALPHABET[usize::from(byte[0] % 36)] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_token_has_kubeadm_shape() {
        let token = bootstrap_token().unwrap();
        let (id, secret) = token.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(token
            .chars()
            .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
