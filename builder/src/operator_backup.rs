//! `kiln backup --out FILE`: streams a snapshot of the live etcd cluster
//! with the secrets folder's client certificate, verifies it and writes it
//! atomically (0600), so CI or an operator keeps copies off the nodes.

use std::path::Path;

use anyhow::{bail, Result};
use kiln_node::etcd::client::EtcdClient;
use kiln_node::etcd::snapshot::{db_status, VerifiedSnapshot};

/// Progress lines come this many bytes apart.
const PROGRESS_STEP: u64 = 16 << 20;

/// What was written, for the summary line.
pub struct BackupReport {
    pub endpoint: String,
    pub snapshot: VerifiedSnapshot,
    /// Revision and key count as etcd's own tool reads the file, when installed.
    pub db: Option<kiln_node::etcd::snapshot::DbStatus>,
}

/// Takes the snapshot from the first of `endpoints` that delivers one.
pub fn backup(
    client: &EtcdClient,
    endpoints: &[String],
    out: &Path,
    force: bool,
) -> Result<BackupReport> {
    if out.exists() && !force {
        bail!(
            "{} exists: pass --force to replace it, or choose another --out",
            out.display()
        );
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "folder {} of --out does not exist: create it first",
                dir.display()
            );
        }
    }
    let mut failures = Vec::new();
    for endpoint in endpoints {
        tracing::info!("taking a snapshot from {endpoint} ...");
        let mut next = PROGRESS_STEP;
        let mut progress = |received: u64| {
            if received >= next {
                tracing::info!("  {} MiB received", received >> 20);
                next = received + PROGRESS_STEP;
            }
        };
        match client.snapshot_to(endpoint, out, &mut progress) {
            Ok(snapshot) => {
                let db = match db_status(out) {
                    Ok(db) => Some(db),
                    Err(e) => {
                        tracing::info!("note: {e:#}; the SHA-256 trailer was verified");
                        None
                    }
                };
                return Ok(BackupReport {
                    endpoint: endpoint.clone(),
                    snapshot,
                    db,
                });
            }
            Err(e) => {
                tracing::warn!("{endpoint}: {e:#}");
                failures.push(format!("{endpoint}: {e:#}"));
            }
        }
    }
    bail!(
        "no etcd member delivered a snapshot ({}); check `kiln health` and --endpoints",
        failures.join("; ")
    )
}

/// The summary an operator (or CI log) keeps with the file.
pub fn summary(out: &Path, report: &BackupReport) -> String {
    let db = report.db.as_ref().map_or(String::new(), |db| {
        format!(
            ", revision {}, {} keys, etcd hash {:08x}",
            db.revision, db.total_key, db.hash
        )
    });
    format!(
        "wrote {} from {}: {} bytes, sha256 {}{db}",
        out.display(),
        report.endpoint,
        report.snapshot.size,
        report.snapshot.sha256
    )
}
