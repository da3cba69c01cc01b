//! The HA cluster proof: kiln's etcd, master and worker images booted at
//! once as nspawn containers (real systemd, kiln-firstboot, keepalived) with
//! the strict kubeadm stand-in on PATH. Exactly one master runs `kubeadm
//! init`, the others and every later master join the control plane, workers
//! join once the endpoint answers, the VIP moves when its master is lost,
//! a master under a new name on a new address takes a lost one's place
//! (its etcd member too, when stacked) and joins the VIP, and a master
//! killed while it initializes is taken over by another.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kiln_e2e::cluster::{
    Cluster, Images, Node, Record, Topology, ETCD_NODES, MASTERS, NEW_MASTER, VIP, WORKERS,
};
use kiln_e2e::fixture;
use kiln_node::layout;

/// From launch to every init and join on two shared cores.
const CONVERGE: Duration = Duration::from_secs(300);
/// keepalived's VRRP with one-second adverts: a few seconds at most.
const FAILOVER: Duration = Duration::from_secs(10);
/// Seconds the stand-in's init holds still (its test hook), the window
/// to kill the master that runs it.
const INIT_DELAY: &str = "12";
/// An address outside the profiles' node_subnets (10.77.0.0/24).
const ROGUE: &str = "10.78.0.9";

fn is_master(name: &str) -> bool {
    MASTERS.iter().any(|m| m.name == name)
}

/// Inits and joins recorded in etcd, split by kind.
struct Tally {
    inits: Vec<Record>,
    master_joins: Vec<Record>,
    worker_joins: Vec<Record>,
}

fn tally(records: &[Record]) -> Tally {
    let pick = |f: &dyn Fn(&Record) -> bool| records.iter().filter(|r| f(r)).cloned().collect();
    Tally {
        inits: pick(&|r| r.verb == "init"),
        master_joins: pick(&|r| r.verb == "join-control-plane"),
        worker_joins: pick(&|r| r.verb == "join"),
    }
}

/// No stand-in line on any console says `refused`, and exactly `inits`
/// machines initialized, `masters` joined the control plane and `workers`
/// joined as workers (a line may show twice: on the console and through the
/// agent's output). A console line follows its record in etcd by a moment,
/// so the counts get a few seconds to arrive.
fn assert_standin_lines(cluster: &Cluster, inits: usize, masters: usize, workers: usize) {
    let counts = || {
        let lines = cluster.all_standin_lines();
        let refused: Vec<_> = lines
            .iter()
            .filter(|(_, l)| l.split_whitespace().nth(2) == Some("refused"))
            .cloned()
            .collect();
        assert!(
            refused.is_empty(),
            "the stand-in refused a kubeadm call: {refused:?}"
        );
        let machines = |verb: &str| {
            let ok = format!("KUBEADM-STANDIN {verb} ok ");
            let set: BTreeSet<&str> = lines
                .iter()
                .filter(|(_, l)| l.starts_with(&ok))
                .map(|(m, _)| m.as_str())
                .collect();
            set.len()
        };
        let counts = (
            machines("init"),
            machines("join-control-plane"),
            machines("join"),
        );
        (counts, lines)
    };
    let expected = (inits, masters, workers);
    let deadline = Instant::now() + FAILOVER;
    let (mut got, mut lines) = counts();
    while got != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        (got, lines) = counts();
    }
    assert_eq!(
        got, expected,
        "machines that (initialized, joined the control plane, joined as workers): {lines:?}"
    );
}

/// The recorded inits and joins, failing at once on a refused kubeadm call
/// rather than waiting for a count that can no longer come.
fn progress(cluster: &Cluster) -> Tally {
    let refused: Vec<_> = cluster
        .all_standin_lines()
        .into_iter()
        .filter(|(_, l)| l.split_whitespace().nth(2) == Some("refused"))
        .collect();
    assert!(
        refused.is_empty(),
        "the stand-in refused a kubeadm call: {refused:?}\n{}",
        cluster.consoles_tail(40)
    );
    tally(&cluster.records())
}

/// Boots `nodes` at once and waits for one init, two control-plane joins
/// and two worker joins.
fn boot_all<'n>(cluster: &mut Cluster, nodes: impl Iterator<Item = &'n Node>) -> (Tally, Duration) {
    for node in nodes {
        cluster.boot(*node, "");
    }
    cluster.wait(
        "one init, two control-plane and two worker joins",
        CONVERGE,
        || {
            let t = progress(cluster);
            (t.inits.len() == 1 && t.master_joins.len() == 2 && t.worker_joins.len() == 2)
                .then_some(t)
        },
    )
}

/// Boots a fresh machine for the lost master `node` and waits for it to
/// join the control plane; it must never try `kubeadm init`.
fn replacement_joins(cluster: &mut Cluster, node: Node) {
    cluster.boot(node, "");
    let machine = cluster.machine(node);
    cluster.wait("the replacement master joining", CONVERGE, || {
        progress(cluster);
        cluster
            .standin_lines(&machine)
            .iter()
            .any(|l| l.starts_with("KUBEADM-STANDIN join-control-plane ok "))
            .then_some(())
    });
    let lines = cluster.standin_lines(&machine);
    assert!(
        lines.iter().all(|l| !l.starts_with("KUBEADM-STANDIN init")),
        "the replacement {machine} tried kubeadm init: {lines:?}"
    );
}

/// The VIP sits on exactly one master at every look for `window`: a
/// master nobody sends VRRP adverts to would take it beside the holder.
fn one_vip_holder_throughout(cluster: &Cluster, window: Duration) {
    let start = Instant::now();
    while start.elapsed() < window {
        let holders = cluster.vip_holders();
        assert_eq!(
            holders.len(),
            1,
            "the VIP is on {holders:?}\n{}",
            cluster.consoles_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn vip_health(cluster: &Cluster) -> Option<()> {
    let out = cluster.https_get(&format!("https://{VIP}:6443/healthz"));
    (out.status.success() && out.stdout == b"ok").then_some(())
}

#[test]
fn external_cluster_inits_once_joins_the_rest_and_moves_the_vip() {
    let images = Images::new(
        &fixture("profiles/cluster.toml"),
        "cluster",
        Topology::External,
    );
    let start = Instant::now();
    all_nodes_boot_at_once(&images);
    eprintln!("boot at once, failover, replacement: {:?}", start.elapsed());
    let start = Instant::now();
    a_master_killed_while_it_initializes_is_taken_over(&images);
    eprintln!("takeover of the init lock: {:?}", start.elapsed());
}

fn all_nodes_boot_at_once(images: &Images) {
    let mut cluster = Cluster::new(images, "c");
    let (t, took) = boot_all(
        &mut cluster,
        ETCD_NODES.iter().chain(&MASTERS).chain(&WORKERS),
    );
    eprintln!("cluster converged {took:?} after launch");
    let init = &t.inits[0];
    assert!(is_master(&init.node), "{} ran kubeadm init", init.node);
    assert_eq!(cluster.get(&cluster.marker_key()), init.node);
    for join in &t.worker_joins {
        assert!(
            join.revision > init.revision,
            "{} joined before the control plane was initialized",
            join.node
        );
    }
    let joined: Vec<&str> = t.master_joins.iter().map(|r| r.node.as_str()).collect();
    assert!(
        !joined.contains(&init.node.as_str()),
        "{} both inits and joins",
        init.node
    );
    assert_standin_lines(&cluster, 1, 2, 2);

    let (holder, took) = cluster.wait("the VIP on exactly one master", FAILOVER * 3, || {
        let holders = cluster.vip_holders();
        (holders.len() == 1).then(|| holders[0])
    });
    eprintln!("VIP on {} {took:?} after convergence", holder.name);
    cluster.wait("the fake apiserver answering on the VIP", FAILOVER, || {
        vip_health(&cluster)
    });

    let lost = Instant::now();
    cluster.kill(holder);
    let (moved_to, _) = cluster.wait("the VIP moving to another master", FAILOVER, || {
        let holders = cluster.vip_holders();
        (holders.len() == 1).then(|| holders[0])
    });
    let failover = lost.elapsed();
    eprintln!(
        "VIP failover from {} to {} took {failover:?}",
        holder.name, moved_to.name
    );
    cluster.wait("the apiserver answering on the moved VIP", FAILOVER, || {
        vip_health(&cluster)
    });

    // Anyone holding a client certificate that may write under vip/peers/
    // registers an address outside node_subnets: no master takes it as a
    // peer. Taken, it would also hold up the replacement below, which waits
    // for every registered master to know it.
    let rogue = format!("{}rogue", layout::keys::vip_peers(&images.cluster));
    let put = cluster.etcdctl(&["put", &rogue, &format!(r#"{{"ip":"{ROGUE}","peers":[]}}"#)]);
    assert!(put.status.success(), "etcdctl put {rogue}: {put:?}");

    // The lost master's place goes to a cloud replacement: a new name on a
    // new address, which no listed master has as a keepalived peer.
    replacement_joins(&mut cluster, NEW_MASTER);
    for master in MASTERS
        .into_iter()
        .chain([NEW_MASTER])
        .filter(|m| *m != holder)
    {
        let conf = cluster
            .container(master)
            .exec("cat /etc/keepalived/keepalived.conf");
        let conf = String::from_utf8_lossy(&conf.stdout);
        let learned =
            master == NEW_MASTER || conf.contains(&format!("        {}\n", NEW_MASTER.ip()));
        assert!(
            learned,
            "{} has not learned {}:\n{conf}",
            master.name, NEW_MASTER.name
        );
        assert!(
            !conf.contains(ROGUE),
            "{} took {ROGUE} as a peer:\n{conf}",
            master.name
        );
        let journal = cluster
            .container(master)
            .exec("journalctl -b -u kiln-vip-peers.service --no-pager -o cat");
        let journal = String::from_utf8_lossy(&journal.stdout);
        let warned =
            format!("ignoring the keepalived peer registered at {rogue} (address {ROGUE})");
        assert_eq!(
            journal.matches(&warned).count(),
            1,
            "{}:\n{journal}",
            master.name
        );
    }
    let t = tally(&cluster.records());
    assert_eq!(
        t.inits.len(),
        1,
        "inits after the replacement: {:?}",
        t.inits
    );
    assert_standin_lines(&cluster, 1, 3, 2);
    one_vip_holder_throughout(&cluster, FAILOVER);

    // The listed masters go too: the VIP moves to the new one.
    for master in MASTERS.iter().filter(|m| **m != holder) {
        cluster.kill(*master);
    }
    cluster.wait("the VIP on the new master", FAILOVER, || {
        (cluster.vip_holders() == [NEW_MASTER]).then_some(())
    });
    cluster.wait("the apiserver answering on the VIP", FAILOVER, || {
        vip_health(&cluster)
    });
}

fn a_master_killed_while_it_initializes_is_taken_over(images: &Images) {
    let hook = images.build.dir.path().join("kubeadm-standin");
    std::fs::create_dir_all(&hook).unwrap();
    std::fs::write(hook.join("init-delay"), INIT_DELAY).unwrap();
    let bind = format!("--bind-ro={}:/etc/kubeadm-standin", hook.display());
    let mut cluster = Cluster::new(images, "t");
    for node in &ETCD_NODES {
        cluster.boot(*node, "");
    }
    for node in &MASTERS {
        cluster.boot(*node, &bind);
    }
    let lock = cluster.lock_key();
    let (first, took) = cluster.wait(
        "a master holding the lock and running kubeadm init",
        CONVERGE,
        || {
            let holder = cluster.get(&lock);
            MASTERS
                .iter()
                .find(|m| {
                    m.name == holder
                        && cluster
                            .standin_lines(&cluster.machine(**m))
                            .iter()
                            .any(|l| l.starts_with("KUBEADM-STANDIN init waiting"))
                })
                .copied()
        },
    );
    eprintln!(
        "{} holds the init lock and runs kubeadm init {took:?} after launch",
        first.name
    );
    let first_machine = cluster.machine(first);
    cluster.kill(first);
    let killed = Instant::now();

    let (t, _) = cluster.wait(
        "another master initializing, the last one joining",
        CONVERGE,
        || {
            let t = progress(&cluster);
            (t.inits.len() == 1 && t.master_joins.len() == 1).then_some(t)
        },
    );
    eprintln!("takeover and join {:?} after the kill", killed.elapsed());
    let init = &t.inits[0];
    assert_ne!(
        init.node, first.name,
        "the killed master's init was recorded"
    );
    assert_ne!(t.master_joins[0].node, first.name);
    assert_eq!(cluster.get(&cluster.marker_key()), init.node);
    let first_lines = cluster.standin_lines(&first_machine);
    assert!(
        first_lines.iter().all(|l| !l.contains(" ok ")),
        "the killed master finished a kubeadm call: {first_lines:?}"
    );
    assert_standin_lines(&cluster, 1, 1, 0);
    cluster.wait("the init lock released", FAILOVER * 3, || {
        cluster.get(&lock).is_empty().then_some(())
    });
}

#[test]
fn stacked_cluster_inits_once_on_the_masters() {
    let images = Images::new(
        &fixture("profiles/cluster-stacked.toml"),
        "stacked",
        Topology::Stacked,
    );
    let mut cluster = Cluster::new(&images, "s");
    let (t, took) = boot_all(&mut cluster, MASTERS.iter().chain(&WORKERS));
    eprintln!("stacked cluster converged {took:?} after launch");
    assert_eq!(
        t.inits[0].node, MASTERS[0].name,
        "the designated first master initializes"
    );
    for join in &t.worker_joins {
        assert!(
            join.revision > t.inits[0].revision,
            "{} joined too early",
            join.node
        );
    }
    assert_standin_lines(&cluster, 1, 2, 2);
    let members = cluster
        .net
        .members(&images.secrets(), &cluster.etcd_endpoints());
    assert_eq!(
        members.len(),
        3,
        "the masters' etcd has three members: {members:?}"
    );

    // A master lost for good and replaced by a machine with a new name on a
    // new address: once the cluster has seen it dead for replace_dead_after,
    // the dead etcd member goes and the new master joins (etcd refuses
    // kubeadm's member add while the dead member counts), never inits.
    let lost = MASTERS[1];
    cluster.kill(lost);
    replacement_joins(&mut cluster, NEW_MASTER);
    assert_standin_lines(&cluster, 1, 3, 2);
    one_vip_holder_throughout(&cluster, FAILOVER);
    let (members, _) = cluster.wait("three started etcd members again", FAILOVER * 3, || {
        let members = cluster
            .net
            .members(&images.secrets(), &cluster.etcd_endpoints());
        let started = members
            .iter()
            .filter(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
            .count();
        (members.len() == 3 && started == 3).then_some(members)
    });
    let mut names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["master1", "master3", NEW_MASTER.name]);
}
