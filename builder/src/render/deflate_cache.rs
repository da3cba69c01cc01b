//! Deflate data kept between builds in the cache folder, so the base's large
//! files are compressed once per base and compressor, not once per build.
//!
//! `<cache>/deflate/<compressor>/<SHA-256 of the input>` holds the deflate
//! data followed by its length and CRC-32, checked on every read: a
//! missing, short or damaged entry (a torn write, a flipped bit) is
//! compressed again and replaced.
//! `<compressor>` is a digest of what this build's compressor makes of a
//! fixed sample, so a kiln whose compressor writes other bytes never reads
//! another's entries, and a tarball is the same bytes whether its entries
//! were there or not. Only world-readable files are kept (never a key), each
//! entry 0600. Entries unused for [`PRUNE_AFTER`] are removed at the end of a
//! build, at most once a day (`<cache>/deflate/pruned` says when). All of it is best-effort: a cache that cannot be read or written
//! costs time, never a build.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::Crc;
use kiln_node::hex::hex;

/// An entry nobody used for this long is removed.
pub const PRUNE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
/// Pruning reads every entry's stamp, a cost paid by the build that prunes:
/// this often at most.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The entries' layout, a part of each compressor folder's name.
const FORMAT: &str = "e1";

const TRAILER: usize = 12;

/// What follows an entry's data: its length (64 bits) and CRC-32, little-endian.
fn trailer(data: &[u8]) -> [u8; TRAILER] {
    let mut crc = Crc::new();
    crc.update(data);
    let mut out = [0; TRAILER];
    out[..8].copy_from_slice(&(data.len() as u64).to_le_bytes());
    out[8..].copy_from_slice(&crc.sum().to_le_bytes());
    out
}

pub struct DeflateCache {
    dir: PathBuf,
}

impl DeflateCache {
    /// The cache for this build's compressor under `cache`, created if
    /// needed; `None` where it cannot be created.
    pub fn open(cache: &Path, compressor: &str) -> Option<DeflateCache> {
        let dir = cache.join("deflate").join(format!("{FORMAT}-{compressor}"));
        fs::create_dir_all(&dir).ok()?;
        Some(DeflateCache { dir })
    }

    fn entry(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(digest))
    }

    /// The deflate data of the input with SHA-256 `digest`, if kept and whole.
    pub fn load(&self, digest: &[u8; 32]) -> Option<Vec<u8>> {
        let mut file = fs::File::open(self.entry(digest)).ok()?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).ok()?;
        let body = data.len().checked_sub(TRAILER)?;
        if data[body..] != trailer(&data[..body]) {
            return None;
        }
        data.truncate(body);
        // Marks it used, for pruning (its owner may, through a read handle).
        let _ = file.set_modified(SystemTime::now());
        Some(data)
    }

    /// Keeps `data`, the deflate data of the input with SHA-256 `digest`.
    ///
    /// Not `fsutil::replace_atomically`, on purpose: that one fsyncs the file
    /// and its folder, some 6000 times on a build with a cold cache. An entry
    /// checks itself (length and CRC-32) on read, so one torn by a crash is
    /// compressed again and replaced, never used.
    pub fn save(&self, digest: &[u8; 32], data: &[u8]) {
        let write = || -> std::io::Result<()> {
            // Unique names and a rename: parallel builds never see half an entry.
            let mut temp = tempfile::NamedTempFile::with_prefix_in(".new-", &self.dir)?;
            temp.write_all(data)?;
            temp.write_all(&trailer(data))?;
            temp.persist(self.entry(digest))?;
            Ok(())
        };
        let _ = write();
    }

    /// Removes entries unused for [`PRUNE_AFTER`], and the folders of other
    /// compressors once they are empty; unless that was done in the last
    /// [`PRUNE_EVERY`].
    pub fn prune(&self) {
        let Some(root) = self.dir.parent() else {
            return;
        };
        let now = SystemTime::now();
        let stamp = root.join("pruned");
        let last = fs::metadata(&stamp).and_then(|m| m.modified());
        if last.is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age < PRUNE_EVERY)) {
            return;
        }
        let Some(cutoff) = now.checked_sub(PRUNE_AFTER) else {
            return;
        };
        if fs::write(&stamp, b"").is_err() {
            return;
        }
        for compressor in fs::read_dir(root).into_iter().flatten().flatten() {
            let folder = compressor.path();
            if !folder.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&folder).into_iter().flatten().flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|used| used < cutoff);
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
            }
            if folder != self.dir {
                // Only succeeds once it is empty.
                let _ = fs::remove_dir(&folder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_whole_or_not_at_all_and_stale_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DeflateCache::open(dir.path(), "c1").unwrap();
        let digest = [7u8; 32];
        assert_eq!(cache.load(&digest), None);
        cache.save(&digest, b"deflated");
        assert_eq!(cache.load(&digest).as_deref(), Some(&b"deflated"[..]));
        let path = cache.entry(&digest);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        // A damaged entry reads as missing, and saving again repairs it.
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.load(&digest), None);
        fs::write(&path, b"short").unwrap();
        assert_eq!(cache.load(&digest), None);
        cache.save(&digest, b"deflated");
        assert_eq!(cache.load(&digest).as_deref(), Some(&b"deflated"[..]));

        // Unused for longer than PRUNE_AFTER: gone, with another
        // compressor's folder once empty; a fresh entry stays.
        let other = DeflateCache::open(dir.path(), "c0").unwrap();
        other.save(&digest, b"old");
        let fresh = [8u8; 32];
        cache.save(&fresh, b"new");
        let long_ago = SystemTime::now() - PRUNE_AFTER - Duration::from_secs(60);
        for stale in [cache.entry(&digest), other.entry(&digest)] {
            let file = fs::File::options().write(true).open(stale).unwrap();
            file.set_modified(long_ago).unwrap();
        }
        cache.prune();
        assert!(!cache.entry(&digest).exists());
        assert!(!other.dir.exists());
        assert_eq!(cache.load(&fresh).as_deref(), Some(&b"new"[..]));
        // Not again within a day.
        let file = fs::File::options()
            .write(true)
            .open(cache.entry(&fresh))
            .unwrap();
        file.set_modified(long_ago).unwrap();
        cache.prune();
        assert!(cache.entry(&fresh).exists());
    }
}
