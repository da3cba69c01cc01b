//! kubeadm's networking rules, from its source: subnets and their sizes,
//! `host:port` endpoints, DNS names and certificate SANs. Unless noted, the
//! rules are in cmd/kubeadm/app/apis/kubeadm/validation/validation.go, the
//! limits in cmd/kubeadm/app/constants/constants.go.

use std::net::{IpAddr, Ipv4Addr};

/// A CIDR: network address and prefix length.
pub type Cidr = (IpAddr, u8);

/// MinimumAddressesInServiceSubnet: the DNS service is the tenth address.
pub const MIN_SERVICE_ADDRESSES: u128 = 10;
/// MaximumBitsForServiceSubnet: /12 for IPv4, /108 for IPv6.
pub const MAX_SERVICE_HOST_BITS: u8 = 20;
/// MinimumAddressesInPodSubnet.
pub const MIN_POD_ADDRESSES: u128 = 14;
/// PodSubnetNodeMaskMaxDiff.
const POD_NODE_MASK_MAX_DIFF: u8 = 16;

/// One CIDR as netutils.ParseCIDRSloppy reads it (host bits may be set).
pub fn cidr(text: &str) -> Option<Cidr> {
    let (addr, len) = text.split_once('/')?;
    let addr = ip_sloppy(addr)?;
    let len: u8 = (!len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
        .then(|| len.parse().ok())
        .flatten()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Whether two CIDRs of the same family share an address.
pub fn overlap(a: Cidr, b: Cidr) -> bool {
    if a.0.is_ipv4() != b.0.is_ipv4() {
        return false;
    }
    // bits() puts IPv4 in the top 32 bits, so prefix lengths apply as they are.
    let len = u32::from(a.1.min(b.1));
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    bits(a.0) & mask == bits(b.0) & mask
}

/// netutils.RangeSize (k8s.io/utils/net): 0 for an IPv4 /0 or /1 and an IPv6
/// /0 or /1, int64's maximum from 63 host bits on.
pub fn range_size((addr, ones): Cidr) -> u128 {
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let host = width - ones;
    if host >= width - 1 {
        0
    } else if host >= 63 {
        i64::MAX as u128
    } else {
        1 << host
    }
}

/// ValidateIPNetFromString: one CIDR, or two of different families
/// (dual-stack), each with at least `min_addresses` addresses.
pub fn subnets(text: &str, min_addresses: u128) -> Result<Vec<Cidr>, String> {
    let cidrs = text
        .split(',')
        .map(cidr)
        .collect::<Option<Vec<Cidr>>>()
        .ok_or_else(|| format!("couldn't parse subnet {text:?}"))?;
    let dual = cidrs.len() == 2 && cidrs[0].0.is_ipv4() != cidrs[1].0.is_ipv4();
    if cidrs.len() != 1 && !dual {
        return Err("expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking".into());
    }
    for c in &cidrs {
        let size = range_size(*c);
        if size < min_addresses {
            return Err(format!(
                "subnet {}/{} with {size} address(es) is too small, the minimum is {min_addresses}",
                c.0, c.1
            ));
        }
    }
    Ok(cidrs)
}

/// ValidateServiceSubnetSize: at most 20 host bits.
pub fn service_subnet_size(cidrs: &[Cidr]) -> Result<(), String> {
    for (addr, ones) in cidrs {
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        if width - ones > MAX_SERVICE_HOST_BITS {
            return Err(format!(
                "specified service subnet {addr}/{ones} is too large; for {width}-bit addresses, the mask must be >= {}",
                width - MAX_SERVICE_HOST_BITS
            ));
        }
    }
    Ok(())
}

/// ValidatePodSubnetNodeMask, skipped when kube-controller-manager's
/// `allocate-node-cidrs` is "false": every pod CIDR must hold at least one
/// node's range (`node-cidr-mask-size-ipv4`/`-ipv6`, default /24 and /64,
/// getClusterNodeMask) and be at most 16 bits wider than it.
/// `arg` is the value of a kube-controller-manager extra argument.
pub fn pod_subnet_node_mask(
    cidrs: &[Cidr],
    arg: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    if arg("allocate-node-cidrs").as_deref() == Some("false") {
        return Ok(());
    }
    for (addr, pod_mask) in cidrs {
        let (flag, default) = if addr.is_ipv4() {
            ("node-cidr-mask-size-ipv4", 24)
        } else {
            ("node-cidr-mask-size-ipv6", 64)
        };
        let node_mask: i64 = match arg(flag) {
            None => default,
            Some(v) => v.parse().map_err(|_| {
                format!("could not parse the value of the kube-controller-manager flag {flag} as an integer")
            })?,
        };
        let pod_mask = i64::from(*pod_mask);
        if pod_mask > node_mask {
            return Err(format!(
                "the size of pod subnet with mask {pod_mask} is smaller than the size of node subnet with mask {node_mask}"
            ));
        }
        if node_mask - pod_mask > i64::from(POD_NODE_MASK_MAX_DIFF) {
            return Err(format!(
                "pod subnet mask ({pod_mask}) and node-mask ({node_mask}) difference is greater than {POD_NODE_MASK_MAX_DIFF}"
            ));
        }
    }
    Ok(())
}

/// Go's net.SplitHostPort: `host:port` or `[host]:port`; the port unparsed.
pub fn split_host_port(text: &str) -> Option<(String, String)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return (!port.contains([':', '[', ']'])).then(|| (host.to_owned(), port.to_owned()));
    }
    let (host, port) = text.rsplit_once(':')?;
    (!host.contains([':', '[', ']'])).then(|| (host.to_owned(), port.to_owned()))
}

/// `host:port` with a numeric port 1-65535 and a host (discovery's
/// apiServerEndpoint: net.SplitHostPort in ValidateDiscovery, and the
/// stand-in dials it).
pub fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = split_host_port(endpoint)?;
    let port: u16 = port
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse().ok())
        .flatten()
        .filter(|p| *p > 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// kubeadm's ParseHostPort (cmd/kubeadm/app/util/endpoint.go), which
/// ValidateHostPort applies to controlPlaneEndpoint: when net.SplitHostPort
/// fails the whole value is the host, so `fd00::1:6443` is the IPv6 address
/// fd00::1:6443 with no port. The port, if any, is strconv.Atoi in 1-65535;
/// the host an IP or a DNS-1123 subdomain.
pub fn parse_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = split_host_port(text).unwrap_or_else(|| (text.to_owned(), String::new()));
    let port = match port.as_str() {
        "" => None,
        p => match p.parse::<i64>() {
            Ok(n @ 1..=65535) => Some(n as u16),
            _ => {
                return Err(format!(
                "hostport {text}: port {p} must be a valid number between 1 and 65535, inclusive"
            ))
            }
        },
    };
    if ip_sloppy(&host).is_some() || is_dns_subdomain(&host) {
        return Ok((host, port));
    }
    Err(format!(
        "hostport {text}: host '{host}' must be a valid IP address or a valid RFC-1123 DNS subdomain"
    ))
}

/// netutils.ParseIPSloppy: Go's pre-1.17 net.ParseIP, which also takes
/// IPv4 parts with leading zeros (as decimal).
pub fn ip_sloppy(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let parts: Vec<&str> = text.split('.').collect();
    let octet = |p: &&str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 4 || !parts.iter().all(octet) {
        return None;
    }
    let o: Vec<u8> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    Some(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])))
}

/// validation.IsDNS1123Subdomain (k8s.io/apimachinery/pkg/util/validation):
/// at most 253 characters matching
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
/// (no limit per label: that is IsDNS1123Label's).
pub fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|&c| alnum(c) || c == b'-')
            && alnum(b[0])
            && alnum(b[b.len() - 1])
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// validation.IsWildcardDNS1123Subdomain: `*.` then a DNS-1123 subdomain,
/// at most 253 characters in all.
pub fn is_wildcard_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.strip_prefix("*.").is_some_and(is_dns_subdomain)
}

/// ValidateCertSANs: each SAN an IP, a DNS-1123 subdomain or a wildcard one.
pub fn is_cert_san(san: &str) -> bool {
    is_dns_subdomain(san) || is_wildcard_subdomain(san) || ip_sloppy(san).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        cidr(s).unwrap()
    }

    #[test]
    fn cidrs_and_overlaps() {
        let a = c("10.244.0.0/16");
        assert!(overlap(a, c("10.244.3.0/24")));
        assert!(!overlap(a, c("10.96.0.0/12")));
        assert!(!overlap(a, c("fd00::/64")));
        assert!(cidr("10.0.0.0/33").is_none());
        assert!(cidr("10.0.0.0/+8").is_none());
    }

    #[test]
    fn service_subnets_at_both_ends() {
        let min = MIN_SERVICE_ADDRESSES;
        assert!(subnets("10.96.0.0/28", min).is_ok());
        let small = subnets("10.96.0.0/29", min).unwrap_err();
        assert!(
            small.contains("8 address(es) is too small, the minimum is 10"),
            "{small}"
        );
        assert!(service_subnet_size(&[c("10.96.0.0/12")]).is_ok());
        let wide = service_subnet_size(&[c("10.0.0.0/11")]).unwrap_err();
        assert!(wide.contains("the mask must be >= 12"), "{wide}");
        assert!(service_subnet_size(&[c("fd00::/108")]).is_ok());
        let wide6 = service_subnet_size(&[c("fd00::/64")]).unwrap_err();
        assert!(
            wide6.contains("for 128-bit addresses, the mask must be >= 108"),
            "{wide6}"
        );
        assert!(
            subnets("10.96.0.0/12,fd00::/108", min).is_ok(),
            "dual-stack"
        );
        assert!(subnets("10.96.0.0/12,10.200.0.0/16", min).is_err());
        assert!(
            subnets("10.96.0.0/12, fd00::/108", min).is_err(),
            "Go does not trim"
        );
        assert!(subnets("0.0.0.0/1", min).is_err(), "RangeSize gives 0");
    }

    #[test]
    fn pod_subnets_at_both_ends() {
        let none = |_: &str| None;
        let ok = |s: &str| pod_subnet_node_mask(&[c(s)], &none);
        assert!(ok("10.244.0.0/24").is_ok());
        assert!(ok("10.0.0.0/8").is_ok());
        assert!(ok("10.244.0.0/25")
            .unwrap_err()
            .contains("smaller than the size of node subnet with mask 24"));
        assert!(ok("8.0.0.0/7")
            .unwrap_err()
            .contains("difference is greater than 16"));
        assert!(ok("fd00::/48").is_ok());
        assert!(ok("fd00::/47").is_err());
        assert!(ok("fd00::/65").is_err());
        assert!(subnets("10.244.0.0/28", MIN_POD_ADDRESSES).is_ok());
        assert!(subnets("10.244.0.0/29", MIN_POD_ADDRESSES).is_err());
        let args = |name: &str| match name {
            "node-cidr-mask-size-ipv4" => Some("26".to_owned()),
            _ => None,
        };
        assert!(pod_subnet_node_mask(&[c("10.244.0.0/25")], &args).is_ok());
        let off = |name: &str| (name == "allocate-node-cidrs").then(|| "false".to_owned());
        assert!(pod_subnet_node_mask(&[c("10.244.0.0/29")], &off).is_ok());
        let junk = |name: &str| (name == "node-cidr-mask-size-ipv4").then(|| "x".to_owned());
        assert!(pod_subnet_node_mask(&[c("10.244.0.0/16")], &junk)
            .unwrap_err()
            .contains("as an integer"));
    }

    #[test]
    fn endpoints_like_parse_host_port() {
        let p = |s| parse_host_port(s);
        assert_eq!(p("10.0.0.1:6443"), Ok(("10.0.0.1".into(), Some(6443))));
        assert_eq!(p("[fd00::1]:6443"), Ok(("fd00::1".into(), Some(6443))));
        assert_eq!(p("api.kiln.test"), Ok(("api.kiln.test".into(), None)));
        // The trap kiln must avoid: kubeadm reads this as an address, no port.
        assert_eq!(p("fd00::1:6443"), Ok(("fd00::1:6443".into(), None)));
        assert!(p("10.0.0.1:0").is_err());
        assert!(p("10.0.0.1:65536").is_err());
        assert!(p("Api.kiln.test:6443").is_err());
        assert!(p("api_1.kiln.test:6443").is_err());
        assert!(p("[fd00::1]").is_err());
        assert_eq!(host_port("10.0.0.1:6443"), Some(("10.0.0.1".into(), 6443)));
        assert_eq!(host_port("[fd00::1]:6443"), Some(("fd00::1".into(), 6443)));
        assert_eq!(host_port("fd00::1:6443"), None);
        assert_eq!(host_port("api.example"), None);
    }

    #[test]
    fn names_and_sans() {
        assert!(is_dns_subdomain("master-1.kiln.test"));
        assert!(
            is_dns_subdomain(&"a".repeat(70)),
            "labels have no limit here"
        );
        assert!(is_dns_subdomain(&["a"; 127].join(".")));
        assert!(!is_dns_subdomain(&["a"; 128].join(".")), "255 characters");
        for bad in ["Master1", "", "a..b", "-a", "a-", "a_b", "cluster.local."] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        for good in [
            "10.0.0.1",
            "fd00::1",
            "*.kiln.test",
            "kiln.test",
            "010.000.000.001",
        ] {
            assert!(is_cert_san(good), "{good}");
        }
        for bad in [
            "*",
            "*.*.kiln.test",
            "f*.kiln.test",
            "api_1.kiln.test",
            "[fd00::1]",
        ] {
            assert!(!is_cert_san(bad), "{bad}");
        }
    }
}
