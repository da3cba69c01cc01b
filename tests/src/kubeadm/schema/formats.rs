//! String formats kubeadm's decoder and validation insist on: Go durations,
//! RFC 3339 times, bootstrap tokens and CA certificate pins.

/// Go's `time.ParseDuration`, which kubeadm uses for every metav1.Duration
/// (one parser for the schema and the rules: rules::go_duration_nanos).
pub fn is_go_duration(text: &str) -> bool {
    crate::kubeadm::rules::go_duration_nanos(text).is_some()
}

/// RFC 3339 as Go's `time.RFC3339` parses it for metav1.Time.
pub(super) fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let mut zone = text.get(19..).unwrap_or_default();
    if let Some(frac) = zone.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        zone = if end == 0 { "." } else { &frac[end..] };
    }
    let z = zone.as_bytes();
    fixed
        && (zone == "Z"
            || (z.len() == 6
                && matches!(z[0], b'+' | b'-')
                && z[1..3].iter().all(u8::is_ascii_digit)
                && z[3] == b':'
                && z[4..].iter().all(u8::is_ascii_digit)))
}

pub(super) fn is_bootstrap_token(text: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    text.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

pub(super) fn is_ca_cert_hash(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for ok in [
            "0", "0s", "15m", "24h0m0s", "1h30m", "1.5h", ".5s", "300ms", "-1s", "2µs",
        ] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "15", "1d", "h", "1.2.3s", "s1", "24 h", ".", "2562048h"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times() {
        for ok in ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123+02:00"] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-01-02",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
