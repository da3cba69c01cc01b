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
    pub const ETCD_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
    pub const ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";
    pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
    /// keepalived's API server health check (0755).
    pub const KEEPALIVED_CHECK: &str = "/etc/keepalived/kiln-check-apiserver.sh";
}

/// Joins an absolute node path under `root` (the agent's `--root`, `/` on a node).
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
