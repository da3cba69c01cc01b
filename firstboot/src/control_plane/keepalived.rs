//! The optional VIP on masters: keepalived's configuration for this node and
//! the API server health check it tracks, so the VIP sits on a master whose
//! API server answers and moves within seconds when it stops.

use std::fmt::Write as _;
use std::net::IpAddr;

use kiln_node::layout::{kube::KEEPALIVED_CHECK, AGENT_BINARY};
use kiln_node::node_config::{ControlPlaneSettings, Vip};

/// Priority of the first listed master; each next one gets 10 less.
const FIRST_PRIORITY: u32 = 150;
/// Masters the profile does not list (scale-out) rank below all listed ones.
const UNLISTED_PRIORITY: u32 = 100;
/// Seconds between health checks.
const CHECK_INTERVAL: u32 = 2;
/// Seconds a check may take before keepalived counts it failed: above the
/// check's own I/O timeout (3 s), so an API server slowed by a busy node
/// (joins, a membership change) still passes. kubeadm's HA guide
/// (kubernetes/kubeadm docs/ha-considerations.md) allows a slow check too.
const CHECK_TIMEOUT: u32 = 5;
/// Failures in a row before the VIP moves: three, so one slow answer never
/// moves the VIP to a master with no API server at all. A stopped API server
/// refuses at once, so it loses the VIP within about 6 s.
const CHECK_FALL: u32 = 3;
/// A failing check lowers the priority by this much: below every healthy
/// master (listed or not), yet the VIP still sits somewhere while no API
/// server runs at all, which `kubeadm init` needs to reach its own.
const CHECK_WEIGHT: i32 = -60;

/// VRRP priority by the node's place in `control_plane.masters`.
pub fn priority(masters_index: Option<usize>) -> u32 {
    masters_index
        .and_then(|i| u32::try_from(i).ok())
        .map_or(UNLISTED_PRIORITY, |i| {
            FIRST_PRIORITY
                .saturating_sub(10 * i)
                .max(UNLISTED_PRIORITY + 1)
        })
}

/// The unicast peers of the master at `ip`: the listed masters, then the
/// masters `learned` at run time ([`super::vip`]), never itself.
pub fn unicast_peers(cp: &ControlPlaneSettings, ip: IpAddr, learned: &[IpAddr]) -> Vec<IpAddr> {
    let mut peers: Vec<IpAddr> = cp.masters.iter().map(|m| m.ip).collect();
    for &peer in learned {
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    peers.retain(|&peer| peer != ip);
    peers
}

/// keepalived.conf for the master `name` at `ip`, with `peers` as its
/// unicast peers ([`unicast_peers`]).
///
/// Every node starts as BACKUP and the priorities decide; a master whose
/// API server fails the check drops below every healthy one, so the VIP
/// follows the API servers that answer.
pub fn config(
    cp: &ControlPlaneSettings,
    vip: &Vip,
    name: &str,
    ip: IpAddr,
    peers: &[IpAddr],
) -> String {
    let index = cp.masters.iter().position(|m| m.name == name || m.ip == ip);
    let mut text = format!(
        "# Written by kiln-firstboot for {name}; rebuilt from node.toml on first boot.\n\
         global_defs {{\n\
         \x20   router_id {name}\n\
         \x20   script_user root\n\
         \x20   enable_script_security\n\
         }}\n\
         \n\
         vrrp_script kiln_apiserver {{\n\
         \x20   script \"{KEEPALIVED_CHECK}\"\n\
         \x20   interval {CHECK_INTERVAL}\n\
         \x20   timeout {CHECK_TIMEOUT}\n\
         \x20   fall {CHECK_FALL}\n\
         \x20   rise 1\n\
         \x20   weight {CHECK_WEIGHT}\n\
         }}\n\
         \n\
         vrrp_instance kiln_api {{\n\
         \x20   state BACKUP\n\
         \x20   interface {interface}\n\
         \x20   virtual_router_id {vrid}\n\
         \x20   priority {priority}\n\
         \x20   advert_int 1\n",
        interface = vip.interface,
        vrid = vip.virtual_router_id,
        priority = priority(index),
    );
    if vip.unicast {
        // check_unicast_src (keepalived.conf(5), "VRRP instance(s)"): drop
        // adverts whose source is not one of the unicast peers. Without it
        // any host that reaches the interface could send an advert of a
        // higher priority and take the VIP.
        let _ = writeln!(text, "    unicast_src_ip {ip}");
        text.push_str("    check_unicast_src\n");
        text.push_str("    unicast_peer {\n");
        for peer in peers {
            let _ = writeln!(text, "        {peer}");
        }
        text.push_str("    }\n");
    }
    let _ = write!(
        text,
        "    virtual_ipaddress {{\n\
         \x20       {vip}/{host} dev {interface}\n\
         \x20   }}\n\
         \x20   track_script {{\n\
         \x20       kiln_apiserver\n\
         \x20   }}\n\
         }}\n",
        vip = vip.address,
        host = host_prefix(vip.address),
        interface = vip.interface,
    );
    text
}

/// The VIP as a single host: /32 for IPv4, /128 for IPv6. A wider prefix
/// would add an on-link route for a whole network with the VIP. An IPv6
/// VIP needs nothing else: keepalived takes an instance's family from its
/// VIPs and runs VRRP version 3 for IPv6 (keepalived.conf(5), "VRRP
/// instance(s)": `native_ipv6` is deprecated, `version`: "IPv6 instances
/// will always use version 3"); unicast_src_ip and the peers are the
/// masters' addresses, of the VIP's family (the profile's node checks).
fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The check keepalived runs: the agent itself does a TLS GET of /healthz
/// verified against the cluster CA (the image has no curl).
pub fn check_script() -> String {
    format!("#!/bin/sh\n# kiln: the local API server answers /healthz with ok.\nexec {AGENT_BINARY} check-apiserver\n")
}

#[cfg(test)]
mod tests {
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
        let text = super::config(cp, vip, "master2", ip, &peers);
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
        let text = super::config(cp, vip, "master2", ip, &unicast_peers(cp, ip, &[]));
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
        std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
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
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
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
            let text = super::config(cp, vip, "master2", ip, &unicast_peers(cp, ip, &[]));
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
        .replace("check_unicast_src", "check_unicast_source");
        let refused = keepalived_accepts(&bad, "eth0").unwrap_err();
        assert!(
            refused.contains("Unknown keyword 'check_unicast_source'"),
            "{refused}"
        );
    }

    #[test]
    fn multicast_config_has_no_peers() {
        let config = sample_config(Role::Master, "1.36.2");
        let cp = config.control_plane.as_ref().unwrap();
        let mut vip = cp.vip.clone().unwrap();
        vip.unicast = false;
        let text = super::config(cp, &vip, "spare", "10.0.0.40".parse().unwrap(), &[]);
        assert!(!text.contains("unicast"), "{text}");
        assert!(text.contains("    priority 100\n"), "{text}");
    }
}
