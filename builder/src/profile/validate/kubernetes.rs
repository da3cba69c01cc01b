//! Checks of what the Kubernetes roles need: where kubeadm and kubelet come
//! from (`images.kubernetes`), what kubeadm reads from the profile (the
//! bootstrap token's lifetime, the key algorithm and certificate lifetimes
//! of its ClusterConfiguration) and the VIP's VRRP settings.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_node::pki::KeyAlgorithm;
use kiln_node::versions::ApiVersion;

use super::images::is_package_name;
use super::Checker;
use crate::profile::model::{AptSource, KubernetesSource, Profile};
use crate::profile::versions;

/// The longest duration kubeadm reads: every duration in its config is a
/// metav1.Duration, parsed by Go's time.ParseDuration into an int64 of
/// nanoseconds (`maxDuration Duration = 1<<63 - 1` in Go's src/time/time.go,
/// 2562047h47m16.854775807s); the agent writes whole seconds.
const GO_MAX_DURATION_SECS: u64 = (i64::MAX as u64) / 1_000_000_000;
const GO_MAX_DURATION: &str = "2562047h47m16.854775807s, about 292 years";
/// kubeadm accepts encryptionAlgorithm ECDSA-P384 from 1.34 (kubernetes PR
/// #131677; ValidateEncryptionAlgorithm in
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go).
const P384_SINCE_MINOR: u32 = 34;

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
    // The agent writes bootstrapTokens[].ttl as "<seconds>s"; kubeadm parses
    // it with time.ParseDuration, which refuses anything past Go's maximum
    // (cmd/kubeadm/app/apis/bootstraptoken/v1/types.go: TTL *metav1.Duration).
    if let Some(ttl) = cp.token_ttl.filter(|t| t.as_secs() > GO_MAX_DURATION_SECS) {
        check.error(
            "control_plane.token_ttl",
            format!(
                "a token_ttl of {} seconds is longer than kubeadm can read: its TTL is a Go duration, at most {GO_MAX_DURATION}",
                ttl.as_secs()
            ),
            "leave token_ttl out for a token that never expires, or set a lifetime like token_ttl = \"8760h\"",
        );
    }
    check_kubeadm_pki(profile, check);
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

/// What kubeadm's v1beta4 ClusterConfiguration takes from `[pki]`:
/// encryptionAlgorithm (the key type of the certificates kubeadm signs) and
/// certificateValidityPeriod / caCertificateValidityPeriod (Go durations).
fn check_kubeadm_pki(profile: &Profile, check: &mut Checker<'_>) {
    let version = profile.cluster.kubernetes_version;
    let Some(minor) = versions::minor(version) else {
        return; // cluster.kubernetes_version already has its error
    };
    if minor.api != ApiVersion::V1beta4 {
        return; // v1beta3 has none of these fields
    }
    let pki = &profile.pki;
    if pki.key_algorithm == KeyAlgorithm::EcdsaP384 && minor.minor < P384_SINCE_MINOR {
        check.error(
            "pki.key_algorithm",
            format!(
                "kubeadm {}.{} cannot sign ECDSA P-384 certificates: its encryptionAlgorithm ECDSA-P384 arrived in 1.{P384_SINCE_MINOR}",
                version.major, version.minor
            ),
            format!(
                "use key_algorithm = \"ecdsa-p256\", or Kubernetes 1.{P384_SINCE_MINOR} or later, like kubernetes_version = \"1.36.2\""
            ),
        );
    }
    // Validities also become Go durations (at most about 292 years) in the
    // kubeadm config: validate/mod.rs already bounds them to a hundred years.
}

fn check_source(source: &KubernetesSource, profile: &Profile, check: &mut Checker<'_>) {
    match source {
        KubernetesSource::Apt(apt) => check_apt(apt, check),
        KubernetesSource::Binaries(folder) => check_binaries(folder, profile, check),
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
             \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\"",
        );
    }
    let key = check.base_dir.join(&apt.key);
    if !key.is_file() {
        check.error(
            "images.kubernetes.apt.key",
            format!("key file {} does not exist", key.display()),
            format!(
                "save the repository's signing key (ASCII-armoured or binary) there, e.g. \
                 `curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key > {}`; \
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
                "write the name as apt knows it, optionally pinned, like \"kubelet\" or \"kubelet=1.36.2-1.1\"",
            );
        }
    }
}

fn check_binaries(folder: &Path, profile: &Profile, check: &mut Checker<'_>) {
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
