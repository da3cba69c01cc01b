//! Version rules both programs apply: which kubeadm configuration API a
//! Kubernetes release reads.

use anyhow::{bail, Result};

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
        let bare = version.trim_start_matches('v');
        let mut parts = bare.split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            bail!(
                "kubernetes_version {version:?} in the node configuration is not MAJOR.MINOR.PATCH; \
                 set cluster.kubernetes_version in the profile to e.g. \"1.36.2\" and rebuild"
            );
        };
        Ok(if major > 1 {
            ApiVersion::V1beta4
        } else {
            ApiVersion::for_minor(minor)
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
