//! etcd backups and disaster recovery (issue 6) against real etcd 3.4 in
//! network namespaces: `kiln backup` from a live cluster, a whole cluster
//! rebuilt from that snapshot through `restore_from`, a corrupt snapshot
//! refused with nothing changed, quorum-loss and dead-member guidance, the
//! baked snapshot in both renderings, and the snapshot timer under real
//! systemd (nspawn, on the Debian base). Run as root (namespaces).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_e2e::etcd::backup::{
    cluster, kiln_backup, member_ids, operator_files, read_keys, restoring_node, write_keys, KEYS,
};
use kiln_e2e::etcd::scenario::{started_voting, stderr, Node};
use kiln_e2e::etcd::{self, agent, assert_ok, members, wait_healthy};
use kiln_e2e::tree;
use kiln_node::layout::etcd::BAKED_SNAPSHOT;
use kiln_node::layout::{under_root, NODE_CONFIG};
use serde_json::Value;

/// 1000 keys, `kiln backup`, all three members destroyed, a new cluster
/// booted with restore_from: every key is back, 3/3 healthy, and neither
/// the member IDs nor the cluster ID are the old ones.
#[test]
fn cluster_is_rebuilt_from_a_kiln_backup() {
    let (sc, nodes, all) = cluster("ra", 150);
    write_keys(&nodes[0], &all);
    let (before, old_cluster_id) = read_keys(&nodes[0], all[0]);
    assert_eq!(before.len(), KEYS);
    let old_ids = member_ids(&members(&nodes[0].host, &nodes[0].root, all[0]));

    let dir = tempfile::tempdir().unwrap();
    let files = operator_files(&sc, &nodes[0], dir.path(), 150);
    let snapshot = dir.path().join("prod.db");
    let out = kiln_backup(&nodes[0], &files, &snapshot, &[]);
    assert_ok(&out, "kiln backup");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("sha256 ") && said.contains("revision "),
        "{said}"
    );
    let mode = fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a snapshot holds every secret of the cluster");
    let again = kiln_backup(&nodes[0], &files, &snapshot, &[]);
    assert!(!again.status.success() && stderr(&again).contains("--force"));
    assert_ok(
        &kiln_backup(&nodes[0], &files, &snapshot, &["--force"]),
        "kiln backup --force",
    );

    // Two of three gone: the survivor's peers are told how to recover.
    sc.destroy(&nodes[1]);
    sc.destroy(&nodes[2]);
    let probe = sc.node_on(nodes[1].host.clone());
    let plan = agent(&probe.host, &probe.root, None, &["plan"]);
    let said = String::from_utf8_lossy(&plan.stdout);
    assert!(
        said.contains("quorum is lost")
            && said.contains("etcd.restore_from")
            && said.contains("kiln backup"),
        "{said}{}",
        stderr(&plan)
    );
    sc.destroy(&nodes[0]);
    let fresh: Vec<Node> = nodes
        .iter()
        .map(|n| restoring_node(&sc, n.host.clone(), &snapshot))
        .collect();
    // etcd2's agent was killed mid-restore before: a half-written staging
    // folder and an empty data dir are left; the rerun restores anyway.
    fs::create_dir_all(fresh[1].root.join("var/lib/etcd.restoring/member/snap")).unwrap();
    fs::write(
        fresh[1].root.join("var/lib/etcd.restoring/member/snap/db"),
        b"partial",
    )
    .unwrap();
    fs::create_dir_all(fresh[1].root.join("var/lib/etcd")).unwrap();
    let plan = agent(&fresh[0].host, &fresh[0].root, None, &["plan"]);
    assert_ok(&plan, "plan");
    assert!(String::from_utf8_lossy(&plan.stdout).contains("from the snapshot restore_from"));
    sc.boot(&fresh.iter().collect::<Vec<_>>(), None);
    wait_healthy(&fresh[0].host, &fresh[0].root, &all, etcd::HEALTHY_WITHIN);

    assert!(!fresh[1].root.join("var/lib/etcd.restoring").exists());
    let now = members(&fresh[0].host, &fresh[0].root, all[0]);
    assert_eq!(started_voting(&now), 3, "{now:?}");
    let new_ids = member_ids(&now);
    assert!(
        new_ids.is_disjoint(&old_ids),
        "old member IDs came back: {old_ids:?} vs {new_ids:?}"
    );
    for (i, ip) in all.iter().enumerate() {
        let (after, cluster_id) = read_keys(&fresh[i], *ip);
        assert_eq!(after.len(), KEYS, "keys readable from {ip}");
        assert_ne!(
            cluster_id, old_cluster_id,
            "the restored cluster has a new ID"
        );
    }
    // A member whose data dir has a WAL ignores restore_from: a reboot.
    fs::remove_file(fresh[0].root.join("var/lib/kiln/firstboot.done")).unwrap();
    let plan = agent(&fresh[0].host, &fresh[0].root, None, &["plan"]);
    assert_ok(&plan, "plan after restore");
    assert!(String::from_utf8_lossy(&plan.stdout).contains("has a write-ahead log"));
    let (after, _) = read_keys(&fresh[2], all[2]);
    let values: Vec<&Value> = after.iter().map(|kv| &kv["value"]).collect();
    let first: Vec<&Value> = before.iter().map(|kv| &kv["value"]).collect();
    assert_eq!(values, first, "every value is the one written");
}

/// A new node (new name, new address) cannot join while a dead member is
/// listed: instead of retrying etcd's "unhealthy cluster" it names the dead
/// member and the two ways out.
#[test]
fn unlisted_node_names_the_dead_member_that_blocks_it() {
    let (sc, nodes, _) = cluster("rd", 152);
    sc.destroy(&nodes[2]);
    let newcomer = sc.node(40);
    let out = etcd::agent_with_timeout(&newcomer.host, &newcomer.root, Some("etcd9"), 5, &["run"]);
    assert!(!out.status.success(), "joined past a dead member?");
    let said = stderr(&out);
    assert!(
        said.contains("cannot join it yet")
            && said.contains("member etcd3 (id ")
            && said.contains("replacement")
            && said.contains("etcdctl member remove"),
        "{said}"
    );
}

/// A snapshot with one flipped byte: the agent exits non-zero naming the
/// file, writes nothing under the node root and never configures etcd.
#[test]
fn corrupt_snapshot_is_refused_with_nothing_changed() {
    let (sc, nodes, all) = cluster("rc", 151);
    write_keys(&nodes[0], &all);
    let dir = tempfile::tempdir().unwrap();
    let files = operator_files(&sc, &nodes[0], dir.path(), 151);
    let snapshot = dir.path().join("prod.db");
    assert_ok(
        &kiln_backup(&nodes[0], &files, &snapshot, &[]),
        "kiln backup",
    );
    let mut bytes = fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(&snapshot, bytes).unwrap();
    for node in &nodes {
        sc.destroy(node);
    }

    let node = restoring_node(&sc, nodes[0].host.clone(), &snapshot);
    let before = tree::snapshot(&node.root).unwrap();
    let out = agent(&node.host, &node.root, None, &["run"]);
    assert!(!out.status.success(), "a corrupt snapshot was accepted");
    let said = stderr(&out);
    assert!(
        said.contains("is corrupt") && said.contains("nothing was changed"),
        "{said}"
    );
    let after = tree::snapshot(&node.root).unwrap();
    assert_eq!(
        tree::differences("before", &before, "after", &after),
        Vec::<String>::new()
    );
    assert!(!node.root.join("etc/kiln/etcd.env").exists());
    assert!(!node.root.join("var/lib/etcd").exists());
}

/// A one-member etcd image with a 5 s snapshot timer booted by real
/// systemd: verified snapshots appear on schedule in the bind-mounted
/// destination, same-hour ones are pruned down to the newest, and
/// pre-seeded old snapshots are pruned there and on the node, while files
/// that are not this member's snapshots stay.
#[test]
fn snapshot_timer_takes_verifies_and_prunes() {
    use kiln_e2e::artifacts::{ignition_files, Build};
    use kiln_e2e::bootnet::{addr, BootNet};
    use kiln_e2e::nspawn::Container;
    use kiln_node::etcd::snapshot::{db_status, verify_trailer};
    use kiln_node::etcd::snapshot::{file_name, taken_at};
    use kiln_node::layout::etcd::SNAPSHOT_DIR;
    use std::time::{Duration, Instant};

    let build = Build::new();
    let profile = build.dir.path().join("backup.toml");
    fs::write(
        &profile,
        "[cluster]\nname = \"backup\"\ndomain = \"kiln.test\"\n\
         kubernetes_version = \"1.36.2\"\nnode_subnets = [\"10.77.0.0/24\"]\n\n\
         [etcd]\nmembers = [{ name = \"etcd1\", ip = \"10.77.0.11\" }]\n\n\
         [etcd.backup]\ninterval = \"5s\"\nkeep_hourly = 3\nkeep_daily = 2\n\
         destination = \"/mnt/backup\"\n",
    )
    .unwrap();
    build.on_debian_base(&profile, "ignition,rootfs");
    let root = build.dir.path().join("root");
    tree::extract(&build.out().join("etcd/rootfs.tar.gz"), &root).unwrap();
    let config = build.out().join("etcd/etcd.ign");
    let timer = ignition_files(&config)
        .into_iter()
        .find(|f| f.path == "/etc/systemd/system/kiln-snapshot.timer")
        .expect("the config has the snapshot timer");
    let timer = String::from_utf8_lossy(&timer.bytes);
    assert!(timer.contains("OnUnitActiveSec=5s"), "{timer}");

    // Seeds: two beyond every window, an older and a newer one of the
    // previous hour, and files that are not etcd1's snapshots.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let last_hour = (now / 3600 - 1) * 3600;
    let doomed = [now - 10 * 86_400, now - 10 * 86_400 + 60, last_hour + 60];
    let kept = [last_hour + 120];
    let foreign = ["etcd2-20200101T000000Z.db", "notes.txt"];
    let dest = build.dir.path().join("backup");
    let local = under_root(&root, Path::new(SNAPSHOT_DIR));
    for dir in [&dest, &local] {
        fs::create_dir_all(dir).unwrap();
        for t in doomed.iter().chain(&kept) {
            fs::write(dir.join(file_name("etcd1", *t)), b"seed").unwrap();
        }
        for name in foreign {
            fs::write(dir.join(name), b"not mine").unwrap();
        }
    }

    let mut net = BootNet::new("sb", &[(11, 11, "etcd1")]);
    let netns = net.host_ns("h11", 11);
    let log = build.dir.path().join("etcd1.log");
    let bind = format!("--bind={}:/mnt/backup", dest.display());
    let container = Container::boot_with(&root, Some(&config), "etcd1", &netns, &log, &bind);
    let secrets = build.secrets();
    net.wait_cluster(&secrets, &[addr(11)], Duration::from_secs(180), &|| {
        container.console()
    });
    let put = net.etcdctl(&secrets, &[addr(11)], &["put", "/kiln/backup", "kept"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    // Watch the destination: every fresh snapshot is verified while it exists.
    let fresh_names = |dir: &Path| -> Vec<(i64, PathBuf)> {
        let mut found: Vec<(i64, PathBuf)> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let t = taken_at("etcd1", &path.file_name()?.to_string_lossy())?;
                (t >= now).then_some((t, path))
            })
            .collect();
        found.sort();
        found
    };
    let mut seen: Vec<i64> = Vec::new();
    let mut verified = 0;
    let start = Instant::now();
    while seen.len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "only {seen:?} snapshots within 90 s:\n{}",
            container.console()
        );
        for (t, path) in fresh_names(&dest) {
            if !seen.contains(&t) {
                // Pruned between listing and reading is fine; a bad file is not.
                if let (Ok(_), Ok(db)) = (verify_trailer(&path), db_status(&path)) {
                    assert!(db.total_key > 0);
                    verified += 1;
                }
                seen.push(t);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("fresh snapshots at {seen:?}, {verified} verified before being pruned");
    assert!(verified >= 2, "only {verified} snapshots could be verified");
    seen.sort();
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((4..=20).contains(&gap), "snapshots {gap} s apart: {seen:?}");
    }
    let left = fresh_names(&dest);
    assert!(
        left.len() <= 2,
        "same-hour snapshots were not pruned: {left:?}"
    );
    let init = container.init_pid().expect("the container's init");
    let inside = PathBuf::from(format!("/proc/{init}/root{SNAPSHOT_DIR}"));
    for dir in [&dest, &inside] {
        for t in doomed {
            let name = file_name("etcd1", t);
            assert!(
                !dir.join(&name).exists(),
                "{name} was not pruned in {}",
                dir.display()
            );
        }
        for t in kept {
            assert!(
                dir.join(file_name("etcd1", t)).exists(),
                "{t} pruned in {}",
                dir.display()
            );
        }
        for name in foreign {
            assert!(
                dir.join(name).exists(),
                "{name} was touched in {}",
                dir.display()
            );
        }
    }
    let mode = fs::metadata(&left.last().unwrap().1)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// `restore_from = { local = ... }` bakes the snapshot 0600 into the etcd
/// role's Ignition config (it holds every secret of the cluster: never in
/// the public OS tree) and points node.toml at it; a corrupt snapshot fails
/// the build instead.
#[test]
fn local_restore_snapshot_is_baked_and_a_corrupt_one_fails_the_build() {
    use kiln_e2e::artifacts::{ignition_files, tarball_files, Build};
    use sha2::{Digest, Sha256};

    let build = Build::new();
    let dir = build.dir.path();
    let mut snapshot = vec![0x42u8; 8192];
    let digest = Sha256::digest(&snapshot);
    snapshot.extend_from_slice(&digest);
    fs::create_dir_all(dir.join("snapshots")).unwrap();
    fs::write(dir.join("snapshots/prod.db"), &snapshot).unwrap();
    let profile = dir.join("restore.toml");
    fs::write(
        &profile,
        "[cluster]\nname = \"restore\"\ndomain = \"kiln.test\"\n\
         kubernetes_version = \"1.36.2\"\nnode_subnets = [\"10.77.0.0/24\"]\n\n\
         [etcd]\nrestore_from = { local = \"snapshots/prod.db\" }\n\
         members = [{ name = \"etcd1\", ip = \"10.77.0.11\" }]\n",
    )
    .unwrap();
    build.ok(&profile);
    let baked = BAKED_SNAPSHOT.trim_start_matches('/');
    let files = ignition_files(&build.out().join("etcd/etcd.ign"));
    let file = files
        .iter()
        .find(|f| f.path.trim_start_matches('/') == baked)
        .unwrap_or_else(|| panic!("the config lacks {BAKED_SNAPSHOT}"));
    assert_eq!((file.mode, &file.bytes), (0o600, &snapshot));
    let config = files
        .iter()
        .find(|f| f.path.trim_start_matches('/') == NODE_CONFIG.trim_start_matches('/'))
        .unwrap();
    let text = String::from_utf8_lossy(&config.bytes);
    assert!(
        text.contains(&format!("restore_from = \"{BAKED_SNAPSHOT}\"")),
        "{text}"
    );
    let tgz = tarball_files(&build.out().join("etcd/rootfs.tar.gz"));
    assert!(
        !tgz.iter().any(|f| f.path.trim_start_matches('/') == baked),
        "the public OS tree holds the snapshot"
    );

    snapshot[100] ^= 1;
    fs::write(dir.join("snapshots/prod.db"), &snapshot).unwrap();
    let out = build.run_into(&profile, &dir.join("out2"));
    assert!(!out.status.success(), "a corrupt snapshot was baked");
    let said = stderr(&out);
    assert!(
        said.contains("is corrupt") && said.contains("etcd.restore_from.local"),
        "{said}"
    );
}
