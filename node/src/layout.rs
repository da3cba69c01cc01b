//! Where kiln puts things on a node: one definition shared by builder and agent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The node configuration, identical on every node of a role.
pub const NODE_CONFIG: &str = "/etc/kiln/node.toml";
/// Certificates and keys baked into the image, as the builder placed them.
pub const PKI_DIR: &str = "/etc/kiln/pki";
/// The agent binary inside the image.
pub const AGENT_BINARY: &str = "/usr/bin/kiln-firstboot";
/// The agent's systemd unit.
pub const AGENT_UNIT: &str = "kiln-firstboot.service";
/// The unit of kiln's Debian base that applies the node's Ignition config
/// at first boot, before the agent runs.
pub const IGNITION_UNIT: &str = "kiln-ignition.service";
/// A role's Ignition config baked into its disks (`images.embed_config`),
/// which the first boot applies instead of the platform's user-data.
pub const EMBEDDED_CONFIG: &str = "/usr/lib/kiln/embedded.ign";
/// The nftables rules that keep pods from the cloud's instance metadata
/// service (`images.metadata_access = "host"`), in every master and worker
/// image, loaded by [`METADATA_UNIT`] before kubelet and containerd start.
pub const METADATA_RULES: &str = "/usr/lib/kiln/metadata-lockdown.nft";
pub const METADATA_UNIT: &str = "kiln-metadata-lockdown.service";
/// Runtime status written by the agent.
pub const STATUS_FILE: &str = "/run/kiln/status.json";
/// Present once the agent converged; a rerun then does nothing.
pub const DONE_MARKER: &str = "/var/lib/kiln/firstboot.done";
/// etcd, as Debian's packages install it and as kiln installs a release's.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";
/// The version of [`ETCD_BINARY`], written by the build that baked it: the
/// agent reads it instead of starting the binary (a Go program's start
/// costs a core at first boot, on the replacement's critical path).
pub const ETCD_VERSION_FILE: &str = "/usr/lib/kiln/etcd-version";

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
    pub fn cluster_ca_cert() -> PathBuf {
        Path::new(PKI_DIR).join("ca.crt")
    }
    /// The bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`), a secret.
    pub fn bootstrap_token() -> PathBuf {
        Path::new(PKI_DIR).join("bootstrap-token")
    }
}

/// etcd on a node: the configuration the agent writes for Debian's
/// etcd.service, the member's certificates, and its snapshots.
pub mod etcd {
    use std::path::{Path, PathBuf};

    /// Debian's unit of etcd, and kiln's when it installs a release.
    pub const UNIT: &str = "etcd.service";
    /// etcd's settings, read by the unit through the drop-in.
    pub const ENV_FILE: &str = "/etc/kiln/etcd.env";
    /// The name of [`DROP_IN`].
    pub const DROP_IN_NAME: &str = "10-kiln.conf";
    /// Replaces the unit's `EnvironmentFile=-/etc/default/etcd` with [`ENV_FILE`].
    pub const DROP_IN: &str = "/etc/systemd/system/etcd.service.d/10-kiln.conf";
    /// The etcd image's drop-in that keeps etcd.service from starting
    /// before the agent configured it.
    pub const GATE_DROP_IN: &str = "05-kiln-gate.conf";
    /// Where the node's etcd certificates are installed, readable by user etcd.
    pub const CERT_DIR: &str = "/etc/etcd/pki";
    /// The etcd CA's certificate in [`CERT_DIR`].
    pub const CA_CERT: &str = "ca.crt";
    /// A member's serving and peer certificates and keys in [`CERT_DIR`],
    /// minted by the member itself.
    pub const SERVER_CERT: &str = "server.crt";
    pub const SERVER_KEY: &str = "server.key";
    pub const PEER_CERT: &str = "peer.crt";
    pub const PEER_KEY: &str = "peer.key";
    /// Where each etcd node keeps its own snapshots.
    pub const SNAPSHOT_DIR: &str = "/var/lib/kiln/snapshots";
    /// Where the builder bakes a `restore_from = { local = ... }` snapshot.
    pub const BAKED_SNAPSHOT: &str = "/var/lib/kiln/restore/snapshot.db";

    /// An installed certificate file (a node path, not under the root).
    pub fn cert_path(file: &str) -> PathBuf {
        Path::new(CERT_DIR).join(file)
    }
}

/// kiln's keys in etcd, per cluster (node.toml's `cluster`).
pub mod keys {
    /// Held by the node changing the etcd membership: one change at a time.
    pub fn member_lock(cluster: &str) -> String {
        format!("/kiln/{cluster}/etcd/member-lock")
    }

    /// Where the members' watchers publish their reports.
    pub fn watch_reports(cluster: &str) -> String {
        format!("/kiln/{cluster}/etcd/unseen/")
    }

    /// The report of the member `id`.
    pub fn watch_report(cluster: &str, id: &str) -> String {
        format!("{}{id}", watch_reports(cluster))
    }

    /// Where masters register themselves as keepalived peers.
    pub fn vip_peers(cluster: &str) -> String {
        format!("/kiln/{cluster}/vip/peers/")
    }

    /// The registration of the master `name`.
    pub fn vip_peer(cluster: &str, name: &str) -> String {
        format!("{}{name}", vip_peers(cluster))
    }
}

/// Paths of masters and workers: kubeadm, kubelet and keepalived.
pub mod kube {
    /// kubeadm's folder (its constants.go KubernetesDir).
    pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
    /// The kubeadm configurations the agent writes (0600: they hold the token).
    pub const KUBEADM_DIR: &str = "/etc/kiln/kubeadm";
    pub const KUBEADM_INIT_CONFIG: &str = "/etc/kiln/kubeadm/init.yaml";
    pub const KUBEADM_JOIN_CONFIG: &str = "/etc/kiln/kubeadm/join.yaml";
    /// kubelet's per-node flags (node-ip), read by kubeadm's kubelet drop-in.
    pub const KUBELET_DEFAULTS: &str = "/etc/default/kubelet";
    pub const KUBELET_UNIT: &str = "kubelet.service";
    /// kubeadm's drop-in of [`KUBELET_UNIT`], as the Kubernetes packages
    /// ship it and kiln installs it with `images.kubernetes.binaries`.
    pub const KUBEADM_DROP_IN: &str = "10-kubeadm.conf";
    /// Units masked (linked to /dev/null) on masters and workers: kubelet
    /// refuses to run with swap on.
    pub const MASKED_UNITS: [&str; 1] = ["swap.target"];
    /// The cluster CA certificate where kubeadm keeps it, on masters; a
    /// worker's image holds it at `pki::cluster_ca_cert()` only, since
    /// kubeadm's worker join refuses to run when this file exists.
    pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";
    pub const CLUSTER_CA_KEY: &str = "/etc/kubernetes/pki/ca.key";
    pub const FRONT_PROXY_CA: &str = "/etc/kubernetes/pki/front-proxy-ca.crt";
    pub const FRONT_PROXY_CA_KEY: &str = "/etc/kubernetes/pki/front-proxy-ca.key";
    /// The key pair that signs service account tokens.
    pub const SERVICE_ACCOUNT_KEY: &str = "/etc/kubernetes/pki/sa.key";
    pub const SERVICE_ACCOUNT_PUB: &str = "/etc/kubernetes/pki/sa.pub";
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
    /// Written by `kubeadm init` on the node that ran it, and by kubeadm's
    /// control-plane join on the others.
    pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
    /// The kubeconfigs whose client certificates kubeadm embeds and renews
    /// (kubelet.conf is the kubelet's to rotate).
    pub const KUBEADM_KUBECONFIGS: [&str; 4] = [
        ADMIN_KUBECONFIG,
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
/// state, the PKI it installs for etcd and kubeadm, the files its units
/// and the agent read or write (`/usr/lib/kiln`: [`EMBEDDED_CONFIG`],
/// [`ETCD_VERSION_FILE`], the first boot's Ignition script; kubelet's
/// node flags). A profile's extra files and units may not touch any of it
/// (the builder's validation reads this list; the layer code puts its own
/// files only below it).
pub const KILN_OWNED: [&str; 10] = [
    "/etc/kiln",
    AGENT_BINARY,
    "/usr/lib/kiln",
    "/var/lib/kiln",
    "/run/kiln",
    etcd::CERT_DIR,
    kube::KUBERNETES_DIR,
    kube::KEEPALIVED_CONFIG,
    kube::KEEPALIVED_CHECK,
    kube::KUBELET_DEFAULTS,
];
/// Units kiln installs are named `kiln-*`; etcd.service's drop-ins of kiln
/// are named `*-kiln*.conf`.
pub const KILN_UNIT_PREFIX: &str = "kiln-";
/// Drop-ins kiln puts on units that are not its own, `(unit, drop-in)`:
/// etcd.service's gate (the etcd image) and settings (written by the agent),
/// kubelet.service's kubeadm flags.
pub const KILN_DROP_INS: [(&str, &str); 3] = [
    (etcd::UNIT, etcd::GATE_DROP_IN),
    (etcd::UNIT, etcd::DROP_IN_NAME),
    (kube::KUBELET_UNIT, kube::KUBEADM_DROP_IN),
];

/// Whether `unit` is one of kiln's own units.
pub fn is_kiln_unit(unit: &str) -> bool {
    unit.starts_with(KILN_UNIT_PREFIX)
}

/// Whether drop-in `name` of `unit` is kiln's, or could replace one of
/// kiln's: listed in [`KILN_DROP_INS`], of a kiln unit, or named `*kiln*`.
pub fn is_kiln_drop_in(unit: &str, name: &str) -> bool {
    is_kiln_unit(unit) || name.contains("kiln") || KILN_DROP_INS.contains(&(unit, name))
}

/// Where Ignition and kiln write systemd units and their drop-ins.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// The folders systemd loads system units and their `<unit>.d` drop-ins
/// from (systemd.unit(5), "System Unit Search Path"), after [`BASE_LINKS`]:
/// /lib/systemd/system is /usr/lib/systemd/system.
pub const UNIT_DIRS: [&str; 12] = [
    SYSTEMD_DIR,
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Links every base kiln builds on has, `(link, target)`: Debian's merged
/// /usr and /run's old names. Ignition, tar and the agent follow them, so a
/// write to `/bin/x` lands on `/usr/bin/x`.
pub const BASE_LINKS: [(&str, &str); 8] = [
    ("/bin", "/usr/bin"),
    ("/sbin", "/usr/sbin"),
    ("/lib", "/usr/lib"),
    ("/lib32", "/usr/lib32"),
    ("/lib64", "/usr/lib64"),
    ("/libx32", "/usr/libx32"),
    ("/var/run", "/run"),
    ("/var/lock", "/run/lock"),
];

/// Whether `path` is `folder` or below it (both absolute, without a
/// trailing `/`).
pub fn is_within(path: &str, folder: &str) -> bool {
    path.strip_prefix(folder)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The path a write to `path` (absolute, clean) lands on, and the entry of
/// [`BASE_LINKS`] it went through, if any.
pub fn resolve_base_links(path: &str) -> (Cow<'_, str>, Option<(&'static str, &'static str)>) {
    match BASE_LINKS.iter().find(|(link, _)| is_within(path, link)) {
        Some(&(link, target)) => (
            Cow::Owned(format!("{target}{}", &path[link.len()..])),
            Some((link, target)),
        ),
        None => (Cow::Borrowed(path), None),
    }
}

/// The entry of [`KILN_OWNED`] that `path` (absolute, clean) falls under,
/// if any, after following [`BASE_LINKS`].
pub fn kiln_owner(path: &str) -> Option<&'static str> {
    let (path, _) = resolve_base_links(path);
    KILN_OWNED
        .iter()
        .copied()
        .find(|owned| is_within(&path, owned))
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
            EMBEDDED_CONFIG,
            ETCD_VERSION_FILE,
            kube::KUBELET_DEFAULTS,
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
            "/usr/bin/kiln-firstbootx",
            "/etc",
        ] {
            assert_eq!(kiln_owner(free), None, "{free}");
        }
    }

    #[test]
    fn kilns_drop_ins_and_units_are_kilns() {
        assert_eq!(
            etcd::DROP_IN,
            format!("{SYSTEMD_DIR}/{}.d/{}", etcd::UNIT, etcd::DROP_IN_NAME)
        );
        for (unit, name) in KILN_DROP_INS {
            assert!(is_kiln_drop_in(unit, name), "{unit} {name}");
        }
        assert!(is_kiln_drop_in("site.service", "10-kiln.conf"));
        assert!(is_kiln_drop_in(AGENT_UNIT, "50-site.conf"));
        assert!(!is_kiln_drop_in(kube::KUBELET_UNIT, "50-site.conf"));
        assert!(!is_kiln_drop_in("site.service", kube::KUBEADM_DROP_IN));
        assert!(is_kiln_unit(AGENT_UNIT) && is_kiln_unit(IGNITION_UNIT));
        assert!(!is_kiln_unit(etcd::UNIT));
        for dir in UNIT_DIRS {
            assert_eq!(resolve_base_links(dir).1, None, "{dir} is written resolved");
        }
    }

    #[test]
    fn links_of_the_base_lead_to_the_owned_paths() {
        for (alias, real) in [
            ("/bin/kiln-firstboot", AGENT_BINARY),
            ("/var/run/kiln/x", "/run/kiln/x"),
            ("/var/lock/x", "/run/lock/x"),
            ("/lib64", "/usr/lib64"),
            ("/sbin/x", "/usr/sbin/x"),
        ] {
            assert_eq!(resolve_base_links(alias).0, real, "{alias}");
        }
        assert_eq!(kiln_owner("/bin/kiln-firstboot"), Some(AGENT_BINARY));
        assert_eq!(kiln_owner("/var/run/kiln/status.json"), Some("/run/kiln"));
        for unchanged in ["/binx/y", "/var/runner/kiln", "/usr/bin/x", "/etc/motd"] {
            assert_eq!(
                resolve_base_links(unchanged),
                (Cow::Borrowed(unchanged), None)
            );
        }
        assert_eq!(kiln_owner("/var/runner/kiln/x"), None);
    }

    #[test]
    fn kubernetes_paths_are_under_kubeadms_folders() {
        let pki = [
            kube::CLUSTER_CA,
            kube::CLUSTER_CA_KEY,
            kube::FRONT_PROXY_CA,
            kube::FRONT_PROXY_CA_KEY,
            kube::SERVICE_ACCOUNT_KEY,
            kube::SERVICE_ACCOUNT_PUB,
            kube::ETCD_CA,
            kube::ETCD_CA_KEY,
            kube::ETCD_CLIENT_CERT,
            kube::ETCD_CLIENT_KEY,
        ];
        for path in pki {
            assert!(
                path.starts_with(&format!("{}/", kube::KUBEADM_PKI)),
                "{path}"
            );
        }
        assert!(kube::KUBEADM_PKI.starts_with(&format!("{}/", kube::KUBERNETES_DIR)));
        for path in kube::KUBEADM_KUBECONFIGS.iter().chain([&kube::MANIFESTS]) {
            assert_eq!(kiln_owner(path), Some(kube::KUBERNETES_DIR), "{path}");
        }
        let key = etcd::cert_path(etcd::SERVER_KEY);
        assert_eq!(key, Path::new("/etc/etcd/pki/server.key"));
        assert_eq!(kiln_owner(&key.display().to_string()), Some(etcd::CERT_DIR));
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
