//! `kiln verify DIR`: rechecks a build's output against its manifest.json.
//! Every listed artifact must be there with its size and SHA-256, and one
//! that carries secrets must still be private. A file in a role folder that
//! the manifest does not list is named too. What does not match is named
//! one per line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::manifest::{Artifact, Manifest};
use crate::output::{FolderConflict, MARKER};

/// What one artifact, or one unlisted file, came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Matches(String),
    Missing(String),
    /// The path, then what differs.
    Differs(String, String),
    /// In a role folder, not in the manifest.
    Unlisted(String),
}

impl Finding {
    pub fn is_match(&self) -> bool {
        matches!(self, Finding::Matches(_))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Matches(path) => write!(f, "ok        {path}"),
            Finding::Missing(path) => write!(f, "MISSING   {path}: the manifest lists it"),
            Finding::Differs(path, what) => write!(f, "DIFFERS   {path}: {what}"),
            Finding::Unlisted(path) => write!(f, "UNLISTED  {path}: not in the manifest"),
        }
    }
}

/// Reads `dir/manifest.json`; a missing or foreign one is bad input
/// (exit 2).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = fs::read(&path).map_err(|e| {
        FolderConflict(format!(
            "cannot read {}: {e}; pass the output folder of a kiln build (it holds \
             manifest.json)",
            path.display()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        FolderConflict(format!(
            "{} is not a kiln manifest ({e}); pass the output folder of a kiln build",
            path.display()
        ))
        .into()
    })
}

/// Every artifact of `manifest` checked against the files in `dir`, then
/// the role folders' files the manifest does not list.
pub fn verify(dir: &Path, manifest: &Manifest) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for record in manifest.roles.values() {
        for listed in &record.artifacts {
            findings.push(check(dir, listed)?);
        }
    }
    for role in manifest.roles.keys() {
        let folder = dir.join(role.as_str());
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", folder.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{}/{name}", role.as_str());
            let listed = manifest.roles[role].artifacts.iter().any(|a| a.path == rel);
            if name != MARKER && !listed {
                findings.push(Finding::Unlisted(rel));
            }
        }
    }
    Ok(findings)
}

fn check(dir: &Path, listed: &Artifact) -> Result<Finding> {
    let path = dir.join(&listed.path);
    let name = listed.path.clone();
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return Ok(Finding::Missing(name));
    };
    if !meta.is_file() {
        return Ok(Finding::Differs(name, "not a regular file".into()));
    }
    let found = Artifact::of(dir, &listed.path, listed.carries_secrets)?;
    if found.size != listed.size {
        let what = format!("{} bytes, the manifest says {}", found.size, listed.size);
        return Ok(Finding::Differs(name, what));
    }
    if found.sha256 != listed.sha256 {
        let what = format!(
            "sha256 {}, the manifest says {}",
            found.sha256, listed.sha256
        );
        return Ok(Finding::Differs(name, what));
    }
    let mode = meta.permissions().mode() & 0o777;
    if listed.carries_secrets && mode & 0o077 != 0 {
        let what = format!(
            "holds secrets but has mode {mode:o}: run `chmod 600 {}`",
            path.display()
        );
        return Ok(Finding::Differs(name, what));
    }
    Ok(Finding::Matches(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ProfileRecord, RoleRecord};
    use kiln_node::node_config::Role;

    fn manifest_of(dir: &Path, files: &[(&str, bool)]) -> Manifest {
        let artifacts = files
            .iter()
            .map(|(rel, secret)| Artifact::of(dir, rel, *secret).unwrap())
            .collect();
        Manifest {
            kiln_version: "test".into(),
            cluster: "c".into(),
            profile: ProfileRecord {
                name: "p.toml".into(),
                digest: "sha256:0".into(),
            },
            source_date_epoch: 0,
            roles: [(
                Role::Etcd,
                RoleRecord {
                    etcd_version: None,
                    artifacts,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn names_a_flipped_byte_a_missing_file_an_extra_one_and_an_open_secret() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etcd")).unwrap();
        for (name, mode) in [
            ("disk.raw", 0o644),
            ("etcd.ign", 0o600),
            ("rootfs.tar.gz", 0o644),
        ] {
            let path = root.join("etcd").join(name);
            fs::write(&path, format!("bytes of {name}")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(root.join("etcd").join(MARKER), "kiln\n").unwrap();
        let manifest = manifest_of(
            root,
            &[
                ("etcd/disk.raw", false),
                ("etcd/etcd.ign", true),
                ("etcd/rootfs.tar.gz", false),
            ],
        );
        let all = verify(root, &manifest).unwrap();
        assert!(all.iter().all(Finding::is_match), "{all:?}");

        let disk = root.join("etcd/disk.raw");
        let mut bytes = fs::read(&disk).unwrap();
        bytes[3] ^= 1;
        fs::write(&disk, bytes).unwrap();
        let ign = root.join("etcd/etcd.ign");
        fs::set_permissions(&ign, fs::Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(root.join("etcd/rootfs.tar.gz")).unwrap();
        fs::write(root.join("etcd/extra"), "x").unwrap();
        let found = verify(root, &manifest).unwrap();
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            matches!(&found[0], Finding::Differs(p, w) if p == "etcd/disk.raw" && w.starts_with("sha256")),
            "{text:?}"
        );
        assert!(
            matches!(&found[1], Finding::Differs(p, w) if p == "etcd/etcd.ign" && w.contains("mode 644")),
            "{text:?}"
        );
        assert_eq!(found[2], Finding::Missing("etcd/rootfs.tar.gz".into()));
        assert_eq!(found[3], Finding::Unlisted("etcd/extra".into()));
        assert_eq!(found.len(), 4, "{text:?}");
    }
}
