//! The baked tree made fit for a read-only root: the folders a node writes to
//! outside /etc and /var (CNI plugins in /opt, root's home, /usr/local...)
//! become links into /var, as on Fedora CoreOS, with what they held. The
//! state partition gets it all on the first boot.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// `(folder, where it lives in /var, the link's target)`.
const MOVED: [(&str, &str, &str); 6] = [
    ("opt", "var/opt", "var/opt"),
    ("srv", "var/srv", "var/srv"),
    ("home", "var/home", "var/home"),
    ("root", "var/roothome", "var/roothome"),
    ("mnt", "var/mnt", "var/mnt"),
    ("usr/local", "var/usrlocal", "../var/usrlocal"),
];

/// Whether `path` (absolute) is inside a folder that kiln's disks keep in
/// /var, so a node can write it although it looks part of the OS.
pub fn kept_in_var(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    MOVED.iter().any(|(dir, _, _)| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Moves each writable folder of `tree` into its /var and links it there.
pub fn link_writable_dirs(tree: &Path) -> Result<()> {
    for (dir, moved, target) in MOVED {
        let path = tree.join(dir);
        let dest = tree.join(moved);
        let what = || format!("moving /{dir} of {} to /{moved}", tree.display());
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(meta) if meta.is_dir() => {
                // Debian has an empty /var/opt beside /opt.
                if is_empty_dir(&dest) {
                    fs::remove_dir(&dest).with_context(what)?;
                }
                if is_empty_dir(&path) && dest.is_dir() {
                    fs::remove_dir(&path).with_context(what)?;
                } else if fs::symlink_metadata(&dest).is_ok() {
                    bail!(
                        "{} holds both /{dir} and /{moved}: the read-only root keeps /{dir} \
                         in /{moved}; remove one from the base",
                        tree.display()
                    );
                } else {
                    fs::rename(&path, &dest).with_context(what)?;
                }
            }
            Ok(_) => bail!("/{dir} of {} is not a folder", tree.display()),
            Err(_) => fs::create_dir_all(&dest).with_context(what)?,
        }
        symlink(target, &path).with_context(what)?;
    }
    Ok(())
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moved_folders_are_kept_in_var() {
        for kept in ["/usr/local", "/usr/local/bin/x", "/opt/cni/bin", "/root"] {
            assert!(kept_in_var(kept), "{kept}");
        }
        for not in ["/usr", "/usr/localx", "/usr/lib/x", "/optx"] {
            assert!(!kept_in_var(not), "{not}");
        }
    }

    #[test]
    fn writable_folders_move_into_var_with_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        fs::create_dir_all(tree.join("root")).unwrap();
        fs::write(tree.join("root/.profile"), "x").unwrap();
        fs::create_dir_all(tree.join("usr/local/bin")).unwrap();
        fs::create_dir_all(tree.join("var/opt")).unwrap();
        fs::create_dir_all(tree.join("srv")).unwrap();
        fs::create_dir_all(tree.join("var/srv/www")).unwrap();
        link_writable_dirs(tree).unwrap();
        assert_eq!(
            fs::read_link(tree.join("root")).unwrap(),
            Path::new("var/roothome")
        );
        assert_eq!(
            fs::read_to_string(tree.join("var/roothome/.profile")).unwrap(),
            "x"
        );
        assert_eq!(
            fs::read_link(tree.join("usr/local")).unwrap(),
            Path::new("../var/usrlocal")
        );
        assert!(tree.join("usr/local/bin").is_dir());
        // An empty folder on either side gives way to the other.
        assert!(tree.join("srv/www").is_dir());
        // Missing folders are made, so the links never dangle.
        assert!(tree.join("opt").is_dir() && tree.join("var/opt").is_dir());
        // A second pass changes nothing.
        link_writable_dirs(tree).unwrap();
        assert!(tree.join("var/roothome/.profile").is_file());
    }
}
