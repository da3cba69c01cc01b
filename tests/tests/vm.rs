//! The whole truth: three qemu VMs (software emulation, UEFI) boot the SAME
//! public etcd disk.raw on a bridge where dnsmasq hands out fixed leases by
//! MAC, get the cluster's etcd.ign through fw_cfg (Ignition applies it at
//! first boot), and form a TLS cluster with no per-node input. A destroyed VM is
//! replaced by a fresh one with the same MAC; then a member is replaced by
//! a VM with a new MAC and address, which joins under the lost member's
//! name while the stale member is removed. The key written first survives
//! it all. Before that, a copy of the disk with one byte of its OS partition
//! changed must not come up (dm-verity refuses it), and the disk with no
//! user-data, booted as Azure's VHD (disk.vhd, the same bytes), says so
//! and does nothing else. After it, two one-member
//! clusters with their own CAs come up: one from the very same disk file and
//! its own user-data, one from a disk carrying its config
//! (images.embed_config) with none. One test: the VMs share two cores, so
//! the scenario runs serially.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::Build;
use kiln_e2e::bootnet::{addr, BootNet};
use kiln_e2e::nspawn::wait_console;
use kiln_e2e::vm::Vm;
use kiln_e2e::{one_member_profile, profile, run_ok};

/// The Discoverable Partitions type of the x86-64 root: kiln's OS partition.
const OS_PARTITION_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

/// A sparse copy of `disk` with one byte of its OS partition changed: byte
/// 100, before erofs's superblock (at 1024), which only dm-verity checks.
fn tampered_copy(disk: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("tampered.raw");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(disk)
            .arg(&copy),
    );
    let table: serde_json::Value =
        serde_json::from_str(&run_ok(Command::new("sfdisk").arg("--json").arg(&copy))).unwrap();
    let os = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == OS_PARTITION_TYPE)
        .unwrap_or_else(|| panic!("no OS partition in {table}"));
    let at = os["start"].as_u64().unwrap() * 512 + 100;
    let file = File::options().read(true).write(true).open(&copy).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
    copy
}

fn consoles(vms: &[&Vm]) -> String {
    vms.iter()
        .map(|vm| {
            let text = vm.console();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "--- serial console of {} ---\n{}\n",
                vm.name,
                tail.join("\n")
            )
        })
        .collect()
}

/// `kiln health --wait`, the operator's gate, then etcdctl's own view.
fn gate(net: &BootNet, secrets: &Path, endpoints: &[Ipv4Addr], vms: &[&Vm]) -> Duration {
    let start = Instant::now();
    let health = net.kiln_health(secrets, endpoints, "420s");
    assert!(
        health.status.success(),
        "kiln health --wait failed: {}\n{}",
        String::from_utf8_lossy(&health.stderr),
        consoles(vms)
    );
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(
        report["members"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    let took = start.elapsed();
    net.wait_cluster(secrets, endpoints, Duration::from_secs(30), &|| {
        consoles(vms)
    });
    // The agents' decisions, for the record of a CI run.
    for vm in vms {
        let console = vm.console();
        let decisions = console
            .lines()
            .filter(|l| l.contains("kiln_firstboot") && !l.contains("discovery failed"));
        for line in decisions {
            eprintln!("{}: {line}", vm.name);
        }
    }
    took
}

fn member_id(members: &[serde_json::Value], name: &str) -> Option<u64> {
    members
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["ID"].as_u64())
}

fn peer_urls(members: &[serde_json::Value]) -> Vec<String> {
    members
        .iter()
        .flat_map(|m| m["peerURLs"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn three_vms_boot_one_disk_form_a_cluster_and_survive_two_replacements() {
    // Three VMs on two cores reach multi-user in about a minute; each gate
    // allows 420 s.
    let build = Build::new();
    let built = build.on_debian_base(&profile("local.toml"), "ignition,raw,vhd");
    eprintln!("built disk.raw and disk.vhd in {built:?}");
    let disk = build.out().join("etcd/disk.raw");
    let config = build.out().join("etcd/etcd.ign");
    let secrets = build.secrets();
    let logs = build.dir.path();
    let net = BootNet::new(
        "vm",
        &[
            (11, 11, "etcd1"),
            (12, 12, "etcd2"),
            (13, 13, "etcd3"),
            (14, 14, "etcd3"),
            (15, 15, "etcd1"),
            (16, 16, "etcd1"),
        ],
    );

    // Tampered: the kernel reports the corrupted block and the node never
    // reaches its agent.
    let tampered = tampered_copy(&disk, logs);
    let log = logs.join("tampered.log");
    let mut vm = Vm::boot(&net, &tampered, Some(&config), "vtamper", 20, &log);
    // Beside it, the public disk with no user-data: it says so and does
    // nothing else. Booted from the VHD (qemu's vpc driver reads its
    // footer): Azure's format of the very disk boots under UEFI too.
    let bare_log = logs.join("no-config.log");
    let vhd = build.out().join("etcd/disk.vhd");
    let mut bare = Vm::boot(&net, &vhd, None, "vbare", 14, &bare_log);
    let refused = wait_console(&log, "is corrupted", Duration::from_secs(300));
    eprintln!("the tampered disk was refused {refused:?} after launch");
    vm.destroy();
    let console = vm.console();
    assert!(console.contains("device-mapper: verity"), "{console}");
    assert!(!console.contains("kiln-firstboot"), "{console}");
    std::fs::remove_file(&tampered).unwrap();
    let said = wait_console(
        &bare_log,
        "no Ignition config for this node",
        Duration::from_secs(420),
    );
    eprintln!("the node without user-data said so {said:?} after launch");
    bare.destroy();
    let console = bare.console();
    assert!(console.contains("this node does nothing else"), "{console}");
    assert!(!console.contains("kiln_firstboot"), "{console}");

    let boot = |name: &str, mac_last: u8| {
        Vm::boot(
            &net,
            &disk,
            Some(&config),
            name,
            mac_last,
            &logs.join(format!("{name}.log")),
        )
    };
    let vm1 = boot("v11", 11);
    let mut vm2 = boot("v12", 12);
    let mut vm3 = boot("v13", 13);
    let endpoints = [addr(11), addr(12), addr(13)];
    let formed = gate(&net, &secrets, &endpoints, &[&vm1, &vm2, &vm3]);
    eprintln!("three VMs healthy {formed:?} after launch");
    let put = net.etcdctl(&secrets, &endpoints, &["put", "/kiln/test", "kept"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let first = net.members(&secrets, &endpoints);

    // Same MAC, same address: the fresh VM replaces the dead etcd2.
    vm2.destroy();
    let vm2b = boot("v12b", 12);
    let replaced = gate(&net, &secrets, &endpoints, &[&vm1, &vm2b, &vm3]);
    eprintln!("same-address replacement healthy {replaced:?} after launch");
    let second = net.members(&secrets, &endpoints);
    assert_ne!(member_id(&first, "etcd2"), member_id(&second, "etcd2"));
    assert!(member_id(&second, "etcd2").is_some(), "{second:?}");

    // New MAC and address, the lost member's name from DHCP: it joins and
    // the stale etcd3 (peer 10.77.0.13) is removed.
    vm3.destroy();
    let vm4 = boot("v14", 14);
    let endpoints = [addr(11), addr(12), addr(14)];
    let joined = gate(&net, &secrets, &endpoints, &[&vm1, &vm2b, &vm4]);
    eprintln!("new-address replacement healthy {joined:?} after launch");
    let third = net.members(&secrets, &endpoints);
    let urls = peer_urls(&third);
    assert!(
        !urls.iter().any(|u| u.contains("10.77.0.13")),
        "the stale member is still listed: {urls:?}"
    );
    assert!(urls.iter().any(|u| u.contains("10.77.0.14")), "{urls:?}");
    for endpoint in endpoints {
        assert_eq!(
            net.get(&secrets, &[endpoint], "/kiln/test"),
            "kept",
            "key lost on {endpoint}"
        );
    }
    let serial = vm4.console();
    assert!(
        serial.contains("decided") && serial.contains("node converged"),
        "the agent's decisions are not on the serial console:\n{serial}"
    );
    drop((vm1, vm2b, vm4));

    // Two more clusters of one member each, another CA each: one boots the
    // very same public disk with its own user-data, the other a disk that
    // carries its config (images.embed_config) and gets no user-data.
    let solo = Build::new();
    let solo_profile = one_member_profile(solo.dir.path(), "solo", "10.77.0.15", "");
    solo.on_debian_base(&solo_profile, "ignition");
    let baked = Build::new();
    let baked_profile = one_member_profile(
        baked.dir.path(),
        "baked",
        "10.77.0.16",
        "embed_config = true",
    );
    baked.on_debian_base(&baked_profile, "raw");
    // On a disk of 8 GiB, larger than the image: the state partition grows.
    let baked_disk = baked.dir.path().join("grown.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(baked.out().join("etcd/disk.raw"))
            .arg(&baked_disk)
            .arg("8G"),
    );
    let solo_config = solo.out().join("etcd/etcd.ign");
    let vm5 = Vm::boot(
        &net,
        &disk,
        Some(&solo_config),
        "v15",
        15,
        &logs.join("v15.log"),
    );
    let vm6 = Vm::boot(&net, &baked_disk, None, "v16", 16, &logs.join("v16.log"));
    let within = Duration::from_secs(420);
    let describe = || consoles(&[&vm5, &vm6]);
    let took = net.wait_cluster(&solo.secrets(), &[addr(15)], within, &describe);
    eprintln!("the one-member cluster on the same disk healthy {took:?} after launch");
    net.wait_cluster(&baked.secrets(), &[addr(16)], within, &describe);
    assert_ne!(
        std::fs::read(solo.secrets().join("etcd/ca.crt")).unwrap(),
        std::fs::read(secrets.join("etcd/ca.crt")).unwrap()
    );
    // Each cluster trusts its own CA only.
    let foreign = net.etcdctl(&secrets, &[addr(15)], &["endpoint", "health"]);
    assert!(
        !foreign.status.success(),
        "solo's member trusted local's CA"
    );
    let console = vm6.console();
    assert!(
        console.contains("Ignition config (/usr/lib/kiln/embedded.ign)"),
        "{console}"
    );
    let grew = console
        .lines()
        .find_map(|l| l.split("the state partition grew to ").nth(1))
        .and_then(|rest| rest.split(" MiB").next()?.parse::<u64>().ok());
    assert!(grew.is_some_and(|mib| mib > 7000), "{grew:?}\n{console}");
}
