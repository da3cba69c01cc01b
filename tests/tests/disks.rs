//! What a role's disk is without booting it: two builds of one profile from
//! one cached base are the same bytes, raw and qcow2; the disk holds no
//! private key and no bootstrap token, so another cluster's build gives the
//! very same disk (its config, the `.ign`, is what differs).

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_e2e::artifacts::Build;
use kiln_e2e::{one_member_profile, profile, run, run_ok};

const DISKS: [&str; 2] = ["etcd/disk.raw", "etcd/disk.qcow2"];
/// A PEM private-key block, as a grep -P pattern (\x20 is a space).
const PEM_PRIVATE_KEY: &str = r"-----BEGIN([A-Z\x20]*)\x20PRIVATE\x20KEY-----\n([A-Za-z0-9+/=]{1,76}\n)+-----END\1\x20PRIVATE\x20KEY-----";

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// How many PEM private-key blocks `file` holds: a BEGIN line, base64
/// lines, the matching END line (the agent's label strings alone are not
/// keys). grep -z reads NUL-separated records, and PEM text has no NUL.
fn private_key_blocks(file: &Path) -> usize {
    let out = run(Command::new("grep")
        .args(["-a", "-z", "-c", "-P", "-e"])
        .arg(PEM_PRIVATE_KEY)
        .arg(file));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn holds(file: &Path, needle: &str) -> bool {
    run(Command::new("grep")
        .args(["-a", "-q", "-F", needle])
        .arg(file))
    .status
    .success()
}

#[test]
fn one_public_disk_per_role_the_same_bytes_in_every_build_and_cluster() {
    let build = Build::new();
    build.on_debian_base(&profile("local.toml"), "ignition,raw,qcow2");
    let first = build.dir.path().join("first");
    fs::rename(build.out(), &first).unwrap();
    build.on_debian_base(&profile("local.toml"), "ignition,raw,qcow2");
    for disk in DISKS {
        let (a, b) = (first.join(disk), build.out().join(disk));
        assert_eq!(sha256(&a), sha256(&b), "{disk} differs between two builds");
    }

    // No secret in a public artifact; the scan finds a real key.
    let secrets = build.secrets();
    assert_eq!(private_key_blocks(&secrets.join("ca.key")), 1);
    let token = fs::read_to_string(secrets.join("bootstrap-token")).unwrap();
    let token = token.trim();
    assert!(!token.is_empty());
    for disk in DISKS {
        let path = build.out().join(disk);
        assert_eq!(private_key_blocks(&path), 0, "{disk} holds a private key");
        assert!(!holds(&path, token), "{disk} holds the bootstrap token");
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644,
            "{disk}"
        );
    }
    let config = build.out().join("etcd/etcd.ign");
    let size = fs::metadata(&config).unwrap().len();
    assert!(size <= 16 * 1024, "etcd.ign is {size} bytes, over 16 KiB");

    // Another cluster (another CA, one member): the same disk, another config.
    let other = Build::new();
    let solo = one_member_profile(other.dir.path(), "solo", "10.77.0.15", "");
    other.on_debian_base(&solo, "ignition,raw,qcow2");
    for disk in DISKS {
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
}
