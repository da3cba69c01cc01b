//! `disk.raw`: a GPT disk that boots under UEFI, built without mounting
//! anything: the partition table is written into the file, the ESP (systemd-
//! boot, kernel, initrd) by mkfs.vfat + mcopy and the root by `mkfs.ext4 -d`,
//! each at its partition's offset. `disk.qcow2` is that disk through qemu-img.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::gpt::{self, Partition, SECTOR};

const MIB: u64 = 1 << 20;
/// Partitions start on MiB boundaries, as every partitioning tool does.
const ALIGN: u64 = MIB / SECTOR;
/// Free room on the root for etcd's data, logs and the agent's state.
const ROOT_HEADROOM: u64 = 1024 * MIB;
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// Stable identifiers of one role's disk, derived from `seed` so a rebuild
/// produces the same partition table and file system UUIDs.
pub struct DiskIds {
    pub disk: String,
    pub esp: String,
    pub root: String,
    pub root_fs: String,
    pub esp_volume: String,
}

impl DiskIds {
    pub fn derive(seed: &str) -> DiskIds {
        let uuid = |what: &str| {
            let hash = Sha256::digest(format!("{seed}/{what}"));
            let mut b: [u8; 16] = hash[..16].try_into().expect("16 bytes");
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h = kiln_firstboot::hex::hex(&b);
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        };
        let esp_volume = uuid("esp-volume")[..8].to_owned();
        DiskIds {
            disk: uuid("disk"),
            esp: uuid("esp"),
            root: uuid("root"),
            root_fs: uuid("root-fs"),
            esp_volume,
        }
    }
}

/// Writes `out` from the baked root filesystem folder `tree`.
pub fn write_raw(tree: &Path, ids: &DiskIds, mtime: u64, out: &Path) -> Result<()> {
    let boot = BootFiles::find(tree)?;
    let esp_dir = tempfile::tempdir().context("creating a temporary ESP folder")?;
    let esp_bytes = boot.stage(esp_dir.path(), ids, mtime)?;
    let esp_sectors = round_up(esp_bytes * 3 / 2 + 32 * MIB, MIB).max(64 * MIB) / SECTOR;
    let tree_bytes = tree_size(tree)?;
    let root_sectors = round_up(tree_bytes + tree_bytes / 4 + ROOT_HEADROOM, MIB) / SECTOR;
    let esp_start = ALIGN;
    let root_start = esp_start + esp_sectors;
    let total = root_start + root_sectors + ALIGN;

    let disk = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    disk.set_len(total * SECTOR)
        .with_context(|| format!("sizing {}", out.display()))?;
    let parts = [
        Partition {
            type_guid: gpt::ESP_TYPE,
            guid: &ids.esp,
            name: "ESP",
            first_lba: esp_start,
            last_lba: root_start - 1,
        },
        Partition {
            type_guid: gpt::ROOT_X86_64_TYPE,
            guid: &ids.root,
            name: "root",
            first_lba: root_start,
            last_lba: root_start + root_sectors - 1,
        },
    ];
    gpt::write(&disk, &ids.disk, total, &parts)
        .with_context(|| format!("writing the partition table of {}", out.display()))?;
    drop(disk);

    let mut vfat = Command::new("mkfs.vfat");
    vfat.args([
        "-F",
        "32",
        "-s",
        "1",
        "-n",
        "KILN-ESP",
        "-i",
        &ids.esp_volume,
        "--invariant",
    ])
    .arg(format!("--offset={esp_start}"))
    .arg(out)
    .arg((esp_sectors * SECTOR / 1024).to_string());
    run(&mut vfat, "mkfs.vfat", "dosfstools")?;
    let mut mcopy = Command::new("mcopy");
    mcopy
        .env("MTOOLS_SKIP_CHECK", "1")
        // Otherwise mcopy stamps each entry's creation and access times with
        // the clock, and no two builds' ESPs are the same bytes.
        .env("SOURCE_DATE_EPOCH", mtime.to_string())
        .arg("-i")
        .arg(format!("{}@@{}", out.display(), esp_start * SECTOR))
        .args(["-s", "-m", "-Q"]);
    for entry in ["EFI", "loader", "vmlinuz", "initrd.img"] {
        mcopy.arg(esp_dir.path().join(entry));
    }
    mcopy.arg("::/");
    run(&mut mcopy, "mcopy", "mtools")?;

    let mut ext4 = Command::new("mkfs.ext4");
    ext4.env("E2FSPROGS_FAKE_TIME", mtime.to_string())
        .args(["-q", "-F", "-L", "root", "-U", &ids.root_fs, "-E"])
        .arg(format!(
            "offset={},hash_seed={}",
            root_start * SECTOR,
            ids.root_fs
        ))
        .arg("-d")
        .arg(tree)
        .arg(out)
        .arg(format!("{}k", root_sectors * SECTOR / 1024));
    run(&mut ext4, "mkfs.ext4", "e2fsprogs")
}

/// `disk.qcow2` from `disk.raw`; unallocated clusters stay unallocated.
pub fn write_qcow2(raw: &Path, out: &Path) -> Result<()> {
    let mut convert = Command::new("qemu-img");
    convert
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out);
    run(&mut convert, "qemu-img", "qemu-utils")
}

/// The kernel, initrd and boot loader found in the baked tree.
struct BootFiles {
    kernel: PathBuf,
    initrd: PathBuf,
    loader: PathBuf,
}

impl BootFiles {
    fn find(tree: &Path) -> Result<BootFiles> {
        // /vmlinuz and /initrd.img are relative symlinks into /boot.
        let resolve = |name: &str, package: &str| -> Result<PathBuf> {
            let link = tree.join(name);
            let target = fs::read_link(&link).unwrap_or_else(|_| PathBuf::from(name));
            let path = tree.join(target.strip_prefix("/").unwrap_or(&target));
            if !path.is_file() {
                bail!(
                    "the base {} has no /{name}: a bootable disk needs {package} in the base",
                    tree.display()
                );
            }
            Ok(path)
        };
        Ok(BootFiles {
            kernel: resolve("vmlinuz", "linux-image-amd64")?,
            initrd: resolve("initrd.img", "linux-image-amd64 (and initramfs-tools)")?,
            loader: resolve(SYSTEMD_BOOT, "systemd-boot-efi")?,
        })
    }

    /// Lays out the ESP in `dir`; returns the bytes it holds.
    fn stage(&self, dir: &Path, ids: &DiskIds, mtime: u64) -> Result<u64> {
        let entry = format!(
            "title kiln node\nlinux /vmlinuz\ninitrd /initrd.img\n\
             options root=PARTUUID={} rw console=tty0 console=ttyS0,115200 systemd.show_status=1\n",
            ids.root
        );
        let files: [(&str, Source); 5] = [
            ("EFI/BOOT/BOOTX64.EFI", Source::Copy(&self.loader)),
            (
                "loader/loader.conf",
                Source::Text("default kiln.conf\ntimeout 0\n"),
            ),
            ("loader/entries/kiln.conf", Source::Text(&entry)),
            ("vmlinuz", Source::Copy(&self.kernel)),
            ("initrd.img", Source::Copy(&self.initrd)),
        ];
        let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
        let mut total = 0;
        for (rel, source) in files {
            let path = dir.join(rel);
            let what = || format!("staging the ESP file {rel}");
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).with_context(what)?;
            }
            match source {
                Source::Copy(from) => fs::copy(from, &path).map(drop),
                Source::Text(text) => fs::write(&path, text),
            }
            .with_context(what)?;
            let file = File::options().write(true).open(&path).with_context(what)?;
            file.set_modified(stamp).with_context(what)?;
            total += file.metadata().with_context(what)?.len();
        }
        Ok(total)
    }
}

enum Source<'a> {
    Copy(&'a Path),
    Text(&'a str),
}

/// Bytes the tree occupies, counting every inode at least one block.
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        total += round_up(meta.size(), 4096).max(4096);
        if meta.is_dir() {
            total += tree_size(&entry.path())?;
        }
    }
    Ok(total)
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

fn run(cmd: &mut Command, tool: &str, package: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {tool} (install it with `apt-get install {package}`)"))?;
    if !out.status.success() {
        bail!(
            "{tool} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_version_4_uuids() {
        let a = DiskIds::derive("example/etcd");
        assert_eq!(a.root, DiskIds::derive("example/etcd").root);
        assert_ne!(a.root, DiskIds::derive("example/worker").root);
        assert_eq!(a.root.len(), 36);
        assert_eq!(&a.root[14..15], "4");
        assert_eq!(a.esp_volume.len(), 8);
    }
}
