//! The real Ignition (Debian's 2.14) for tests: validate a config with
//! `ignition-validate`, and apply one to a folder the way the initramfs
//! would apply it to a node's root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian ships Ignition for dracut only, so the binary is not on PATH.
pub const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Installs Debian's `ignition` package if its binaries are missing.
pub fn ensure_installed() -> Result<()> {
    if Path::new(IGNITION).exists()
        && Command::new("ignition-validate")
            .arg("--version")
            .output()
            .is_ok()
    {
        return Ok(());
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "ignition"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("starting apt-get to install ignition")?;
    if !status.success() {
        bail!("`apt-get install ignition` failed ({status}); install it by hand");
    }
    Ok(())
}

/// Runs `ignition-validate` on a config. Any report, even a warning, is an
/// error: kiln's configs are meant to be clean.
pub fn validate(ign: &Path) -> Result<()> {
    ensure_installed()?;
    let out = Command::new("ignition-validate")
        .arg(ign)
        .output()
        .context("starting ignition-validate")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !report.trim().is_empty() {
        bail!(
            "ignition-validate {} ({}):\n{report}",
            ign.display(),
            out.status
        );
    }
    Ok(())
}

/// Applies `ign` to the folder `root` (normally empty) with the real
/// Ignition: stage `fetch-offline`, then `files`.
///
/// The files stage insists on relabeling for SELinux: it reads
/// `root/etc/selinux/config` and runs `setfiles`. Both are scaffolding made
/// here (SELinux disabled, a no-op `setfiles` first on PATH), and the
/// config file and any folder made only for it are removed afterwards. So is
/// `/etc/.ignition-result.json`, Ignition's own record of the run (with
/// timestamps), which no config asks for. `root` then holds exactly what the
/// config describes.
pub fn apply(ign: &Path, root: &Path) -> Result<()> {
    ensure_installed()?;
    let work = tempfile::tempdir().context("creating Ignition's work folder")?;
    let bin = work.path().join("bin");
    fs::create_dir(&bin).context("creating the fake setfiles folder")?;
    let setfiles = bin.join("setfiles");
    fs::write(&setfiles, "#!/bin/sh\nexit 0\n").context("writing the fake setfiles")?;
    fs::set_permissions(&setfiles, fs::Permissions::from_mode(0o755)).context("chmod setfiles")?;

    let selinux_dir = root.join("etc/selinux");
    let made_etc = !root.join("etc").exists();
    let made_selinux = !selinux_dir.exists();
    fs::create_dir_all(&selinux_dir)
        .with_context(|| format!("creating {}", selinux_dir.display()))?;
    let selinux_config = selinux_dir.join("config");
    fs::write(&selinux_config, "SELINUX=disabled\nSELINUXTYPE=targeted\n")
        .with_context(|| format!("writing {}", selinux_config.display()))?;

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for stage in ["fetch-offline", "files"] {
        let out = Command::new(IGNITION)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout"])
            .arg("-root")
            .arg(root)
            .arg("-config-cache")
            .arg(work.path().join("config.json"))
            .arg("-state-file")
            .arg(work.path().join("state"))
            .arg("-neednet")
            .arg(work.path().join("neednet"))
            .env("IGNITION_CONFIG_FILE", ign)
            .env("PATH", &path)
            .output()
            .with_context(|| format!("starting {IGNITION}"))?;
        if !out.status.success() {
            bail!(
                "ignition stage {stage} on {} failed ({}):\n{}{}",
                ign.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let result = root.join("etc/.ignition-result.json");
    fs::remove_file(&result)
        .with_context(|| format!("removing Ignition's {}", result.display()))?;
    fs::remove_file(&selinux_config)
        .with_context(|| format!("removing {}", selinux_config.display()))?;
    // Only remove folders made here and left empty: a config may write there.
    for (made, dir) in [(made_selinux, selinux_dir), (made_etc, root.join("etc"))] {
        if made
            && fs::read_dir(&dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        {
            fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}
