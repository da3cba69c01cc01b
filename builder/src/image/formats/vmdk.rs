//! `disk.vmdk`: a stream-optimized VMDK (grains deflated, written in one
//! pass), the disk format VMware imports and an OVA carries. qemu-img gives
//! each VMDK a random content ID (`CID=` in the descriptor, drawn again at
//! its first write); kiln writes the role's own ID in its place.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::super::disk::run;
use super::Conversion;

/// The sparse extent header's fields (VMware's "Virtual Disk Format 1.1"),
/// little-endian, in sectors.
const MAGIC: &[u8; 4] = b"KDMV";
const DESCRIPTOR_OFFSET: usize = 28;
const DESCRIPTOR_SIZE: usize = 36;
const SECTOR: u64 = 512;

pub(super) fn write(c: &Conversion, out: &Path) -> Result<()> {
    // LSI Logic, the SCSI controller the OVA declares (ova.rs).
    let mut convert = Command::new("qemu-img");
    convert
        .args(["convert", "-f", "raw", "-O", "vmdk", "-o"])
        .arg("subformat=streamOptimized,adapter_type=lsilogic")
        .arg(c.raw)
        .arg(out);
    run(&mut convert, "qemu-img", "qemu-utils")?;
    pin_cid(out, c.ids.vmdk_cid)
}

/// Rewrites the embedded descriptor with `cid` as its content ID.
fn pin_cid(vmdk: &Path, cid: u32) -> Result<()> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(vmdk)
        .with_context(|| format!("opening {}", vmdk.display()))?;
    let mut header = [0u8; 512];
    file.read_exact_at(&mut header, 0)
        .with_context(|| format!("reading the header of {}", vmdk.display()))?;
    let sectors = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (offset, size) = (sectors(DESCRIPTOR_OFFSET), sectors(DESCRIPTOR_SIZE));
    if &header[..4] != MAGIC || offset == 0 || size == 0 || size > 64 {
        bail!(
            "{} is not a sparse VMDK with an embedded descriptor, as qemu-img writes it",
            vmdk.display()
        );
    }
    let mut region = vec![0u8; (size * SECTOR) as usize];
    file.read_exact_at(&mut region, offset * SECTOR)
        .with_context(|| format!("reading the descriptor of {}", vmdk.display()))?;
    let pinned =
        with_cid(&region, cid).with_context(|| format!("the descriptor of {}", vmdk.display()))?;
    file.write_all_at(&pinned, offset * SECTOR)
        .with_context(|| format!("writing the descriptor of {}", vmdk.display()))
}

/// The descriptor region (text, then NUL padding) with its `CID=` line
/// replaced by `cid`, the same length.
fn with_cid(region: &[u8], cid: u32) -> Result<Vec<u8>> {
    let end = region.iter().position(|b| *b == 0).unwrap_or(region.len());
    let text = std::str::from_utf8(&region[..end]).context("is not text")?;
    if !text.lines().any(|l| l.starts_with("CID=")) {
        bail!("has no CID= line");
    }
    let mut pinned: Vec<u8> = text
        .split_inclusive('\n')
        .flat_map(|line| match line.starts_with("CID=") {
            true => format!("CID={cid:08x}\n").into_bytes(),
            false => line.as_bytes().to_vec(),
        })
        .collect();
    if pinned.len() >= region.len() {
        bail!("has no room for CID={cid:08x}");
    }
    pinned.resize(region.len(), 0);
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DiskIds;
    use kiln_node::node_config::Role;

    #[test]
    fn the_content_id_is_the_roles_in_every_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let file = File::create(&raw).unwrap();
        file.set_len(4 << 20).unwrap();
        file.write_all_at(b"kiln", 1 << 20).unwrap();
        let ids = DiskIds::derive("test/etcd");
        let conversion = Conversion {
            raw: &raw,
            ids: &ids,
            role: Role::Etcd,
            mtime: 0,
            secret: false,
        };
        // Named alike, as in every build: the descriptor names its file.
        let converted: Vec<Vec<u8>> = ["a", "b"]
            .iter()
            .map(|build| {
                let out = dir.path().join(build).join("disk.vmdk");
                std::fs::create_dir(out.parent().unwrap()).unwrap();
                write(&conversion, &out).unwrap();
                std::fs::read(&out).unwrap()
            })
            .collect();
        let a = &converted[0];
        assert!(*a == converted[1], "two conversions differ");
        let text = String::from_utf8_lossy(a);
        assert!(
            text.contains(&format!("\nCID={:08x}\n", ids.vmdk_cid)),
            "{text}"
        );
        assert!(text.contains("ddb.adapterType = \"lsilogic\""), "{text}");
    }

    #[test]
    fn a_shorter_or_longer_cid_keeps_the_region_length() {
        let mut region =
            b"# Disk DescriptorFile\nversion=1\nCID=410e560\nparentCID=ffffffff\n".to_vec();
        region.resize(1024, 0);
        let pinned = with_cid(&region, 0xab).unwrap();
        assert_eq!(pinned.len(), 1024);
        let text = String::from_utf8_lossy(&pinned);
        assert!(text
            .starts_with("# Disk DescriptorFile\nversion=1\nCID=000000ab\nparentCID=ffffffff\n\0"));
        assert!(with_cid(&[0u8; 16], 1).is_err());
    }
}
