//! Checks of what the Kubernetes roles need: where kubeadm and kubelet come
//! from (`images.kubernetes`), the bootstrap token's lifetime and the VIP's
//! VRRP settings.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use super::images::is_package_name;
use super::Checker;
use crate::profile::model::{AptSource, KubernetesSource, Profile};

pub fn check(profile: &Profile, check: &mut Checker<'_>) {
    if let Some(source) = &profile.images.kubernetes {
        check_source(source, profile, check);
    }
    let Some(cp) = &profile.control_plane else {
        return;
    };
    if cp.token_ttl.is_some_and(|ttl| ttl.as_secs() == 0) {
        check.error(
            "control_plane.token_ttl",
            "a bootstrap token that lives 0 seconds could never be used",
            "leave token_ttl out for a token that never expires, or set a lifetime like token_ttl = \"24h\"",
        );
    }
    let Some(vip) = &cp.vip else {
        return;
    };
    if vip.virtual_router_id == 0 {
        check.error(
            "control_plane.vip.virtual_router_id",
            "0 is not a VRRP virtual router id",
            "use a number from 1 to 255 that no other VRRP router on the masters' network uses, like virtual_router_id = 51",
        );
    }
    let host = cp
        .endpoint
        .rsplit_once(':')
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'));
    if let Some(ip) = host.and_then(|h| h.parse::<IpAddr>().ok()) {
        if ip != vip.address {
            check.warn(
                "control_plane.endpoint",
                format!(
                    "endpoint {} is not the VIP {}: clients of the endpoint bypass the VIP",
                    cp.endpoint, vip.address
                ),
                format!(
                    "set endpoint = \"{}:6443\" (or a DNS name of the VIP), or remove vip when a load balancer serves the endpoint",
                    vip.address
                ),
            );
        }
    }
}

fn check_source(source: &KubernetesSource, profile: &Profile, check: &mut Checker<'_>) {
    match (&source.apt, &source.binaries) {
        (Some(_), Some(_)) => check.error(
            "images.kubernetes",
            "both apt and binaries are set",
            "keep one: apt = { repository, key } installs packages into the Debian base, \
             binaries = \"bin/\" copies executables from a folder",
        ),
        (None, None) => check.error(
            "images.kubernetes",
            "neither apt nor binaries is set",
            "write apt = { repository = \"https://pkgs.k8s.io/core:/stable:/v1.31/deb/\", key = \"keys/kubernetes.asc\" } \
             or binaries = \"bin/\", or remove [images.kubernetes]",
        ),
        (Some(apt), None) => check_apt(apt, check),
        (None, Some(_)) => check_binaries(source, profile, check),
    }
}

fn check_apt(apt: &AptSource, check: &mut Checker<'_>) {
    let host = apt
        .repository
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next());
    let plain = !apt
        .repository
        .contains(|c: char| c.is_whitespace() || "'\"[]".contains(c));
    if host.is_none_or(str::is_empty) || !plain {
        check.error(
            "images.kubernetes.apt.repository",
            format!("{:?} is not an https URL", apt.repository),
            "apt must fetch Kubernetes over https: write the repository's URL, like \
             \"https://pkgs.k8s.io/core:/stable:/v1.31/deb/\"",
        );
    }
    let key = check.base_dir.join(&apt.key);
    if !key.is_file() {
        check.error(
            "images.kubernetes.apt.key",
            format!("key file {} does not exist", key.display()),
            format!(
                "save the repository's signing key (ASCII-armoured or binary) there, e.g. \
                 `curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key > {}`; \
                 the path is relative to the profile's folder {}",
                key.display(),
                check.base_dir.display()
            ),
        );
    }
    if apt.packages.is_empty() {
        check.error(
            "images.kubernetes.apt.packages",
            "no packages: the repository would install nothing",
            "leave packages out for kubelet, kubeadm and kubectl, or list them",
        );
    }
    for (j, package) in apt.packages.iter().enumerate() {
        let (name, version) = package.split_once('=').unwrap_or((package, "1"));
        let version_ok = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
        if !is_package_name(name) || !version_ok {
            check.error(
                format!("images.kubernetes.apt.packages[{j}]"),
                format!("{package:?} is not a Debian package name"),
                "write the name as apt knows it, optionally pinned, like \"kubelet\" or \"kubelet=1.31.2-1.1\"",
            );
        }
    }
}

fn check_binaries(source: &KubernetesSource, profile: &Profile, check: &mut Checker<'_>) {
    let Some(folder) = &source.binaries else {
        return;
    };
    let dir = check.base_dir.join(folder);
    let version = profile.cluster.kubernetes_version;
    let download = format!("https://dl.k8s.io/release/v{version}/bin/linux/amd64/");
    if !dir.is_dir() {
        check.error(
            "images.kubernetes.binaries",
            format!("binaries folder {} does not exist", dir.display()),
            format!(
                "create it with the kubeadm, kubelet and kubectl executables (from {download}); \
                 the path is relative to the profile's folder"
            ),
        );
        return;
    }
    for name in KubernetesSource::BINARIES {
        let path = dir.join(name);
        let executable = path
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !path.is_file() {
            check.error(
                "images.kubernetes.binaries",
                format!("binaries folder {} lacks {name}", dir.display()),
                format!("put the {name} executable of Kubernetes {version} there (from {download}{name})"),
            );
        } else if !executable {
            check.error(
                "images.kubernetes.binaries",
                format!("{} is not executable", path.display()),
                format!("run `chmod 755 {}`", path.display()),
            );
        }
    }
}
