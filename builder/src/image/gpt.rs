//! A GUID partition table written straight into a disk image file, so a disk
//! is laid out without sfdisk, loop devices or mounting anything.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const SECTOR: u64 = 512;
/// 128 entries of 128 bytes: the size every tool expects.
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// Partition type of an EFI system partition.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Discoverable-partitions type of an x86-64 root file system.
pub const ROOT_X86_64_TYPE: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// Discoverable-partitions type of the dm-verity hashes of an x86-64 root.
pub const ROOT_VERITY_X86_64_TYPE: &str = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5";
/// Discoverable-partitions type of a variable data (/var) partition.
pub const VAR_TYPE: &str = "4d21b016-b534-45c2-a9fb-5c16e091fd2d";

pub struct Partition<'a> {
    pub type_guid: &'a str,
    pub guid: &'a str,
    pub name: &'a str,
    pub first_lba: u64,
    pub last_lba: u64,
}

/// Writes a protective MBR, the primary and the backup GPT into `disk`,
/// whose length must already be `total_sectors` sectors.
pub fn write(
    disk: &File,
    disk_guid: &str,
    total_sectors: u64,
    parts: &[Partition],
) -> io::Result<()> {
    let last = total_sectors - 1;
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, part) in parts.iter().enumerate() {
        let entry = &mut entries[i * ENTRY_SIZE as usize..][..ENTRY_SIZE as usize];
        entry[..16].copy_from_slice(&guid_bytes(part.type_guid)?);
        entry[16..32].copy_from_slice(&guid_bytes(part.guid)?);
        entry[32..40].copy_from_slice(&part.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&part.last_lba.to_le_bytes());
        for (j, unit) in part.name.encode_utf16().take(36).enumerate() {
            entry[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);
    let header = |current: u64, backup: u64, entries_lba: u64| -> io::Result<Vec<u8>> {
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last - 1 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&guid_bytes(disk_guid)?);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        Ok(h)
    };
    disk.write_all_at(&protective_mbr(total_sectors), 0)?;
    disk.write_all_at(&header(1, last, 2)?, SECTOR)?;
    disk.write_all_at(&entries, 2 * SECTOR)?;
    let backup_entries = last - ENTRY_SECTORS;
    disk.write_all_at(&entries, backup_entries * SECTOR)?;
    disk.write_all_at(&header(last, 1, backup_entries)?, last * SECTOR)?;
    Ok(())
}

/// One partition of type 0xEE over the whole disk, so MBR-only tools see
/// the disk as in use.
fn protective_mbr(total_sectors: u64) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    entry[4] = 0xee;
    entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// A GUID in GPT's mixed-endian layout: the first three fields little-endian.
fn guid_bytes(text: &str) -> io::Result<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad GUID {text:?}"));
    if hex.len() != 32 {
        return Err(invalid());
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
    }
    raw[..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    Ok(raw)
}

/// CRC-32 (IEEE), as GPT checksums its header and entries.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_guid_layout_match_the_standard() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let esp = guid_bytes(ESP_TYPE).unwrap();
        assert_eq!(&esp[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(&esp[8..], &[0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b]);
    }

    #[test]
    fn both_headers_point_at_each_other() {
        let file = tempfile::tempfile().unwrap();
        let total = 8192;
        file.set_len(total * SECTOR).unwrap();
        let part = Partition {
            type_guid: ROOT_X86_64_TYPE,
            guid: "11111111-2222-4333-8444-555555555555",
            name: "root",
            first_lba: 2048,
            last_lba: 8000,
        };
        write(
            &file,
            "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            total,
            &[part],
        )
        .unwrap();
        let mut primary = [0u8; 92];
        file.read_exact_at(&mut primary, SECTOR).unwrap();
        let mut backup = [0u8; 92];
        file.read_exact_at(&mut backup, (total - 1) * SECTOR)
            .unwrap();
        assert_eq!(&primary[..8], b"EFI PART");
        assert_eq!(
            u64::from_le_bytes(primary[32..40].try_into().unwrap()),
            total - 1
        );
        assert_eq!(u64::from_le_bytes(backup[32..40].try_into().unwrap()), 1);
        assert_eq!(primary[88..92], backup[88..92], "same entries checksum");
    }
}
