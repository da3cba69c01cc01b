//! keepalived.conf as kiln writes it, and as keepalived itself reads it.

use super::*;
use crate::kubeadm::config::tests::sample_config;
use kiln_node::node_config::Role;

#[test]
fn a_failing_check_ranks_below_every_healthy_master() {
    let failing_best = i64::from(priority(Some(0))) + i64::from(CHECK_WEIGHT);
    assert!(failing_best < i64::from(priority(None)));
    assert!(failing_best > 0);
}

#[test]
fn priorities_follow_the_masters_order() {
    assert_eq!(
        [priority(Some(0)), priority(Some(1)), priority(Some(2))],
        [150, 140, 130]
    );
    assert_eq!(priority(None), 100);
    assert!(priority(Some(40)) > priority(None));
}

#[test]
fn unicast_config_names_the_other_masters() {
    let config = sample_config(Role::Master, "1.36.2");
    let cp = config.control_plane.as_ref().unwrap();
    let vip = cp.vip.as_ref().unwrap();
    let ip = "10.0.0.22".parse().unwrap();
    let learned = [
        "10.0.0.23".parse().unwrap(),
        "10.0.0.44".parse().unwrap(),
        ip,
    ];
    let peers = unicast_peers(cp, ip, &learned);
    let text = super::config(cp, vip, "master2", ip, &peers).unwrap();
    for line in [
        "    state BACKUP\n",
        "    interface eth0\n",
        "    virtual_router_id 51\n",
        "    priority 140\n",
        "    unicast_src_ip 10.0.0.22\n    check_unicast_src\n",
        "        10.0.0.21\n        10.0.0.23\n        10.0.0.44\n    }\n",
        "        10.0.0.20/32 dev eth0\n",
        "    script \"/etc/keepalived/kiln-check-apiserver.sh\"\n",
        "        kiln_apiserver\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("        10.0.0.22\n"), "{text}");
    let braces = text.matches('{').count();
    assert_eq!(braces, text.matches('}').count(), "{text}");
}

#[test]
fn an_ipv6_vip_is_one_host() {
    let mut config = sample_config(Role::Master, "1.36.2");
    let cp = config.control_plane.as_mut().unwrap();
    v6_masters(cp);
    let vip = cp.vip.as_ref().unwrap();
    let ip = cp.masters[1].ip;
    let text = super::config(cp, vip, "master2", ip, &unicast_peers(cp, ip, &[])).unwrap();
    assert!(text.contains("        fd00::20/128 dev eth0\n"), "{text}");
    assert!(text.contains("    unicast_src_ip fd00::22\n    check_unicast_src\n"));
}

/// The sample's masters and VIP moved to fd00::/64.
fn v6_masters(cp: &mut ControlPlaneSettings) {
    for m in &mut cp.masters {
        m.ip = format!("fd00::{}", &m.ip.to_string()[7..]).parse().unwrap();
    }
    cp.vip.as_mut().unwrap().address = "fd00::20".parse().unwrap();
}

/// keepalived's own check of `conf` (`keepalived -t`, keepalived(8)):
/// exit 0 and nothing said, else the status and what it said. It runs in
/// a network namespace of its own with the VIP's interface as a bridge
/// link (keepalived refuses an interface it cannot see), and a mount
/// namespace where a folder with `conf` and the health check is
/// /etc/keepalived, since enable_script_security checks the script at
/// its real path; the host's network and files stay untouched.
fn keepalived_accepts(conf: &str, interface: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("kiln-check-apiserver.sh");
    std::fs::write(dir.path().join("keepalived.conf"), conf).unwrap();
    std::fs::write(&check, check_script()).unwrap();
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = "ip link add \"$2\" type bridge && mount --bind \"$1\" /etc/keepalived \
                  && exec keepalived -t -f /etc/keepalived/keepalived.conf";
    let out = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir.path())
        .arg(interface)
        .output()
        .expect("running unshare and keepalived -t (apt-get install keepalived)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

#[test]
fn keepalived_accepts_the_ipv4_and_ipv6_configs() {
    let mut config = sample_config(Role::Master, "1.36.2");
    let cp = config.control_plane.as_mut().unwrap();
    for v6 in [false, true] {
        if v6 {
            v6_masters(cp);
        }
        let vip = cp.vip.as_ref().unwrap();
        let ip = cp.masters[1].ip;
        let text = super::config(cp, vip, "master2", ip, &unicast_peers(cp, ip, &[])).unwrap();
        assert!(text.contains("check_unicast_src"));
        keepalived_accepts(&text, &vip.interface).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    // The check itself must refuse: a keyword keepalived does not know.
    let bad = super::config(
        cp,
        cp.vip.as_ref().unwrap(),
        "master2",
        cp.masters[1].ip,
        &[],
    )
    .unwrap()
    .replace("check_unicast_src", "check_unicast_source");
    let refused = keepalived_accepts(&bad, "eth0").unwrap_err();
    assert!(
        refused.contains("Unknown keyword 'check_unicast_source'"),
        "{refused}"
    );
}

#[test]
fn an_interface_name_that_would_rewrite_the_config_is_refused() {
    let config = sample_config(Role::Master, "1.36.2");
    let cp = config.control_plane.as_ref().unwrap();
    let mut vip = cp.vip.clone().unwrap();
    vip.interface = "eth0\n}\nvrrp_instance x {".into();
    let e = super::config(cp, &vip, "master2", cp.masters[1].ip, &[]).unwrap_err();
    assert!(
        format!("{e:#}").contains("control_plane.vip.interface"),
        "{e:#}"
    );
}

#[test]
fn multicast_config_has_no_peers() {
    let config = sample_config(Role::Master, "1.36.2");
    let cp = config.control_plane.as_ref().unwrap();
    let mut vip = cp.vip.clone().unwrap();
    vip.unicast = false;
    let text = super::config(cp, &vip, "spare", "10.0.0.40".parse().unwrap(), &[]).unwrap();
    assert!(!text.contains("unicast"), "{text}");
    assert!(text.contains("    priority 100\n"), "{text}");
}
