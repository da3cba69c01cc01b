//! Disaster recovery at first boot: an initial member that would bootstrap a
//! new cluster rebuilds it from the profile's `restore_from` snapshot
//! instead (`snapshot restore` into a folder beside the data dir, then a
//! rename), so the cluster comes back with its keys under new member IDs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::certs;
use super::node::EtcdMember;
use kiln_node::etcd::snapshot::{etcd_tool, verify_trailer};
use kiln_node::fsutil::sync_parent;
use kiln_node::layout::under_root;

/// A verified snapshot this member will restore from.
#[derive(Debug, Clone)]
pub struct Restore {
    /// The file under the agent's root.
    pub file: PathBuf,
    /// `--initial-cluster-token` of the restored cluster.
    pub token: String,
}

/// The token of a cluster restored from a snapshot with digest `sha256`.
///
/// etcd derives member IDs (and from them the cluster ID) from the peer
/// URLs and this token only, so reusing the old token on the old addresses
/// would resurrect the old IDs: a dead member coming back with its old data
/// would then be taken for one of the new members. A token naming the
/// snapshot gives new IDs, and every member restoring the same file agrees
/// on it without talking to the others (different files never form one
/// cluster: their IDs disagree).
pub fn token_for(cluster: &str, sha256: &str) -> String {
    format!("{cluster}-restore-{}", &sha256[..12])
}

/// For a member about to bootstrap: the profile's snapshot, verified.
/// Runs before the agent writes anything, so a corrupt file changes nothing.
pub fn prepare(node: &EtcdMember) -> Result<Option<Restore>> {
    let Some(path) = &node.ctx.config.etcd.restore_from else {
        return Ok(None);
    };
    let file = under_root(&node.ctx.root, path);
    let snapshot = verify_trailer(&file).with_context(|| {
        format!(
            "refusing to restore the etcd cluster from restore_from = {}; nothing was changed",
            path.display()
        )
    })?;
    let token = token_for(&node.ctx.config.cluster, &snapshot.sha256);
    tracing::info!(
        snapshot = %file.display(), sha256 = %snapshot.sha256, size = snapshot.size,
        token = %token, "verified the snapshot to restore the cluster from"
    );
    Ok(Some(Restore { file, token }))
}

/// Restores the snapshot into the (absent or empty) data dir.
///
/// `snapshot restore` writes a folder beside the data dir, which is renamed
/// into place only when complete: killed half-way, the next run finds no
/// WAL, removes the leftover and restores again.
pub fn apply(
    node: &EtcdMember,
    restore: &Restore,
    initial_cluster: &[(String, String)],
) -> Result<()> {
    let data_dir = node.data_dir();
    let staging = staging_dir(&data_dir);
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| {
            format!(
                "removing {} left by an interrupted restore",
                staging.display()
            )
        })?;
    }
    let mut cmd = etcd_tool()
        .context("restoring a snapshot needs etcdutl or etcdctl (package etcd-client)")?;
    cmd.args(["snapshot", "restore"])
        .arg(&restore.file)
        .arg(format!("--name={}", node.ctx.me.name))
        .arg(format!(
            "--initial-cluster={}",
            kiln_node::etcd::config::initial_cluster(initial_cluster)
        ))
        .arg(format!("--initial-cluster-token={}", restore.token))
        .arg(format!("--initial-advertise-peer-urls={}", node.peer_url))
        .arg(format!("--data-dir={}", staging.display()));
    let out = cmd
        .output()
        .with_context(|| format!("running {}", crate::redact::command(&cmd)))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&staging);
        bail!(
            "etcd could not restore {}: {}",
            restore.file.display(),
            crate::redact::text(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    if data_dir.exists() {
        // The bootstrap decision saw no WAL: an empty folder (made by an
        // earlier run) is replaced, anything else is left for a human.
        fs::remove_dir(&data_dir).with_context(|| {
            format!(
                "{} exists and is not empty but has no WAL; move it away and rerun",
                data_dir.display()
            )
        })?;
    }
    if let Some(owner) = certs::etcd_owner() {
        chown_tree(&staging, owner)?;
    }
    fs::rename(&staging, &data_dir).with_context(|| {
        format!(
            "moving the restored {} into place as {}",
            staging.display(),
            data_dir.display()
        )
    })?;
    sync_parent(&data_dir)
        .with_context(|| format!("syncing the folder of {}", data_dir.display()))?;
    tracing::info!(
        member = %node.ctx.me.name,
        snapshot = %restore.file.display(),
        token = %restore.token,
        "restored the etcd data dir from the snapshot"
    );
    Ok(())
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir.file_name().unwrap_or_default().to_string_lossy();
    data_dir.with_file_name(format!("{name}.restoring"))
}

/// etcd runs as user etcd and must own every file of its data dir.
fn chown_tree(path: &Path, owner: (nix::unistd::Uid, nix::unistd::Gid)) -> Result<()> {
    certs::give_to_etcd(path, owner)?;
    if path.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_cluster_and_snapshot() {
        let sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(token_for("prod", sha), "prod-restore-0123456789ab");
        assert_eq!(
            staging_dir(Path::new("/r/var/lib/etcd")),
            PathBuf::from("/r/var/lib/etcd.restoring")
        );
    }
}
