//! The output folder of `kiln build`: where the secrets folder may live
//! beside it, which folders kiln may replace in it (only its own), and the
//! move of a staged build into place.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

/// Names of the build products in the output folder, replaced as a set.
pub const PRODUCTS: [&str; 4] = ["etcd", "master", "worker", "manifest.json"];
/// Written into every role folder kiln builds: a folder without it is not
/// kiln's to replace.
pub const MARKER: &str = ".kiln-output";

/// Bad command-line input about folders (exit 2): nothing was touched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FolderConflict(pub String);

/// `path` made absolute and without `.`/`..`, for comparing folders that
/// may not exist yet.
fn normalized(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path)
        .with_context(|| format!("resolving the path {}", path.display()))?;
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    // Through symbolic links of the part that exists.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => break,
        }
    }
    let mut resolved = fs::canonicalize(&existing).unwrap_or(existing);
    resolved.extend(rest.iter().rev());
    Ok(resolved)
}

/// The secrets folder may be `<out>/secrets` (the default) or outside the
/// output folder; the output folder never lies inside the secrets folder.
/// Anything else would put keys where a build replaces folders.
pub fn check_secrets_place(out: &Path, secrets: &Path) -> Result<()> {
    let (out_abs, secrets_abs) = (normalized(out)?, normalized(secrets)?);
    let conflict = |why: &str| {
        FolderConflict(format!(
            "--secrets {} and --out {} overlap: {why}; keep the secrets folder at {}/secrets \
             (the default) or outside the output folder",
            secrets.display(),
            out.display(),
            out.display()
        ))
    };
    if secrets_abs == out_abs {
        return Err(conflict(
            "they are the same folder, and a build replaces the output's role folders",
        )
        .into());
    }
    if out_abs.starts_with(&secrets_abs) {
        return Err(conflict("the output folder is inside the secrets folder").into());
    }
    if secrets_abs.starts_with(&out_abs) && secrets_abs != out_abs.join("secrets") {
        return Err(conflict("the secrets folder is inside the output folder").into());
    }
    Ok(())
}

/// Refuses to replace a product in `out` that kiln did not make: a role
/// folder needs kiln's marker (or, from builds before the marker, a listing
/// in the previous kiln manifest beside it), and `manifest.json` must be a
/// kiln manifest.
pub fn check_replaceable(out: &Path) -> Result<()> {
    let manifest = fs::read(out.join("manifest.json")).ok();
    let previous: Option<serde_json::Value> = manifest
        .as_deref()
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .filter(|m: &serde_json::Value| m.get("kiln_version").is_some());
    if manifest.is_some() && previous.is_none() {
        return Err(FolderConflict(format!(
            "{} is not a kiln manifest, and kiln would replace it: move it away or pick another --out",
            out.join("manifest.json").display()
        ))
        .into());
    }
    for role in &PRODUCTS[..3] {
        let dir = out.join(role);
        if !dir.exists() || dir.join(MARKER).is_file() {
            continue;
        }
        let listed = previous
            .as_ref()
            .is_some_and(|m| m["roles"].get(role).is_some());
        if !listed || !dir.is_dir() {
            return Err(FolderConflict(format!(
                "{} exists and kiln did not make it (no {MARKER} in it), and a build replaces \
                 it: move it away or pick another --out",
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// Marks a staged role folder as kiln's.
pub fn mark(role_dir: &Path, cluster: &str) -> Result<()> {
    let path = role_dir.join(MARKER);
    fs::write(
        &path,
        format!("kiln build output of cluster {cluster}; the next build replaces this folder\n"),
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// Moves the staged products into `out`, replacing the previous build's.
/// Only renames happen here; if one fails, the previous products are put back.
pub fn publish(staging: &Path, out: &Path) -> Result<()> {
    check_replaceable(out)?;
    let previous = staging.join(".previous");
    fs::create_dir(&previous).with_context(|| format!("creating {}", previous.display()))?;
    let mut moved_aside = Vec::new();
    let mut placed = Vec::new();
    let result = (|| -> Result<()> {
        for name in PRODUCTS {
            let current = out.join(name);
            if current.exists() {
                fs::rename(&current, previous.join(name))
                    .with_context(|| format!("moving aside {}", current.display()))?;
                moved_aside.push(name);
            }
        }
        for name in PRODUCTS {
            let staged = staging.join(name);
            if staged.exists() {
                fs::rename(&staged, out.join(name))
                    .with_context(|| format!("moving {} into {}", name, out.display()))?;
                placed.push(name);
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for name in placed {
            let _ = fs::rename(out.join(name), staging.join(name));
        }
        for name in moved_aside {
            let _ = fs::rename(previous.join(name), out.join(name));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_folder_stays_out_of_what_a_build_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ok = |s: &Path| check_secrets_place(&out, s).is_ok();
        assert!(ok(&out.join("secrets")));
        assert!(ok(&out.join("./secrets")));
        assert!(ok(&dir.path().join("secrets")));
        assert!(!ok(&out));
        assert!(!ok(&out.join("etcd")));
        assert!(!ok(&out.join("etcd/../master/x")));
        assert!(!ok(dir.path()));
        assert!(!ok(&out.join("other")));
    }

    #[test]
    fn only_kilns_own_folders_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert!(check_replaceable(out).is_ok());
        fs::create_dir(out.join("etcd")).unwrap();
        let err = check_replaceable(out).unwrap_err().to_string();
        assert!(err.contains("kiln did not make it"), "{err}");
        mark(&out.join("etcd"), "c").unwrap();
        assert!(check_replaceable(out).is_ok());
        // A build from before the marker: listed in its kiln manifest.
        fs::create_dir(out.join("master")).unwrap();
        fs::write(
            out.join("manifest.json"),
            r#"{"kiln_version":"0.1.0","roles":{"master":{}}}"#,
        )
        .unwrap();
        assert!(check_replaceable(out).is_ok());
        fs::write(out.join("manifest.json"), "{}").unwrap();
        assert!(check_replaceable(out).is_err());
    }
}
