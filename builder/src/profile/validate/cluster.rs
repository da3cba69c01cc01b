//! Checks of cluster-wide settings: names, version, subnets, the etcd
//! topology and ports, and the control-plane endpoint.

use std::net::IpAddr;

use kiln_firstboot::node_config::Topology;

use super::{is_dns_label, is_dns_name, Checker, DNS_LABEL_RULE};
use crate::profile::model::{ClusterSection, ControlPlaneSection, EtcdSection, Profile};

/// The oldest Kubernetes minor release kiln's kubeadm configs support.
const OLDEST_MINOR: u32 = 27;

pub fn check(profile: &Profile, check: &mut Checker<'_>) {
    check_cluster(&profile.cluster, check);
    check_etcd(profile, check);
    if let Some(cp) = &profile.control_plane {
        check_control_plane(cp, check);
    } else if !profile.workers.nodes.is_empty() {
        check.error(
            "workers.nodes",
            "workers are listed but there is no [control_plane] for them to join",
            "add [control_plane] with endpoint and masters, or remove the [[workers.nodes]] tables",
        );
    }
}

fn check_cluster(cluster: &ClusterSection, check: &mut Checker<'_>) {
    if !is_dns_label(&cluster.name) {
        check.error(
            "cluster.name",
            format!("cluster name {:?} is not a DNS label", cluster.name),
            format!("{DNS_LABEL_RULE}, like \"prod-eu1\""),
        );
    }
    if !is_dns_name(&cluster.domain) {
        check.error(
            "cluster.domain",
            format!("domain {:?} is not a valid DNS name (RFC 1123)", cluster.domain),
            format!("write dot-separated labels without a trailing dot, like \"cluster.example\"; in each label {DNS_LABEL_RULE}"),
        );
    }
    let version = cluster.kubernetes_version;
    if version.major != 1 || version.minor < OLDEST_MINOR {
        check.error(
            "cluster.kubernetes_version",
            format!(
                "Kubernetes {version} is not supported: kiln supports 1.{OLDEST_MINOR} and later"
            ),
            "set a supported release, like kubernetes_version = \"1.31.2\"",
        );
    }
    if cluster.node_subnets.is_empty() {
        check.error(
            "cluster.node_subnets",
            "no node subnets: every node address must be inside one",
            "list the networks of the nodes, like node_subnets = [\"10.10.0.0/24\"]",
        );
    }
    for (j, b) in cluster.node_subnets.iter().enumerate() {
        if let Some(i) = cluster.node_subnets[..j].iter().position(|a| a.overlaps(b)) {
            check.error(
                format!("cluster.node_subnets[{j}]"),
                format!(
                    "node subnet {b} overlaps node subnet {}",
                    cluster.node_subnets[i]
                ),
                "list each network once; drop the one contained in the other",
            );
        }
    }
    let separate = "pod, service and node subnets must not overlap: pick separate ranges";
    if cluster.pod_subnet.overlaps(&cluster.service_subnet) {
        check.error(
            "cluster.service_subnet",
            format!(
                "service subnet {} overlaps pod subnet {}",
                cluster.service_subnet, cluster.pod_subnet
            ),
            format!("{separate}, like pod_subnet = \"10.244.0.0/16\", service_subnet = \"10.96.0.0/12\""),
        );
    }
    for (field, net) in [
        ("cluster.pod_subnet", cluster.pod_subnet),
        ("cluster.service_subnet", cluster.service_subnet),
    ] {
        if let Some(node_net) = cluster.node_subnets.iter().find(|n| n.overlaps(&net)) {
            check.error(
                field,
                format!("{net} overlaps node subnet {node_net}"),
                format!(
                    "{separate}; set {} explicitly",
                    field.trim_start_matches("cluster.")
                ),
            );
        }
    }
}

fn check_etcd(profile: &Profile, check: &mut Checker<'_>) {
    let etcd: &EtcdSection = &profile.etcd;
    for (field, port) in [
        ("etcd.client_port", etcd.client_port),
        ("etcd.peer_port", etcd.peer_port),
    ] {
        if port == 0 {
            check.error(
                field,
                "port 0 is not a listening port",
                "use etcd's ports: client_port = 2379, peer_port = 2380",
            );
        }
    }
    if etcd.client_port == etcd.peer_port && etcd.client_port != 0 {
        let field = if check.is_written("etcd.peer_port") {
            "etcd.peer_port"
        } else {
            "etcd.client_port"
        };
        check.error(
            field,
            format!("peer_port and client_port are both {}", etcd.client_port),
            "etcd listens on two ports: use client_port = 2379, peer_port = 2380",
        );
    }
    if !etcd.data_dir.is_absolute() {
        check.error(
            "etcd.data_dir",
            format!(
                "data_dir {} is not an absolute path",
                etcd.data_dir.display()
            ),
            "write a path on the node, like data_dir = \"/var/lib/etcd\"",
        );
    }
    if etcd.discovery.is_empty() {
        check.error(
            "etcd.discovery",
            "no discovery source: a node could never find its peers",
            "write discovery = [\"static\"] (or [\"static\", \"dns-srv\"])",
        );
    }
    for (j, source) in etcd.discovery.iter().enumerate() {
        if etcd.discovery[..j].contains(source) {
            check.error(
                format!("etcd.discovery[{j}]"),
                "discovery source listed twice",
                "list each source once",
            );
        }
    }
    let (count, field) = match etcd.topology {
        Topology::External => {
            if etcd.members.is_empty() {
                check.error(
                    "etcd.members",
                    "external topology needs its initial etcd members",
                    "list them as [[etcd.members]] tables with name and ip, or set topology = \"stacked\" to run etcd on the masters",
                );
            }
            (etcd.members.len(), "etcd.members")
        }
        Topology::Stacked => {
            if !etcd.members.is_empty() {
                check.error(
                    "etcd.members[0]",
                    "stacked topology runs etcd on the masters, yet etcd.members are listed",
                    "remove the [[etcd.members]] tables (the masters are the members), or set topology = \"external\"",
                );
            }
            if profile.control_plane.is_none() {
                check.error(
                    "etcd.topology",
                    "stacked topology runs etcd on the masters, but there is no [control_plane]",
                    "add [control_plane] with its masters, or set topology = \"external\" and list [[etcd.members]]",
                );
            }
            let masters = profile
                .control_plane
                .as_ref()
                .map_or(0, |cp| cp.masters.len());
            (masters, "control_plane.masters")
        }
    };
    if count > 0 && count % 2 == 0 {
        check.warn(
            field,
            format!(
                "{count} etcd members tolerate {} failure(s), no more than {} would: quorum is {}",
                count - (count / 2 + 1),
                count - 1,
                count / 2 + 1
            ),
            "use an odd number of etcd members, like 3 or 5",
        );
    }
}

fn check_control_plane(cp: &ControlPlaneSection, check: &mut Checker<'_>) {
    if let Err(why) = check_endpoint(&cp.endpoint) {
        check.error(
            "control_plane.endpoint",
            format!("endpoint {:?} is not host:port: {why}", cp.endpoint),
            "write the API server address as clients reach it, like \"10.10.0.100:6443\" or \"api.cluster.example:6443\"",
        );
    }
    if cp.masters.is_empty() {
        check.error(
            "control_plane.masters",
            "a control plane needs at least one master",
            "list them as [[control_plane.masters]] tables with name and ip",
        );
    }
    if let Some(vip) = &cp.vip {
        let name = &vip.interface;
        if name.is_empty()
            || name.len() > 15
            || name.contains(|c: char| c == '/' || c.is_whitespace())
        {
            check.error(
                "control_plane.vip.interface",
                format!("{name:?} is not a network interface name"),
                "use the interface the VIP lives on, like interface = \"eth0\" (1-15 characters, no '/' or spaces)",
            );
        }
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let port = match endpoint.strip_prefix('[') {
        Some(rest) => {
            let (v6, port) = rest
                .split_once("]:")
                .ok_or("write an IPv6 host as [addr]:port")?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "the bracketed host is not an IPv6 address")?;
            port
        }
        None => {
            let (host, port) = endpoint.rsplit_once(':').ok_or("the port is missing")?;
            if host.is_empty() {
                return Err("the host is missing");
            }
            if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
                return Err("the host is neither an IP address nor a DNS name");
            }
            port
        }
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn endpoints_need_host_and_port() {
        for good in [
            "10.10.0.100:6443",
            "api.cluster.example:6443",
            "[fd00::1]:6443",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for bad in [
            "10.10.0.100",
            "10.10.0.100:0",
            "api:port",
            "bad host:6443",
            "[fd00::1]",
            ":6443",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
