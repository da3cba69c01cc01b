//! Bootable role images: the base root filesystem a role is baked on (kiln's
//! cached Debian base or the profile's own), the disk baked from it
//! (`disk.raw`) and the formats converted from that (`formats/`).

mod apt;
mod bake;
mod base;
mod cache;
mod disk;
mod etcd;
mod formats;
mod gpt;
mod mirror;
mod os;
mod readonly;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kiln_node::node_config::Role;

pub use apt::KubernetesApt;
pub use bake::bake_tree;
pub use base::{default_cache_dir, has_kiln_initramfs, DebianBase};
pub use disk::{write_raw, DiskIds};
pub use etcd::{EtcdBinaries, FetchRefused};
pub use formats::{file_name as disk_file_name, Conversion};
pub use mirror::Mirrors;
pub use os::add_os_files;
pub use readonly::kept_in_var;

use crate::layer::RoleLayer;
use crate::profile::{BaseImage, LoadedProfile};

/// The root filesystem a role is baked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleBase {
    /// No base: renderings carry the role layer alone.
    None,
    /// A folder or tarball the profile names.
    Profile(PathBuf),
    /// kiln's Debian base, a folder in the cache.
    Debian(PathBuf),
}

impl RoleBase {
    /// The command line's `--base` (`cli`) if given, else
    /// `images.<role>.base` if set, else the profile's `images.base`;
    /// builds the Debian base if needed. The command line wins, so
    /// `--base none` never bakes a folder the profile names.
    pub fn resolve(
        loaded: &LoadedProfile,
        role: Role,
        cli: Option<BaseImage>,
        etcd: Option<&EtcdBinaries>,
        cache: &Path,
    ) -> Result<RoleBase> {
        let image = loaded.profile.images.role(role);
        if let (None, Some(path)) = (cli, &image.base) {
            return Ok(RoleBase::Profile(loaded.resolve(path)));
        }
        Ok(match cli.unwrap_or(loaded.profile.images.base) {
            BaseImage::None => RoleBase::None,
            BaseImage::Debian => {
                let topology = loaded.profile.etcd.topology;
                let apt = KubernetesApt::from_profile(loaded)?;
                let mut base = DebianBase::for_role(role, topology, &image.packages, apt.as_ref())
                    .on(loaded.profile.images.suite);
                if let (Role::Etcd, Some(etcd)) = (role, etcd) {
                    base = base.with_etcd(etcd.clone());
                }
                RoleBase::Debian(base.ensure(cache)?)
            }
        })
    }

    /// The major version of the base's containerd package, from its dpkg
    /// database (`None` without a base, or without containerd).
    pub fn containerd_major(&self) -> Option<u32> {
        let status = fs::read_to_string(self.path()?.join("var/lib/dpkg/status")).ok()?;
        let stanza = status
            .split("\n\n")
            .find(|s| s.lines().any(|l| l == "Package: containerd"))?;
        let version = stanza.lines().find_map(|l| l.strip_prefix("Version: "))?;
        let upstream = version.split_once(':').map_or(version, |(_, v)| v);
        upstream.split('.').next()?.parse().ok()
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            RoleBase::None => None,
            RoleBase::Profile(p) | RoleBase::Debian(p) => Some(p),
        }
    }
}

/// The raw disk one role gets (created by the caller as an empty file with
/// the right mode, so keys are never world-readable).
pub struct DiskRequest<'a> {
    pub layer: &'a RoleLayer,
    pub base: &'a RoleBase,
    /// Makes the disk's identifiers stable across rebuilds.
    pub seed: String,
    pub mtime: u64,
    pub cache: &'a Path,
    pub raw: &'a Path,
}

/// Bakes the tree and writes `raw`.
pub fn write_disks(request: &DiskRequest) -> Result<()> {
    let role = request.layer.role;
    let base = match request.base {
        RoleBase::None => bail!(
            "the {role} disk needs an operating system: set images.base = \"debian\" or \
             images.{role}.base"
        ),
        RoleBase::Profile(p) | RoleBase::Debian(p) => p,
    };
    if !base.is_dir() {
        bail!(
            "images.{role}.base {} is not a folder: mkfs.erofs builds a disk from a folder only; \
             extract the tarball (as root, keeping owners) and name the folder",
            base.display()
        );
    }
    if !has_kiln_initramfs(base) {
        bail!(
            "images.{role}.base {} has no kiln initramfs scripts, so its initrd cannot open the \
             verified read-only OS partition: use images.base = \"debian\" (kiln's own base), \
             or install builder/src/image/initramfs/* into the base as kiln's base does and run \
             update-initramfs",
            base.display()
        );
    }
    // In the cache, beside the base, so the copy can be hard links.
    let work_root = request.cache.join("bake");
    fs::create_dir_all(&work_root).with_context(|| format!("creating {}", work_root.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{role}-"))
        .tempdir_in(&work_root)
        .with_context(|| format!("creating a work folder in {}", work_root.display()))?;
    let tree = work.path().join("rootfs");
    bake_tree(base, request.layer, request.mtime, &tree)?;
    readonly::link_writable_dirs(&tree)?;
    let ids = DiskIds::derive(&request.seed);
    write_raw(&tree, &ids, request.mtime, request.raw)
        .with_context(|| format!("writing {}", request.raw.display()))
}
