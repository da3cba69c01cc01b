//! manifest.json: what a build produced, so CI and operators can check it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use kiln_node::node_config::Role;
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Read size for an artifact's data; large reads keep syscalls off the profile.
const CHUNK: usize = 1 << 20;
/// Holes are hashed from this instead of being read as zeros from the kernel.
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Written as `manifest.json` beside the role folders. Holds nothing that
/// changes between two builds of the same inputs (no timestamps, no paths
/// outside the output folder), so the manifest is reproducible too.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub kiln_version: String,
    pub cluster: String,
    pub profile: ProfileRecord,
    /// mtime of every tarball entry.
    pub source_date_epoch: u64,
    pub roles: BTreeMap<Role, RoleRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProfileRecord {
    /// File name of the profile.
    pub name: String,
    /// `sha256:<hex>` of the profile's bytes.
    pub digest: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RoleRecord {
    /// The etcd release baked into the etcd image, as `etcd --version` said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_version: Option<String>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Serialize, Deserialize)]
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
        let (size, sha256) =
            sparse_sha256(&mut file).with_context(|| format!("reading {}", path.display()))?;
        Ok(Artifact {
            path: rel.to_owned(),
            size,
            sha256,
            carries_secrets,
        })
    }
}

/// Size and hex SHA-256 of `file`, reading only its data extents. A role's
/// `disk.raw` is a 2 GiB file of which two thirds are holes; reading those
/// made the kernel zero-fill 1.4 GB of pages for nothing.
fn sparse_sha256(file: &mut File) -> io::Result<(u64, String)> {
    let size = file.metadata()?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut pos = 0;
    while pos < size {
        let (data, hole) = next_extent(file, pos, size)?;
        let mut zeros = data - pos;
        while zeros > 0 {
            let n = zeros.min(CHUNK as u64) as usize;
            hasher.update(&ZEROS[..n]);
            zeros -= n as u64;
        }
        file.seek(SeekFrom::Start(data))?;
        let mut left = hole - data;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being hashed",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        pos = hole;
    }
    Ok((size, kiln_node::hex::hex(&hasher.finalize())))
}

/// The next data extent at or after `pos`, as (start, end); (size, size)
/// when only a hole is left. A file system without hole reporting makes
/// the rest of the file one data extent, which is still correct.
fn next_extent(file: &File, pos: u64, size: u64) -> io::Result<(u64, u64)> {
    let offset = |at: u64| i64::try_from(at).map_err(io::Error::other);
    let data = match lseek(file, offset(pos)?, Whence::SeekData) {
        Ok(at) => at.unsigned_abs().min(size),
        Err(Errno::ENXIO) => return Ok((size, size)),
        Err(Errno::EINVAL) => return Ok((pos, size)),
        Err(e) => return Err(e.into()),
    };
    let hole = match lseek(file, offset(data)?, Whence::SeekHole) {
        Ok(at) => at.unsigned_abs().min(size),
        Err(Errno::ENXIO | Errno::EINVAL) => size,
        Err(e) => return Err(e.into()),
    };
    Ok((data, hole))
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("manifest always serializes");
        json.push(b'\n');
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn sparse_digest_equals_digest_of_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        // Data at both ends and in the middle, holes between and at the end,
        // extents that are not multiples of the read size.
        let layouts: [&[(u64, usize)]; 3] = [
            &[(0, 5000), (3 << 20, 70_000), (9 << 20, 1)],
            &[(4096 * 3, 100)],
            &[],
        ];
        for (i, layout) in layouts.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            let file = File::create(&path).unwrap();
            file.set_len(12 << 20).unwrap();
            for (at, len) in layout.iter() {
                let bytes: Vec<u8> = (0..*len).map(|b| (b % 251) as u8 + 1).collect();
                file.write_all_at(&bytes, *at).unwrap();
            }
            drop(file);
            let all = std::fs::read(&path).unwrap();
            let expected = kiln_node::hex::hex(&Sha256::digest(&all));
            let got = Artifact::of(dir.path(), &format!("f{i}"), false).unwrap();
            assert_eq!(
                (got.size, got.sha256),
                (all.len() as u64, expected),
                "layout {i}"
            );
        }
    }
}
