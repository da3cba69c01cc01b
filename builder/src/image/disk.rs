//! `disk.raw`: a GPT disk that boots under UEFI, built without mounting
//! anything: the partition table is written into the file, then each
//! partition at its offset. The ESP (systemd-boot, kernel, initrd) by
//! mkfs.vfat + mcopy; the read-only OS by mkfs.erofs, with its dm-verity
//! hashes by `veritysetup format` in the partition after it; an empty ext4
//! state partition (/var, and the changes to /etc) by mkfs.ext4. The root
//! hash is on the boot entry's command line, so a changed byte of the OS
//! partition fails the read. The other disk formats are converted from it
//! (`formats/`).

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use kiln_node::hex::hex;
use sha2::{Digest, Sha256};

use super::gpt::{self, Partition, SECTOR};

pub(super) const MIB: u64 = 1 << 20;
/// Partitions start on MiB boundaries, as every partitioning tool does.
const ALIGN: u64 = MIB / SECTOR;
/// Free room on the state partition for etcd's data, logs and the agent's
/// state, beyond twice the image's /var (copied there on the first boot).
const STATE_HEADROOM: u64 = 2048 * MIB;
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The verified OS partition as the initramfs maps it (see image/initramfs).
const OS_DEVICE: &str = "/dev/mapper/kiln-os";
/// 1980-01-01, the first time FAT can record. The ESP's and the state
/// partition's stamps are at least this: mcopy and mkfs.ext4 take a stamp of
/// 0 (the default SOURCE_DATE_EPOCH) as "none" and use the clock.
const FAT_EPOCH: u64 = 315_532_800;

/// Stable identifiers of one role's disk, derived from `seed` so a rebuild
/// produces the same partition table, file systems and verity hashes. The
/// OS partition and its hashes take their GUIDs from the root hash, as the
/// Discoverable Partitions Specification has it.
pub struct DiskIds {
    pub disk: String,
    pub esp: String,
    pub state: String,
    pub state_fs: String,
    pub os_fs: String,
    pub verity: String,
    /// dm-verity's salt, hex.
    pub salt: String,
    pub esp_volume: String,
    /// The unique ID in a VHD's footer, as its 16 bytes.
    pub vhd: [u8; 16],
    /// A VMDK's content ID (`CID=` of its descriptor).
    pub vmdk_cid: u32,
}

impl DiskIds {
    pub fn derive(seed: &str) -> DiskIds {
        let digest = |what: &str| Sha256::digest(format!("{seed}/{what}"));
        let uuid_bytes = |what: &str| {
            let hash = digest(what);
            let mut b: [u8; 16] = hash[..16].try_into().expect("16 bytes");
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            b
        };
        let uuid = |what: &str| uuid_text(&hex(&uuid_bytes(what)));
        let esp_volume = uuid("esp-volume")[..8].to_owned();
        let cid = digest("vmdk-cid");
        DiskIds {
            vhd: uuid_bytes("vhd"),
            // ffffffff means "no disk" (a parentCID's value for none).
            vmdk_cid: u32::from_be_bytes(cid[..4].try_into().expect("4 bytes")).min(0xffff_fffe),
            disk: uuid("disk"),
            esp: uuid("esp"),
            state: uuid("state"),
            state_fs: uuid("state-fs"),
            os_fs: uuid("os-fs"),
            verity: uuid("verity"),
            salt: hex(&digest("verity-salt")),
            esp_volume,
        }
    }
}

/// 32 hex digits as a UUID's text.
fn uuid_text(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What the ESP already carries, left out of the read-only OS: the kernel
/// and initrd under /boot (its folder stays, empty) and the links to them
/// at the top. The kernel's modules stay, in /usr/lib/modules. The regex
/// is matched against paths relative to the tree (erofs-utils'
/// `--exclude-regex`).
const BOOT_COPIES: &str = r"^(boot/.+|(vmlinuz|initrd\.img)(\.old)?)$";

/// The verified OS image of a tree: the erofs file system and its hashes.
struct OsImage {
    erofs: PathBuf,
    hashes: PathBuf,
    /// dm-verity's root hash, hex.
    root_hash: String,
}

impl OsImage {
    /// Makes both files in `work` from `tree`.
    fn make(tree: &Path, ids: &DiskIds, mtime: u64, work: &Path) -> Result<OsImage> {
        let erofs = work.join("os.erofs");
        let hashes = work.join("os.verity");
        let mut mkfs = Command::new("mkfs.erofs");
        mkfs.arg(format!("-T{mtime}"))
            .arg(format!("-U{}", ids.os_fs))
            .arg("--quiet")
            .arg(format!("--exclude-regex={BOOT_COPIES}"))
            .arg(&erofs)
            .arg(tree);
        run(&mut mkfs, "mkfs.erofs", "erofs-utils")?;
        let mut format = Command::new("veritysetup");
        format
            .arg("format")
            .arg(&erofs)
            .arg(&hashes)
            .arg(format!("--salt={}", ids.salt))
            .arg(format!("--uuid={}", ids.verity))
            .args(["--data-block-size=4096", "--hash-block-size=4096"]);
        let out = run(&mut format, "veritysetup", "cryptsetup-bin")?;
        let root_hash = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .map(|h| h.trim().to_owned())
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .context("veritysetup format printed no root hash")?;
        Ok(OsImage {
            erofs,
            hashes,
            root_hash,
        })
    }

    /// The partition GUIDs of the data and the hashes: the first and the
    /// last 128 bits of the root hash.
    fn partition_guids(&self) -> (String, String) {
        (
            uuid_text(&self.root_hash[..32]),
            uuid_text(&self.root_hash[32..]),
        )
    }
}

/// Writes `out` from the baked root filesystem folder `tree`; the OS image
/// files are made beside `tree`.
pub fn write_raw(tree: &Path, ids: &DiskIds, mtime: u64, out: &Path) -> Result<()> {
    let work = tree
        .parent()
        .context("the baked tree has no parent folder")?;
    let boot = BootFiles::find(tree)?;
    let var_bytes = tree_size(&tree.join("var"))?;
    let os = OsImage::make(tree, ids, mtime, work)?;
    let (os_guid, hashes_guid) = os.partition_guids();
    let esp_dir = tempfile::tempdir().context("creating a temporary ESP folder")?;
    // systemd's GPT auto-mounts are off: the initramfs mounted everything,
    // and an ESP automount at /efi fails on the read-only root.
    let cmdline = format!(
        "root={OS_DEVICE} rootfstype=erofs ro roothash={} \
         systemd.verity_root_data=PARTUUID={os_guid} \
         systemd.verity_root_hash=PARTUUID={hashes_guid} kiln.state=PARTUUID={} \
         systemd.gpt_auto=0",
        os.root_hash, ids.state
    );
    let stamp = mtime.max(FAT_EPOCH);
    let esp_bytes = boot.stage(esp_dir.path(), &cmdline, stamp)?;
    let sectors = |bytes: u64| round_up(bytes, MIB) / SECTOR;
    let esp_sectors = sectors(esp_bytes * 3 / 2 + 32 * MIB).max(64 * MIB / SECTOR);
    let os_sectors = sectors(file_len(&os.erofs)?);
    let hash_sectors = sectors(file_len(&os.hashes)?);
    let state_sectors = sectors(2 * var_bytes + STATE_HEADROOM);
    let esp_start = ALIGN;
    let os_start = esp_start + esp_sectors;
    let hash_start = os_start + os_sectors;
    let state_start = hash_start + hash_sectors;
    let total = state_start + state_sectors + ALIGN;

    let mut disk = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    disk.set_len(total * SECTOR)
        .with_context(|| format!("sizing {}", out.display()))?;
    let part = |type_guid, guid, name, first_lba, sectors: u64| Partition {
        type_guid,
        guid,
        name,
        first_lba,
        last_lba: first_lba + sectors - 1,
    };
    let parts = [
        part(gpt::ESP_TYPE, &ids.esp, "ESP", esp_start, esp_sectors),
        part(gpt::ROOT_X86_64_TYPE, &os_guid, "os", os_start, os_sectors),
        part(
            gpt::ROOT_VERITY_X86_64_TYPE,
            &hashes_guid,
            "os-verity",
            hash_start,
            hash_sectors,
        ),
        part(
            gpt::VAR_TYPE,
            &ids.state,
            "state",
            state_start,
            state_sectors,
        ),
    ];
    gpt::write(&disk, &ids.disk, total, &parts)
        .with_context(|| format!("writing the partition table of {}", out.display()))?;
    // mkfs.vfat and mkfs.ext4 fsync the whole file when done: before the
    // OS data is in, so that is kilobytes of metadata, not 600 MB waited for.
    write_esp(out, esp_dir.path(), stamp, ids, esp_start, esp_sectors)?;
    write_state(out, stamp, ids, state_start, state_sectors)?;
    for (file, start) in [(&os.erofs, os_start), (&os.hashes, hash_start)] {
        copy_into(&mut disk, file, start * SECTOR)
            .with_context(|| format!("copying {} into {}", file.display(), out.display()))?;
    }
    Ok(())
}

/// The FAT ESP at sector `start` of `out`, holding the files staged in `dir`.
fn write_esp(
    out: &Path,
    dir: &Path,
    stamp: u64,
    ids: &DiskIds,
    start: u64,
    sectors: u64,
) -> Result<()> {
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
    .arg(format!("--offset={start}"))
    .arg(out)
    .arg((sectors * SECTOR / 1024).to_string());
    run(&mut vfat, "mkfs.vfat", "dosfstools")?;
    let mut mcopy = Command::new("mcopy");
    mcopy
        .env("MTOOLS_SKIP_CHECK", "1")
        // Otherwise mcopy stamps each entry's creation and access times with
        // the clock, and no two builds' ESPs are the same bytes.
        .env("SOURCE_DATE_EPOCH", stamp.to_string())
        .env("TZ", "UTC")
        .arg("-i")
        .arg(format!("{}@@{}", out.display(), start * SECTOR))
        .args(["-s", "-m", "-Q"]);
    for entry in ["EFI", "loader", "vmlinuz", "initrd.img"] {
        mcopy.arg(dir.join(entry));
    }
    mcopy.arg("::/");
    run(&mut mcopy, "mcopy", "mtools").map(drop)
}

/// The empty ext4 state partition at sector `start` of `out`.
fn write_state(out: &Path, stamp: u64, ids: &DiskIds, start: u64, sectors: u64) -> Result<()> {
    let mut ext4 = Command::new("mkfs.ext4");
    ext4.env("E2FSPROGS_FAKE_TIME", stamp.to_string())
        .args(["-q", "-F", "-L", "kiln-state", "-U", &ids.state_fs, "-E"])
        .arg(format!(
            "offset={},hash_seed={}",
            start * SECTOR,
            ids.state_fs
        ))
        .arg(out)
        .arg(format!("{}k", sectors * SECTOR / 1024));
    run(&mut ext4, "mkfs.ext4", "e2fsprogs").map(drop)
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// Copies `from` into `disk` at byte `offset` (by copy_file_range where the
/// file system allows).
fn copy_into(disk: &mut File, from: &Path, offset: u64) -> io::Result<()> {
    let mut source = File::open(from)?;
    disk.seek(SeekFrom::Start(offset))?;
    io::copy(&mut source, disk).map(drop)
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

    /// Lays out the ESP in `dir`, the kernel started with `cmdline` and the
    /// console settings; returns the bytes it holds.
    fn stage(&self, dir: &Path, cmdline: &str, mtime: u64) -> Result<u64> {
        let entry = format!(
            "title kiln node\nlinux /vmlinuz\ninitrd /initrd.img\n\
             options {cmdline} console=tty0 console=ttyS0,115200 systemd.show_status=1\n"
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
        // mcopy -m keeps the folders' stamps too, else it takes the clock's.
        for folder in ["EFI/BOOT", "EFI", "loader/entries", "loader"] {
            let what = || format!("stamping the ESP folder {folder}");
            let handle = File::open(dir.join(folder)).with_context(what)?;
            handle.set_modified(stamp).with_context(what)?;
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

pub(super) fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// Runs `cmd`, its failure an error with the tool's own words.
pub(super) fn run(cmd: &mut Command, tool: &str, package: &str) -> Result<Output> {
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_version_4_uuids() {
        let a = DiskIds::derive("example/etcd");
        assert_eq!(a.state, DiskIds::derive("example/etcd").state);
        assert_ne!(a.state, DiskIds::derive("example/worker").state);
        assert_eq!(a.state.len(), 36);
        assert_eq!(&a.state[14..15], "4");
        assert_eq!(a.esp_volume.len(), 8);
        assert_eq!(a.salt.len(), 64);
        assert_ne!(a.salt, DiskIds::derive("example/worker").salt);
    }
}
