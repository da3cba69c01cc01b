//! The Debian base root filesystem under a bootable role image: built once by
//! mmdebstrap and cached under a digest of everything that shapes it, so every
//! later build (and every test of a suite) reuses the same folder.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kiln_node::node_config::{Role, Topology};
use sha2::{Digest, Sha256};

use super::apt::KubernetesApt;
use super::cache::cache_lock;
use super::etcd::EtcdBinaries;
use super::mirror::Mirrors;
use crate::profile::Suite;

/// Bump when the recipe below changes what a base holds: old caches then
/// stop matching instead of being reused.
const RECIPE_VERSION: u32 = 8;
/// `SOURCE_DATE_EPOCH` of everything that runs while a base is built
/// (mmdebstrap, the packages' scripts, the hooks): mmdebstrap then makes
/// reproducible output, and mkinitramfs clamps the initrd's mtimes and has
/// cpio write it `--reproducible` (initramfs-tools' mkinitramfs reads the
/// variable). Without it two cold builds gave initrds that differed in a
/// cpio inode field. Fixed, not the build's time: the base is cached and
/// shared, and its bytes must not depend on when it was made. 2025-01-01.
const BASE_SOURCE_DATE_EPOCH: u64 = 1_735_689_600;
/// What every node needs to boot under UEFI and converge: systemd (with
/// networkd), a kernel, udev, systemd-boot for the ESP, and D-Bus with
/// polkit, without which hostnamed refuses networkd the hostname a DHCP
/// server hands out (the name a node on a new address joins under), and
/// resolved, so the DNS servers DHCP hands out are used (instead of the build
/// host's resolv.conf, which mmdebstrap would otherwise leave behind);
/// initramfs-tools and veritysetup for the verified, read-only root, and
/// sfdisk and resize2fs to grow its state partition; Ignition, which gives
/// a node its config at first boot.
const PACKAGES: [&str; 14] = [
    "systemd-resolved",
    "dbus",
    "polkitd",
    "systemd-sysv",
    "linux-image-amd64",
    "udev",
    "kmod",
    "iproute2",
    "systemd-boot-efi",
    "initramfs-tools",
    "cryptsetup-bin",
    "ignition",
    "fdisk",
    "e2fsprogs",
];
/// Present once a base folder is complete; a half-built one is never reused.
const COMPLETE: &str = "complete";
/// The folder, beside the base, of etcd's files for mmdebstrap to sync in.
const ETCD_TREE: &str = "etcd-tree";
/// The folder, beside the base, of kiln's initramfs-tools hook and scripts.
const INITRAMFS_TREE: &str = "initramfs-tree";
/// kiln's additions to the initramfs: `(path in the base, script)`. The
/// local-top script opens the OS partition through dm-verity, the
/// init-bottom one mounts the state partition on /var and a writable /etc.
const INITRAMFS: [(&str, &str); 3] = [
    (
        "usr/share/initramfs-tools/hooks/kiln",
        include_str!("initramfs/hook"),
    ),
    (
        "usr/share/initramfs-tools/scripts/local-top/kiln-verity",
        include_str!("initramfs/verity"),
    ),
    (
        "usr/share/initramfs-tools/scripts/init-bottom/kiln-state",
        include_str!("initramfs/state"),
    ),
];

/// The inputs of one Debian base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianBase {
    pub suite: Suite,
    /// Sorted, without duplicates.
    pub packages: Vec<String>,
    /// The Kubernetes repository packages also come from (masters, workers).
    pub kubernetes: Option<KubernetesApt>,
    /// etcd installed from binaries instead of the suite's packages (etcd nodes).
    pub etcd: Option<EtcdBinaries>,
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
        // nftables: the metadata lockdown's rules (layer/metadata.rs).
        const KUBE_NODE: [&str; 4] = ["containerd", "conntrack", "ca-certificates", "nftables"];
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
            suite: Suite::default(),
            packages,
            kubernetes: kubernetes.cloned(),
            etcd: None,
        }
    }

    /// The base on Debian `suite`.
    pub fn on(mut self, suite: Suite) -> DebianBase {
        self.suite = suite;
        self
    }

    /// etcd from `binaries` rather than the suite's etcd-server and
    /// etcd-client packages (etcd nodes only).
    pub fn with_etcd(mut self, binaries: EtcdBinaries) -> DebianBase {
        self.packages
            .retain(|p| p != "etcd-server" && p != "etcd-client");
        self.etcd = Some(binaries);
        self
    }

    /// Hex SHA-256 of the recipe version, suite, packages and the Kubernetes
    /// repository with its key.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(format!(
            "kiln-base {RECIPE_VERSION}\nsuite {}\n",
            self.suite
        ));
        for package in &self.packages {
            hash.update(format!("package {package}\n"));
        }
        if let Some(apt) = &self.kubernetes {
            let key = kiln_node::hex::hex(&Sha256::digest(&apt.key));
            hash.update(format!("repository {}\nkey {key}\n", apt.repository));
        }
        if let Some(etcd) = &self.etcd {
            hash.update(format!("etcd {}\n", etcd.digest));
        }
        for (path, script) in INITRAMFS {
            hash.update(format!("initramfs {path}\n{script}\n"));
        }
        kiln_node::hex::hex(&hash.finalize()[..12])
    }

    /// The cached root filesystem folder, built first if missing. Parallel
    /// builds sharing `cache` wait for one another instead of building twice.
    pub fn ensure(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join("base").join(self.digest());
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating the base cache folder {}", dir.display()))?;
        let _lock = cache_lock(&dir.join("lock"))?;
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
        if let Some(etcd) = &self.etcd {
            let tree = dir.join(ETCD_TREE);
            if tree.exists() {
                fs::remove_dir_all(&tree)
                    .with_context(|| format!("removing the unfinished {}", tree.display()))?;
            }
            etcd.write_install_tree(&tree)?;
        }
        write_initramfs_tree(&dir.join(INITRAMFS_TREE))?;
        let mirrors = Mirrors::of_host();
        if mirrors.is_none() && self.kubernetes.is_some() {
            bail!(
                "this host's apt configuration names no Debian mirror, and images.kubernetes.apt \
                 needs one beside its repository: configure apt, or use images.kubernetes.binaries"
            );
        }
        let args = self.mmdebstrap_args(&partial, &dir, mirrors.as_ref());
        self.run_mmdebstrap(&args, &dir.join("mmdebstrap.log"))?;
        fs::rename(&partial, &rootfs)
            .with_context(|| format!("moving {} into place", partial.display()))?;
        fs::write(dir.join(COMPLETE), self.packages.join("\n"))
            .with_context(|| format!("marking {} complete", dir.display()))?;
        Ok(rootfs)
    }

    /// mmdebstrap's arguments; `dir` is the base's cache folder (it holds
    /// the build host's copy of the Kubernetes repository's key and etcd's
    /// install tree); without `mirrors`, mmdebstrap picks Debian's itself.
    fn mmdebstrap_args(
        &self,
        target: &Path,
        dir: &Path,
        mirrors: Option<&Mirrors>,
    ) -> Vec<OsString> {
        let debian = mirrors.map(|m| m.sources(self.suite)).unwrap_or_default();
        let sources = self
            .kubernetes
            .as_ref()
            .map(|apt| apt.sources(dir, &debian));
        let mut args: Vec<OsString> = vec![
            "--variant=minbase".into(),
            "--mode=root".into(),
            format!("--include={}", self.packages.join(",")).into(),
        ];
        if let Some(sources) = &sources {
            args.extend(sources.hooks.iter().map(OsString::from));
        }
        if self.etcd.is_some() {
            // As Debian's etcd-server installs it: files, then its user.
            let tree = dir.join(ETCD_TREE);
            args.push(format!("--customize-hook=sync-in {} /", tree.display()).into());
            args.push("--customize-hook=chroot \"$1\" systemd-sysusers".into());
        }
        // After every package's own hooks, so the initramfs is made once more
        // with kiln's scripts in it.
        let initramfs = dir.join(INITRAMFS_TREE);
        args.push(format!("--customize-hook=sync-in {} /", initramfs.display()).into());
        args.push("--customize-hook=chroot \"$1\" update-initramfs -u -k all".into());
        args.extend([self.suite.as_str().into(), target.into()]);
        match sources {
            Some(sources) => args.extend(sources.mirrors.into_iter().map(OsString::from)),
            None => args.extend(debian.into_iter().map(OsString::from)),
        }
        args
    }

    fn run_mmdebstrap(&self, args: &[OsString], log: &Path) -> Result<()> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new("mmdebstrap")
            .args(args)
            .env("SOURCE_DATE_EPOCH", BASE_SOURCE_DATE_EPOCH.to_string())
            .stdout(log_file.try_clone().context("duplicating the log handle")?)
            .stderr(log_file)
            .status()
            .context("running mmdebstrap (install it with `apt-get install mmdebstrap`)")?;
        if !status.success() {
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "mmdebstrap {} failed with {status} (full log {}):\n{}\n\
                 check that the Debian mirror in /etc/apt/sources.list is reachable and that \
                 images.<role>.packages names real packages",
                self.suite,
                log.display(),
                tail.join("\n")
            );
        }
        Ok(())
    }
}

/// True if the root filesystem folder `tree` carries kiln's initramfs
/// scripts (its initrd can then open the verified OS partition).
pub fn has_kiln_initramfs(tree: &Path) -> bool {
    INITRAMFS.iter().all(|(path, _)| tree.join(path).is_file())
}

/// Writes kiln's initramfs hook and scripts under `tree` for mmdebstrap to
/// sync into the base.
fn write_initramfs_tree(tree: &Path) -> Result<()> {
    if tree.exists() {
        fs::remove_dir_all(tree)
            .with_context(|| format!("removing the unfinished {}", tree.display()))?;
    }
    for (path, script) in INITRAMFS {
        let file = tree.join(path);
        let what = || format!("writing {}", file.display());
        fs::create_dir_all(file.parent().expect("a nested path")).with_context(what)?;
        fs::write(&file, script).with_context(what)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).with_context(what)?;
    }
    Ok(())
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

    fn mirrors() -> Mirrors {
        Mirrors {
            archive: "http://mirror.test/debian".into(),
            security: Some("http://mirror.test/debian-security".into()),
        }
    }

    #[test]
    fn without_a_host_mirror_mmdebstrap_picks_debian_mirrors_itself() {
        let plain = DebianBase::for_role(Role::Worker, EXTERNAL, &[], None);
        let args = plain.mmdebstrap_args(Path::new("/t"), Path::new("/c"), None);
        assert_eq!(args.len(), 7);
        assert_eq!(args[5..], [OsString::from("trixie"), OsString::from("/t")]);
        let bookworm = plain.on(Suite::Bookworm);
        let args = bookworm.mmdebstrap_args(Path::new("/t"), Path::new("/c"), Some(&mirrors()));
        assert_eq!(args[5], OsString::from("bookworm"));
        assert_eq!(
            args[7],
            OsString::from("deb http://mirror.test/debian bookworm main")
        );
    }

    #[test]
    fn suites_and_etcd_binaries_are_inputs_of_the_digest() {
        let etcd = DebianBase::for_role(Role::Etcd, EXTERNAL, &[], None);
        assert_ne!(etcd.digest(), etcd.clone().on(Suite::Bookworm).digest());
        let binaries = EtcdBinaries {
            dir: "/opt/etcd".into(),
            digest: "a".repeat(64),
        };
        let own = etcd.clone().with_etcd(binaries.clone());
        assert!(!own.packages.iter().any(|p| p.starts_with("etcd-")));
        assert_ne!(own.digest(), etcd.digest());
        let other = EtcdBinaries {
            digest: "b".repeat(64),
            ..binaries
        };
        assert_ne!(own.digest(), etcd.with_etcd(other).digest());
        let args = own.mmdebstrap_args(Path::new("/t"), Path::new("/c"), None);
        assert!(args.contains(&OsString::from("--customize-hook=sync-in /c/etcd-tree /")));
        assert!(args.contains(&OsString::from(
            "--customize-hook=chroot \"$1\" systemd-sysusers"
        )));
    }

    #[test]
    fn mmdebstrap_adds_the_repository_with_its_key_for_the_build_and_the_node() {
        let base = DebianBase::for_role(Role::Worker, EXTERNAL, &[], Some(&pkgs_k8s_io()));
        let args: Vec<String> = base
            .mmdebstrap_args(
                Path::new("/cache/base/x/rootfs.partial"),
                Path::new("/cache/base/x"),
                Some(&mirrors()),
            )
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |arg: &str| args.iter().position(|a| a == arg);
        let suite = at("trixie").expect("suite");
        assert_eq!(at("/cache/base/x/rootfs.partial"), Some(suite + 1));
        assert_eq!(
            args[suite + 2..],
            [
                "deb http://mirror.test/debian trixie main",
                "deb http://mirror.test/debian trixie-updates main",
                "deb http://mirror.test/debian-security trixie-security main",
                "deb [signed-by=/cache/base/x/kiln-kubernetes.asc] https://pkgs.k8s.io/core:/stable:/v1.36/deb/ /",
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
                "https://pkgs.k8s.io/core:/stable:/v1.36/deb/ /' > \"$1/etc/apt/sources.list\""
            )),
            "{customize}"
        );
        assert!(customize.contains("'deb http://mirror.test/debian trixie main'"));
    }
}
