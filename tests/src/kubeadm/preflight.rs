//! kubeadm's preflight for the files kiln pre-places: a control plane with
//! external etcd needs the full PKI (keys 0600, certificates chaining to the
//! right CA) and an etcd recent enough for its kubeadm; a worker has the
//! cluster CA certificate and never its key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::config::ExternalEtcd;
use super::etcd::Etcd;
use super::rules::{self, Semver};
use super::{openssl, Refused, Result, Root};
use crate::refuse;

pub const PKI: &str = "/etc/kubernetes/pki";

/// Files `kubeadm init`/`join --control-plane` reads and never creates, on
/// every control plane (kiln shares them so all masters form one cluster).
const SHARED_FILES: [&str; 7] = [
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
];
/// With external etcd kubeadm cannot sign the client certificate itself.
const EXTERNAL_FILES: [&str; 2] = ["apiserver-etcd-client.crt", "apiserver-etcd-client.key"];
/// With stacked etcd kubeadm signs the member certificates on each master.
const STACKED_FILES: [&str; 1] = ["etcd/ca.key"];

fn exists(root: &Root, node_path: &str) -> Result<()> {
    let file = root.path(node_path);
    match std::fs::metadata(&file) {
        Ok(m) if m.is_file() => Ok(()),
        _ => refuse!("preflight: {node_path} is missing (kubeadm needs it pre-placed)"),
    }
}

fn private(root: &Root, node_path: &str) -> Result<()> {
    let mode = std::fs::metadata(root.path(node_path))
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| Refused(format!("preflight: reading {node_path}: {e}")))?;
    if mode != 0o600 {
        refuse!("preflight: {node_path} has mode {mode:o}; private keys must be 0600");
    }
    Ok(())
}

fn chains(root: &Root, ca: &str, cert: &str) -> Result<()> {
    openssl::verify(&root.path(ca), &root.path(cert))
        .map_err(|e| Refused(format!("preflight: {cert} is not signed by {ca}: {e}")))
}

fn self_signed_ca(root: &Root, cert: &str) -> Result<()> {
    openssl::is_self_signed_ca(&root.path(cert))
        .map_err(|e| Refused(format!("preflight: {cert} is not a self-signed CA: {e}")))
}

fn pair(root: &Root, cert: &str, key: &str) -> Result<()> {
    let fail = |e: String| Refused(format!("preflight: reading {cert}/{key}: {e}"));
    let a = openssl::cert_public_key(&root.path(cert)).map_err(fail)?;
    let b = openssl::key_public_key(&root.path(key)).map_err(fail)?;
    if a != b {
        refuse!("preflight: {key} is not the private key of {cert}");
    }
    Ok(())
}

fn present(root: &Root, files: &[&str]) -> Result<()> {
    for f in files {
        let path = format!("{PKI}/{f}");
        exists(root, &path)?;
        if f.ends_with(".key") {
            private(root, &path)?;
        }
    }
    Ok(())
}

/// Control-plane preflight with external etcd; `external` adds the files
/// etcd.external names (a join knows them only after discovery).
pub fn control_plane(root: &Root, external: Option<&ExternalEtcd>) -> Result<()> {
    let full = |f: &str| format!("{PKI}/{f}");
    shared(root)?;
    present(root, &EXTERNAL_FILES)?;
    chains(
        root,
        &full("etcd/ca.crt"),
        &full("apiserver-etcd-client.crt"),
    )?;
    pair(
        root,
        &full("apiserver-etcd-client.crt"),
        &full("apiserver-etcd-client.key"),
    )?;
    if let Some(ext) = external {
        for f in [&ext.ca_file, &ext.cert_file, &ext.key_file] {
            exists(root, f)?;
        }
        private(root, &ext.key_file)?;
        chains(root, &ext.ca_file, &ext.cert_file)?;
        pair(root, &ext.cert_file, &ext.key_file)?;
    }
    Ok(())
}

/// kubeadm's ExternalEtcdVersionCheck (cmd/kubeadm/app/preflight/checks.go),
/// run by `kubeadm init` with external etcd: GET `<endpoint>/version` of
/// every endpoint with etcd.external's caFile, certFile and keyFile, and
/// refuse an `etcdserver` older than MinExternalEtcdVersion of kubeadm
/// `1.<minor>` (the stand-in plays the kubeadm of kubernetesVersion). kubeadm
/// retries a failed request 3 times, 5 s apart; the stand-in asks once.
pub fn external_etcd_version(root: &Root, ext: &ExternalEtcd, minor: u32) -> Result<()> {
    let answers = Etcd::connect(root, ext)?.versions();
    if answers.iter().all(|(_, a)| a.is_err()) {
        let why: Vec<String> = answers
            .iter()
            .map(|(url, a)| format!("{url}: {}", a.as_ref().err().map_or("", String::as_str)))
            .collect();
        refuse!(
            "preflight: [ExternalEtcdVersion] no etcd endpoint answered: {}",
            why.join("; ")
        );
    }
    let minimum = rules::min_external_etcd(minor);
    for (url, answer) in &answers {
        match answer {
            Ok(body) => etcd_version_at_least(minimum, url, body)?,
            Err(e) => refuse!("preflight: [ExternalEtcdVersion] {url}: {e}"),
        }
    }
    Ok(())
}

/// The decision of ExternalEtcdVersionCheck on one `/version` answer
/// (`{"etcdserver":"3.5.30","etcdcluster":"3.5.0"}`), with kubeadm's words.
pub fn etcd_version_at_least(minimum: &str, url: &str, body: &str) -> Result<()> {
    let answer: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        Refused(format!(
            "preflight: [ExternalEtcdVersion] {url} answered no JSON: {e}"
        ))
    })?;
    let server = answer["etcdserver"].as_str().unwrap_or_default();
    let Some(current) = Semver::parse(server) else {
        refuse!("preflight: [ExternalEtcdVersion] couldn't parse external etcd version {server:?} ({url})");
    };
    let min = Semver::parse(minimum).expect("kubeadm's minimum is a semantic version");
    if current < min {
        refuse!(
            "preflight: [ExternalEtcdVersion] this version of kubeadm only supports external etcd version >= {minimum}. Current version: {server}"
        );
    }
    Ok(())
}

/// Control-plane preflight with stacked etcd: the etcd CA key signs members.
pub fn stacked(root: &Root) -> Result<()> {
    let full = |f: &str| format!("{PKI}/{f}");
    shared(root)?;
    present(root, &STACKED_FILES)?;
    pair(root, &full("etcd/ca.crt"), &full("etcd/ca.key"))
}

fn shared(root: &Root) -> Result<()> {
    let full = |f: &str| format!("{PKI}/{f}");
    present(root, &SHARED_FILES)?;
    self_signed_ca(root, &full("ca.crt"))?;
    self_signed_ca(root, &full("front-proxy-ca.crt"))?;
    self_signed_ca(root, &full("etcd/ca.crt"))?;
    pair(root, &full("ca.crt"), &full("ca.key"))?;
    pair(
        root,
        &full("front-proxy-ca.crt"),
        &full("front-proxy-ca.key"),
    )?;
    let sa_pub = openssl::public_key(&root.path(&full("sa.pub"))).map_err(|e| {
        Refused(format!(
            "preflight: {} is not a public key: {e}",
            full("sa.pub")
        ))
    })?;
    let sa_key = openssl::key_public_key(&root.path(&full("sa.key"))).map_err(|e| {
        Refused(format!(
            "preflight: {} is not a private key: {e}",
            full("sa.key")
        ))
    })?;
    if sa_pub != sa_key {
        refuse!(
            "preflight: {} is not the public half of {}",
            full("sa.pub"),
            full("sa.key")
        );
    }
    Ok(())
}

/// Worker preflight: kubeadm's (FileAvailable on `ca_cert_path`: the join
/// writes the CA it discovered there), and kiln's own rule that no CA
/// private key is under /etc/kubernetes or kiln's baked PKI (a stolen
/// worker must not sign).
pub fn worker(root: &Root, ca_cert_path: &str) -> Result<()> {
    if root.path(ca_cert_path).exists() {
        refuse!("preflight: [FileAvailable] {ca_cert_path} already exists");
    }
    let mut found = Vec::new();
    for dir in ["/etc/kubernetes", "/etc/kiln/pki"] {
        walk(&root.path(dir), &mut found);
    }
    let cas: Vec<(String, Vec<u8>)> = found
        .iter()
        .filter(|f| openssl::is_self_signed_ca(f).is_ok())
        .filter_map(|f| Some((node_path(root, f), openssl::cert_public_key(f).ok()?)))
        .collect();
    for file in &found {
        let shown = node_path(root, file);
        if shown.ends_with("ca.key") {
            refuse!("preflight: {shown} exists on a worker: a CA private key must never be on a worker image");
        }
        let text = std::fs::read(file).unwrap_or_default();
        if !String::from_utf8_lossy(&text).contains("PRIVATE KEY") {
            continue;
        }
        let Ok(public) = openssl::key_public_key(file) else {
            continue;
        };
        if let Some((ca, _)) = cas.iter().find(|(_, k)| *k == public) {
            refuse!("preflight: {shown} is the private key of the CA {ca}: a CA private key must never be on a worker image");
        }
    }
    Ok(())
}

fn node_path(root: &Root, file: &Path) -> String {
    match &root.dir {
        Some(dir) => format!("/{}", file.strip_prefix(dir).unwrap_or(file).display()),
        None => file.display().to_string(),
    }
}

fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, found),
            Ok(t) if t.is_file() => found.push(path),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::etcd_version_at_least;

    fn body(v: &str) -> String {
        format!("{{\"etcdserver\":\"{v}\",\"etcdcluster\":\"3.5.0\"}}")
    }

    #[test]
    fn external_etcd_version_at_both_ends() {
        let check =
            |min: &str, v: &str| etcd_version_at_least(min, "https://e:2379/version", &body(v));
        let old = check("3.5.24-0", "3.5.23").unwrap_err().0;
        assert!(
            old.ends_with("this version of kubeadm only supports external etcd version >= 3.5.24-0. Current version: 3.5.23"),
            "{old}"
        );
        assert!(check("3.5.24-0", "3.5.24").is_ok());
        assert!(check("3.5.24-0", "3.6.0").is_ok());
        assert!(check("3.5.24-0", "3.4.23").is_err());
        assert!(
            check("3.4.13-4", "3.4.23").is_ok(),
            "kubeadm 1.30 takes bookworm's etcd"
        );
        assert!(check("3.5.24-0", "3.5")
            .unwrap_err()
            .0
            .contains("couldn't parse"));
        assert!(etcd_version_at_least("3.5.24-0", "u", "not json").is_err());
    }
}
