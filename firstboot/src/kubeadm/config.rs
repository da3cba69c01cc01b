//! kubeadm's configuration files rendered from the node configuration: the
//! init file (InitConfiguration + ClusterConfiguration) and the join file
//! (JoinConfiguration), in `kubeadm.k8s.io/v1beta4` for Kubernetes >= 1.31
//! and `v1beta3` below, as kubeadm of that version reads them (1.36 removed
//! v1beta3: kubernetes PR #136016).

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::yaml::{documents, Node};
use kiln_node::layout::kube::{ETCD_CA, ETCD_CLIENT_CERT, ETCD_CLIENT_KEY};
use kiln_node::node_config::{
    endpoint_host, ControlPlaneSettings, NodeConfig, Topology, API_SERVER_PORT,
};
use kiln_node::pki::KeyAlgorithm;
pub use kiln_node::versions::ApiVersion;

const CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";
const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// Extra arguments: a list of {name, value} in v1beta4, a map before.
fn extra_args(api: ApiVersion, args: &[(&'static str, String)]) -> Node {
    match api {
        ApiVersion::V1beta4 => Node::List(
            args.iter()
                .map(|(k, v)| Node::Map(vec![("name", Node::str(*k)), ("value", Node::str(v))]))
                .collect(),
        ),
        ApiVersion::V1beta3 => Node::Map(
            args.iter()
                .map(|(k, v)| (*k, Node::str(v.clone())))
                .collect(),
        ),
    }
}

/// What kubeadm's configuration is made from.
pub struct KubeadmInputs<'a> {
    pub config: &'a NodeConfig,
    pub control_plane: &'a ControlPlaneSettings,
    /// This node's name and address.
    pub name: &'a str,
    pub ip: IpAddr,
    /// The bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: &'a str,
    pub version: ApiVersion,
}

impl<'a> KubeadmInputs<'a> {
    pub fn new(config: &'a NodeConfig, name: &'a str, ip: IpAddr, token: &'a str) -> Result<Self> {
        let control_plane = config.control_plane.as_ref().with_context(|| {
            format!(
                "the node configuration of this {} has no [control_plane] section; \
                 rebuild the image with a profile that has one",
                config.role
            )
        })?;
        Ok(KubeadmInputs {
            config,
            control_plane,
            name,
            ip,
            token,
            version: ApiVersion::for_kubernetes(&config.kubernetes_version)?,
        })
    }

    fn header(&self, kind: &str) -> Vec<(&'static str, Node)> {
        vec![
            ("apiVersion", Node::str(self.version.as_str())),
            ("kind", Node::str(kind)),
        ]
    }

    fn node_registration(&self) -> Node {
        Node::Map(vec![
            ("name", Node::str(self.name)),
            ("criSocket", Node::str(CRI_SOCKET)),
            (
                "kubeletExtraArgs",
                extra_args(self.version, &[("node-ip", self.ip.to_string())]),
            ),
        ])
    }

    fn local_endpoint(&self) -> Node {
        Node::Map(vec![
            ("advertiseAddress", Node::str(self.ip.to_string())),
            ("bindPort", Node::Int(i64::from(API_SERVER_PORT))),
        ])
    }

    /// InitConfiguration and ClusterConfiguration, for `kubeadm init`.
    pub fn init_config(&self) -> String {
        let mut init = self.header("InitConfiguration");
        init.extend([
            (
                "bootstrapTokens",
                Node::List(vec![Node::Map(vec![
                    ("token", Node::str(self.token)),
                    ("ttl", Node::str(self.ttl())),
                    ("usages", Node::strs(["signing", "authentication"])),
                    ("groups", Node::strs([TOKEN_GROUP])),
                ])]),
            ),
            ("nodeRegistration", self.node_registration()),
            ("localAPIEndpoint", self.local_endpoint()),
        ]);
        let cp = self.control_plane;
        let mut cluster = self.header("ClusterConfiguration");
        cluster.extend([
            ("kubernetesVersion", Node::str(self.kubernetes_version())),
            ("clusterName", Node::str(&self.config.cluster)),
            ("controlPlaneEndpoint", Node::str(&cp.endpoint)),
            (
                "networking",
                Node::Map(vec![
                    ("dnsDomain", Node::str("cluster.local")),
                    ("podSubnet", Node::str(&cp.pod_subnet)),
                    ("serviceSubnet", Node::str(&cp.service_subnet)),
                ]),
            ),
            (
                "apiServer",
                Node::Map(vec![("certSANs", Node::strs(self.cert_sans()))]),
            ),
            ("etcd", self.etcd()),
        ]);
        if self.version == ApiVersion::V1beta4 {
            // v1beta4 only: the key type and lifetimes of the certificates
            // kubeadm signs itself (API server, kubelet client, ...), the
            // same as the profile's for every certificate kiln issues.
            let pki = &self.config.pki;
            cluster.extend([
                (
                    "encryptionAlgorithm",
                    Node::str(encryption_algorithm(pki.key_algorithm)),
                ),
                (
                    "certificateValidityPeriod",
                    Node::str(go_seconds(pki.leaf_validity_seconds)),
                ),
                (
                    "caCertificateValidityPeriod",
                    Node::str(go_seconds(u64::from(pki.ca_validity_days) * 86_400)),
                ),
            ]);
        }
        documents(&[Node::Map(init), Node::Map(cluster)])
    }

    /// JoinConfiguration, for `kubeadm join`; with the controlPlane block on masters.
    pub fn join_config(&self, control_plane: bool) -> String {
        let mut join = self.header("JoinConfiguration");
        join.extend([
            ("nodeRegistration", self.node_registration()),
            (
                "discovery",
                Node::Map(vec![(
                    "bootstrapToken",
                    Node::Map(vec![
                        ("apiServerEndpoint", Node::str(&self.control_plane.endpoint)),
                        ("token", Node::str(self.token)),
                        (
                            "caCertHashes",
                            Node::strs([self.control_plane.discovery_hash.as_str()]),
                        ),
                    ]),
                )]),
            ),
        ]);
        if control_plane {
            join.push((
                "controlPlane",
                Node::Map(vec![("localAPIEndpoint", self.local_endpoint())]),
            ));
        }
        documents(&[Node::Map(join)])
    }

    /// kubeadm's Go duration; "0s" is a token that never expires.
    fn ttl(&self) -> String {
        format!("{}s", self.control_plane.token_ttl_seconds)
    }

    fn kubernetes_version(&self) -> String {
        format!(
            "v{}",
            self.config.kubernetes_version.trim_start_matches('v')
        )
    }

    /// Every name a client may reach an API server by: the endpoint, the
    /// VIP, each master (listed or this one) by address, name and FQDN, and
    /// loopback for the node's own health check.
    pub fn cert_sans(&self) -> Vec<String> {
        let cp = self.control_plane;
        let domain = &self.config.domain;
        let mut sans = vec![endpoint_host(&cp.endpoint).to_owned()];
        sans.extend(cp.vip.iter().map(|v| v.address.to_string()));
        for m in &cp.masters {
            sans.extend([
                m.ip.to_string(),
                m.name.clone(),
                format!("{}.{domain}", m.name),
            ]);
            sans.extend(m.dns_names.iter().cloned());
        }
        sans.extend([
            self.ip.to_string(),
            self.name.to_owned(),
            format!("{}.{domain}", self.name),
            "127.0.0.1".into(),
            "localhost".into(),
        ]);
        let mut seen = std::collections::HashSet::new();
        sans.retain(|s| seen.insert(s.clone()));
        sans
    }

    fn etcd(&self) -> Node {
        match self.config.etcd.topology {
            Topology::External => Node::Map(vec![(
                "external",
                Node::Map(vec![
                    ("endpoints", Node::strs(self.config.etcd_for_clients())),
                    ("caFile", Node::str(ETCD_CA)),
                    ("certFile", Node::str(ETCD_CLIENT_CERT)),
                    ("keyFile", Node::str(ETCD_CLIENT_KEY)),
                ]),
            )]),
            Topology::Stacked => {
                let sans = [
                    self.name.to_owned(),
                    format!("{}.{}", self.name, self.config.domain),
                    self.ip.to_string(),
                ];
                Node::Map(vec![(
                    "local",
                    Node::Map(vec![
                        (
                            "dataDir",
                            Node::str(self.config.etcd.data_dir.to_string_lossy()),
                        ),
                        ("serverCertSANs", Node::strs(sans.clone())),
                        ("peerCertSANs", Node::strs(sans)),
                    ]),
                )])
            }
        }
    }
}

/// kubeadm's EncryptionAlgorithmType for a key algorithm
/// (cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go; ECDSA-P384 from 1.34).
pub fn encryption_algorithm(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
        KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
    }
}

/// `days` as a Go duration the way Go prints one (`8760h0m0s`), which
/// metav1.Duration parses with time.ParseDuration.
/// A Go duration as Go prints it (`8760h0m0s`).
fn go_seconds(seconds: u64) -> String {
    format!(
        "{}h{}m{}s",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
pub(crate) mod tests;
