//! The Debian base root filesystem under a bootable role image: built once by
//! mmdebstrap and cached under a digest of everything that shapes it, so every
//! later build (and every test of a suite) reuses the same folder.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kiln_firstboot::node_config::{Role, Topology};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::apt::KubernetesApt;

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
    /// The Kubernetes repository packages also come from (masters, workers).
    pub kubernetes: Option<KubernetesApt>,
}

impl DebianBase {
    /// The recipe's packages, the role's own and the profile's extras.
    /// Kubernetes nodes get the container runtime and what kubeadm's preflight
    /// wants (conntrack, CA certificates); masters keepalived for the VIP and,
    /// on the stacked topology, etcdctl for snapshots of their local etcd.
    /// Masters and workers also get `kubernetes`' packages from its repository.
    pub fn for_role(
        role: Role,
        topology: Topology,
        extra: &[String],
        kubernetes: Option<&KubernetesApt>,
    ) -> DebianBase {
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
        let kubernetes = kubernetes.filter(|_| role != Role::Etcd);
        let mut packages: Vec<String> = PACKAGES
            .iter()
            .chain(&role_packages)
            .map(|p| (*p).to_owned())
            .chain(extra.iter().cloned())
            .chain(kubernetes.iter().flat_map(|k| k.packages.iter().cloned()))
            .collect();
        packages.sort();
        packages.dedup();
        DebianBase {
            packages,
            kubernetes: kubernetes.cloned(),
        }
    }

    /// Hex SHA-256 of the recipe version, suite, packages and the Kubernetes
    /// repository with its key.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(format!("kiln-base {RECIPE_VERSION}\nsuite {SUITE}\n"));
        for package in &self.packages {
            hash.update(format!("package {package}\n"));
        }
        if let Some(apt) = &self.kubernetes {
            let key = kiln_firstboot::hex::hex(&Sha256::digest(&apt.key));
            hash.update(format!("repository {}\nkey {key}\n", apt.repository));
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
        if let Some(apt) = &self.kubernetes {
            let key = dir.join(apt.key_name());
            fs::write(&key, &apt.key).with_context(|| format!("writing {}", key.display()))?;
        }
        let args = self.mmdebstrap_args(&partial, &dir);
        self.run_mmdebstrap(&args, &dir.join("mmdebstrap.log"))?;
        fs::rename(&partial, &rootfs)
            .with_context(|| format!("moving {} into place", partial.display()))?;
        fs::write(dir.join(COMPLETE), self.packages.join("\n"))
            .with_context(|| format!("marking {} complete", dir.display()))?;
        Ok(rootfs)
    }

    /// mmdebstrap's arguments; `key_dir` holds the build host's copy of the
    /// Kubernetes repository's key.
    fn mmdebstrap_args(&self, target: &Path, key_dir: &Path) -> Vec<OsString> {
        let sources = self.kubernetes.as_ref().map(|apt| apt.sources(key_dir));
        let mut args: Vec<OsString> = vec![
            "--variant=minbase".into(),
            "--mode=root".into(),
            format!("--include={}", self.packages.join(",")).into(),
        ];
        if let Some(sources) = &sources {
            args.extend(sources.hooks.iter().map(OsString::from));
        }
        args.extend([SUITE.into(), target.into()]);
        if let Some(sources) = sources {
            args.extend(sources.mirrors.into_iter().map(OsString::from));
        }
        args
    }

    fn run_mmdebstrap(&self, args: &[OsString], log: &Path) -> Result<()> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new("mmdebstrap")
            .args(args)
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

    const EXTERNAL: Topology = Topology::External;

    use crate::image::apt::tests::pkgs_k8s_io;

    #[test]
    fn digest_changes_with_packages_but_not_their_order() {
        let a = DebianBase::for_role(
            Role::Worker,
            EXTERNAL,
            &["chrony".into(), "jq".into()],
            None,
        );
        let b = DebianBase::for_role(
            Role::Worker,
            EXTERNAL,
            &["jq".into(), "chrony".into()],
            None,
        );
        let etcd = DebianBase::for_role(Role::Etcd, EXTERNAL, &[], None);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), etcd.digest());
        assert!(etcd.packages.contains(&"etcd-server".to_owned()));
    }

    #[test]
    fn master_and_worker_bases_differ_and_include_the_kubernetes_repository() {
        let apt = pkgs_k8s_io();
        let role = |role, apt| DebianBase::for_role(role, EXTERNAL, &[], apt);
        let (master, worker) = (
            role(Role::Master, Some(&apt)),
            role(Role::Worker, Some(&apt)),
        );
        assert_ne!(master.digest(), worker.digest());
        for base in [&master, &worker] {
            assert_eq!(base.kubernetes.as_ref(), Some(&apt));
            for package in ["kubelet", "kubeadm", "kubectl", "containerd"] {
                assert!(base.packages.iter().any(|p| p == package), "{package}");
            }
        }
        assert!(master.packages.iter().any(|p| p == "keepalived"));
        assert!(!worker.packages.iter().any(|p| p == "keepalived"));
        // The repository and its key are inputs of the digest.
        assert_ne!(master.digest(), role(Role::Master, None).digest());
        let other_repo = KubernetesApt {
            repository: "https://pkgs.k8s.io/core:/stable:/v1.30/deb/".into(),
            ..apt.clone()
        };
        let other_key = KubernetesApt {
            key: b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nmR\n".to_vec(),
            ..apt.clone()
        };
        for other in [&other_repo, &other_key] {
            assert_ne!(master.digest(), role(Role::Master, Some(other)).digest());
        }
        // etcd nodes never get Kubernetes packages.
        assert_eq!(role(Role::Etcd, Some(&apt)), role(Role::Etcd, None));
    }

    #[test]
    fn without_a_repository_mmdebstrap_picks_debian_mirrors_itself() {
        let plain = DebianBase::for_role(Role::Worker, EXTERNAL, &[], None);
        let args = plain.mmdebstrap_args(Path::new("/t"), Path::new("/c"));
        assert_eq!(args.len(), 5);
        assert_eq!(
            args[3..],
            [OsString::from("bookworm"), OsString::from("/t")]
        );
    }

    #[test]
    fn mmdebstrap_adds_the_repository_with_its_key_for_the_build_and_the_node() {
        let base = DebianBase::for_role(Role::Worker, EXTERNAL, &[], Some(&pkgs_k8s_io()));
        let args: Vec<String> = base
            .mmdebstrap_args(
                Path::new("/cache/base/x/rootfs.partial"),
                Path::new("/cache/base/x"),
            )
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |arg: &str| args.iter().position(|a| a == arg);
        let suite = at("bookworm").expect("suite");
        assert_eq!(at("/cache/base/x/rootfs.partial"), Some(suite + 1));
        assert_eq!(
            args[suite + 2..],
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://security.debian.org/debian-security bookworm-security main",
                "deb [signed-by=/cache/base/x/kiln-kubernetes.asc] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /",
            ]
        );
        assert!(args[2].starts_with("--include=") && args[2].contains(",kubeadm,"));
        let setup = concat!(
            "--setup-hook=mkdir -p \"$1/etc/apt/keyrings\" && ",
            "cp '/cache/base/x/kiln-kubernetes.asc' \"$1/etc/apt/keyrings/kiln-kubernetes.asc\" && ",
            "chmod 644 \"$1/etc/apt/keyrings/kiln-kubernetes.asc\""
        );
        assert!(args.iter().any(|a| a == setup), "{args:?}");
        let customize = args
            .iter()
            .find(|a| a.starts_with("--customize-hook="))
            .expect("customize hook");
        assert!(
            customize.ends_with(concat!(
                "'deb [signed-by=/etc/apt/keyrings/kiln-kubernetes.asc] ",
                "https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /' > \"$1/etc/apt/sources.list\""
            )),
            "{customize}"
        );
        assert!(customize.contains("'deb http://deb.debian.org/debian bookworm main'"));
    }
}
