//! etcd's v3 snapshot API over the JSON gateway: stream a snapshot into a
//! file (0600 from creation: it holds every secret of the cluster), check
//! etcd's own SHA-256 trailer, and read the result with etcd's own tool.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::client::EtcdClient;
use super::snapshot_stream::copy_chunks;
use crate::fsutil::replace_atomically;

/// A large cluster's snapshot takes a while; a stalled stream still ends.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// etcd appends the SHA-256 of the database to every snapshot it streams.
const TRAILER: u64 = 32;
/// bbolt files are whole pages, so a snapshot with its trailer is 32 bytes
/// past a multiple of 512 (etcd's own test for "has a hash").
const PAGE_ALIGN: u64 = 512;

/// A snapshot file whose trailer matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSnapshot {
    pub size: u64,
    /// Hex SHA-256 of the database (the trailer etcd wrote).
    pub sha256: String,
}

impl EtcdClient {
    /// Streams a snapshot from the member at `base` into `dest` atomically
    /// (temp file in the same folder, verified, fsynced, renamed).
    /// `progress` gets the bytes received so far.
    pub fn snapshot_to(
        &self,
        base: &str,
        dest: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifiedSnapshot> {
        replace_atomically(dest, 0o600, |file, tmp| {
            self.stream_into(base, file, tmp, progress)?;
            verify_trailer(tmp)
        })
        .with_context(|| format!("writing the snapshot {}", dest.display()))
    }

    fn stream_into(
        &self,
        base: &str,
        file: &mut File,
        tmp: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let url = format!("{base}/v3/maintenance/snapshot");
        let response = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(SNAPSHOT_TIMEOUT))
            .build()
            .header("content-type", "application/json")
            .send(json!({}).to_string())
            .with_context(|| format!("no answer from {url}"))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut reader = BufReader::new(body.with_config().limit(u64::MAX).reader());
        if !status.is_success() {
            let mut answer = String::new();
            let _ = (&mut reader).take(4096).read_to_string(&mut answer);
            bail!(
                "{url} refused the snapshot with {status}: {}",
                answer.trim()
            );
        }
        copy_chunks(&mut reader, file, progress).with_context(|| {
            format!(
                "copying the snapshot stream from {url} into {}",
                tmp.display()
            )
        })?;
        Ok(())
    }
}

/// Checks etcd's trailer: the last 32 bytes are the SHA-256 of the rest.
/// This is the check `etcdctl snapshot restore` makes, done before anything
/// is written so that a bad file changes nothing.
pub fn verify_trailer(path: &Path) -> Result<VerifiedSnapshot> {
    let mut file =
        File::open(path).with_context(|| format!("opening snapshot {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len();
    if size <= TRAILER || size % PAGE_ALIGN != TRAILER {
        bail!(
            "{} ({size} bytes) is not an etcd snapshot with its integrity trailer: take \
             snapshots with `kiln backup`, `kiln-firstboot snapshot` or `etcdctl snapshot save`, \
             never by copying the data dir",
            path.display()
        );
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(size - TRAILER), &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut trailer = [0u8; TRAILER as usize];
    file.seek(SeekFrom::Start(size - TRAILER))
        .and_then(|_| file.read_exact(&mut trailer))
        .with_context(|| format!("reading the trailer of {}", path.display()))?;
    let digest = hasher.finalize();
    if digest.as_slice() != trailer {
        bail!(
            "snapshot {} is corrupt: its SHA-256 is {} but etcd recorded {}; \
             use another copy (the nodes keep hourly and daily ones)",
            path.display(),
            crate::hex::hex(&digest),
            crate::hex::hex(&trailer)
        );
    }
    Ok(VerifiedSnapshot {
        size,
        sha256: crate::hex::hex(&trailer),
    })
}

/// What etcd's own tool reads from a snapshot file.
#[derive(Debug, Clone, Deserialize)]
pub struct DbStatus {
    /// CRC-32 of the database, as etcdctl prints it.
    pub hash: u64,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// etcd's snapshot tool: `etcdutl` (3.5+) when installed, else `etcdctl`
/// with API 3 (3.4, Debian 12). `None` when neither is on `PATH`.
pub fn etcd_tool() -> Option<Command> {
    if let Some(path) = on_path("etcdutl") {
        return Some(Command::new(path));
    }
    let mut cmd = Command::new(on_path("etcdctl")?);
    cmd.env("ETCDCTL_API", "3");
    Some(cmd)
}

/// `snapshot status -w json`: proves etcd itself can open the database.
pub fn db_status(path: &Path) -> Result<DbStatus> {
    let mut cmd =
        etcd_tool().context("neither etcdutl nor etcdctl is installed (package etcd-client)")?;
    let out = cmd
        .args(["snapshot", "status", "-w", "json"])
        .arg(path)
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "etcd cannot read snapshot {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the snapshot status of {}", path.display()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `<member>-<UTC YYYYMMDDTHHMMSSZ>.db`: sorts by time, names its source.
pub fn file_name(member: &str, now: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{member}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.db",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The time in a name [`file_name`] made for `member`; `None` for other files.
pub fn taken_at(member: &str, name: &str) -> Option<i64> {
    let stamp = name
        .strip_prefix(member)?
        .strip_prefix('-')?
        .strip_suffix("Z.db")?;
    let (date, clock) = stamp.split_once('T')?;
    if date.len() != 8
        || clock.len() != 6
        || !stamp.replace('T', "").bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    let month = Month::try_from(u8::try_from(num(&date[4..6])?).ok()?).ok()?;
    let date =
        Date::from_calendar_date(num(&date[..4])? as i32, month, num(&date[6..])? as u8).ok()?;
    let clock = Time::from_hms(
        num(&clock[..2])? as u8,
        num(&clock[2..4])? as u8,
        num(&clock[4..])? as u8,
    )
    .ok()?;
    Some(
        PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn snapshot_bytes(db: &[u8]) -> Vec<u8> {
        let mut bytes = db.to_vec();
        bytes.extend_from_slice(&Sha256::digest(db));
        bytes
    }

    #[test]
    fn trailer_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.db");
        fs::write(&good, snapshot_bytes(&[7u8; 4096])).unwrap();
        let verified = verify_trailer(&good).unwrap();
        assert_eq!(verified.size, 4096 + 32);

        let mut bytes = snapshot_bytes(&[7u8; 4096]);
        bytes[100] ^= 1;
        let bad = dir.path().join("bad.db");
        fs::write(&bad, bytes).unwrap();
        let err = format!("{:#}", verify_trailer(&bad).unwrap_err());
        assert!(err.contains("is corrupt"), "{err}");

        let raw = dir.path().join("raw.db");
        fs::write(&raw, [7u8; 4096]).unwrap();
        let err = format!("{:#}", verify_trailer(&raw).unwrap_err());
        assert!(err.contains("integrity trailer"), "{err}");
    }
}
