//! Checks of cluster-wide settings: names, version, subnets, the etcd
//! topology, ports and data dir, and the control-plane endpoint. The subnet,
//! domain and endpoint rules are kubeadm's (each cites its source): a profile
//! that passes them gives the agent a config kubeadm accepts.

use std::net::IpAddr;
use std::path::Path;

use kiln_node::etcd::reports::{BEATS_PER_GRACE, MIN_REPLACE_DEAD_AFTER, SHORTEST_BEAT};
use kiln_node::layout::{kiln_owner, resolve_base_links};
use kiln_node::net::{is_interface_name, INTERFACE_RULE};
use kiln_node::node_config::{Topology, MAX_VIP_MASTERS};
use kiln_node::versions::Version;

use super::images::is_clean_absolute;
use super::{is_dns_label, is_dns_name, Checker, DNS_LABEL_RULE};
use crate::profile::model::{ClusterSection, ControlPlaneSection, EtcdSection, Profile};
use crate::profile::types::Cidr;
use crate::profile::versions;

/// kubeadm's limits on subnets, from cmd/kubeadm/app/constants/constants.go
/// (MinimumAddressesInServiceSubnet, MaximumBitsForServiceSubnet,
/// MinimumAddressesInPodSubnet, PodSubnetNodeMaskMaxDiff) and
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go
/// (defaultNodeMaskCIDRIPv4/IPv6: the agent sets no node-cidr-mask-size, so
/// kube-controller-manager cuts a /24 or /64 out of the pod subnet per node).
const MIN_SERVICE_ADDRESSES: u128 = 10;
const MAX_SERVICE_HOST_BITS: u8 = 20;
const MIN_POD_ADDRESSES: u128 = 14;
const POD_NODE_MASK_MAX_DIFF: u8 = 16;
const NODE_MASK_V4: u8 = 24;
const NODE_MASK_V6: u8 = 64;

pub fn check(profile: &Profile, check: &mut Checker<'_>) {
    check_cluster(&profile.cluster, check);
    check_address_families(profile, check);
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
    // The domain ends up in the API server certificate as every master's
    // `<name>.<domain>` (apiServer.certSANs), which kubeadm's ValidateCertSANs
    // (cmd/kubeadm/app/apis/kubeadm/validation/validation.go) holds to
    // IsDNS1123Subdomain: lowercase labels, at most 253 characters. (kiln
    // leaves kubeadm's own service dnsDomain at cluster.local.)
    if !is_dns_name(&cluster.domain) {
        check.error(
            "cluster.domain",
            format!(
                "domain {:?} is not a valid DNS name (RFC 1123): kubeadm refuses <node>.{} in the API server certificate",
                cluster.domain, cluster.domain
            ),
            format!("write dot-separated labels without a trailing dot, like \"cluster.example\"; in each label {DNS_LABEL_RULE}"),
        );
    }
    check_version(cluster.kubernetes_version, check);
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
    check_service_subnet(cluster.service_subnet, check);
    check_pod_subnet(cluster.pod_subnet, check);
}

/// "IPv4" or "IPv6".
fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// kiln builds single-stack clusters: one pod subnet, one service subnet,
/// one node-ip per node (the agent's kubeadm config and kubelet flags).
/// kubeadm reads dual-stack only as two CIDRs of different families within
/// podSubnet or serviceSubnet, and checks each field alone
/// (ValidateIPNetFromString in
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go); a pod subnet of
/// one family beside a service subnet or node addresses of the other passes
/// kubeadm and leaves a cluster whose API server (advertised on the node
/// address, served on the service subnet's first address), kube-proxy and
/// pod network disagree. So both subnets must be of the masters' family:
/// an IPv6 cluster must set them, the defaults are IPv4.
fn check_address_families(profile: &Profile, check: &mut Checker<'_>) {
    let cluster = &profile.cluster;
    let master = (profile.control_plane.as_ref()).and_then(|cp| cp.masters.first());
    let reference = master.map_or(cluster.pod_subnet.addr, |m| m.ip);
    let ipv6 = reference.is_ipv6();
    let hint = format!(
        "set both subnets to {} ranges in [cluster], like {}",
        family(reference),
        if ipv6 {
            "pod_subnet = \"fd00:10:244::/56\" and service_subnet = \"fd00:10:96::/108\""
        } else {
            "pod_subnet = \"10.244.0.0/16\" and service_subnet = \"10.96.0.0/12\""
        }
    );
    let single_stack =
        "kiln builds single-stack clusters, not dual-stack: nodes, pods and services \
                        share one address family";
    for (field, what, net) in [
        ("cluster.pod_subnet", "pod", cluster.pod_subnet),
        ("cluster.service_subnet", "service", cluster.service_subnet),
    ] {
        if net.addr.is_ipv6() == ipv6 {
            continue;
        }
        let default = if check.is_written(field) {
            ""
        } else {
            " (the default)"
        };
        let message = match master {
            Some(m) => format!(
                "{what} subnet {net}{default} is {}, but control_plane.masters[0].ip {} is {}: \
                 {single_stack}",
                family(net.addr),
                m.ip,
                family(m.ip)
            ),
            None => format!(
                "{what} subnet {net} is {} and pod subnet {} is {}: {single_stack}",
                family(net.addr),
                cluster.pod_subnet,
                family(cluster.pod_subnet.addr)
            ),
        };
        check.error(field, message, hint.clone());
    }
    // The other Kubernetes nodes too: one node-ip family for every kubelet.
    if let Some(m) = master {
        let masters = (profile.control_plane.iter()).flat_map(|cp| cp.masters.iter().enumerate());
        let masters = masters
            .skip(1)
            .map(|(i, n)| (format!("control_plane.masters[{i}].ip"), n));
        let workers = profile.workers.nodes.iter().enumerate();
        let workers = workers.map(|(i, n)| (format!("workers.nodes[{i}].ip"), n));
        for (field, node) in masters.chain(workers) {
            if node.ip.is_ipv6() != ipv6 {
                check.error(
                    field,
                    format!(
                        "{} ({}) is {}, but control_plane.masters[0].ip {} is {}: {single_stack}",
                        node.ip,
                        node.name,
                        family(node.ip),
                        m.ip,
                        family(m.ip)
                    ),
                    format!("give every master and worker an {} address", family(m.ip)),
                );
            }
        }
    }
    // keepalived takes a VRRP instance's family from its VIP, and refuses a
    // unicast_src_ip or unicast_peer of the other family
    // (keepalived.conf(5), "VRRP instance(s)"): the VIP must be of the
    // masters' family. (An IPv4-mapped VIP is refused as such, in nodes.rs.)
    let vip = (profile.control_plane.as_ref()).and_then(|cp| cp.vip.as_ref());
    if let (Some(m), Some(vip)) = (master, vip) {
        if vip.address.to_canonical().is_ipv6() != m.ip.is_ipv6() {
            check.error(
                "control_plane.vip.address",
                format!(
                    "VIP {} is {}, but control_plane.masters[0].ip {} is {}: {single_stack}, \
                     and keepalived runs VRRP in the VIP's family",
                    vip.address,
                    family(vip.address),
                    m.ip,
                    family(m.ip)
                ),
                format!(
                    "pick a VIP of the masters' family ({}) in a node subnet",
                    family(m.ip)
                ),
            );
        }
    }
}

/// The version table decides: a supported minor passes, an older known one
/// builds with a warning naming its end of support, anything else is an error.
fn check_version(version: Version, check: &mut Checker<'_>) {
    let supported = versions::supported_list("and");
    let example = "kubernetes_version = \"1.36.2\"";
    match versions::minor(version) {
        None => {
            let known = versions::known();
            let (first, last) = (known[0].minor, known[known.len() - 1].minor);
            check.error(
                "cluster.kubernetes_version",
                format!(
                    "Kubernetes {version} is not a release kiln knows: kiln builds 1.{first} to 1.{last} and supports {supported}"
                ),
                format!("set a supported release, like {example}"),
            );
        }
        Some(minor) if !minor.supported => {
            let estimated = if minor.estimated { " (estimated)" } else { "" };
            check.warn(
                "cluster.kubernetes_version",
                format!(
                    "Kubernetes 1.{} reached its end of support on {}{estimated}: it gets no more security fixes",
                    minor.minor, minor.end_of_support
                ),
                format!(
                    "upgrade to a supported release ({}), like {example}",
                    versions::supported_list("or")
                ),
            );
        }
        Some(_) => {}
    }
}

/// Addresses in `net`, as netutils.RangeSize (k8s.io/utils/net) counts them:
/// 0 for an IPv4 /0 or /1 and an IPv6 /0 or /1, which it cannot hold.
fn range_size(net: Cidr) -> u128 {
    let width: u8 = if net.addr.is_ipv4() { 32 } else { 128 };
    let host_bits = width - net.prefix;
    if host_bits >= width - 1 {
        0
    } else {
        1u128 << host_bits
    }
}

/// kubeadm's ValidateIPNetFromString (at least 10 addresses: the DNS service
/// is the tenth) and ValidateServiceSubnetSize (at most 20 host bits),
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go.
fn check_service_subnet(net: Cidr, check: &mut Checker<'_>) {
    let width: u8 = if net.addr.is_ipv4() { 32 } else { 128 };
    let narrowest = width - 4; // 16 addresses, the first size with 10
    let widest = width - MAX_SERVICE_HOST_BITS;
    let hint = format!(
        "use a service subnet from /{widest} to /{narrowest}, like service_subnet = \"{}\"",
        if net.addr.is_ipv4() {
            "10.96.0.0/12"
        } else {
            "fd00:10:96::/108"
        }
    );
    let size = range_size(net);
    if size < MIN_SERVICE_ADDRESSES {
        check.error(
            "cluster.service_subnet",
            format!(
                "service subnet {net} has {size} addresses: kubeadm needs at least {MIN_SERVICE_ADDRESSES} (the cluster DNS service takes the tenth)"
            ),
            hint,
        );
    } else if width - net.prefix > MAX_SERVICE_HOST_BITS {
        check.error(
            "cluster.service_subnet",
            format!(
                "service subnet {net} is too large: kubeadm allows at most {MAX_SERVICE_HOST_BITS} host bits, a /{widest} for {width}-bit addresses"
            ),
            hint,
        );
    }
}

/// kubeadm's ValidateIPNetFromString (at least 14 addresses) and
/// ValidatePodSubnetNodeMask (no smaller than one node's range, at most 16
/// bits wider), cmd/kubeadm/app/apis/kubeadm/validation/validation.go.
fn check_pod_subnet(net: Cidr, check: &mut Checker<'_>) {
    let node_mask = if net.addr.is_ipv4() {
        NODE_MASK_V4
    } else {
        NODE_MASK_V6
    };
    let widest = node_mask - POD_NODE_MASK_MAX_DIFF;
    let hint = format!(
        "use a pod subnet from /{widest} to /{node_mask}, like pod_subnet = \"{}\"",
        if net.addr.is_ipv4() {
            "10.244.0.0/16"
        } else {
            "fd00:10:244::/56"
        }
    );
    let size = range_size(net);
    let message = if size < MIN_POD_ADDRESSES {
        format!("pod subnet {net} has {size} addresses: kubeadm needs at least {MIN_POD_ADDRESSES}")
    } else if net.prefix > node_mask {
        format!(
            "pod subnet {net} is smaller than the /{node_mask} that kube-controller-manager gives each node: kubeadm refuses it"
        )
    } else if node_mask - net.prefix > POD_NODE_MASK_MAX_DIFF {
        format!(
            "pod subnet {net} is too large: kubeadm allows at most {POD_NODE_MASK_MAX_DIFF} bits between it and each node's /{node_mask}, a /{widest}"
        )
    } else {
        return;
    };
    check.error("cluster.pod_subnet", message, hint);
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
    check_data_dir(&etcd.data_dir, check);
    if etcd.discovery.is_empty() {
        check.error(
            "etcd.discovery",
            "no discovery source: a node could never find its peers",
            "write discovery = [\"static\"] (or [\"static\", \"dns-srv\"])",
        );
    }
    check.no_repeats(
        "etcd.discovery",
        &etcd.discovery,
        "discovery source listed twice",
        "list each source once",
    );
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
    let (count, field) = match etcd.size {
        Some(size) => {
            if size == 0 {
                check.error(
                    "etcd.size",
                    "etcd.size = 0 keeps no etcd member",
                    "set it to the number of voting members to keep, like 3 or 5, or leave it out to keep as many as are listed",
                );
            }
            (size, "etcd.size")
        }
        None => (count, field),
    };
    if etcd.replace_dead_after.as_duration() < MIN_REPLACE_DEAD_AFTER {
        check.error(
            "etcd.replace_dead_after",
            format!(
                "{} is too short to tell a dead member from a slow one: the members' watchers look {BEATS_PER_GRACE} times per period, at least {} s apart",
                etcd.replace_dead_after,
                SHORTEST_BEAT.as_secs()
            ),
            format!(
                "write at least \"{}s\"; the default is \"2m\"",
                MIN_REPLACE_DEAD_AFTER.as_secs()
            ),
        );
    }
    if let Some(endpoint) = &etcd.endpoint {
        check_etcd_endpoint(endpoint, etcd.topology, check);
    }
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

/// `etcd.endpoint`: `host:port` like the API server's endpoint, and only
/// where kiln issues the members' certificates (which must name its host).
fn check_etcd_endpoint(endpoint: &str, topology: Topology, check: &mut Checker<'_>) {
    if let Err(why) = check_endpoint(endpoint) {
        check.error(
            "etcd.endpoint",
            format!("endpoint {endpoint:?} is not host:port: {why}"),
            "write the load balancer or DNS name in front of the etcd members as host:port, like \"etcd.cluster.example:2379\" or \"10.10.0.50:2379\", or leave it out",
        );
    }
    if topology == Topology::Stacked {
        check.error(
            "etcd.endpoint",
            "with topology = \"stacked\" the etcd members are the masters, whose etcd certificates kubeadm issues without the endpoint's name",
            "leave etcd.endpoint out (masters find each other through the control plane's endpoint), or use topology = \"external\" with [[etcd.members]]",
        );
    }
}

/// Folders under /var that belong to the system, not to etcd.
const SYSTEM_FOLDERS: [&str; 8] = [
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/var/cache",
    "/var/run",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/systemd",
];

/// The agent creates data_dir and chowns it to the etcd user (and moves a
/// stale one aside), so data_dir must be a folder of etcd's own: clean,
/// below /var, not a system folder nor kiln's state. `data_dir = "/etc"`
/// would hand /etc to etcd.
fn check_data_dir(data_dir: &Path, check: &mut Checker<'_>) {
    let path = data_dir.to_string_lossy();
    let below = |folder: &str| {
        path.strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    let chown = "the agent chowns data_dir to the etcd user";
    let own_folder = "use a folder of etcd's own under /var, like data_dir = \"/var/lib/etcd\"";
    let (message, hint) = if !data_dir.is_absolute() {
        (
            format!("data_dir {path:?} is not an absolute path"),
            own_folder,
        )
    } else if !is_clean_absolute(&path) && path != "/" {
        (
            format!("data_dir {path:?} is not a clean absolute path"),
            "write it without '.', '..', '//' or a trailing '/', like data_dir = \"/var/lib/etcd\"",
        )
    } else if path == "/var" {
        (
            format!("data_dir is /var itself: {chown}, which would hand all of /var to etcd"),
            own_folder,
        )
    } else if !below("/var") {
        (
            format!("data_dir {path} is not below /var: {chown}, which would hand {path} to etcd"),
            own_folder,
        )
    } else if SYSTEM_FOLDERS.contains(&path.as_ref()) {
        (
            format!("data_dir {path} is a system folder: {chown}, which would hand {path} to etcd"),
            own_folder,
        )
    } else if let Some(owner) = kiln_owner(&path) {
        (
            if path == owner {
                format!("data_dir {path} is kiln's state folder: {chown}, which would hand kiln's state to etcd")
            } else {
                format!("data_dir {path} is inside kiln's state folder {owner}: {chown}, which would hand kiln's state to etcd")
            },
            own_folder,
        )
    } else if let (_, Some((link, _))) = resolve_base_links(&path) {
        // Below /var only /var/run and /var/lock are links, both into /run.
        (
            format!("data_dir {path} is under {link}, a link into /run: a tmpfs emptied at every boot, so etcd would lose its data"),
            own_folder,
        )
    } else {
        return;
    };
    check.error("etcd.data_dir", message, hint);
}

fn check_control_plane(cp: &ControlPlaneSection, check: &mut Checker<'_>) {
    if let Err(why) = check_endpoint(&cp.endpoint) {
        check.error(
            "control_plane.endpoint",
            format!("endpoint {:?} is not host:port: {why}", cp.endpoint),
            "write the API server address as clients reach it, like \"10.10.0.100:6443\", \"[fd00::100]:6443\" or \"api.cluster.example:6443\"",
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
        if cp.masters.len() > MAX_VIP_MASTERS {
            check.error(
                "control_plane.masters",
                format!(
                    "{} masters are listed, but a VIP is shared by at most {MAX_VIP_MASTERS}",
                    cp.masters.len()
                ),
                format!("list at most {MAX_VIP_MASTERS} masters, or put a load balancer in front of them instead of control_plane.vip"),
            );
        }
        let name = &vip.interface;
        if !is_interface_name(name) {
            check.error(
                "control_plane.vip.interface",
                format!("{name:?} is not a network interface name"),
                format!("use the interface the VIP lives on, like interface = \"eth0\" ({INTERFACE_RULE})"),
            );
        }
    }
}

/// `host:port` as clients and kubeadm's ParseHostPort
/// (cmd/kubeadm/app/util/endpoint.go) read it: the host an IP address or a
/// lowercase DNS name (IsDNS1123Subdomain), an IPv6 host in brackets. kubeadm
/// takes an unbracketed `fd00::1:6443` as the address fd00::1:6443 with no
/// port (net.SplitHostPort fails, the whole value parses as an IP), so it is
/// refused here rather than silently pointing every node elsewhere. kiln
/// also requires the port that kubeadm would default to its bind port.
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
            if endpoint.matches(':').count() > 1 {
                return Err("an IPv6 host must be in brackets: kubeadm would read the whole value as an address without a port");
            }
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
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(p) if p > 0 && digits => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_endpoint, range_size};
    use crate::profile::types::Cidr;

    #[test]
    fn endpoints_need_host_and_port() {
        for good in [
            "10.10.0.100:6443",
            "api.cluster.example:6443",
            "[fd00::1]:6443",
            "10.10.0.100:65535",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for bad in [
            "10.10.0.100",
            "10.10.0.100:0",
            "10.10.0.100:65536",
            "10.10.0.100:+443",
            "api:port",
            "bad host:6443",
            "API.example:6443",
            "[fd00::1]",
            ":6443",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        let v6 = check_endpoint("fd00::1:6443").unwrap_err();
        assert!(v6.contains("brackets"), "{v6}");
    }

    #[test]
    fn range_sizes_follow_netutils() {
        let size = |s: &str| range_size(s.parse::<Cidr>().unwrap());
        assert_eq!(size("10.96.0.0/28"), 16);
        assert_eq!(size("10.96.0.0/29"), 8);
        assert_eq!(size("10.0.0.0/8"), 1 << 24);
        assert_eq!(size("0.0.0.0/1"), 0);
        assert_eq!(size("0.0.0.0/0"), 0);
        assert_eq!(size("fd00::/64"), 1 << 64);
        assert_eq!(size("::/1"), 0);
        assert_eq!(size("c000::/2"), 1 << 126);
    }
}
