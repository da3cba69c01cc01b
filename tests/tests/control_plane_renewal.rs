//! The masters' certificates renewed under a running control plane, against
//! the kubeadm stand-in (its kubelet runs the static pods) and a real etcd
//! in network namespaces: a cluster built with three-minute certificates
//! (tests/fixtures/kubeadm/renewal.toml) keeps answering past the end of
//! every certificate it started with. Each master's `kiln-firstboot renew`
//! (kiln-renew.timer's job) renews kubeadm's certificates with `kubeadm
//! certs renew all`, gets its etcd client certificate renewed by the etcd
//! node through etcd, and restarts its control plane one component at a
//! time while the other master keeps serving.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_e2e::artifacts::{lay_out, Build};
use kiln_e2e::etcd::{agent, agent_command, assert_ok, start_etcd, wait_healthy, Release};
use kiln_e2e::netns::{Host, Lab};
use kiln_e2e::{binary, fixture, run};

const SUBNET: u8 = 152;
/// renewal.toml's leaf validity.
const LIFETIME: Duration = Duration::from_secs(180);
/// How often each node runs `renew`, standing in for kiln-renew.timer.
const TIMER: Duration = Duration::from_secs(10);
const TIMEOUT_SECS: u64 = 120;

/// The agent on a master root, with the stand-in as its kubeadm.
fn master_agent(host: &Host, root: &Path, name: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = agent_command(host, root, Some(name), TIMEOUT_SECS, args);
    cmd.env("KILN_KUBEADM", binary("kubeadm"))
        .env(kiln_e2e::kubeadm::ROOT_ENV, root);
    run(&mut cmd)
}

/// `GET path` of the API server at `ip`, verified with the cluster CA.
fn api(host: &Host, root: &Path, ip: &str, path: &str) -> Option<String> {
    let out = run(host
        .command("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(root.join("etc/kubernetes/pki/ca.crt"))
        .arg(format!("https://{ip}:6443{path}")));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The end date openssl prints for a certificate file, or for the one
/// the API server at `ip` presents.
fn end_date(host: &Host, file: &Path, presented_by: Option<&str>) -> String {
    let script = match presented_by {
        Some(ip) => format!(
            "openssl s_client -connect {ip}:6443 </dev/null 2>/dev/null | openssl x509 -noout -enddate"
        ),
        None => format!("openssl x509 -noout -enddate -in {}", file.display()),
    };
    let out = run(host.command("sh").args(["-c", &script]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The client certificate a kubeconfig embeds, empty when there is none.
fn kubeconfig_cert(root: &Path, path: &str) -> String {
    let root = kiln_e2e::kubeadm::Root {
        dir: Some(root.to_owned()),
    };
    kiln_e2e::kubeadm::certs::kubeconfig_cert(&root, path).unwrap_or_default()
}

/// What each master held, in order: every distinct version seen.
fn versions_of(root: &Path) -> Vec<String> {
    vec![
        fs::read_to_string(root.join("etc/kubernetes/pki/apiserver.crt")).unwrap_or_default(),
        fs::read_to_string(root.join("etc/kubernetes/pki/apiserver-etcd-client.crt"))
            .unwrap_or_default(),
        kubeconfig_cert(root, "/etc/kubernetes/admin.conf"),
        kubeconfig_cert(root, "/etc/kubernetes/controller-manager.conf"),
    ]
}
const WATCHED: [&str; 4] = [
    "apiserver.crt",
    "apiserver-etcd-client.crt",
    "admin.conf's client certificate",
    "controller-manager.conf's client certificate",
];

#[test]
fn masters_renew_kubeadms_certificates_and_restart_one_at_a_time() {
    let build = Build::new();
    build.ok(&fixture("kubeadm/renewal.toml"));
    let built = Instant::now();
    let lab = Lab::new("kr", SUBNET);
    let roots = tempfile::tempdir().unwrap();
    let root = |role: &str, name: &str| {
        let root = roots.path().join(name);
        lay_out(&build.out(), role, &root);
        root
    };

    let etcd_host = lab.host(11);
    let etcd_root = root("etcd", "etcd1");
    Release::Primary.install(&etcd_root);
    assert_ok(
        &agent(&etcd_host, &etcd_root, Some("etcd1"), &["run"]),
        "etcd run",
    );
    start_etcd(&lab, "etcd1", &etcd_host, &etcd_root);
    assert_ok(
        &agent(&etcd_host, &etcd_root, Some("etcd1"), &["settle"]),
        "etcd settle",
    );
    let etcd_ip = lab.addr(11);
    wait_healthy(
        &etcd_host,
        &etcd_root,
        &[etcd_ip],
        kiln_e2e::etcd::HEALTHY_WITHIN,
    );

    let masters: Vec<(&str, String, Host, PathBuf)> = [("master1", 21), ("master2", 22)]
        .into_iter()
        .map(|(name, last)| {
            (
                name,
                lab.addr(last).to_string(),
                lab.host(last),
                root("master", name),
            )
        })
        .collect();
    let _kubelets =
        kiln_e2e::kubeadm::kubelet::Kubelets(masters.iter().map(|m| m.3.clone()).collect());
    for (name, _, host, root) in &masters {
        assert_ok(
            &master_agent(host, root, name, &["run"]),
            &format!("{name} run"),
        );
    }
    let first: Vec<Vec<String>> = masters.iter().map(|m| versions_of(&m.3)).collect();

    // Every node renews on its own timer while the API servers are watched.
    let until = built + LIFETIME + Duration::from_secs(60);
    let stop = AtomicBool::new(false);
    let samples = Mutex::new((0usize, Vec::<f64>::new()));
    let seen: Vec<Mutex<Vec<Vec<String>>>> =
        first.iter().map(|v| Mutex::new(vec![v.clone()])).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            while Instant::now() < until {
                assert_ok(
                    &agent(&etcd_host, &etcd_root, Some("etcd1"), &["renew"]),
                    "etcd renew",
                );
                std::thread::sleep(TIMER);
            }
        });
        for ((name, _, host, root), seen) in masters.iter().zip(&seen) {
            let stop = &stop;
            s.spawn(move || {
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    let out = master_agent(host, root, name, &["renew"]);
                    if !out.status.success() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    assert_ok(&out, &format!("{name} renew"));
                    let now = versions_of(root);
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&now) {
                        seen.push(now);
                    }
                    drop(seen);
                    std::thread::sleep(TIMER);
                }
            });
        }
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            let up: Vec<bool> = masters
                .iter()
                .map(|(_, ip, _, root)| api(&etcd_host, root, ip, "/healthz").is_some())
                .collect();
            let mut samples = samples.lock().unwrap();
            samples.0 += 1;
            if !up.contains(&true) {
                samples.1.push(built.elapsed().as_secs_f64());
            }
            drop(samples);
            std::thread::sleep(Duration::from_millis(500));
        }
    });

    let (count, both_down) = samples.into_inner().unwrap();
    assert!(count > 100, "only {count} samples of the API servers");
    assert!(
        both_down.is_empty(),
        "both API servers were down at once at {both_down:?} s after the build ({count} samples)"
    );
    for ((name, ip, host, root), seen) in masters.iter().zip(seen) {
        let seen = seen.into_inner().unwrap();
        for (i, what) in WATCHED.iter().enumerate() {
            let mut distinct: Vec<&String> = seen.iter().map(|v| &v[i]).collect();
            distinct.dedup();
            assert!(
                distinct.len() >= 2,
                "{name}: {what} was never renewed in {:?} ({} versions)",
                LIFETIME + Duration::from_secs(60),
                distinct.len()
            );
            assert!(!distinct[0].is_empty(), "{name}: {what} missing after init");
        }
        // Past the end of every certificate it started with, the API server
        // presents its renewed certificate and reads etcd with its renewed
        // client certificate, and the other components run.
        let apiserver = root.join("etc/kubernetes/pki/apiserver.crt");
        assert_eq!(
            end_date(host, &apiserver, Some(ip)),
            end_date(host, &apiserver, None),
            "{name} presents another certificate than its renewed one"
        );
        let config = api(
            &etcd_host,
            root,
            ip,
            "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        );
        assert!(
            config.is_some_and(|c| c.contains("ClusterConfiguration")),
            "{name}'s API server no longer reads etcd"
        );
        for port in ["10257", "10259"] {
            let out = run(host
                .command("curl")
                .args(["-sf", "--max-time", "2"])
                .arg(format!("http://127.0.0.1:{port}/healthz")));
            assert!(
                out.status.success(),
                "{name}: nothing answers on port {port}"
            );
        }
        let log =
            fs::read_to_string(root.join("var/log/kubeadm-standin.jsonl")).unwrap_or_default();
        let renewals = log
            .lines()
            .filter(|l| l.contains("\"certs-renew-all\"") && l.contains("\"ok\""))
            .count();
        assert!(renewals >= 1, "{name} never ran kubeadm certs renew all");
        assert!(
            !root
                .join("var/lib/kiln/control-plane-restart-pending")
                .exists(),
            "{name}: a restart is still pending"
        );
    }
    assert!(
        built.elapsed() > LIFETIME,
        "the test ended before the first certificates did"
    );
}
