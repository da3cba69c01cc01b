//! Benchmark, ignored by default (run it with tests/bench/boot-vs-hand.sh):
//! three qemu VMs booting kiln's one etcd disk.raw to a healthy three-member
//! TLS cluster, against the same three VMs configured by hand: per-VM disks
//! of the same Debian base with static etcd files and no kiln agent
//! (tests/bench/hand-etcd-disk.sh). Same qemu flags, bridge, DHCP leases and
//! gate (`kiln health --wait`, 3/3 members), rounds interleaved.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::Build;
use kiln_e2e::bootnet::{addr, BootNet};
use kiln_e2e::nspawn::base_cache;
use kiln_e2e::vm::Vm;
use kiln_e2e::{kiln, profile, run_ok, workspace_root};

const MEMBERS: [(u8, &str); 3] = [(11, "etcd1"), (12, "etcd2"), (13, "etcd3")];

/// Boots one VM per disk (MACs and leases of `MEMBERS`) and returns the time
/// from the first launch until `kiln health` reports three healthy members.
fn boot_to_healthy(
    disks: &[PathBuf; 3],
    config: Option<&Path>,
    secrets: &Path,
    logs: &Path,
    tag: &str,
) -> Duration {
    let leases: Vec<(u8, u8, &str)> = MEMBERS.iter().map(|(n, name)| (*n, *n, *name)).collect();
    let net = BootNet::new(tag, &leases);
    let endpoints: Vec<Ipv4Addr> = MEMBERS.iter().map(|(n, _)| addr(*n)).collect();
    let start = Instant::now();
    let vms: Vec<Vm> = MEMBERS
        .iter()
        .zip(disks)
        .map(|((n, _), disk)| {
            let name = format!("{tag}{n}");
            let log = logs.join(format!("{name}.log"));
            Vm::boot(&net, disk, config, &name, *n, &log)
        })
        .collect();
    let health = net.kiln_health(secrets, &endpoints, "420s");
    let took = start.elapsed();
    let consoles: String = vms
        .iter()
        .map(|vm| {
            let text = vm.console();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {} ---\n{}\n", vm.name, tail.join("\n"))
        })
        .collect();
    assert!(
        health.status.success(),
        "{tag}: kiln health --wait failed: {}\n{consoles}",
        String::from_utf8_lossy(&health.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(
        report["members"].as_array().map(Vec::len),
        Some(3),
        "{tag}: {report}"
    );
    took
}

/// The Debian base kiln just baked the etcd disk on: the newest complete
/// base in the cache with the etcd server in its package list.
fn etcd_base(cache: &Path) -> PathBuf {
    let mut bases: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache.join("base"))
        .expect("listing the base cache")
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let complete = dir.join("complete");
            let packages = std::fs::read_to_string(&complete).ok()?;
            packages.lines().any(|p| p == "etcd-server").then_some(())?;
            Some((
                complete.metadata().ok()?.modified().ok()?,
                dir.join("rootfs"),
            ))
        })
        .collect();
    bases.sort();
    bases.pop().expect("kiln build made an etcd base").1
}

fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[(sorted.len() - 1) / 2]
}

#[test]
#[ignore = "benchmark of several minutes: run tests/bench/boot-vs-hand.sh"]
fn kiln_image_vs_hand_configured_vms_boot_to_healthy_cluster() {
    let rounds: usize = std::env::var("BOOT_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let build = Build::new();
    let cache = base_cache();
    let mut kiln_build = kiln();
    kiln_build
        .arg("build")
        .arg(profile("local.toml"))
        .arg("--out")
        .arg(build.out())
        .arg("--secrets")
        .arg(build.secrets())
        .args(["--formats", "ignition,raw", "--base", "debian", "--cache"])
        .arg(&cache)
        .env("CI", "true");
    // The agent users ship (release), when the caller names it.
    if let Some(agent) = std::env::var_os("KILN_FIRSTBOOT_BIN") {
        kiln_build.arg("--agent").arg(agent);
    }
    run_ok(&mut kiln_build);
    let kiln_disk = build.out().join("etcd/disk.raw");
    let kiln_disks = [kiln_disk.clone(), kiln_disk.clone(), kiln_disk];

    // Beside the base, so the hand-made trees can be hard links too.
    let hand = tempfile::tempdir_in(&cache).expect("creating a folder in the cache");
    let base = etcd_base(&cache);
    let script = workspace_root().join("tests/bench/hand-etcd-disk.sh");
    let hand_disks = MEMBERS.map(|(_, name)| {
        let disk = hand.path().join(format!("{name}.raw"));
        run_ok(
            Command::new(&script)
                .arg(&base)
                .arg(build.secrets())
                .arg(name)
                .arg(&disk),
        );
        disk
    });

    let load_before = load();
    let logs = build.dir.path();
    let (mut by_kiln, mut by_hand) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let config = build.out().join("etcd/etcd.ign");
        let tag = format!("k{round}");
        let took = boot_to_healthy(&kiln_disks, Some(&config), &build.secrets(), logs, &tag);
        eprintln!("round {round}: kiln image healthy {took:.1?} after launch");
        by_kiln.push(took);
        let took = boot_to_healthy(
            &hand_disks,
            None,
            &build.secrets(),
            logs,
            &format!("h{round}"),
        );
        eprintln!("round {round}: hand-configured VMs healthy {took:.1?} after launch");
        by_hand.push(took);
    }
    let secs = |times: &[Duration]| -> String {
        let list: Vec<String> = times
            .iter()
            .map(|t| format!("{:.1}", t.as_secs_f64()))
            .collect();
        list.join(", ")
    };
    let (k, h) = (median(&by_kiln), median(&by_hand));
    println!("three etcd VMs (qemu TCG, 1 vCPU, 768 MiB each) from launch to `kiln health` 3/3,");
    println!(
        "base {}; load average before {load_before}, after {}",
        base.display(),
        load()
    );
    println!("| VMs booted from                        | runs (s)        | median (s) |");
    println!("|----------------------------------------|-----------------|------------|");
    println!(
        "| kiln's etcd disk.raw (one image, agent) | {:<15} | {:>10.1} |",
        secs(&by_kiln),
        k.as_secs_f64()
    );
    println!(
        "| hand-configured disks (static etcd)     | {:<15} | {:>10.1} |",
        secs(&by_hand),
        h.as_secs_f64()
    );
    println!(
        "ratio kiln / hand: {:.2}",
        k.as_secs_f64() / h.as_secs_f64()
    );
}
