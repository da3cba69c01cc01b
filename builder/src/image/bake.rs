//! Baking: the base root filesystem copied into a work folder (hard links
//! where the file system allows, so a bake costs seconds, not a 700 MB copy)
//! with the role layer written over it, ready for `mkfs.erofs`.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{chown, lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::layer::{Meta, RoleLayer};
use crate::render::{layer_tree, Origin, TreeKind};

/// Copies `base` to `dest` (which must not exist) and lays `layer` over it.
/// Every file the layer writes is a new inode, so hard-linked base files
/// are never modified through the copy.
pub fn bake_tree(base: &Path, layer: &RoleLayer, mtime: u64, dest: &Path) -> Result<()> {
    copy_tree(base, dest)?;
    let tree = layer_tree(layer).with_context(|| format!("walking the {} layer", layer.role))?;
    let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    for (path, entry) in &tree {
        let target = dest.join(path.strip_prefix("/").unwrap_or(path));
        let existing = fs::symlink_metadata(&target).ok();
        let what = || format!("baking {} into {}", path.display(), dest.display());
        match entry.kind {
            TreeKind::Dir => {
                if existing.as_ref().is_some_and(|m| m.is_dir()) {
                    // A parent nobody listed keeps the base's owner and mode.
                    if entry.origin == Origin::Implied {
                        continue;
                    }
                } else {
                    remove(&target, existing.as_ref()).with_context(what)?;
                    fs::create_dir(&target).with_context(what)?;
                }
                set_meta(&target, entry.meta).with_context(what)?;
            }
            TreeKind::File(data) => {
                remove(&target, existing.as_ref()).with_context(what)?;
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(entry.meta.mode)
                    .open(&target)
                    .with_context(what)?;
                file.write_all(data).with_context(what)?;
                file.set_modified(stamp).with_context(what)?;
                set_meta(&target, entry.meta).with_context(what)?;
            }
            TreeKind::Link(link) => {
                remove(&target, existing.as_ref()).with_context(what)?;
                symlink(link, &target).with_context(what)?;
                lchown(&target, Some(entry.meta.uid), Some(entry.meta.gid)).with_context(what)?;
            }
        }
    }
    Ok(())
}

fn set_meta(path: &Path, meta: Meta) -> std::io::Result<()> {
    chown(path, Some(meta.uid), Some(meta.gid))?;
    // After chown, which clears set-id bits.
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
}

fn remove(path: &Path, existing: Option<&fs::Metadata>) -> std::io::Result<()> {
    match existing {
        None => Ok(()),
        Some(m) if m.is_dir() => fs::remove_dir_all(path),
        Some(_) => fs::remove_file(path),
    }
}

/// `cp -a`, hard-linking files when `dest` is on the base's file system.
fn copy_tree(base: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        bail!(
            "{} already exists; a bake starts from an empty folder",
            dest.display()
        );
    }
    let linked = Command::new("cp")
        .arg("-a")
        .arg("--link")
        .arg(base)
        .arg(dest)
        .stderr(std::process::Stdio::null())
        .status()
        .context("running cp")?;
    if linked.success() {
        return Ok(());
    }
    if dest.exists() {
        fs::remove_dir_all(dest)
            .with_context(|| format!("removing the partial copy {}", dest.display()))?;
    }
    let copied = Command::new("cp")
        .arg("-a")
        .arg(base)
        .arg(dest)
        .status()
        .context("running cp")?;
    if !copied.success() {
        bail!(
            "copying the base {} to {} failed ({copied}); is there room on that file system?",
            base.display(),
            dest.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Contents;
    use kiln_node::node_config::Role;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn layer_replaces_hard_linked_base_files_without_touching_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(base.join("etc/hostname"), "builder\n").unwrap();
        let mut layer = RoleLayer::new(Role::Etcd);
        layer.add_file(
            "/etc/hostname",
            Meta::root(0o644),
            Contents::Inline(b"localhost\n".to_vec()),
        );
        layer.add_secret("/etc/kiln/pki/x.key", b"secret".to_vec());
        let dest = dir.path().join("tree");
        bake_tree(&base, &layer, 1_700_000_000, &dest).unwrap();
        assert_eq!(
            fs::read_to_string(base.join("etc/hostname")).unwrap(),
            "builder\n"
        );
        assert_eq!(
            fs::read_to_string(dest.join("etc/hostname")).unwrap(),
            "localhost\n"
        );
        let key = fs::metadata(dest.join("etc/kiln/pki/x.key")).unwrap();
        assert_eq!(key.mode() & 0o7777, 0o600);
        assert_eq!(key.mtime(), 1_700_000_000);
    }
}
