//! manifest.json: what a build produced, so CI and operators can check it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use kiln_firstboot::node_config::Role;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Written as `manifest.json` beside the role folders. Holds nothing that
/// changes between two builds of the same inputs (no timestamps, no paths
/// outside the output folder), so the manifest is reproducible too.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub kiln_version: &'static str,
    pub cluster: String,
    pub profile: ProfileRecord,
    /// mtime of every tarball entry.
    pub source_date_epoch: u64,
    pub roles: BTreeMap<Role, RoleRecord>,
}

#[derive(Debug, Serialize)]
pub struct ProfileRecord {
    /// File name of the profile.
    pub name: String,
    /// `sha256:<hex>` of the profile's bytes.
    pub digest: String,
}

#[derive(Debug, Default, Serialize)]
pub struct RoleRecord {
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Serialize)]
pub struct Artifact {
    /// Relative to the output folder, e.g. `etcd/etcd.ign`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// True when the artifact holds private keys or the bootstrap token:
    /// handle it like the secrets folder.
    pub carries_secrets: bool,
}

impl Artifact {
    /// Describes the file at `out/rel`.
    pub fn of(out: &Path, rel: &str, carries_secrets: bool) -> Result<Artifact> {
        let path = out.join(rel);
        let mut file = File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut hasher)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Artifact {
            path: rel.to_owned(),
            size,
            sha256: kiln_firstboot::hex::hex(&hasher.finalize()),
            carries_secrets,
        })
    }
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("manifest always serializes");
        json.push(b'\n');
        json
    }
}
