//! kubeadm's own validation rules, written from its documentation and source
//! (token and hash formats, version to API mapping, CIDRs, endpoint, names).

use std::net::IpAddr;

/// `[a-z0-9]{6}.[a-z0-9]{16}` (kubeadm's BootstrapTokenPattern).
pub fn is_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// `sha256:<64 lowercase or uppercase hex>`: the digest part, lowercased.
pub fn ca_hash_digest(pin: &str) -> Option<String> {
    let hex = pin.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A pinned release `v1.31.2` or `1.31.2` (labels like `stable-1.31` need the
/// internet, which kiln's nodes must not depend on).
pub fn release(version: &str) -> Option<(u32, u32, u32)> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

/// Which config API a kubeadm of `version` reads: v1beta4 appeared in 1.31;
/// v1beta3 stays readable until its removal in 1.37 (kind and kubeadm's
/// deprecation policy: three releases after v1beta4 went GA-beta in 1.31+).
pub fn api_for_version(api: &str, (major, minor, _): (u32, u32, u32)) -> Result<(), String> {
    match api {
        "kubeadm.k8s.io/v1beta4" if major == 1 && minor < 31 => Err(format!(
            "apiVersion {api} needs Kubernetes >= 1.31, kubernetesVersion is 1.{minor}: use kubeadm.k8s.io/v1beta3"
        )),
        "kubeadm.k8s.io/v1beta3" if major > 1 || minor >= 37 => Err(format!(
            "apiVersion {api} was removed in Kubernetes 1.37, kubernetesVersion is {major}.{minor}: use kubeadm.k8s.io/v1beta4"
        )),
        "kubeadm.k8s.io/v1beta3" | "kubeadm.k8s.io/v1beta4" => Ok(()),
        other => Err(format!("apiVersion {other} is not a kubeadm config API this kubeadm reads")),
    }
}

/// One CIDR: network address and prefix length.
pub fn cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
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
pub fn overlap(a: (IpAddr, u8), b: (IpAddr, u8)) -> bool {
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

/// `host:port` with a numeric port 1-65535 (IPv6 hosts in brackets).
pub fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?.to_owned(),
        None if host.contains(':') => return None,
        None => host.to_owned(),
    };
    (!host.is_empty()).then_some((host, port))
}

/// A lowercase RFC 1123 subdomain (Kubernetes node names).
pub fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Seconds of a Go duration such as `0s`, `24h0m0s`, `86400s` or `1h30m`.
pub fn go_duration_secs(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_hashes() {
        assert!(is_token("abcdef.0123456789abcdef"));
        assert!(!is_token("ABCDEF.0123456789abcdef"));
        assert!(!is_token("abcdef0123456789abcdef"));
        assert!(ca_hash_digest(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(ca_hash_digest(&format!("sha1:{}", "a".repeat(64))).is_none());
        assert!(ca_hash_digest("sha256:abc").is_none());
    }

    #[test]
    fn versions_pick_the_api() {
        let v = |s| release(s).unwrap();
        assert!(api_for_version("kubeadm.k8s.io/v1beta4", v("v1.31.0")).is_ok());
        assert!(api_for_version("kubeadm.k8s.io/v1beta4", v("1.30.5")).is_err());
        assert!(api_for_version("kubeadm.k8s.io/v1beta3", v("v1.30.5")).is_ok());
        assert!(api_for_version("kubeadm.k8s.io/v1beta3", v("v1.37.0")).is_err());
        assert!(release("stable-1.31").is_none());
    }

    #[test]
    fn cidrs_endpoints_names_durations() {
        let a = cidr("10.244.0.0/16").unwrap();
        assert!(overlap(a, cidr("10.244.3.0/24").unwrap()));
        assert!(!overlap(a, cidr("10.96.0.0/12").unwrap()));
        assert!(!overlap(a, cidr("fd00::/64").unwrap()));
        assert_eq!(host_port("10.0.0.1:6443"), Some(("10.0.0.1".into(), 6443)));
        assert_eq!(host_port("[fd00::1]:6443"), Some(("fd00::1".into(), 6443)));
        assert_eq!(host_port("api.example"), None);
        assert!(is_dns_subdomain("master-1.kiln.test"));
        assert!(!is_dns_subdomain("Master1"));
        assert_eq!(go_duration_secs("24h0m0s"), Some(86400));
        assert_eq!(go_duration_secs("0s"), Some(0));
        assert_eq!(go_duration_secs("1d"), None);
    }
}
