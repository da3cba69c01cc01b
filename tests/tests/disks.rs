//! What a role's public artifacts are without booting them: two builds of
//! one profile from one cached base are the same bytes, every disk format
//! and the OS tree's tarball; every disk format reads back as exactly
//! disk.raw, in the container its platform takes; neither the disks nor
//! the OS tree hold a private key or the bootstrap token, so another
//! cluster's build gives the very same files (its config, the `.ign`, is
//! what differs).

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_e2e::artifacts::Build;
use kiln_e2e::{one_member_profile, profile, run, run_ok};

const PUBLIC: [&str; 7] = [
    "etcd/disk.raw",
    "etcd/disk.qcow2",
    "etcd/disk.vhd",
    "etcd/disk.tar.gz",
    "etcd/disk.vmdk",
    "etcd/disk.ova",
    "etcd/rootfs.tar.gz",
];
const FORMATS: &str = "ignition,rootfs,raw,qcow2,vhd,gce,vmdk,ova";
/// A PEM private-key block, as a grep -P pattern (\x20 is a space).
const PEM_PRIVATE_KEY: &str = r"-----BEGIN([A-Z\x20]*)\x20PRIVATE\x20KEY-----\n([A-Za-z0-9+/=]{1,76}\n)+-----END\1\x20PRIVATE\x20KEY-----";

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// The files under `path` (a file, or a folder searched whole but for its
/// device nodes and links) that hold a
/// PEM private-key block: a BEGIN line, base64 lines, the matching END line
/// (the agent's label strings alone are not keys). grep -z reads
/// NUL-separated records, and PEM text has no NUL.
fn private_key_files(path: &Path) -> Vec<String> {
    grep(path, &["-P", "-e", PEM_PRIVATE_KEY])
}

/// The files under `path` that hold `needle`.
fn holding(path: &Path, needle: &str) -> Vec<String> {
    grep(path, &["-F", "-e", needle])
}

fn grep(path: &Path, pattern: &[&str]) -> Vec<String> {
    let out = run(Command::new("grep")
        .args(["-r", "-D", "skip", "-a", "-z", "-l"])
        .args(pattern)
        .arg(path));
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "grep failed: {out:?}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The etcd role's SBOM: SPDX 2.3 that spdx-tools validates and that has
/// NTIA's minimum elements, beside the disk and the same inside the image,
/// listing exactly the packages dpkg says the image holds, and the agent.
fn sbom_lists_exactly_what_dpkg_installed(out: &Path, tree: &Path) {
    let sbom = out.join("etcd/sbom.spdx.json");
    let venv = Path::new("/var/cache/kiln-tests/spdx-venv/bin");
    kiln_e2e::run_ok(
        std::process::Command::new(venv.join("pyspdxtools"))
            .arg("-i")
            .arg(&sbom),
    );
    let ntia = kiln_e2e::run(std::process::Command::new(venv.join("ntia-checker")).arg(&sbom));
    let said = String::from_utf8_lossy(&ntia.stdout);
    assert!(
        ntia.status.success() && said.contains("Conformant: True"),
        "{said}{}",
        String::from_utf8_lossy(&ntia.stderr)
    );
    let inside = fs::read(tree.join("usr/share/spdx/kiln-etcd.spdx.json")).unwrap();
    assert_eq!(inside, fs::read(&sbom).unwrap(), "the image's SBOM differs");
    let document: serde_json::Value = serde_json::from_slice(&inside).unwrap();
    let packages = document["packages"].as_array().unwrap();
    let of_kind = |prefix: &str| -> Vec<&serde_json::Value> {
        (packages.iter())
            .filter(|p| p["SPDXID"].as_str().unwrap().starts_with(prefix))
            .collect()
    };
    let mut listed: Vec<String> = of_kind("SPDXRef-deb-")
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let dpkg = kiln_e2e::run_ok(
        std::process::Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                tree.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev} ${Package}\n"]),
    );
    let mut installed: Vec<String> = dpkg
        .lines()
        .filter(|l| l.starts_with("ii "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    installed.sort();
    assert_eq!(
        listed, installed,
        "the SBOM's Debian packages are not dpkg's"
    );
    // etcd from sid's packages, unpacked beside dpkg; the agent's crates.
    assert_eq!(of_kind("SPDXRef-etcd")[0]["versionInfo"], "3.5.30");
    assert_eq!(of_kind("SPDXRef-crate-kiln-firstboot-").len(), 1);
    let manifest = fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"etcd/sbom.spdx.json\""), "{manifest}");
}

/// The disk's read-only OS holds no second copy of the kernel and initrd,
/// which the ESP carries: /boot is empty; the kernel's modules are there.
fn os_partition_leaves_the_kernel_to_the_esp(disk: &Path, work: &Path) {
    let table: serde_json::Value = serde_json::from_str(&kiln_e2e::run_ok(
        std::process::Command::new("sfdisk").arg("-J").arg(disk),
    ))
    .unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    let os = parts
        .iter()
        .find(|p| p["name"] == "os")
        .expect("an os partition");
    let (start, size) = (os["start"].as_u64().unwrap(), os["size"].as_u64().unwrap());
    let image = work.join("os.erofs");
    kiln_e2e::run_ok(
        std::process::Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", image.display()))
            .args([
                "bs=512",
                &format!("skip={start}"),
                &format!("count={size}"),
                "status=none",
            ]),
    );
    let ls = |path: &str| {
        let out = kiln_e2e::run_ok(
            std::process::Command::new("dump.erofs")
                .args(["--ls", &format!("--path={path}")])
                .arg(&image),
        );
        let names: Vec<String> = out
            .lines()
            .skip_while(|l| !l.contains("FILENAME"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .filter(|n| n != "." && n != "..")
            .collect();
        names
    };
    assert_eq!(
        ls("/boot"),
        Vec::<String>::new(),
        "the OS keeps a copy of /boot"
    );
    assert!(!ls("/")
        .iter()
        .any(|n| n.starts_with("vmlinuz") || n.starts_with("initrd")));
    assert_eq!(ls("/usr/lib/modules").len(), 1, "the kernel's modules");
    fs::remove_file(&image).unwrap();
}

#[test]
fn one_public_disk_per_role_the_same_bytes_in_every_build_and_cluster() {
    let build = Build::new();
    build.on_debian_base(&profile("local.toml"), FORMATS);
    let first = build.dir.path().join("first");
    fs::rename(build.out(), &first).unwrap();
    build.on_debian_base(&profile("local.toml"), FORMATS);
    for disk in PUBLIC {
        let (a, b) = (first.join(disk), build.out().join(disk));
        assert_eq!(sha256(&a), sha256(&b), "{disk} differs between two builds");
    }

    // No secret in a public artifact or the OS tree; the scan finds the
    // real ones in the secrets folder.
    let secrets = build.secrets();
    let ca_key = secrets.join("ca.key").display().to_string();
    assert!(private_key_files(&secrets).contains(&ca_key));
    let token = fs::read_to_string(secrets.join("bootstrap-token")).unwrap();
    let token = token.trim();
    assert!(
        holding(&secrets, token).contains(&secrets.join("bootstrap-token").display().to_string())
    );
    let config = build.out().join("etcd/etcd.ign");
    let tree = build.dir.path().join("os-tree");
    kiln_e2e::tree::extract(&build.out().join("etcd/rootfs.tar.gz"), &tree).unwrap();
    assert!(
        fs::read_dir(tree.join("usr/bin")).unwrap().count() > 100,
        "the OS tree is not a whole OS"
    );
    sbom_lists_exactly_what_dpkg_installed(&build.out(), &tree);
    let mut scanned = vec![tree];
    scanned.extend(PUBLIC.map(|p| build.out().join(p)));
    for path in &scanned {
        assert_eq!(
            private_key_files(path),
            Vec::<String>::new(),
            "{} holds a private key",
            path.display()
        );
        assert_eq!(
            holding(path, token),
            Vec::<String>::new(),
            "{} holds the bootstrap token",
            path.display()
        );
    }
    for artifact in PUBLIC {
        let mode = fs::metadata(build.out().join(artifact))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644,
            "{artifact}"
        );
    }
    let size = fs::metadata(&config).unwrap().len();
    assert!(size <= 16 * 1024, "etcd.ign is {size} bytes, over 16 KiB");
    os_partition_leaves_the_kernel_to_the_esp(&build.out().join("etcd/disk.raw"), build.dir.path());
    kiln_e2e::formats::check_all(&build.out().join("etcd"), build.dir.path());

    // Another cluster (another CA, one member): the same disks, another
    // config. Without raw among its formats: the others are converted from
    // a private disk.raw, which is not published, and are the same bytes.
    let other = Build::new();
    let solo = one_member_profile(other.dir.path(), "solo", "10.77.0.15", "");
    other.on_debian_base(&solo, &FORMATS.replace(",raw,", ","));
    let mut published: Vec<String> = fs::read_dir(other.out().join("etcd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    published.sort();
    let mut expected: Vec<&str> = PUBLIC[1..].iter().map(|p| &p["etcd/".len()..]).collect();
    expected.extend([".kiln-output", "etcd.ign", "sbom.spdx.json"]);
    expected.sort();
    assert_eq!(published, expected);
    for disk in &PUBLIC[1..] {
        let (a, b) = (build.out().join(disk), other.out().join(disk));
        assert_eq!(
            sha256(&a),
            sha256(&b),
            "{disk} differs between two clusters"
        );
    }
    let ca = |b: &Build| fs::read(b.secrets().join("etcd/ca.crt")).unwrap();
    assert_ne!(ca(&build), ca(&other));
    assert_ne!(
        fs::read(&config).unwrap(),
        fs::read(other.out().join("etcd/etcd.ign")).unwrap()
    );

    // `kiln verify` rechecks the build against its manifest, and names the
    // disk when one byte of it flips.
    let verify = |dir: &Path| kiln_e2e::run(kiln_e2e::kiln().arg("verify").arg(dir));
    let clean = verify(&build.out());
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let disk = build.out().join("etcd/disk.raw");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, 600).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 1], 600).unwrap();
    drop(file);
    let flipped = verify(&build.out());
    let said = String::from_utf8_lossy(&flipped.stdout);
    assert_eq!(flipped.status.code(), Some(1), "{said}");
    let named: Vec<&str> = said.lines().filter(|l| !l.starts_with("ok ")).collect();
    assert_eq!(named.len(), 1, "{said}");
    assert!(
        named[0].starts_with("DIFFERS   etcd/disk.raw: sha256"),
        "{said}"
    );
}
