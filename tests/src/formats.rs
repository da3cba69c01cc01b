//! Reading a role's disk formats back with the tools their consumers use
//! (qemu-img, GNU tar, Python's XML parser): each must give exactly the
//! bytes of the role's disk.raw, in the container its platform requires.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;

use crate::run_ok;

const MIB: u64 = 1 << 20;

/// Every disk format in `role_dir` read back against its disk.raw; `work`
/// holds what is extracted and converted on the way (removed again).
pub fn check_all(role_dir: &Path, work: &Path) {
    let raw = role_dir.join("disk.raw");
    qcow2(&raw, &role_dir.join("disk.qcow2"), work);
    vhd(&raw, &role_dir.join("disk.vhd"), work);
    gce(&raw, &role_dir.join("disk.tar.gz"), work);
    vmdk(&raw, &role_dir.join("disk.vmdk"), work);
    ova(
        &raw,
        &role_dir.join("disk.ova"),
        &role_dir.join("disk.vmdk"),
        work,
    );
}

/// `qemu-img convert` of `image` (as `format`) to raw in `work`.
fn to_raw(image: &Path, format: &str, work: &Path) -> PathBuf {
    let back = work.join(format!("back-from-{format}.raw"));
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", format, "-O", "raw"])
            .arg(image)
            .arg(&back),
    );
    back
}

/// Whether the first `len` bytes of `a` and `b` are the same (cmp -n).
fn same_prefix(a: &Path, b: &Path, len: u64) {
    run_ok(
        Command::new("cmp")
            .arg(format!("--bytes={len}"))
            .arg(a)
            .arg(b),
    );
}

fn len(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn info(image: &Path, format: &str) -> serde_json::Value {
    let out = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-f", format])
            .arg(image),
    );
    serde_json::from_str(&out).unwrap()
}

/// Converted back and compared whole; `qemu-img check` finds no error.
fn converts_back(raw: &Path, image: &Path, format: &str, work: &Path) {
    run_ok(
        Command::new("qemu-img")
            .args(["check", "-q", "-f", format])
            .arg(image),
    );
    let back = to_raw(image, format, work);
    assert_eq!(
        len(&back),
        len(raw),
        "{} converts back to another size",
        image.display()
    );
    same_prefix(raw, &back, len(raw));
    fs::remove_file(back).unwrap();
}

fn qcow2(raw: &Path, image: &Path, work: &Path) {
    converts_back(raw, image, "qcow2", work);
}

/// A fixed VHD (Azure): a whole number of MiB, the disk then zeros, then
/// the 512-byte footer.
fn vhd(raw: &Path, image: &Path, work: &Path) {
    let info = info(image, "vpc");
    assert_eq!(info["format"], "vpc", "{info}");
    let size = info["virtual-size"].as_u64().unwrap();
    assert_eq!(
        size % MIB,
        0,
        "Azure refuses a virtual size of {size} bytes"
    );
    assert!(size >= len(raw) && size - len(raw) < MIB, "{size}");
    assert_eq!(len(image), size + 512, "not a fixed VHD: {info}");
    let back = to_raw(image, "vpc", work);
    assert_eq!(len(&back), size);
    same_prefix(raw, &back, len(raw));
    let mut rest = File::open(&back).unwrap();
    std::io::Seek::seek(&mut rest, std::io::SeekFrom::Start(len(raw))).unwrap();
    let mut padding = Vec::new();
    rest.read_to_end(&mut padding).unwrap();
    assert!(
        padding.iter().all(|b| *b == 0),
        "the VHD's padding is not zeros"
    );
    fs::remove_file(back).unwrap();
}

/// The first tar header of `tarball` (gzip-compressed when `gzip`).
fn first_header(tarball: &Path, gzip: bool) -> [u8; 512] {
    let file = File::open(tarball).unwrap();
    let mut reader: Box<dyn Read> = match gzip {
        true => Box::new(GzDecoder::new(file)),
        false => Box::new(file),
    };
    let mut header = [0u8; 512];
    reader.read_exact(&mut header).unwrap();
    header
}

/// The member names of `tarball`, in order, as GNU tar lists them.
fn members(tarball: &Path) -> Vec<String> {
    run_ok(Command::new("tar").arg("-tf").arg(tarball))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn extract(tarball: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(into),
    );
}

/// GCE's tarball: gzip, oldgnu, one sparse member named disk.raw.
fn gce(raw: &Path, tarball: &Path, work: &Path) {
    assert_eq!(members(tarball), ["disk.raw"]);
    let header = first_header(tarball, true);
    // oldgnu's magic is "ustar  \0" (POSIX's is "ustar\0" "00"); 'S' is
    // GNU's old sparse member.
    assert_eq!(&header[257..265], b"ustar  \0", "not oldgnu");
    assert_eq!(header[156], b'S', "disk.raw is not stored sparse");
    let dir = work.join("gce");
    extract(tarball, &dir);
    same_prefix(raw, &dir.join("disk.raw"), len(raw));
    assert_eq!(len(&dir.join("disk.raw")), len(raw));
    fs::remove_dir_all(dir).unwrap();
}

fn vmdk(raw: &Path, image: &Path, work: &Path) {
    let info = info(image, "vmdk");
    assert_eq!(
        info["format-specific"]["data"]["create-type"], "streamOptimized",
        "{info}"
    );
    converts_back(raw, image, "vmdk", work);
}

/// The OVA: ustar, the descriptor first, then the VMDK it names (the very
/// disk.vmdk, read back by [`vmdk`]), with the disk's capacity and UEFI.
fn ova(raw: &Path, ova: &Path, vmdk: &Path, work: &Path) {
    assert_eq!(members(ova), ["kiln-etcd.ovf", "disk.vmdk"]);
    let header = first_header(ova, false);
    assert_eq!(&header[257..265], b"ustar\x0000", "not ustar");
    let dir = work.join("ova");
    extract(ova, &dir);
    same_prefix(vmdk, &dir.join("disk.vmdk"), len(vmdk));
    assert_eq!(len(&dir.join("disk.vmdk")), len(vmdk));
    // Namespaced attributes as ElementTree spells them.
    let script = r#"
import sys, xml.etree.ElementTree as ET
ovf = "{http://schemas.dmtf.org/ovf/envelope/1}"
vmw = "{http://www.vmware.com/schema/ovf}"
root = ET.parse(sys.argv[1]).getroot()
f = root.find(f"{ovf}References/{ovf}File")
d = root.find(f"{ovf}DiskSection/{ovf}Disk")
c = [e for e in root.iter(f"{vmw}Config") if e.get(f"{vmw}key") == "firmware"]
print(f.get(f"{ovf}href"), f.get(f"{ovf}size"), d.get(f"{ovf}capacity"),
      d.get(f"{ovf}fileRef") == f.get(f"{ovf}id"), c[0].get(f"{vmw}value"))
"#;
    let said = run_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(dir.join("kiln-etcd.ovf")),
    );
    assert_eq!(
        said.trim(),
        format!("disk.vmdk {} {} True efi", len(vmdk), len(raw))
    );
    fs::remove_dir_all(dir).unwrap();
}
