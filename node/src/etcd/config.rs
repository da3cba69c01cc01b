//! The etcd configuration the agent writes for Debian's `etcd.service`: a
//! drop-in that points the unit at kiln's environment file, and that file
//! (etcd reads `ETCD_*` variables; the unit's `$DAEMON_ARGS` stays empty).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::version::version_settings;
use crate::fsutil::write_with_parents;
use crate::layout::etcd::{
    cert_path, CA_CERT, DROP_IN, ENV_FILE, PEER_CERT, PEER_KEY, SERVER_CERT, SERVER_KEY,
};
use crate::layout::under_root;
use crate::versions::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// Everything that differs between nodes and decisions.
#[derive(Debug, Clone)]
pub struct EtcdSettings<'a> {
    pub name: &'a str,
    pub data_dir: &'a Path,
    pub client_url: &'a str,
    pub peer_url: &'a str,
    /// `name=peer_url` pairs for `--initial-cluster`.
    pub initial_cluster: Vec<(String, String)>,
    pub state: ClusterState,
    pub token: &'a str,
    /// The node's etcd: settings that differ between minors follow it.
    pub version: Version,
}

/// `name=peer_url` pairs as etcd's `--initial-cluster` (and
/// `ETCD_INITIAL_CLUSTER`) take them: comma separated.
pub fn initial_cluster(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Renders the environment file.
pub fn render_env(s: &EtcdSettings) -> String {
    let state = match s.state {
        ClusterState::New => "new",
        ClusterState::Existing => "existing",
    };
    let cert = |f: &str| cert_path(f).display().to_string();
    let vars = [
        ("ETCD_NAME", s.name.to_owned()),
        ("ETCD_DATA_DIR", s.data_dir.display().to_string()),
        ("ETCD_LISTEN_CLIENT_URLS", s.client_url.to_owned()),
        ("ETCD_ADVERTISE_CLIENT_URLS", s.client_url.to_owned()),
        ("ETCD_LISTEN_PEER_URLS", s.peer_url.to_owned()),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", s.peer_url.to_owned()),
        ("ETCD_INITIAL_CLUSTER", initial_cluster(&s.initial_cluster)),
        ("ETCD_INITIAL_CLUSTER_STATE", state.to_owned()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", s.token.to_owned()),
        ("ETCD_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_TRUSTED_CA_FILE", cert(CA_CERT)),
        ("ETCD_CERT_FILE", cert(SERVER_CERT)),
        ("ETCD_KEY_FILE", cert(SERVER_KEY)),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_owned()),
        ("ETCD_PEER_TRUSTED_CA_FILE", cert(CA_CERT)),
        ("ETCD_PEER_CERT_FILE", cert(PEER_CERT)),
        ("ETCD_PEER_KEY_FILE", cert(PEER_KEY)),
    ];
    let mut out = format!(
        "# Written by kiln-firstboot for etcd {}; rewritten on every first-boot run.\n",
        s.version
    );
    let versioned = version_settings(s.version);
    for (key, value) in vars.into_iter().chain(versioned) {
        let _ = writeln!(out, "{key}={value}");
    }
    out
}

/// The drop-in: reset the unit's environment files to kiln's only, so the
/// package's single-node localhost defaults never apply.
pub fn render_drop_in() -> String {
    format!("# Written by kiln-firstboot.\n{}", service_settings())
}

/// The `[Service]` lines that point Debian's etcd.service at kiln's
/// configuration; the image's boot gate carries the same lines.
pub fn service_settings() -> String {
    format!(
        "[Service]\nEnvironmentFile=\nEnvironmentFile={ENV_FILE}\n\
         Restart=on-failure\nRestartSec=2s\n"
    )
}

/// Writes the environment file and the drop-in under `root`.
pub fn write(root: &Path, settings: &EtcdSettings) -> Result<()> {
    for (path, text) in [
        (ENV_FILE, render_env(settings)),
        (DROP_IN, render_drop_in()),
    ] {
        write_with_parents(&under_root(root, Path::new(path)), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Parses `KEY=value` lines the way systemd's `EnvironmentFile=` does for
/// the simple, unquoted files kiln writes.
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_round_trips_and_names_the_whole_initial_cluster() {
        let settings = EtcdSettings {
            name: "etcd1",
            data_dir: Path::new("/var/lib/etcd"),
            client_url: "https://10.77.0.11:2379",
            peer_url: "https://10.77.0.11:2380",
            initial_cluster: vec![
                ("etcd1".into(), "https://10.77.0.11:2380".into()),
                ("etcd2".into(), "https://10.77.0.12:2380".into()),
            ],
            state: ClusterState::New,
            token: "prod",
            version: Version::new(3, 6, 4),
        };
        let vars = parse_env(&render_env(&settings));
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("ETCD_INITIAL_CLUSTER"),
            Some("etcd1=https://10.77.0.11:2380,etcd2=https://10.77.0.12:2380")
        );
        assert_eq!(get("ETCD_INITIAL_CLUSTER_STATE"), Some("new"));
        assert_eq!(get("ETCD_KEY_FILE"), Some("/etc/etcd/pki/server.key"));
        assert_eq!(get("ETCD_FEATURE_GATES"), Some("InitialCorruptCheck=true"));
    }
}
