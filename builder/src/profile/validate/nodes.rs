//! Checks of every listed node (etcd members, masters, workers) and the VIP:
//! names, DNS names, addresses inside the node subnets, no duplicates.
//! A master's name, `<name>.<domain>` and dns_names become API server
//! certSANs, which kubeadm's ValidateCertSANs
//! (cmd/kubeadm/app/apis/kubeadm/validation/validation.go) holds to
//! IsDNS1123Subdomain (at most 253 characters), a `*.` wildcard or an IP;
//! kiln's DNS-name rule is that subdomain rule with 63-character labels.

use std::collections::HashMap;
use std::net::IpAddr;

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

fn check_address(field: &str, ip: IpAddr, subnets: &[Cidr], check: &mut Checker<'_>) {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast {
        check.error(
            field,
            format!("{ip} cannot be a node address"),
            "use the unicast address the node has on its network, like \"10.10.0.11\"",
        );
    } else if !subnets.is_empty() && !subnets.iter().any(|net| net.contains(ip)) {
        let nets: Vec<String> = subnets.iter().map(Cidr::to_string).collect();
        check.error(
            field,
            format!("{ip} is outside every node subnet ({})", nets.join(", ")),
            "fix the address, or add its network to cluster.node_subnets",
        );
    }
}
