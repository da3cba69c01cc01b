//! Checks of etcd backups and restore: `[etcd.backup]` (interval, what to
//! keep, destination) and `etcd.restore_from` (exactly one source, present).

use std::path::Path;

use super::Checker;
use crate::profile::model::{BackupSection, EtcdSection, RestoreSource};

/// Shorter intervals would snapshot a large cluster back to back.
const MIN_INTERVAL_SECS: u64 = 5;

pub fn check(etcd: &EtcdSection, check: &mut Checker<'_>) {
    if etcd.backup.enabled {
        check_backup(&etcd.backup, &etcd.data_dir, check);
    }
    if let Some(source) = &etcd.restore_from {
        check_restore(source, check);
    }
}

fn check_backup(backup: &BackupSection, data_dir: &Path, check: &mut Checker<'_>) {
    if backup.interval.as_secs() < MIN_INTERVAL_SECS {
        check.error(
            "etcd.backup.interval",
            format!(
                "a snapshot every {} is more often than etcd can stream one",
                backup.interval
            ),
            "write an interval of at least \"5s\", like \"1h\"",
        );
    }
    if backup.keep_hourly == 0 && backup.keep_daily == 0 {
        check.error(
            "etcd.backup.keep_hourly",
            "keep_hourly and keep_daily are both 0: only the newest snapshot would survive",
            "keep some, like keep_hourly = 24 and keep_daily = 7, or set enabled = false",
        );
    }
    if let Some(destination) = &backup.destination {
        if !destination.is_absolute() {
            check.error(
                "etcd.backup.destination",
                format!("{} is not an absolute path", destination.display()),
                "write the folder's path on the node where the backup volume is mounted, like \"/mnt/backup\"",
            );
        } else if destination.starts_with(data_dir) {
            check.error(
                "etcd.backup.destination",
                format!(
                    "{} is inside etcd's data dir {}",
                    destination.display(),
                    data_dir.display()
                ),
                "use a folder on another volume, like \"/mnt/backup\"",
            );
        }
    }
}

fn check_restore(source: &RestoreSource, check: &mut Checker<'_>) {
    match source {
        RestoreSource::Local(local) => {
            let resolved = check.base_dir.join(local);
            if !resolved.is_file() {
                check.error(
                    "etcd.restore_from.local",
                    format!("snapshot {} does not exist", resolved.display()),
                    format!(
                        "local paths are relative to the profile's folder {}; take one with `kiln backup --out FILE`",
                        check.base_dir.display()
                    ),
                );
            }
        }
        RestoreSource::Node(node) if !node.is_absolute() => check.error(
            "etcd.restore_from.node",
            format!("{} is not an absolute path", node.display()),
            "write the snapshot's full path on the node, like \"/mnt/backup/prod.db\"",
        ),
        RestoreSource::Node(_) => {}
    }
}
