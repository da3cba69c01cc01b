//! The disk formats converted from a role's `disk.raw`, one module each:
//! qcow2 (qemu, libvirt, OpenStack), Azure's fixed VHD, GCE's tar.gz, a
//! stream-optimized VMDK and an OVA of it (VMware). Every one holds the
//! very bytes of disk.raw and is the same file in every build from one
//! base: the identifiers and time stamps qemu-img and tar would take from
//! the clock or at random are pinned.

mod gce;
mod ova;
mod vhd;
mod vmdk;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use kiln_node::node_config::Role;

use super::disk::{run, DiskIds};
use crate::profile::OutputFormat;

/// What every conversion of one role's raw disk shares.
pub struct Conversion<'a> {
    /// The role's disk, written by [`super::write_disks`], named disk.raw.
    pub raw: &'a Path,
    pub ids: &'a DiskIds,
    pub role: Role,
    /// The build's time stamp (`SOURCE_DATE_EPOCH`).
    pub mtime: u64,
    /// Whether the disk holds keys (images.embed_config): the members of
    /// the tarball formats are then 0600, as the files are.
    pub secret: bool,
}

impl Conversion<'_> {
    /// Writes `out` (created empty by the caller, with its mode) as `format`.
    pub fn write(&self, format: OutputFormat, out: &Path) -> Result<()> {
        match format {
            OutputFormat::Qcow2 => write_qcow2(self.raw, out),
            OutputFormat::Vhd => vhd::write(self, out),
            OutputFormat::Gce => gce::write(self, out),
            OutputFormat::Vmdk => vmdk::write(self, out),
            OutputFormat::Ova => ova::write(self, out),
            OutputFormat::Ignition | OutputFormat::Rootfs | OutputFormat::Raw => {
                unreachable!("{format:?} is not converted from disk.raw")
            }
        }
        .with_context(|| format!("writing {}", out.display()))
    }

    /// The mode of a tarball's member, as GNU tar's `--mode` takes it.
    fn member_mode(&self) -> &'static str {
        if self.secret {
            "0600"
        } else {
            "0644"
        }
    }

    /// GNU tar writing `format` with nothing of the build host in it: the
    /// build's time, root's numeric owner, the artifact's mode.
    fn tar(&self, format: &str) -> Command {
        let mut tar = Command::new("tar");
        tar.arg(format!("--format={format}"))
            .arg(format!("--mtime=@{}", self.mtime))
            .args(["--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mode={}", self.member_mode()));
        tar
    }
}

/// `disk.qcow2` from `disk.raw`; unallocated clusters stay unallocated, and
/// qcow2 has no time stamps.
fn write_qcow2(raw: &Path, out: &Path) -> Result<()> {
    let mut convert = Command::new("qemu-img");
    convert
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out);
    run(&mut convert, "qemu-img", "qemu-utils").map(drop)
}

/// The file name a disk format is written under in `<role>/`.
pub fn file_name(format: OutputFormat) -> Option<&'static str> {
    Some(match format {
        OutputFormat::Raw => "disk.raw",
        OutputFormat::Qcow2 => "disk.qcow2",
        OutputFormat::Vhd => "disk.vhd",
        OutputFormat::Gce => "disk.tar.gz",
        OutputFormat::Vmdk => "disk.vmdk",
        OutputFormat::Ova => "disk.ova",
        OutputFormat::Ignition | OutputFormat::Rootfs => return None,
    })
}
