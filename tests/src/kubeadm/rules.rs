//! kubeadm's own rules that are not about networks (networking.rs has
//! those): token and hash formats, which config API and external etcd a
//! kubeadm of each minor accepts, encryption algorithms and Go durations.
//! Each is written from kubeadm's source (cited per item), never from kiln's
//! code: the stand-in must catch kiln's mistakes, not share them.

use std::cmp::Ordering;

/// `[a-z0-9]{6}.[a-z0-9]{16}` (BootstrapTokenPattern,
/// staging/src/k8s.io/cluster-bootstrap/token/api/types.go).
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
    let number = |p: Option<&str>| {
        let p = p?;
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = core.split('.');
    let parsed = (
        number(parts.next())?,
        number(parts.next())?,
        number(parts.next())?,
    );
    parts.next().is_none().then_some(parsed)
}

/// Which config API a kubeadm of `version` reads (validateSupportedVersion
/// in cmd/kubeadm/app/util/config/common.go): v1beta4 from 1.31 (enabled by
/// kubernetes PR #125029), v1beta3 until 1.35 (kubernetes PR #136016
/// removed it from 1.36: "your configuration file uses an old API spec").
pub fn api_for_version(api: &str, (major, minor, _): (u32, u32, u32)) -> Result<(), String> {
    match api {
        "kubeadm.k8s.io/v1beta4" if major == 1 && minor < 31 => Err(format!(
            "apiVersion {api} needs Kubernetes >= 1.31, kubernetesVersion is 1.{minor}: use kubeadm.k8s.io/v1beta3"
        )),
        "kubeadm.k8s.io/v1beta3" if major > 1 || minor >= 36 => Err(format!(
            "your configuration file uses an old API spec: {api:?} was removed in Kubernetes 1.36, kubernetesVersion is {major}.{minor}: use kubeadm.k8s.io/v1beta4"
        )),
        "kubeadm.k8s.io/v1beta3" | "kubeadm.k8s.io/v1beta4" => Ok(()),
        other => Err(format!("apiVersion {other} is not a kubeadm config API this kubeadm reads")),
    }
}

/// `MinExternalEtcdVersion` of kubeadm `1.<minor>`
/// (cmd/kubeadm/app/constants/constants.go of each branch): "3.5.24-0" in
/// the release-1.32 patches and from master for 1.36 on (bumped on every
/// supported branch by kubernetes PRs #134779 and #135018), "3.5.11-0" in
/// 1.31, "3.4.13-4" from 1.28 (kubernetes PR #118733) and "3.2.18" before.
/// This is the stand-in's own copy on purpose: it must not trust kiln's table.
pub fn min_external_etcd(minor: u32) -> &'static str {
    match minor {
        0..=27 => "3.2.18",
        28..=30 => "3.4.13-4",
        31 => "3.5.11-0",
        _ => "3.5.24-0",
    }
}

/// A semantic version as k8s.io/apimachinery/pkg/util/version ParseSemantic
/// reads it: `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, an optional leading `v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    core: (u64, u64, u64),
    pre: Vec<String>,
}

impl Semver {
    pub fn parse(text: &str) -> Option<Semver> {
        let v = text.strip_prefix('v').unwrap_or(text);
        let v = v.split('+').next()?;
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let number = |p: &str| {
            let ok = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            ok.then(|| p.parse::<u64>().ok()).flatten()
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [a, b, c] = parts[..] else {
            return None;
        };
        let pre: Vec<String> = match pre {
            None => Vec::new(),
            Some(p) => p.split('.').map(str::to_owned).collect(),
        };
        if pre.iter().any(String::is_empty) {
            return None;
        }
        Some(Semver {
            core: (number(a)?, number(b)?, number(c)?),
            pre,
        })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Semver) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// SemVer 2.0 precedence: a pre-release sorts below its release (so
/// kubeadm's "3.5.24-0" admits 3.5.24 and its pre-releases alike), numeric
/// identifiers below alphanumeric ones.
impl Ord for Semver {
    fn cmp(&self, other: &Semver) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

/// ValidateEncryptionAlgorithm (cmd/kubeadm/app/apis/kubeadm/validation/
/// validation.go): RSA-2048/3072/4096 and ECDSA-P256, and ECDSA-P384 from
/// 1.34 (kubernetes PR #131677). kubeadm defaults an empty value to RSA-2048.
pub fn encryption_algorithm(algorithm: &str, minor: u32) -> Result<(), String> {
    let mut known = vec!["ECDSA-P256", "RSA-2048", "RSA-3072", "RSA-4096"];
    if minor >= 34 {
        known.insert(1, "ECDSA-P384");
    }
    if known.contains(&algorithm) {
        Ok(())
    } else {
        Err(format!(
            "Invalid encryption algorithm {algorithm:?}. Must be one of {known:?} (kubeadm 1.{minor})"
        ))
    }
}

/// Go's largest duration, `1<<63 - 1` ns (src/time/time.go maxDuration).
pub const GO_MAX_DURATION: &str = "2562047h47m16.854775807s";

/// Nanoseconds of a Go duration, exactly as Go's time.ParseDuration
/// (src/time/format.go) reads it for every metav1.Duration: an optional
/// sign, then number-unit pairs (`1h30m`, `.5s`, `-1s`), a bare `0`, the
/// units ns, us (µs, μs), ms, s, m, h (no `d`); None on anything else and on
/// overflow past ±2562047h47m16.854775807s.
pub fn go_duration_nanos(text: &str) -> Option<i128> {
    const LIMIT: u128 = 1 << 63;
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return None;
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u128 = 0;
        for b in s[..int_len].bytes() {
            value = value * 10 + u128::from(b - b'0');
            if value > LIMIT {
                return None;
            }
        }
        s = &s[int_len..];
        let (mut fraction, mut scale, mut post) = (0u128, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            for b in rest[..frac_len].bytes() {
                // Like Go's leadingFraction: digits past int64 are dropped.
                if fraction <= (LIMIT - 1) / 10 {
                    fraction = fraction * 10 + u128::from(b - b'0');
                    scale *= 10.0;
                }
            }
            post = frac_len > 0;
            s = &rest[frac_len..];
        }
        if int_len == 0 && !post {
            return None;
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit: u128 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        s = &s[unit_len..];
        if value > LIMIT / unit {
            return None;
        }
        value *= unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u128;
            if value > LIMIT {
                return None;
            }
        }
        total += value;
        if total > LIMIT {
            return None;
        }
    }
    match neg {
        true => Some(-(total as i128)),
        false if total > LIMIT - 1 => None,
        false => Some(total as i128),
    }
}

/// Whole seconds of a Go duration; 0 or less is 0 (for a token TTL: kubeadm
/// sets no expiration, bootstraptoken/v1/utils.go encodeTokenSecretData).
pub fn go_duration_secs(text: &str) -> Option<u64> {
    let nanos = go_duration_nanos(text)?;
    Some(u64::try_from(nanos.max(0) / 1_000_000_000).unwrap_or(u64::MAX))
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
        let (b3, b4) = ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4");
        assert!(api_for_version(b4, v("v1.31.0")).is_ok());
        assert!(api_for_version(b4, v("1.30.5")).is_err());
        assert!(api_for_version(b3, v("v1.30.5")).is_ok());
        assert!(api_for_version(b3, v("v1.35.9")).is_ok());
        let removed = api_for_version(b3, v("v1.36.0")).unwrap_err();
        assert!(removed.contains("removed in Kubernetes 1.36"), "{removed}");
        assert!(api_for_version(b3, v("2.0.0")).is_err());
        assert!(release("stable-1.31").is_none());
        assert!(release("+1.+31.+2").is_none());
        assert_eq!(release("v1.36.0-rc.0"), Some((1, 36, 0)));
    }

    #[test]
    fn external_etcd_minimum_per_kubeadm_minor() {
        assert_eq!(min_external_etcd(27), "3.2.18");
        assert_eq!(min_external_etcd(28), "3.4.13-4");
        assert_eq!(min_external_etcd(30), "3.4.13-4");
        assert_eq!(min_external_etcd(31), "3.5.11-0");
        assert_eq!(min_external_etcd(32), "3.5.24-0");
        assert_eq!(min_external_etcd(36), "3.5.24-0");
    }

    #[test]
    fn semantic_versions_order_like_kubeadm() {
        let v = |s| Semver::parse(s).unwrap();
        let min = v("3.5.24-0");
        assert!(v("3.5.23") < min);
        assert!(v("3.5.24") >= min);
        assert!(v("3.5.24-rc.0") > min, "alphanumeric sorts above numeric");
        assert!(v("3.4.23") > v("3.4.13-4"));
        assert!(v("3.6.0") > min);
        assert!(v("v3.5.30+git") == v("3.5.30"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        for bad in ["3.5", "3.5.x", "03.5.1", "3.5.1-", "latest", ""] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn encryption_algorithms_by_minor() {
        assert!(encryption_algorithm("ECDSA-P256", 31).is_ok());
        assert!(encryption_algorithm("RSA-4096", 31).is_ok());
        assert!(encryption_algorithm("ECDSA-P384", 33).is_err());
        assert!(encryption_algorithm("ECDSA-P384", 34).is_ok());
        let err = encryption_algorithm("ed25519", 36).unwrap_err();
        assert!(err.starts_with("Invalid encryption algorithm"), "{err}");
        assert!(
            encryption_algorithm("ecdsa-p256", 36).is_err(),
            "case matters"
        );
    }

    #[test]
    fn durations_parse_like_go() {
        let n = go_duration_nanos;
        assert_eq!(n("24h0m0s"), Some(86_400_000_000_000));
        assert_eq!(n("0"), Some(0));
        assert_eq!(n("-1s"), Some(-1_000_000_000));
        assert_eq!(n("1.5h"), Some(5_400_000_000_000));
        assert_eq!(n(".5s"), Some(500_000_000));
        assert_eq!(n("1h30m"), Some(5_400_000_000_000));
        assert_eq!(n("2\u{b5}s"), Some(2_000));
        for bad in ["", "1d", "15", "s", ".s", "1 h", "+", "1.2.3s"] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
        // Both ends of Go's range.
        assert_eq!(n(GO_MAX_DURATION), Some(i128::from(i64::MAX)));
        assert_eq!(n("9223372036s"), Some(9_223_372_036_000_000_000));
        assert_eq!(n("9223372037s"), None);
        assert_eq!(n("2562048h"), None);
        assert_eq!(n("-2562047h47m16.854775808s"), Some(i128::from(i64::MIN)));
        assert_eq!(go_duration_secs("24h0m0s"), Some(86_400));
        assert_eq!(go_duration_secs("-5m"), Some(0));
        assert_eq!(go_duration_secs("1d"), None);
    }
}
