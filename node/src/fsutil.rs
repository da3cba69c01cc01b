//! Crash-safe file writes: a file is either absent, the old version or the
//! complete new one, and a secret is never readable by others, not even briefly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `contents` to `path` atomically with permission `mode`
/// ([`replace_atomically`]).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_atomically(path, mode, |file, _| file.write_all(contents))
}

/// Replaces `path` atomically: `fill` writes the new contents into a
/// temporary file created with `mode` in the same folder (and may check it
/// by its path); the file is then fsynced, renamed over `path`, and the
/// folder fsynced, so a crash leaves either the previous file or the new
/// one. On any error the temporary file is removed and `path` is untouched.
pub fn replace_atomically<T, E: From<io::Error>>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File, &Path) -> Result<T, E>,
) -> Result<T, E> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // PID and a random part: a rerun after a crash may get the same PID,
    // and must not trip over the temporary file the crash left.
    let tmp = parent_of(path).join(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        let value = fill(&mut file, &tmp)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs the folder holding `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_of(path))?.sync_all()
}

/// [`write_atomic`], first creating missing parent folders (0755); errors
/// name the path.
pub fn write_with_parents(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        create_dir_all_mode(dir, 0o755).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, contents, mode).with_context(|| format!("writing {}", path.display()))
}

/// Creates `path` and missing parents; the last component gets `mode`.
pub fn create_dir_all_mode(path: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"old", 0o644).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.db");
        write_atomic(&path, b"old", 0o600).unwrap();
        let failed: io::Result<()> = replace_atomically(&path, 0o600, |file, tmp| {
            file.write_all(b"half")?;
            assert!(tmp.exists() && tmp != path);
            Err(io::Error::other("check failed"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_dir_all_mode_sets_mode_of_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secrets");
        create_dir_all_mode(&path, 0o700).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        create_dir_all_mode(&path, 0o700).unwrap();
    }
}
