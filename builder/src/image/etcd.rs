//! Where the etcd nodes' etcd comes from (`images.etcd`): the base suite's
//! Debian packages, another Debian suite's packages, a folder of binaries or
//! an upstream release tarball. Everything but the first is fetched once
//! into the cache and then installed into the Debian base the way Debian's
//! package installs etcd: binaries in /usr/bin, the unit, the etcd user.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use kiln_node::hex::hex;
use kiln_node::versions::Version;
use sha2::{Digest, Sha256};

use super::cache::cache_lock;
use super::mirror::Mirrors;
use crate::profile::{EtcdRelease, EtcdSource, LoadedProfile};

/// etcd's executables, as a release ships them (etcdutl from 3.5 on).
pub const TOOLS: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];
/// Debian's etcd.service (etcd-server 3.5), which kiln's drop-ins expect.
const UNIT: &str = "[Unit]\n\
Description=etcd - highly-available key value store\n\
Documentation=https://etcd.io/docs\n\
After=network.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
Environment=DAEMON_ARGS=\n\
Environment=ETCD_NAME=%H\n\
Environment=ETCD_DATA_DIR=/var/lib/etcd/default\n\
EnvironmentFile=-/etc/default/%p\n\
Type=notify\n\
User=etcd\n\
ExecStart=/usr/bin/etcd $DAEMON_ARGS\n\
Restart=on-abnormal\n\
LimitNOFILE=65536\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";
/// `u`, not systemd 257's `u!`: Debian 12's systemd-sysusers (252) reads
/// the base too.
const SYSUSERS: &str = "u etcd - \"etcd\" /var/lib/etcd\n";
const TMPFILES: &str = "d /var/lib/etcd 0700 etcd etcd\n";
/// Bounds the download of a release tarball (an etcd release is ~25 MiB).
const MAX_RELEASE_BYTES: u64 = 512 << 20;

/// A fetch refused for what the profile says: `profile::resolve` positions
/// it at the field (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum FetchRefused {
    #[error("{url} has sha256 {actual}, not the profile's {expected}: refusing it")]
    Digest {
        url: String,
        actual: String,
        expected: String,
    },
    #[error("this host's apt configuration names no Debian mirror to take {suite}'s etcd from")]
    NoMirror { suite: String },
}

/// A folder holding etcd, etcdctl and (from 3.5) etcdutl, and a digest of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBinaries {
    pub dir: PathBuf,
    /// Hex SHA-256 over the executables' names and bytes.
    pub digest: String,
}

impl EtcdBinaries {
    /// The binaries `images.etcd` asks for, fetched into `cache` if needed;
    /// `None` when the base suite's packages provide etcd. What the profile
    /// got wrong comes back as a [`FetchRefused`].
    pub fn resolve(loaded: &LoadedProfile, cache: &Path) -> Result<Option<EtcdBinaries>> {
        let images = &loaded.profile.images;
        let dir = match images.etcd.etcd_source() {
            EtcdSource::BaseSuite => return Ok(None),
            EtcdSource::DebianSuite(suite) if suite == images.suite.as_str() => return Ok(None),
            EtcdSource::DebianSuite(suite) => fetch_debian(suite, cache)?,
            EtcdSource::Binaries(dir) => loaded.resolve(dir),
            EtcdSource::Release(release) => fetch_release(release, cache)?,
        };
        EtcdBinaries::from_dir(&dir).map(Some)
    }

    pub fn from_dir(dir: &Path) -> Result<EtcdBinaries> {
        let mut hash = Sha256::new();
        for name in TOOLS {
            let path = dir.join(name);
            match fs::read(&path) {
                Ok(bytes) => {
                    hash.update(format!("{name} {}\n", bytes.len()));
                    hash.update(&bytes);
                }
                Err(_) if name == "etcdutl" => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Ok(EtcdBinaries {
            dir: dir.to_owned(),
            digest: hex(&hash.finalize()),
        })
    }

    pub fn version(&self) -> Result<Version> {
        Version::of_binary(&self.dir.join("etcd"))
    }

    /// Writes what the base gets at `/` into `tree`: the executables, the
    /// unit (enabled, as the package's postinst does), the etcd user and its
    /// data folder as systemd-sysusers and systemd-tmpfiles create them.
    pub fn write_install_tree(&self, tree: &Path) -> Result<()> {
        let bin = tree.join("usr/bin");
        let put = |rel: &str, text: &str| -> Result<()> {
            let path = tree.join(rel);
            fs::create_dir_all(path.parent().expect("relative paths have parents"))
                .with_context(|| format!("creating the folder of {}", path.display()))?;
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
        for name in TOOLS {
            let from = self.dir.join(name);
            if from.exists() {
                fs::copy(&from, bin.join(name))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        put("usr/lib/systemd/system/etcd.service", UNIT)?;
        put("usr/lib/sysusers.d/etcd.conf", SYSUSERS)?;
        put("usr/lib/tmpfiles.d/etcd.conf", TMPFILES)?;
        let wants = tree.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
        std::os::unix::fs::symlink(
            "/usr/lib/systemd/system/etcd.service",
            wants.join("etcd.service"),
        )
        .with_context(|| format!("enabling etcd.service in {}", tree.display()))?;
        // sync-in gives the image's folders the tree's modes: set them as a
        // package has them, whatever the build host's umask.
        set_modes(tree, &bin)
    }
}

/// Folders 0755, executables in `bin` 0755, other files 0644.
fn set_modes(dir: &Path, bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))
    };
    set(dir, 0o755)?;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let kind = fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .file_type();
        if kind.is_dir() {
            set_modes(&path, bin)?;
        } else if kind.is_file() {
            set(&path, if path.starts_with(bin) { 0o755 } else { 0o644 })?;
        }
    }
    Ok(())
}

/// A release tarball, downloaded once into `cache/etcd/release-<sha256>`.
/// The download goes to a temporary file, hashed on the way; a digest that
/// differs from the profile's is refused and leaves nothing behind.
fn fetch_release(release: &EtcdRelease, cache: &Path) -> Result<PathBuf> {
    let expected = release.sha256.to_ascii_lowercase();
    let root = cache.join("etcd");
    let dir = root.join(format!("release-{expected}"));
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let _lock = cache_lock(&root.join(".lock"))?;
    if dir.join("etcd").exists() {
        return Ok(dir);
    }
    tracing::info!("downloading etcd from {}", release.url);
    let mut tarball = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(&root)
        .with_context(|| format!("creating a download file in {}", root.display()))?;
    let actual = download(&release.url, tarball.as_file_mut())?;
    if actual != expected {
        let url = release.url.clone();
        return Err(FetchRefused::Digest {
            url,
            actual,
            expected,
        }
        .into());
    }
    let partial = tempfile::Builder::new()
        .prefix(".release-")
        .tempdir_in(&root)
        .with_context(|| format!("creating a folder in {}", root.display()))?;
    extract_tools(tarball.path(), partial.path())
        .with_context(|| format!("unpacking {}", release.url))?;
    fs::rename(partial.keep(), &dir)
        .with_context(|| format!("moving {} into place", dir.display()))?;
    Ok(dir)
}

/// Streams `url` into `to`; returns the hex SHA-256 of what arrived.
fn download(url: &str, to: &mut fs::File) -> Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(system_tls()?)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    let mut body = response.into_body().into_reader().take(MAX_RELEASE_BYTES);
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = body
            .read(&mut buffer)
            .with_context(|| format!("downloading {url}"))?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        to.write_all(&buffer[..n])
            .context("writing the downloaded tarball")?;
    }
    to.sync_all().context("writing the downloaded tarball")?;
    Ok(hex(&hash.finalize()))
}

/// https with the build host's CA certificates (Debian's ca-certificates).
fn system_tls() -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    let roots: Vec<Certificate<'static>> = match fs::read(BUNDLE) {
        Ok(pem) => ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert.to_owned()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build())
}

/// Takes etcd, etcdctl and etcdutl out of a release tarball (they sit in
/// its top folder, `etcd-vX.Y.Z-linux-amd64/`).
fn extract_tools(tarball: &Path, into: &Path) -> Result<()> {
    let file = fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = Vec::new();
    for entry in archive.entries().context("reading the tarball")? {
        let mut entry = entry.context("reading the tarball")?;
        let path = entry
            .path()
            .context("reading an entry's path")?
            .into_owned();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(tool) = TOOLS.iter().find(|t| **t == name) else {
            continue;
        };
        if !entry.header().entry_type().is_file() || found.contains(tool) {
            continue;
        }
        let target = into.join(tool);
        entry
            .unpack(&target)
            .with_context(|| format!("unpacking {}", path.display()))?;
        found.push(*tool);
    }
    for needed in ["etcd", "etcdctl"] {
        if !found.contains(&needed) {
            bail!("the tarball holds no {needed} executable: is it an etcd release?");
        }
    }
    Ok(())
}

/// How long another suite's package lists are used before the next update.
const LISTS_FRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// True if `stamp` (touched after each successful update) is younger than
/// [`LISTS_FRESH`]. apt itself dates each list by the archive's release, not
/// by the update.
fn lists_fresh(stamp: &Path) -> bool {
    (fs::metadata(stamp).and_then(|m| m.modified()).ok())
        .and_then(|updated| updated.elapsed().ok())
        .is_some_and(|age| age < LISTS_FRESH)
}

/// etcd-server and etcd-client of Debian `suite`, downloaded (not
/// installed) with a private apt state from the host's mirror, verified by
/// apt against Debian's archive keyring, cached by their version.
fn fetch_debian(suite: &str, cache: &Path) -> Result<PathBuf> {
    let state = cache.join("etcd").join(format!("apt-{suite}"));
    let (stamp, candidate) = (state.join("updated"), state.join("candidate"));
    let unpacked_dir = |version: &str| {
        cache
            .join("etcd")
            .join(format!("debian-{suite}-{}", version.replace(':', "_")))
    };
    // Within LISTS_FRESH of the last update, its candidate is still it: no
    // apt at all (asking apt costs more than the rest of a cached build).
    if lists_fresh(&stamp) {
        if let Ok(version) = fs::read_to_string(&candidate) {
            let dir = unpacked_dir(version.trim());
            if dir.join("etcd").exists() {
                return Ok(dir);
            }
        }
    }
    let Some(mirrors) = Mirrors::of_host() else {
        let suite = suite.to_owned();
        return Err(FetchRefused::NoMirror { suite }.into());
    };
    for dir in ["lists/partial", "archives/partial"] {
        fs::create_dir_all(state.join(dir))
            .with_context(|| format!("creating {}", state.join(dir).display()))?;
    }
    let _lock = cache_lock(&cache.join("etcd").join(".lock"))?;
    let sources = state.join("sources.list");
    fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n",
            mirrors.archive
        ),
    )
    .with_context(|| format!("writing {}", sources.display()))?;
    let apt = |program: &str, args: &[&str]| -> Result<String> {
        let out = Command::new(program)
            .arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", sources.display()))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!(
                "Dir::State::Lists={}",
                state.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", state.display()))
            .args(["-o", "Dir::Etc::Preferences=/dev/null"])
            .args(["-o", "Dir::Etc::PreferencesParts=/dev/null"])
            .args(["-o", "APT::Sandbox::User=root", "-q"])
            .args(args)
            .current_dir(&state)
            .output()
            .with_context(|| {
                format!("running {program} (kiln takes another suite's etcd with apt)")
            })?;
        if !out.status.success() {
            bail!(
                "{program} {} for Debian {suite}'s etcd failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // An update costs seconds (with the host's apt hooks): lists younger
    // than LISTS_FRESH are used as they are.
    if !lists_fresh(&stamp) {
        match apt("apt-get", &["update"]) {
            Ok(_) => fs::File::create(&stamp)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                .with_context(|| format!("writing {}", stamp.display()))?,
            // Offline: the lists of the last update still name a version.
            Err(e) => tracing::warn!("{e:#}; using the package lists of the last update"),
        }
    }
    // The candidate of the private lists, whatever the host has installed.
    let version = apt("apt-cache", &["policy", "etcd-server"])?
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_owned)
        .with_context(|| format!("Debian {suite} has no etcd-server package"))?;
    fs::write(&candidate, &version).with_context(|| format!("writing {}", candidate.display()))?;
    let dir = unpacked_dir(&version);
    if dir.join("etcd").exists() {
        return Ok(dir);
    }
    tracing::info!("taking etcd {version} from Debian {suite}");
    for stale in fs::read_dir(&state)?.flatten() {
        if stale.path().extension().is_some_and(|e| e == "deb") {
            fs::remove_file(stale.path()).ok();
        }
    }
    apt("apt-get", &["download", "etcd-server", "etcd-client"])?;
    let unpacked = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&state)
        .with_context(|| format!("creating a folder in {}", state.display()))?;
    for entry in fs::read_dir(&state)?.flatten() {
        let deb = entry.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(unpacked.path())
                .status()
                .context("running dpkg-deb")?;
            if !status.success() {
                bail!("dpkg-deb -x {} failed with {status}", deb.display());
            }
        }
    }
    let partial = tempfile::Builder::new()
        .prefix(".debian-")
        .tempdir_in(cache.join("etcd"))
        .context("creating a folder in the etcd cache")?;
    for name in TOOLS {
        let from = unpacked.path().join("usr/bin").join(name);
        if from.exists() {
            fs::copy(&from, partial.path().join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    if !partial.path().join("etcd").exists() || !partial.path().join("etcdctl").exists() {
        bail!("Debian {suite}'s etcd-server and etcd-client {version} hold no /usr/bin/etcd and etcdctl");
    }
    fs::rename(partial.keep(), &dir)
        .with_context(|| format!("moving {} into place", dir.display()))?;
    Ok(dir)
}
