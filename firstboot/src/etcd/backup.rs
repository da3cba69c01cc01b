//! `kiln-firstboot snapshot`, run by `kiln-snapshot.timer` on etcd nodes:
//! take a verified snapshot of the local member, keep the newest of each
//! recent hour and day, and copy it to the profile's destination folder.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::node::EtcdMember;
use crate::status;
use kiln_node::etcd::snapshot::{db_status, file_name, taken_at, verify_trailer};
use kiln_node::fsutil::{create_dir_all_mode, replace_atomically};
use kiln_node::layout::etcd::SNAPSHOT_DIR;
use kiln_node::layout::under_root;
use kiln_node::node_config::BackupSettings;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Takes, verifies, prunes and copies one snapshot.
pub fn run(node: &EtcdMember) -> Result<()> {
    let now = i64::try_from(status::now()).unwrap_or(i64::MAX);
    if !status::is_done(&node.ctx.root) {
        // The timer may fire before first boot converged: nothing to save yet.
        tracing::info!("this etcd member has not converged yet: no snapshot this time");
        return Ok(());
    }
    let Some(settings) = &node.ctx.config.etcd.backup else {
        tracing::info!("etcd.backup is off in the profile: no snapshot");
        return Ok(());
    };
    let dir = under_root(&node.ctx.root, Path::new(SNAPSHOT_DIR));
    create_dir_all_mode(&dir, 0o700).with_context(|| format!("creating {}", dir.display()))?;
    let name = file_name(&node.ctx.me.name, now);
    let path = dir.join(&name);
    let verified = node
        .client
        .snapshot_to(&node.client_url, &path, &mut |_| {})
        .with_context(|| format!("taking a snapshot from {}", node.client_url))?;
    let db = match db_status(&path) {
        Ok(db) => db,
        Err(e) => {
            let _ = fs::remove_file(&path);
            return Err(e.context(format!("removed {} again", path.display())));
        }
    };
    tracing::info!(
        file = %path.display(), size = verified.size, sha256 = %verified.sha256,
        revision = db.revision, keys = db.total_key,
        "took a verified etcd snapshot"
    );
    prune(&dir, &node.ctx.me.name, settings, now)?;
    if let Some(destination) = &settings.destination {
        let target_dir = under_root(&node.ctx.root, destination);
        copy_verified(&path, &target_dir.join(&name))?;
        prune(&target_dir, &node.ctx.me.name, settings, now)?;
        tracing::info!(to = %target_dir.display(), "copied the snapshot to the destination");
    }
    Ok(())
}

/// Which of the snapshots taken at `taken` to delete at `now`: all but the
/// newest of each of the last `keep_hourly` hours and `keep_daily` days
/// (UTC), and never the newest of all. A file from the future (a clock set
/// back) counts as current.
pub fn to_prune(taken: &[i64], now: i64, keep_hourly: u32, keep_daily: u32) -> Vec<i64> {
    let mut keep = BTreeSet::new();
    for (width, count) in [(HOUR, keep_hourly), (DAY, keep_daily)] {
        let current = now.div_euclid(width);
        let mut newest_per_bucket = std::collections::BTreeMap::new();
        for &t in taken {
            let bucket = t.div_euclid(width).min(current);
            if current - bucket < i64::from(count) {
                let newest = newest_per_bucket.entry(bucket).or_insert(t);
                *newest = (*newest).max(t);
            }
        }
        keep.extend(newest_per_bucket.into_values());
    }
    keep.extend(taken.iter().max());
    let mut prune: Vec<i64> = taken
        .iter()
        .copied()
        .filter(|t| !keep.contains(t))
        .collect();
    prune.sort_unstable();
    prune
}

/// Deletes this member's snapshots in `dir` that [`to_prune`] gives up.
fn prune(dir: &Path, member: &str, settings: &BackupSettings, now: i64) -> Result<()> {
    let mut found: Vec<(i64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if let Some(t) = taken_at(member, &entry.file_name().to_string_lossy()) {
            found.push((t, entry.path()));
        }
    }
    let times: Vec<i64> = found.iter().map(|(t, _)| *t).collect();
    let doomed = to_prune(&times, now, settings.keep_hourly, settings.keep_daily);
    for (_, path) in found.iter().filter(|(t, _)| doomed.contains(t)) {
        fs::remove_file(path).with_context(|| format!("pruning {}", path.display()))?;
        tracing::info!(file = %path.display(), "pruned an old snapshot");
    }
    Ok(())
}

/// Copies a snapshot atomically, 0600, and checks the copy's trailer.
fn copy_verified(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        // Never create it: on a failed mount that would fill the root disk.
        anyhow::bail!(
            "the backup destination {} does not exist: mount the volume there \
             (or fix etcd.backup.destination in the profile)",
            dir.display()
        );
    }
    replace_atomically(to, 0o600, |out, tmp| {
        let mut input =
            fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
        std::io::copy(&mut input, out).with_context(|| format!("copying to {}", tmp.display()))?;
        verify_trailer(tmp).map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T08:30:00Z.
    const NOW: i64 = 1_795_336_200;

    #[test]
    fn names_round_trip_and_foreign_files_are_ignored() {
        let name = file_name("etcd-a1", NOW);
        assert_eq!(name, "etcd-a1-20261122T083000Z.db");
        assert_eq!(taken_at("etcd-a1", &name), Some(NOW));
        assert_eq!(taken_at("etcd-a", &name), None);
        assert_eq!(taken_at("etcd-a1", "etcd-a1-2026112xT083000Z.db"), None);
        assert_eq!(
            taken_at("etcd-a1", ".etcd-a1-20261122T083000Z.db.tmp-9"),
            None
        );
    }

    #[test]
    fn keeps_newest_per_hour_and_day() {
        let taken = [
            NOW,            // this hour, newest: kept
            NOW - 600,      // this hour, older: pruned
            NOW - HOUR,     // last hour: kept (keep_hourly = 2)
            NOW - 2 * HOUR, // outside the hours, not the newest of today: pruned
            NOW - DAY,      // yesterday's newest: kept (keep_daily = 2)
            NOW - DAY - 60, // yesterday, older: pruned
            NOW - 3 * DAY,  // beyond both windows: pruned
        ];
        assert_eq!(
            to_prune(&taken, NOW, 2, 2),
            vec![NOW - 3 * DAY, NOW - DAY - 60, NOW - 2 * HOUR, NOW - 600]
        );
    }

    #[test]
    fn never_prunes_the_only_or_newest_snapshot() {
        assert!(to_prune(&[NOW - 30 * DAY], NOW, 0, 0).is_empty());
        assert_eq!(to_prune(&[NOW - 5, NOW], NOW, 0, 0), vec![NOW - 5]);
        // A clock set back: the "future" snapshot counts as current.
        assert_eq!(to_prune(&[NOW + HOUR, NOW], NOW, 1, 0), vec![NOW]);
    }
}
