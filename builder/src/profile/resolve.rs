//! Checks that need more than the profile's text: the etcd the images will
//! run. The build runs them once it has the binaries; `kiln validate` runs
//! them where that is cheap (a folder of binaries on this machine).

use std::path::Path;

use anyhow::Result;
use kiln_node::node_config::{Role, Topology};
use kiln_node::versions::Version;

use super::model::EtcdSource;
use super::{versions, LoadedProfile};
use crate::image::{EtcdBinaries, FetchRefused};

/// Refuses (exit 2) an etcd that kubeadm would refuse as external etcd: its
/// preflight check ExternalEtcdVersion compares it with MinExternalEtcdVersion
/// (cmd/kubeadm/app/preflight/checks.go, cmd/kubeadm/app/constants/constants.go).
pub fn check_external_etcd(loaded: &LoadedProfile, version: Version) -> Result<()> {
    let kubernetes = loaded.profile.cluster.kubernetes_version;
    let external = loaded.profile.etcd.topology == Topology::External;
    let minimum = versions::min_external_etcd(kubernetes);
    if let Some(minimum) =
        minimum.filter(|m| external && loaded.profile.control_plane.is_some() && version < *m)
    {
        let field = if loaded.profile.images.etcd.release.is_some() {
            "images.etcd.release"
        } else if loaded.profile.images.etcd.binaries.is_some() {
            "images.etcd.binaries"
        } else {
            "images.etcd"
        };
        return Err(loaded
            .error_at(
                field,
                format!(
                    "the etcd image would run etcd {version}, and kubeadm {}.{} refuses an \
                     external etcd older than {minimum} (its preflight check ExternalEtcdVersion)",
                    kubernetes.major, kubernetes.minor
                ),
                "take a newer etcd: release = { url = \"https://github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz\", \
                 sha256 = \"...\" } in [images.etcd], or source = \"debian\" with suite = \"sid\""
                    .to_owned(),
            )
            .into());
    }
    Ok(())
}

/// [`EtcdBinaries::resolve`], with what it refused positioned at the
/// profile's field.
pub fn fetch_etcd(loaded: &LoadedProfile, cache: &Path) -> Result<Option<EtcdBinaries>> {
    EtcdBinaries::resolve(loaded, cache).map_err(|e| {
        let (field, hint) = match e.downcast_ref::<FetchRefused>() {
            Some(FetchRefused::Digest { .. }) => (
                "images.etcd.release.sha256",
                "check the URL and copy the tarball's line of the release's SHA256SUMS; \
                 a changed tarball is not the release you reviewed",
            ),
            Some(FetchRefused::NoMirror { .. }) => (
                "images.etcd.suite",
                "set images.etcd.release = { url, sha256 } or images.etcd.binaries instead",
            ),
            None => return e,
        };
        loaded
            .error_at(field, e.to_string(), hint.to_owned())
            .into()
    })
}

/// The checks of this module that need no download: with
/// `images.etcd.binaries`, the folder's `etcd --version`.
pub fn check_local(loaded: &LoadedProfile) -> Result<()> {
    if !loaded.profile.roles().contains(&Role::Etcd) {
        return Ok(());
    }
    if let EtcdSource::Binaries(dir) = loaded.profile.images.etcd.etcd_source() {
        let version = Version::of_binary(&loaded.resolve(dir).join("etcd"))?;
        check_external_etcd(loaded, version)?;
    }
    Ok(())
}
