//! Reading what `kiln build` produced: runs a build, decodes Ignition
//! payloads and lists tarball entries, independently of kiln's own code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use flate2::read::GzDecoder;
use serde_json::Value;

use crate::{kiln, run};

/// A build's output and secrets folders inside a private temporary folder.
pub struct Build {
    pub dir: tempfile::TempDir,
}

impl Build {
    pub fn new() -> Build {
        Build {
            dir: tempfile::tempdir().expect("creating a temporary folder"),
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// Runs `kiln build PROFILE --out <out> --secrets <secrets>`, limited to
    /// the Ignition configs and layer-only tarballs (no Debian base, no
    /// disks) so these checks stay fast; tests/tests/{nspawn,vm}.rs build
    /// the bootable images.
    pub fn run(&self, profile: &Path) -> Output {
        self.run_into(profile, &self.out())
    }

    pub fn run_into(&self, profile: &Path, out: &Path) -> Output {
        layer_build(profile, out, &self.secrets(), &[])
    }

    /// Runs a build that must succeed.
    pub fn ok(&self, profile: &Path) -> &Build {
        let out = self.run(profile);
        assert!(
            out.status.success(),
            "kiln build {} failed:\n{}",
            profile.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self
    }
}

/// `kiln build PROFILE --out OUT --secrets SECRETS` of the Ignition configs
/// and layer-only tarballs, with `extra` arguments.
pub fn layer_build(
    profile: &Path,
    out: &Path,
    secrets: &Path,
    extra: &[&std::ffi::OsStr],
) -> Output {
    run(kiln()
        .arg("build")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("--secrets")
        .arg(secrets)
        .args(["--formats", "ignition,rootfs", "--base", "none"])
        .args(extra)
        .env("CI", "true"))
}

impl Build {
    /// Builds `formats` (comma separated) of `profile` on kiln's Debian base,
    /// cached once for the whole test run (see [`crate::nspawn::base_cache`]);
    /// returns how long the build took.
    pub fn on_debian_base(&self, profile: &Path, formats: &str) -> std::time::Duration {
        let start = std::time::Instant::now();
        crate::run_ok(
            kiln()
                .arg("build")
                .arg(profile)
                .arg("--out")
                .arg(self.out())
                .arg("--secrets")
                .arg(self.secrets())
                .args(["--formats", formats, "--base", "debian", "--cache"])
                .arg(crate::nspawn::base_cache())
                .env("CI", "true"),
        );
        start.elapsed()
    }
}

impl Default for Build {
    fn default() -> Self {
        Build::new()
    }
}

/// One file an artifact would put on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// Every file of an Ignition config with its decoded contents (data URLs,
/// optionally gzip-compressed) and every unit and drop-in as a file.
pub fn ignition_files(ign: &Path) -> Vec<PayloadFile> {
    let text = std::fs::read_to_string(ign).expect("reading the Ignition config");
    let config: Value = serde_json::from_str(&text).expect("the Ignition config is JSON");
    let mut files = Vec::new();
    for file in config["storage"]["files"].as_array().into_iter().flatten() {
        let contents = &file["contents"];
        let Some(source) = contents["source"].as_str() else {
            continue;
        };
        let Some(mut bytes) = decode_data_url(source) else {
            continue; // a remote source: not carried in the config
        };
        if contents["compression"].as_str() == Some("gzip") {
            let mut plain = Vec::new();
            GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .expect("gzip payload decodes");
            bytes = plain;
        }
        files.push(PayloadFile {
            path: file["path"].as_str().expect("file path").to_owned(),
            mode: file["mode"].as_u64().unwrap_or(0o644) as u32,
            bytes,
        });
    }
    for unit in config["systemd"]["units"].as_array().into_iter().flatten() {
        let name = unit["name"].as_str().expect("unit name");
        if let Some(contents) = unit["contents"].as_str() {
            files.push(PayloadFile {
                path: format!("/etc/systemd/system/{name}"),
                mode: 0o644,
                bytes: contents.as_bytes().to_vec(),
            });
        }
        for dropin in unit["dropins"].as_array().into_iter().flatten() {
            files.push(PayloadFile {
                path: format!(
                    "/etc/systemd/system/{name}.d/{}",
                    dropin["name"].as_str().expect("drop-in name")
                ),
                mode: 0o644,
                bytes: dropin["contents"]
                    .as_str()
                    .unwrap_or("")
                    .as_bytes()
                    .to_vec(),
            });
        }
    }
    files
}

/// Decodes an RFC 2397 data URL; None for other URLs.
pub fn decode_data_url(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if meta.ends_with(";base64") {
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64 payload decodes"),
        )
    } else {
        Some(percent_decode(data))
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("percent escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Every regular file of a .tar.gz with its mode and contents.
pub fn tarball_files(tgz: &Path) -> Vec<PayloadFile> {
    let file = std::fs::File::open(tgz).expect("opening the tarball");
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().expect("reading the tarball") {
        let mut entry = entry.expect("tarball entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let raw = entry.path().expect("entry path").display().to_string();
        let path = format!("/{}", raw.trim_start_matches("./").trim_start_matches('/'));
        let mode = entry.header().mode().expect("entry mode");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("entry contents");
        files.push(PayloadFile { path, mode, bytes });
    }
    files
}

/// A node's root for running the agent or kubeadm against, as first boot
/// leaves it: every regular file of `role`'s OS tree (`out/<role>/rootfs.tar.gz`)
/// with its mode, then the role's config (`out/<role>/<role>.ign`) applied
/// by the real Ignition.
pub fn lay_out(out: &Path, role: &str, root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for file in tarball_files(&out.join(format!("{role}/rootfs.tar.gz"))) {
        let target = root.join(file.path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &file.bytes).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode)).unwrap();
    }
    crate::ignition::apply(&out.join(format!("{role}/{role}.ign")), root)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Whether `bytes` hold a PEM private-key block: a BEGIN line naming a
/// private key, base64 lines, and its END line. A label alone, such as the
/// agent's redaction patterns in its binary, is no key.
pub fn holds_private_key(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("-----BEGIN ").any(|(at, begin)| {
        let rest = &text[at + begin.len()..];
        let Some((label, body)) = rest.split_once("-----\n") else {
            return false;
        };
        if !label.ends_with("PRIVATE KEY") || label.contains('\n') {
            return false;
        }
        let Some(stop) = body.find(&format!("-----END {label}-----")) else {
            return false;
        };
        let base64 = |line: &str| {
            (1..=76).contains(&line.len())
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        };
        let lines: Vec<&str> = body[..stop].lines().collect();
        !lines.is_empty() && lines.into_iter().all(base64)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pem_block_is_a_key_and_a_label_is_not() {
        let key =
            b"x-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\nByqGSM49\n-----END PRIVATE KEY-----\n";
        assert!(super::holds_private_key(key));
        assert!(!super::holds_private_key(
            b"\0PRIVATE KEY-----\0-----BEGIN \0"
        ));
        assert!(!super::holds_private_key(
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        ));
    }
}
