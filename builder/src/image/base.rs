//! The Debian base root filesystem under a bootable role image: built once by
//! mmdebstrap and cached under a digest of everything that shapes it, so every
//! later build (and every test of a suite) reuses the same folder.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kiln_firstboot::node_config::{Role, Topology};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// Bump when the recipe below changes what a base holds: old caches then
/// stop matching instead of being reused.
const RECIPE_VERSION: u32 = 2;
const SUITE: &str = "bookworm";
/// What every node needs to boot under UEFI and converge: systemd (with
/// networkd), a kernel, udev, systemd-boot for the ESP, and D-Bus with
/// polkit, without which hostnamed refuses networkd the hostname a DHCP
/// server hands out (the name a node on a new address joins under), and
/// resolved, so the DNS servers DHCP hands out are used (instead of the build
/// host's resolv.conf, which mmdebstrap would otherwise leave behind).
const PACKAGES: [&str; 9] = [
    "systemd-resolved",
    "dbus",
    "polkitd",
    "systemd-sysv",
    "linux-image-amd64",
    "udev",
    "kmod",
    "iproute2",
    "systemd-boot-efi",
];
/// Present once a base folder is complete; a half-built one is never reused.
const COMPLETE: &str = "complete";

/// The inputs of one Debian base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianBase {
    /// Sorted, without duplicates.
    pub packages: Vec<String>,
}

impl DebianBase {
    /// The recipe's packages, the role's own and the profile's extras.
    /// Kubernetes nodes get the container runtime and what kubeadm's preflight
    /// wants (conntrack, CA certificates); masters keepalived for the VIP and,
    /// on the stacked topology, etcdctl for snapshots of their local etcd.
    pub fn for_role(role: Role, topology: Topology, extra: &[String]) -> DebianBase {
        const KUBE_NODE: [&str; 3] = ["containerd", "conntrack", "ca-certificates"];
        let role_packages: Vec<&str> = match role {
            Role::Etcd => vec!["etcd-server", "etcd-client"],
            Role::Master => {
                let mut packages = [KUBE_NODE.as_slice(), &["keepalived"]].concat();
                if topology == Topology::Stacked {
                    packages.push("etcd-client");
                }
                packages
            }
            Role::Worker => KUBE_NODE.to_vec(),
        };
        let mut packages: Vec<String> = PACKAGES
            .iter()
            .chain(&role_packages)
            .map(|p| (*p).to_owned())
            .chain(extra.iter().cloned())
            .collect();
        packages.sort();
        packages.dedup();
        DebianBase { packages }
    }

    /// Hex SHA-256 of the recipe version, suite and packages.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(format!("kiln-base {RECIPE_VERSION}\nsuite {SUITE}\n"));
        for package in &self.packages {
            hash.update(format!("package {package}\n"));
        }
        kiln_firstboot::hex::hex(&hash.finalize()[..12])
    }

    /// The cached root filesystem folder, built first if missing. Parallel
    /// builds sharing `cache` wait for one another instead of building twice.
    pub fn ensure(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join("base").join(self.digest());
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating the base cache folder {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock_file = File::create(&lock_path)
            .with_context(|| format!("creating the cache lock {}", lock_path.display()))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let rootfs = dir.join("rootfs");
        if dir.join(COMPLETE).exists() {
            return Ok(rootfs);
        }
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "building the Debian base needs root (mmdebstrap installs packages as root and the \
                 disk must hold root-owned files): run kiln as root, or name a prepared base folder \
                 in images.<role>.base"
            );
        }
        let partial = dir.join("rootfs.partial");
        for stale in [&partial, &rootfs] {
            if stale.exists() {
                fs::remove_dir_all(stale)
                    .with_context(|| format!("removing the unfinished {}", stale.display()))?;
            }
        }
        self.run_mmdebstrap(&partial, &dir.join("mmdebstrap.log"))?;
        fs::rename(&partial, &rootfs)
            .with_context(|| format!("moving {} into place", partial.display()))?;
        fs::write(dir.join(COMPLETE), self.packages.join("\n"))
            .with_context(|| format!("marking {} complete", dir.display()))?;
        Ok(rootfs)
    }

    fn run_mmdebstrap(&self, target: &Path, log: &Path) -> Result<()> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new("mmdebstrap")
            .arg("--variant=minbase")
            .arg("--mode=root")
            .arg(format!("--include={}", self.packages.join(",")))
            .arg(SUITE)
            .arg(target)
            .stdout(log_file.try_clone().context("duplicating the log handle")?)
            .stderr(log_file)
            .status()
            .context("running mmdebstrap (install it with `apt-get install mmdebstrap`)")?;
        if !status.success() {
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "mmdebstrap {SUITE} failed with {status} (full log {}):\n{}\n\
                 check that the Debian mirror in /etc/apt/sources.list is reachable and that \
                 images.<role>.packages names real packages",
                log.display(),
                tail.join("\n")
            );
        }
        Ok(())
    }
}

/// `$XDG_CACHE_HOME/kiln`, `~/.cache/kiln`, or /var/cache/kiln for root.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kiln");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/kiln");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/kiln"),
        None => PathBuf::from("/var/cache/kiln"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_packages_but_not_their_order() {
        let external = Topology::External;
        let a = DebianBase::for_role(Role::Worker, external, &["chrony".into(), "jq".into()]);
        let b = DebianBase::for_role(Role::Worker, external, &["jq".into(), "chrony".into()]);
        let etcd = DebianBase::for_role(Role::Etcd, external, &[]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), etcd.digest());
        assert!(etcd.packages.contains(&"etcd-server".to_owned()));
    }
}
