//! Value types of the profile that parse themselves: Kubernetes versions and
//! time spans (CIDR blocks are kiln-node's, node.toml carries them). Parse
//! errors surface with the TOML position.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kiln_node::versions::Version;
use serde::{Deserialize, Deserializer};

pub use kiln_node::net::Cidr;

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
