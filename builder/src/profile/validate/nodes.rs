//! Checks of every listed node (etcd members, masters, workers) and the VIP:
//! names, DNS names, addresses inside the node subnets that a host may take
//! there, no duplicates.
//! A master's name, `<name>.<domain>` and dns_names become API server
//! certSANs, which kubeadm's ValidateCertSANs
//! (cmd/kubeadm/app/apis/kubeadm/validation/validation.go) holds to
//! IsDNS1123Subdomain (at most 253 characters), a `*.` wildcard or an IP;
//! kiln's DNS-name rule is that subdomain rule with 63-character labels.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{is_dns_label, is_dns_name, Checker, DNS_LABEL_RULE};
use crate::profile::model::{NodeSpec, Profile};
use crate::profile::types::Cidr;

pub fn check(profile: &Profile, check: &mut Checker<'_>) {
    let subnets = &profile.cluster.node_subnets;
    let masters = profile
        .control_plane
        .as_ref()
        .map_or(&[][..], |cp| &cp.masters);
    let nodes: Vec<(String, &NodeSpec)> = [
        ("etcd.members", &profile.etcd.members[..]),
        ("control_plane.masters", masters),
        ("workers.nodes", &profile.workers.nodes[..]),
    ]
    .into_iter()
    .flat_map(|(prefix, specs)| {
        specs
            .iter()
            .enumerate()
            .map(move |(i, node)| (format!("{prefix}[{i}]"), node))
    })
    .collect();

    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut addresses: HashMap<IpAddr, &str> = HashMap::new();
    for (field, node) in &nodes {
        check_name(field, node, &profile.cluster.domain, check);
        check_address(&format!("{field}.ip"), node.ip, subnets, check);
        if let Some(first) = names.insert(&node.name, field) {
            check.error(
                format!("{field}.name"),
                format!("node name {:?} is already used by {first}", node.name),
                "give every node its own name",
            );
            names.insert(&node.name, first);
        }
        if let Some(first) = addresses.insert(node.ip, field) {
            check.error(
                format!("{field}.ip"),
                format!("address {} is already used by {first}", node.ip),
                "give every node its own address",
            );
            addresses.insert(node.ip, first);
        }
    }
    let vip = profile
        .control_plane
        .as_ref()
        .and_then(|cp| cp.vip.as_ref());
    if let Some(vip) = vip {
        check_address("control_plane.vip.address", vip.address, subnets, check);
        if let Some(owner) = addresses.get(&vip.address) {
            check.error(
                "control_plane.vip.address",
                format!("VIP {} is also the address of {owner}", vip.address),
                "the VIP floats between masters: pick an unused address in a node subnet",
            );
        }
    }
}

fn check_name(field: &str, node: &NodeSpec, domain: &str, check: &mut Checker<'_>) {
    let cert_san = if field.starts_with("control_plane.masters") {
        ": it goes into the API server certificate, where kubeadm refuses it"
    } else {
        ""
    };
    if !is_dns_label(&node.name) {
        check.error(
            format!("{field}.name"),
            format!("node name {:?} is not a DNS label", node.name),
            format!("{DNS_LABEL_RULE}, like \"etcd1\"; put fully qualified names in dns_names"),
        );
    } else if is_dns_name(domain) {
        let fqdn = format!("{}.{domain}", node.name);
        if fqdn.len() > 253 {
            check.error(
                format!("{field}.name"),
                format!(
                    "{fqdn:?} has {} characters, more than a DNS name may (253){cert_san}",
                    fqdn.len()
                ),
                "shorten the node name or cluster.domain",
            );
        }
    }
    for (j, dns) in node.dns_names.iter().enumerate() {
        if !is_dns_name(dns) {
            check.error(
                format!("{field}.dns_names[{j}]"),
                format!("{dns:?} is not a valid DNS name (RFC 1123){cert_san}"),
                format!("write dot-separated labels, like \"etcd1.cluster.example\"; in each label {DNS_LABEL_RULE}"),
            );
        }
    }
}

/// The addresses kubelet's ValidateNodeIP (pkg/kubelet/kubelet_node_status.go)
/// refuses as a node IP are refused for every node and the VIP: unspecified,
/// loopback, multicast and link-local (Go's IsLinkLocalUnicast: 169.254.0.0/16,
/// fe80::/10, addresses no router forwards). An IPv4-mapped IPv6 address is
/// refused too: Go's net.ParseIP, which kubeadm, kubelet and etcd read
/// addresses with, turns it into the IPv4 address, so they would work with
/// another address than the one kiln checked and wrote.
fn check_address(field: &str, ip: IpAddr, subnets: &[Cidr], check: &mut Checker<'_>) {
    let example = if ip.is_ipv4() {
        "\"10.10.0.11\""
    } else {
        "\"fd00:10::11\""
    };
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if let Some(v4) = mapped_ipv4(ip) {
        check.error(
            field,
            format!(
                "{ip} is an IPv4-mapped IPv6 address, which kubeadm, kubelet and etcd read as {v4}"
            ),
            format!("write the IPv4 address, \"{v4}\""),
        );
    } else if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast {
        check.error(
            field,
            format!("{ip} cannot be a node address"),
            format!("use the unicast address the node has on its network, like {example}"),
        );
    } else if link_local {
        check.error(
            field,
            format!("{ip} is a link-local address: no router forwards it, and kubelet refuses it as a node IP"),
            format!("use the routable address the node has on its network, like {example}"),
        );
    } else if !subnets.is_empty() && !subnets.iter().any(|net| net.contains(ip)) {
        let nets: Vec<String> = subnets.iter().map(Cidr::to_string).collect();
        check.error(
            field,
            format!("{ip} is outside every node subnet ({})", nets.join(", ")),
            "fix the address, or add its network to cluster.node_subnets",
        );
    } else if let Some((message, hint)) = subnets.iter().find_map(|net| reserved_in(net, ip)) {
        check.error(field, message, hint);
    }
}

fn mapped_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    }
}

/// Why `ip` is not a host address of node subnet `net`, with the fix.
///
/// IPv4 (RFC 1122 3.2.1.3, RFC 3021): up to a /30 the highest address is the
/// subnet's broadcast (the kernel routes it as such, fib_add_ifaddr in
/// net/ipv4/fib_frontend.c) and the lowest is the network itself: Linux
/// takes it for a host's only since 5.14, and other hosts and routers on the
/// subnet may still broadcast to it. In a /31 both addresses are hosts', a
/// /32 is one.
/// IPv6 (RFC 4291 2.6.1): the lowest address is the subnet-router anycast,
/// which Linux answers on every interface that forwards (Kubernetes nodes
/// do), except on a /127 or /128 (RFC 6164; addrconf_join_anycast in
/// net/ipv6/addrconf.c).
fn reserved_in(net: &Cidr, ip: IpAddr) -> Option<(String, String)> {
    if !net.contains(ip) {
        return None;
    }
    let message = match (ip, net.broadcast()) {
        (IpAddr::V4(_), Some(broadcast)) if ip == broadcast => format!(
            "{ip} is the broadcast address of node subnet {net}: what is sent to it goes to every host there"
        ),
        (IpAddr::V4(_), Some(_)) if ip == net.network() => format!(
            "{ip} is the network address of node subnet {net}, not a host's: hosts and routers there may take it for a broadcast"
        ),
        (IpAddr::V6(_), _) if net.prefix <= 126 && ip == net.network() => format!(
            "{ip} is the subnet-router anycast address of node subnet {net}: every node that forwards packets, as Kubernetes nodes do, answers it"
        ),
        _ => return None,
    };
    let hint = match (net.network(), net.broadcast()) {
        (IpAddr::V4(first), Some(IpAddr::V4(last))) => format!(
            "use a host address of {net}, from {} to {}",
            Ipv4Addr::from(u32::from(first) + 1),
            Ipv4Addr::from(u32::from(last) - 1)
        ),
        (IpAddr::V6(first), _) => format!(
            "use another address of {net}, like {}",
            Ipv6Addr::from(u128::from(first) + 1)
        ),
        _ => format!("use another address of {net}"),
    };
    Some((message, hint))
}
