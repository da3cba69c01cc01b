//! Value types of the profile that parse themselves: CIDR blocks, Kubernetes
//! versions and time spans. Parse errors surface with the TOML position.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use kiln_node::versions::Version;
use serde::{Deserialize, Deserializer};

/// An IP network, `address/prefix`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            (!0u128 << (width - prefix))
                & (if width == 128 {
                    !0
                } else {
                    (1u128 << width) - 1
                })
        }
    }

    /// The address of `bits` in the family of `like`.
    fn from_bits(bits: u128, like: IpAddr) -> IpAddr {
        match like {
            IpAddr::V4(_) => IpAddr::from((bits as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(bits.to_be_bytes()),
        }
    }

    /// The block's lowest address, the network address itself.
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    /// The block's highest address, the broadcast address of an IPv4
    /// network up to /30. IPv6 has no broadcast, and a /31 (RFC 3021) or
    /// /32 none either: their every address is a host's.
    pub fn broadcast(&self) -> Option<IpAddr> {
        let (net, width) = Self::bits(self.addr);
        (width == 32 && self.prefix <= 30).then(|| {
            Self::from_bits(
                net | (!Self::mask(self.prefix, width) & 0xffff_ffff),
                self.addr,
            )
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = Self::bits(self.addr);
        let (addr, addr_width) = Self::bits(ip);
        width == addr_width && (addr & Self::mask(self.prefix, width)) == net
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            format!("{s:?} is not a CIDR block: write address/prefix, like 10.0.0.0/24")
        })?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} in {s:?} is not an IP address"))?;
        let (bits, width) = Self::bits(addr);
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= width).ok_or_else(|| {
            format!("prefix {prefix:?} in {s:?} must be a number from 0 to {width}")
        })?;
        if bits & !Self::mask(prefix, width) != 0 {
            let net = Self::from_bits(bits & Self::mask(prefix, width), addr);
            return Err(format!(
                "{s:?} has host bits set: did you mean {net}/{prefix}?"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads `cluster.kubernetes_version` with Kubernetes' rules ([`Version::kubernetes`]).
pub fn kubernetes_version<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
    let s = String::deserialize(d)?;
    Version::kubernetes(&s).map_err(serde::de::Error::custom)
}

/// A length of time written like `"90s"`, `"15m"`, `"1h"`, `"7d"` (one number
/// and one unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    secs: u64,
}

impl Span {
    pub const fn from_secs(secs: u64) -> Self {
        Span { secs }
    }

    pub fn as_secs(self) -> u64 {
        self.secs
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// A span on the command line, where a bare number counts seconds
    /// (`--wait 90` as well as `--wait 90s`).
    pub fn parse_or_seconds(s: &str) -> Result<Self, String> {
        Self::parse(s, Some(1))
    }

    /// `bare_unit` is what a number without a unit counts, if it may stand alone.
    fn parse(s: &str, bare_unit: Option<u64>) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a time span: write a number and one of s, m, h, d, like \"90s\" or \"24h\""
            )
        };
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let count: u64 = s[..digits].parse().map_err(|_| bad())?;
        let unit = match &s[digits..] {
            "" => bare_unit.ok_or_else(bad)?,
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let secs = count.checked_mul(unit).ok_or_else(bad)?;
        Ok(Span { secs })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(86_400, "d"), (3_600, "h"), (60, "m")];
        match UNITS
            .iter()
            .find(|(n, _)| self.secs > 0 && self.secs % n == 0)
        {
            Some((n, unit)) => write!(f, "{}{unit}", self.secs / n),
            None => write!(f, "{}s", self.secs),
        }
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, None)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains_and_overlaps() {
        let net: Cidr = "10.77.0.0/24".parse().unwrap();
        assert!(net.contains("10.77.0.11".parse().unwrap()));
        assert!(!net.contains("10.78.0.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        let wide: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(wide.overlaps(&net) && net.overlaps(&wide));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn cidr_network_and_broadcast() {
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(net("10.77.0.0/24").network(), ip("10.77.0.0"));
        assert_eq!(net("10.77.0.0/24").broadcast(), Some(ip("10.77.0.255")));
        assert_eq!(net("10.77.0.8/30").broadcast(), Some(ip("10.77.0.11")));
        assert_eq!(net("0.0.0.0/0").broadcast(), Some(ip("255.255.255.255")));
        // RFC 3021: a /31 is two hosts; a /32 is one.
        assert_eq!(net("10.77.0.10/31").broadcast(), None);
        assert_eq!(net("10.77.0.11/32").broadcast(), None);
        assert_eq!(net("fd00::/64").network(), ip("fd00::"));
        assert_eq!(net("fd00::/64").broadcast(), None);
    }

    #[test]
    fn cidr_with_host_bits_suggests_the_network() {
        let err = "10.77.0.5/24".parse::<Cidr>().unwrap_err();
        assert!(err.contains("did you mean 10.77.0.0/24"), "{err}");
    }

    #[test]
    fn versions_parse_and_order() {
        let v = Version::kubernetes("v1.36.2").unwrap();
        assert_eq!(v.to_string(), "1.36.2");
        assert!(v > "1.35.9".parse().unwrap());
        assert_eq!(Version::kubernetes("1.0.0").unwrap().minor, 0);
        for bad in [
            "1.31",
            "latest",
            "+1.+31.+2",
            "1.+31.2",
            "v1.31.2.1",
            "1.031.2",
            " 1.31.2",
            "1..2",
            "V1.31.2",
            "1.31.x",
            "1.4294967296.0",
        ] {
            let err = Version::kubernetes(bad).unwrap_err();
            assert!(
                err.contains("is not a Kubernetes version"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn pre_releases_are_refused_by_name() {
        for pre in ["1.36.0-rc.0", "v1.37.0-alpha.1", "1.36.2+build"] {
            let err = Version::kubernetes(pre).unwrap_err();
            assert!(err.contains("released versions only"), "{pre:?}: {err}");
        }
    }

    #[test]
    fn spans_parse_and_print() {
        let day: Span = "1d".parse().unwrap();
        assert_eq!(day.as_secs(), 86_400);
        assert_eq!(day.to_string(), "1d");
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "90s");
        assert_eq!("120m".parse::<Span>().unwrap().to_string(), "2h");
        for bad in ["", "h", "1", "1 h", "1.5h", "-1h", "1w"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn spans_on_the_command_line_read_a_bare_number_as_seconds() {
        let wait = |s: &str| Span::parse_or_seconds(s).map(Span::as_duration);
        assert_eq!(wait("90").unwrap(), Duration::from_secs(90));
        assert_eq!(wait("5m").unwrap(), Duration::from_secs(300));
        for bad in ["", "5 minutes", "m", "1w", "18446744073709551615m"] {
            assert!(wait(bad).is_err(), "{bad:?} parsed");
        }
    }
}
