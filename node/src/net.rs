//! Network values both programs read the same way: CIDR blocks (the
//! profile's `cluster.node_subnets`, carried in node.toml) and the rule for
//! a network interface name that goes into keepalived.conf.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A network interface name the kernel accepts (dev_valid_name in
/// net/core/dev.c: 1 to IFNAMSIZ - 1 = 15 bytes, not "." or "..", no '/',
/// ':' or white space), narrowed to the characters interfaces are named
/// with: the name goes unquoted into keepalived.conf (`interface`, and the
/// VIP's `dev`), where `{`, `}`, `#` or `"` would change the configuration.
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub const INTERFACE_RULE: &str = "1-15 letters, digits, '_', '.' and '-', not \".\" or \"..\"";

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
    fn interface_names_are_what_the_kernel_and_keepalived_take() {
        for good in [
            "eth0",
            "ens3",
            "ve0",
            "br-lan",
            "bond0.100",
            "wg_0",
            &"e".repeat(15),
        ] {
            assert!(is_interface_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0}}#",
            "eth 0",
            "eth0/1",
            "eth0:1",
            "eth0\"",
            "\u{e9}th0",
            &"e".repeat(16),
        ] {
            assert!(!is_interface_name(bad), "{bad}");
        }
    }
}
