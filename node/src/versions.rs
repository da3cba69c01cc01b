//! Versions and the rules both programs apply to them: `MAJOR.MINOR.PATCH`
//! of etcd and of Kubernetes releases, and which kubeadm configuration API
//! a Kubernetes release reads.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Result};

/// `MAJOR.MINOR.PATCH` of a release: etcd's (a cluster version has patch 0)
/// or Kubernetes'. [`FromStr`] reads etcd's spellings; [`Version::kubernetes`]
/// Kubernetes' stricter ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// A released Kubernetes version, `MAJOR.MINOR.PATCH` (a leading `v` is accepted).
    ///
    /// Each part is ASCII digits without a leading zero, as Kubernetes' semantic
    /// versions (k8s.io/apimachinery/pkg/util/version) are: Rust's integer parse
    /// alone would also take `+1`. Pre-releases (`1.36.0-rc.0`) and build
    /// metadata are refused: kiln's version table, the pkgs.k8s.io stable
    /// repositories and the node configuration all deal in releases.
    pub fn kubernetes(s: &str) -> Result<Version, String> {
        let example = "write MAJOR.MINOR.PATCH, like \"1.36.2\"";
        let bare = s.strip_prefix('v').unwrap_or(s);
        if let Some(at) = bare.find(['-', '+']) {
            let core_ok = bare[..at].split('.').count() == 3;
            if core_ok && bare[..at].bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(format!(
                    "{s:?} is a pre-release or build of Kubernetes: kiln builds released versions only; {example}"
                ));
            }
        }
        let bad = || format!("{s:?} is not a Kubernetes version: {example}");
        let part = |p: &str| -> Result<u32, String> {
            let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            if !digits || (p.len() > 1 && p.starts_with('0')) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let parts: Vec<u32> = bare.split('.').map(part).collect::<Result<_, _>>()?;
        match parts[..] {
            [major, minor, patch] => Ok(Version::new(major, minor, patch)),
            _ => Err(bad()),
        }
    }

    /// `MAJOR.MINOR`, the unit etcd upgrades by.
    pub fn minor_release(self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = String;

    /// `3.5.30`, with an optional leading `v` and a suffix after `-` or `+`
    /// (kubeadm writes its minimum as `3.5.24-0`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an etcd version (MAJOR.MINOR.PATCH, like \"3.5.30\")");
        let core = s.strip_prefix('v').unwrap_or(s);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<u32> = core
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse().map_err(|_| bad())
            })
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [major, minor, patch] => Ok(Version::new(major, minor, patch)),
            _ => Err(bad()),
        }
    }
}

/// The `kubeadm.k8s.io` configuration API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1beta3,
    V1beta4,
}

impl ApiVersion {
    /// v1beta4 is read by kubeadm 1.31 and later (the only API from 1.36);
    /// v1beta3 by earlier ones.
    pub fn for_kubernetes(version: &str) -> Result<ApiVersion> {
        let parsed = Version::kubernetes(version).map_err(|why| {
            anyhow!(
                "kubernetes_version in the node configuration: {why}; set \
                 cluster.kubernetes_version in the profile and rebuild"
            )
        })?;
        Ok(if parsed.major > 1 {
            ApiVersion::V1beta4
        } else {
            ApiVersion::for_minor(parsed.minor)
        })
    }

    /// The API kiln writes for Kubernetes `1.<minor>`: v1beta4 from 1.31
    /// (kubernetes PR #125029), the only API 1.36 reads (PR #136016 removed
    /// v1beta3); v1beta3 before 1.31. The one place this rule is written.
    pub const fn for_minor(minor: u32) -> ApiVersion {
        if minor >= 31 {
            ApiVersion::V1beta4
        } else {
            ApiVersion::V1beta3
        }
    }

    /// The `apiVersion` of kubeadm's configuration documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta3 => "kubeadm.k8s.io/v1beta3",
            ApiVersion::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_api_version_by_kubernetes_version() {
        let v = |s| ApiVersion::for_kubernetes(s).unwrap();
        // Both ends: the last v1beta3 minor and the first v1beta4 one, and
        // 1.36+ (which no longer reads v1beta3) never gets it.
        assert_eq!(v("1.30.6"), ApiVersion::V1beta3);
        assert_eq!(v("1.31.0"), ApiVersion::V1beta4);
        assert_eq!(v("v1.32.1"), ApiVersion::V1beta4);
        for minor in 36..=40 {
            let version = format!("1.{minor}.0");
            assert_eq!(
                ApiVersion::for_kubernetes(&version).unwrap(),
                ApiVersion::V1beta4
            );
        }
        assert_eq!(v("2.0.0"), ApiVersion::V1beta4);
        // The profile's own spelling rule: a bare MAJOR.MINOR is no release.
        for bad in ["latest", "1.36", "1.36.0-rc.0"] {
            let err = ApiVersion::for_kubernetes(bad).unwrap_err().to_string();
            assert!(err.contains("kubernetes_version"), "{err}");
        }
    }
}
