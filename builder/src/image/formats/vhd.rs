//! `disk.vhd`: Azure's fixed VHD, the disk's bytes followed by a 512-byte
//! footer. Azure takes only fixed VHDs whose virtual size is a whole number
//! of MiB, so the disk is padded with zeros to the next MiB in the VHD
//! (disk.raw itself is never changed). qemu-img stamps the footer with the
//! clock and a random unique ID; both are pinned afterwards.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::super::disk::{round_up, run, MIB};
use super::Conversion;

const FOOTER: usize = 512;
/// VHD time stamps count seconds from 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;
/// The footer's fields (Microsoft's "Virtual Hard Disk Image Format
/// Specification"), big-endian.
const COOKIE: &[u8; 8] = b"conectix";
const TIMESTAMP: usize = 24;
const CURRENT_SIZE: usize = 48;
const DISK_TYPE: usize = 60;
const CHECKSUM: usize = 64;
const UNIQUE_ID: usize = 68;
const FIXED: u32 = 2;

pub(super) fn write(c: &Conversion, out: &Path) -> Result<()> {
    let len = fs::metadata(c.raw)
        .with_context(|| format!("reading {}", c.raw.display()))?
        .len();
    let size = round_up(len, MIB);
    // Created at the padded size (sparse, all zeros), then the disk written
    // into it: the padding costs no copy. force_size keeps the size exact
    // instead of rounding it to a CHS geometry, and tells readers so
    // (creator "qem2": the size field counts, not the geometry).
    let mut create = Command::new("qemu-img");
    create
        .args([
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=fixed,force_size=on",
        ])
        .arg(out)
        .arg(size.to_string());
    run(&mut create, "qemu-img", "qemu-utils")?;
    let mut convert = Command::new("qemu-img");
    convert
        .args([
            "convert",
            "-n",
            "--target-is-zero",
            "-f",
            "raw",
            "-O",
            "vpc",
        ])
        .arg(c.raw)
        .arg(out);
    run(&mut convert, "qemu-img", "qemu-utils")?;

    let file = File::options()
        .read(true)
        .write(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut footer = [0u8; FOOTER];
    file.read_exact_at(&mut footer, size)
        .with_context(|| format!("reading the VHD footer of {}", out.display()))?;
    let stamp = u32::try_from(c.mtime.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    pin(&mut footer, size, stamp, c.ids.vhd)?;
    file.write_all_at(&footer, size)
        .with_context(|| format!("writing the VHD footer of {}", out.display()))
}

/// Sets the footer's time stamp and unique ID, after checking it is the
/// fixed disk of `size` bytes asked for.
fn pin(footer: &mut [u8; FOOTER], size: u64, stamp: u32, id: [u8; 16]) -> Result<()> {
    let field = |at: usize, n: usize| &footer[at..at + n];
    let current = u64::from_be_bytes(field(CURRENT_SIZE, 8).try_into().expect("8 bytes"));
    let kind = u32::from_be_bytes(field(DISK_TYPE, 4).try_into().expect("4 bytes"));
    if field(0, 8) != COOKIE || kind != FIXED || current != size {
        bail!(
            "qemu-img wrote no fixed VHD of {size} bytes (type {kind}, size {current}): \
             this qemu-img's vpc driver is not the one kiln knows (qemu-utils 5.0 or later)"
        );
    }
    footer[TIMESTAMP..TIMESTAMP + 4].copy_from_slice(&stamp.to_be_bytes());
    footer[UNIQUE_ID..UNIQUE_ID + 16].copy_from_slice(&id);
    let sum = checksum(footer);
    footer[CHECKSUM..CHECKSUM + 4].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The ones' complement of the sum of the footer's bytes, its checksum
/// field left out.
fn checksum(footer: &[u8; FOOTER]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(CHECKSUM..CHECKSUM + 4).contains(i))
        .fold(0u32, |sum, (_, b)| sum.wrapping_add(u32::from(*b)));
    !sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DiskIds;
    use kiln_node::node_config::Role;

    fn qemu_img(args: &[&str], file: &Path) -> String {
        let out = Command::new("qemu-img").args(args).arg(file).output();
        let out = out.expect("qemu-img (apt-get install qemu-utils)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_disk_of_no_whole_mib_is_padded_and_two_conversions_agree() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let len = 3 * MIB / 2;
        let file = File::create(&raw).unwrap();
        file.set_len(len).unwrap();
        file.write_all_at(b"kiln", len - 4).unwrap();
        let ids = DiskIds::derive("test/etcd");
        let conversion = Conversion {
            raw: &raw,
            ids: &ids,
            role: Role::Etcd,
            mtime: VHD_EPOCH + 7,
            secret: false,
        };
        let (a, b) = (dir.path().join("a.vhd"), dir.path().join("b.vhd"));
        for out in [&a, &b] {
            write(&conversion, out).unwrap();
        }
        let bytes = fs::read(&a).unwrap();
        assert_eq!(bytes, fs::read(&b).unwrap(), "two conversions differ");
        assert_eq!(bytes.len() as u64, 2 * MIB + FOOTER as u64);
        assert_eq!(&bytes[len as usize - 4..len as usize], b"kiln");
        assert!(bytes[len as usize..2 * MIB as usize]
            .iter()
            .all(|b| *b == 0));
        let footer: &[u8; FOOTER] = bytes[2 * MIB as usize..].try_into().unwrap();
        let sum = u32::from_be_bytes(footer[CHECKSUM..CHECKSUM + 4].try_into().unwrap());
        assert_eq!(sum, checksum(footer));
        assert_eq!(&footer[TIMESTAMP..TIMESTAMP + 4], &7u32.to_be_bytes());
        assert_eq!(&footer[UNIQUE_ID..UNIQUE_ID + 16], &ids.vhd);
        let info: serde_json::Value =
            serde_json::from_str(&qemu_img(&["info", "-f", "vpc", "--output=json"], &a)).unwrap();
        assert_eq!(info["format"], "vpc");
        assert_eq!(info["virtual-size"], 2 * MIB);
    }
}
