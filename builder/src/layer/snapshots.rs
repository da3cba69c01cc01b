//! What etcd backups add to the etcd image: `kiln-snapshot.timer` and its
//! service (the agent's `snapshot` command), and the snapshot the initial
//! members restore from when the profile bakes one in.

use anyhow::{Context, Result};
use kiln_node::etcd::snapshot::verify_trailer;
use kiln_node::layout::etcd::BAKED_SNAPSHOT;
use std::path::Path;

use super::{AgentTimer, Meta, RoleLayer};
use crate::node_toml::backup_settings;
use crate::profile::{LoadedProfile, RestoreSource};

pub const SNAPSHOT_TIMER: &str = "kiln-snapshot.timer";
#[cfg(test)]
const SNAPSHOT_SERVICE: &str = "kiln-snapshot.service";

/// Adds the snapshot timer and the baked restore snapshot to an etcd layer.
pub fn add(layer: &mut RoleLayer, profile: &LoadedProfile) -> Result<()> {
    let etcd = &profile.profile.etcd;
    if let Some(settings) = backup_settings(&etcd.backup) {
        add_timer(layer, settings.interval_seconds);
    }
    if let Some(RestoreSource::Local(local)) = &etcd.restore_from {
        let path = profile.resolve(local);
        // A corrupt snapshot is refused at build time, not at 3 a.m. on a node.
        verify_trailer(&path).context("etcd.restore_from.local")?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("reading {} (etcd.restore_from.local)", path.display()))?;
        let baked = Path::new(BAKED_SNAPSHOT);
        if let Some(dir) = baked.parent() {
            layer.add_dir(dir, Meta::root(0o700));
        }
        layer.add_secret(baked, bytes);
    }
    Ok(())
}

fn add_timer(layer: &mut RoleLayer, interval: u64) {
    super::add_agent_timer(
        layer,
        AgentTimer {
            stem: "kiln-snapshot",
            what: "take, verify and prune an etcd snapshot",
            command: "snapshot",
            after: "etcd.service",
            interval,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_runs_the_agent_at_the_interval() {
        let mut layer = RoleLayer::new(kiln_node::node_config::Role::Etcd);
        add_timer(&mut layer, 5);
        let timer = layer.units[SNAPSHOT_TIMER].contents.clone().unwrap();
        assert!(timer.contains("OnUnitActiveSec=5s\n") && timer.contains("AccuracySec=1s\n"));
        let service = layer.units[SNAPSHOT_SERVICE].contents.clone().unwrap();
        assert!(service.contains("ExecStart=/usr/bin/kiln-firstboot snapshot\n"));
    }
}
