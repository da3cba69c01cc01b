//! Snapshots of a folder tree (kind, mode, owner, content hash or link
//! target per entry) so two ways of producing a root filesystem can be
//! compared, and extraction of a rootfs tarball into a folder.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Hex SHA-256 of the contents.
    File(String),
    /// The link target, as stored.
    Link(PathBuf),
    /// Devices, fifos, sockets: compared by type name only.
    Special(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (07777); for links always 0777 on Linux.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Dir => "dir".to_owned(),
            Kind::File(sha) => format!("file sha256:{}", &sha[..12]),
            Kind::Link(target) => format!("link -> {}", target.display()),
            Kind::Special(name) => (*name).to_owned(),
        };
        write!(f, "{kind} {:04o} {}:{}", self.mode, self.uid, self.gid)
    }
}

/// Every entry below `root` (not `root` itself), keyed by path relative to it.
pub type Tree = BTreeMap<PathBuf, Entry>;

/// Reads the tree below `root` without following links.
pub fn snapshot(root: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    walk(root, Path::new(""), &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, rel: &Path, tree: &mut Tree) -> Result<()> {
    for item in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let item = item.with_context(|| format!("listing {}", dir.display()))?;
        let path = item.path();
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            Kind::Link(
                fs::read_link(&path).with_context(|| format!("reading link {}", path.display()))?,
            )
        } else if file_type.is_file() {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Kind::File(hex(&Sha256::digest(&bytes)))
        } else if file_type.is_char_device() {
            Kind::Special("char device")
        } else if file_type.is_block_device() {
            Kind::Special("block device")
        } else if file_type.is_fifo() {
            Kind::Special("fifo")
        } else {
            Kind::Special("socket")
        };
        let entry = Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        };
        let rel_path = rel.join(item.file_name());
        let is_dir = entry.kind == Kind::Dir;
        tree.insert(rel_path.clone(), entry);
        if is_dir {
            walk(&path, &rel_path, tree)?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts a .tar.gz into `dest` (created if missing) with GNU tar, keeping
/// numeric owners and exact modes (needs root for the owners).
pub fn extract(tarball: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let out = Command::new("tar")
        .args([
            "--extract",
            "--gzip",
            "--numeric-owner",
            "--same-owner",
            "--same-permissions",
        ])
        .arg("--file")
        .arg(tarball)
        .arg("--directory")
        .arg(dest)
        .output()
        .context("starting tar")?;
    if !out.status.success() {
        bail!(
            "extracting {} into {} failed: {}",
            tarball.display(),
            dest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Human-readable differences between two trees (empty when they agree).
pub fn differences(left_name: &str, left: &Tree, right_name: &str, right: &Tree) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, l) in left {
        match right.get(path) {
            None => diffs.push(format!("{}: only in {left_name} ({l})", path.display())),
            Some(r) if r != l => diffs.push(format!(
                "{}: {left_name} has {l}, {right_name} has {r}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for (path, r) in right {
        if !left.contains_key(path) {
            diffs.push(format!("{}: only in {right_name} ({r})", path.display()));
        }
    }
    diffs
}
