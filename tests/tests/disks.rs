//! What a role's disk is without booting it: two builds of one profile from
//! one cached base are the same bytes, raw and qcow2.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_e2e::artifacts::Build;
use kiln_e2e::{profile, run_ok};

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn two_builds_of_a_disk_are_the_same_bytes() {
    let build = Build::new();
    build.on_debian_base(&profile("local.toml"), "raw,qcow2");
    let first = build.dir.path().join("first");
    fs::rename(build.out(), &first).unwrap();
    build.on_debian_base(&profile("local.toml"), "raw,qcow2");
    for disk in ["etcd/disk.raw", "etcd/disk.qcow2"] {
        let (a, b) = (first.join(disk), build.out().join(disk));
        assert_eq!(sha256(&a), sha256(&b), "{disk} differs between two builds");
    }
}
