//! Where kiln puts things on a node: one definition shared by builder and agent.

use std::path::{Path, PathBuf};

/// The node configuration, identical on every node of a role.
pub const NODE_CONFIG: &str = "/etc/kiln/node.toml";
/// Certificates and keys baked into the image, as the builder placed them.
pub const PKI_DIR: &str = "/etc/kiln/pki";
/// The agent binary inside the image.
pub const AGENT_BINARY: &str = "/usr/local/bin/kiln-firstboot";
/// The agent's systemd unit.
pub const AGENT_UNIT: &str = "kiln-firstboot.service";
/// Runtime status written by the agent.
pub const STATUS_FILE: &str = "/run/kiln/status.json";
/// Present once the agent converged; a rerun then does nothing.
pub const DONE_MARKER: &str = "/var/lib/kiln/firstboot.done";
/// etcd, as Debian's packages install it and as kiln installs a release's.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";

/// Paths of the baked PKI, relative to the node's root.
pub mod pki {
    use super::*;

    pub fn etcd_ca_cert() -> PathBuf {
        Path::new(PKI_DIR).join("etcd/ca.crt")
    }
    pub fn etcd_ca_key() -> PathBuf {
        Path::new(PKI_DIR).join("etcd/ca.key")
    }
    /// Client certificate the agent uses for its own etcd calls.
    pub fn etcd_agent_client_cert() -> PathBuf {
        Path::new(PKI_DIR).join("etcd/kiln-agent.crt")
    }
    pub fn etcd_agent_client_key() -> PathBuf {
        Path::new(PKI_DIR).join("etcd/kiln-agent.key")
    }
    /// Pre-generated serving and peer certificates of a listed etcd member.
    pub fn etcd_member_dir(member: &str) -> PathBuf {
        Path::new(PKI_DIR).join("etcd/members").join(member)
    }
    pub fn cluster_ca_cert() -> PathBuf {
        Path::new(PKI_DIR).join("ca.crt")
    }
    /// The bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`), a secret.
    pub fn bootstrap_token() -> PathBuf {
        Path::new(PKI_DIR).join("bootstrap-token")
    }
}

/// Paths of masters and workers: kubeadm, kubelet and keepalived.
pub mod kube {
    /// The kubeadm configurations the agent writes (0600: they hold the token).
    pub const KUBEADM_DIR: &str = "/etc/kiln/kubeadm";
    pub const KUBEADM_INIT_CONFIG: &str = "/etc/kiln/kubeadm/init.yaml";
    pub const KUBEADM_JOIN_CONFIG: &str = "/etc/kiln/kubeadm/join.yaml";
    /// kubelet's per-node flags (node-ip), read by kubeadm's kubelet drop-in.
    pub const KUBELET_DEFAULTS: &str = "/etc/default/kubelet";
    /// The cluster CA certificate where kubeadm keeps it, on masters; a
    /// worker's image holds it at `pki::cluster_ca_cert()` only, since
    /// kubeadm's worker join refuses to run when this file exists.
    pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";
    /// The external etcd's CA and the API server's client certificate for it.
    pub const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
    /// Stacked topology only: kubeadm signs the members' certificates with it.
    pub const ETCD_CA_KEY: &str = "/etc/kubernetes/pki/etcd/ca.key";
    pub const ETCD_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
    pub const ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";
    /// kubeadm's PKI folder (its constants.go KubernetesDir + "pki").
    pub const KUBEADM_PKI: &str = "/etc/kubernetes/pki";
    /// kubeadm's own certificates under [`KUBEADM_PKI`] (stems), which
    /// `kubeadm certs renew all` renews; the etcd ones only with stacked etcd.
    pub const KUBEADM_CERTS: [&str; 3] = [
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
    ];
    pub const KUBEADM_STACKED_ETCD_CERTS: [&str; 3] =
        ["etcd/server", "etcd/peer", "etcd/healthcheck-client"];
    /// The kubeconfigs whose client certificates kubeadm embeds and renews
    /// (kubelet.conf is the kubelet's to rotate).
    pub const KUBEADM_KUBECONFIGS: [&str; 4] = [
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/super-admin.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
    ];
    /// The kubelet's static pods: the control plane's components.
    pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
    /// Where a restart keeps a manifest while its pod stops (outside
    /// [`MANIFESTS`], on the same file system).
    pub const MANIFESTS_ASIDE: &str = "/etc/kubernetes/kiln-restarting";
    /// Present while renewed certificates wait for the control plane's
    /// restart; it survives a failed or interrupted restart.
    pub const RESTART_PENDING: &str = "/var/lib/kiln/control-plane-restart-pending";
    pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
    /// keepalived's API server health check (0755).
    pub const KEEPALIVED_CHECK: &str = "/etc/keepalived/kiln-check-apiserver.sh";
}

/// What kiln owns on a node, by folder: the agent, its configuration and
/// state, the PKI it installs for etcd and kubeadm. A profile's extra files
/// and units may not touch any of it (the builder's validation reads this
/// list; the layer code puts its own files only below it).
pub const KILN_OWNED: [&str; 8] = [
    "/etc/kiln",
    AGENT_BINARY,
    "/var/lib/kiln",
    "/run/kiln",
    "/etc/etcd/pki",
    "/etc/kubernetes",
    kube::KEEPALIVED_CONFIG,
    kube::KEEPALIVED_CHECK,
];
/// Units kiln installs are named `kiln-*`; etcd.service's drop-ins of kiln
/// are named `*-kiln*.conf`.
pub const KILN_UNIT_PREFIX: &str = "kiln-";

/// The entry of [`KILN_OWNED`] that `path` (absolute, normalized) falls
/// under, if any.
pub fn kiln_owner(path: &str) -> Option<&'static str> {
    KILN_OWNED.iter().copied().find(|owned| {
        path == *owned
            || path
                .strip_prefix(owned)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Joins an absolute node path under `root` (the agent's `--root`, `/` on a node).
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kilns_paths_are_owned_and_their_neighbours_are_not() {
        for owned in [
            NODE_CONFIG,
            DONE_MARKER,
            STATUS_FILE,
            AGENT_BINARY,
            kube::CLUSTER_CA,
            kube::KUBEADM_INIT_CONFIG,
        ] {
            assert!(kiln_owner(owned).is_some(), "{owned}");
        }
        let key = pki::etcd_ca_key();
        assert_eq!(kiln_owner(&key.display().to_string()), Some("/etc/kiln"));
        for free in [
            "/etc/kilnx",
            "/etc/motd",
            "/usr/local/bin/kiln-firstbootx",
            "/etc",
        ] {
            assert_eq!(kiln_owner(free), None, "{free}");
        }
    }

    #[test]
    fn under_root_never_escapes_root() {
        assert_eq!(
            under_root(Path::new("/tmp/r"), Path::new("/etc/kiln/node.toml")),
            PathBuf::from("/tmp/r/etc/kiln/node.toml")
        );
        assert_eq!(
            under_root(Path::new("/"), Path::new(NODE_CONFIG)),
            PathBuf::from(NODE_CONFIG)
        );
    }
}
