//! The optional VIP on masters: keepalived's configuration for this node and
//! the API server health check it tracks, so the VIP sits on a master whose
//! API server answers and moves within seconds when it stops.

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::{ensure, Result};
use kiln_node::layout::{kube::KEEPALIVED_CHECK, AGENT_BINARY};
use kiln_node::net::{is_interface_name, INTERFACE_RULE};
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
) -> Result<String> {
    // The name goes unquoted into the file: the profile refuses a bad one,
    // and this keeps a hand-edited node.toml from rewriting the config.
    ensure!(
        is_interface_name(&vip.interface),
        "node.toml's control_plane.vip.interface {:?} is not a network interface name \
         ({INTERFACE_RULE}); rebuild the image with `kiln build`",
        vip.interface
    );
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
    Ok(text)
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
#[path = "keepalived_tests.rs"]
mod tests;
