//! The cluster profile as written in TOML: every section, field and default.
//! docs/profile.md documents each field; keep the two in step.

use std::net::IpAddr;
use std::path::PathBuf;

use kiln_node::node_config::{DiscoverySource, Role, Topology, Vip};
use kiln_node::pki::KeyAlgorithm;
use serde::Deserialize;

use super::types::{Cidr, Span};
use kiln_node::versions::Version;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub cluster: ClusterSection,
    pub etcd: EtcdSection,
    #[serde(default)]
    pub control_plane: Option<ControlPlaneSection>,
    #[serde(default)]
    pub workers: WorkersSection,
    #[serde(default)]
    pub pki: PkiSection,
    #[serde(default)]
    pub images: ImagesSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub name: String,
    pub domain: String,
    #[serde(deserialize_with = "super::types::kubernetes_version")]
    pub kubernetes_version: Version,
    /// Networks the nodes live on; every node address and the VIP must be inside one.
    pub node_subnets: Vec<Cidr>,
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: Cidr,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: Cidr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    #[serde(default)]
    pub topology: Topology,
    #[serde(default = "default_client_port")]
    pub client_port: u16,
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_discovery")]
    pub discovery: Vec<DiscoverySource>,
    /// Initial members (external topology). Empty for the stacked topology,
    /// where the masters are the members.
    #[serde(default)]
    pub members: Vec<NodeSpec>,
    /// Snapshots every etcd node takes of the cluster (docs/backup.md).
    #[serde(default)]
    pub backup: BackupSection,
    /// A snapshot the initial members rebuild the cluster from when they
    /// bootstrap it (disaster recovery, docs/backup.md).
    #[serde(default)]
    pub restore_from: Option<RestoreSource>,
    /// Voting members the agents keep; absent, as many as are listed.
    #[serde(default)]
    pub size: Option<usize>,
    /// How long the cluster must have seen a member dead before a new node
    /// takes its place.
    #[serde(default = "default_replace_dead_after")]
    pub replace_dead_after: Span,
    /// `host:port` of a load balancer or DNS name in front of the members.
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// On by default: a snapshot costs little, its absence costs a cluster.
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_backup_interval")]
    pub interval: Span,
    #[serde(default = "default_keep_hourly")]
    pub keep_hourly: u32,
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    /// Absolute path of a mounted folder on the node each snapshot is copied to.
    #[serde(default)]
    pub destination: Option<PathBuf>,
}

impl Default for BackupSection {
    fn default() -> Self {
        BackupSection {
            enabled: true,
            interval: default_backup_interval(),
            keep_hourly: default_keep_hourly(),
            keep_daily: default_keep_daily(),
            destination: None,
        }
    }
}

/// Where the disaster-recovery snapshot comes from: a one-key table, so
/// TOML itself says "exactly one" (schema.rs words the error).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreSource {
    /// A file relative to the profile, baked into the etcd image.
    Local(PathBuf),
    /// An absolute path on the node (a mounted volume).
    Node(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub ip: IpAddr,
    #[serde(default)]
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// `host:port` of the API server as clients reach it (VIP or load balancer).
    pub endpoint: String,
    /// The agent's own type: the profile's table is copied into node.toml as is.
    #[serde(default)]
    pub vip: Option<Vip>,
    pub masters: Vec<NodeSpec>,
    /// Lifetime of the bootstrap token baked into the images, like `"24h"`;
    /// unset, it never expires (rotate it by rebuilding the images).
    #[serde(default)]
    pub token_ttl: Option<Span>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// Workers known in advance; more may join at any time from the same image.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSection {
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    #[serde(default = "default_ca_validity_days")]
    pub ca_validity_days: u32,
    #[serde(default = "default_leaf_validity_days")]
    pub leaf_validity_days: u32,
    /// The leaves' validity as a span (`"10m"`, `"365d"`), instead of
    /// `leaf_validity_days`.
    #[serde(default)]
    pub leaf_validity: Option<Span>,
    /// Leaves with less than this left are reissued by a build and renewed
    /// by the nodes; default a third of the leaf validity.
    #[serde(default)]
    pub renew_before: Option<Span>,
}

impl PkiSection {
    pub fn leaf_validity_seconds(&self) -> u64 {
        self.leaf_validity
            .map_or(u64::from(self.leaf_validity_days) * 86_400, Span::as_secs)
    }

    pub fn renew_before_seconds(&self) -> u64 {
        self.renew_before
            .map_or(self.leaf_validity_seconds() / 3, Span::as_secs)
    }
}

impl Default for PkiSection {
    fn default() -> Self {
        PkiSection {
            key_algorithm: KeyAlgorithm::default(),
            ca_validity_days: default_ca_validity_days(),
            leaf_validity_days: default_leaf_validity_days(),
            leaf_validity: None,
            renew_before: None,
        }
    }
}

/// What `kiln build` writes for each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// `<role>/<role>.ign`, an Ignition spec 3.3.0 config.
    Ignition,
    /// `<role>/rootfs.tar.gz`, the role's root filesystem.
    Rootfs,
    /// `<role>/disk.raw`, a GPT disk (ESP + ext4 root) that boots under UEFI.
    Raw,
    /// `<role>/disk.qcow2`, the same disk converted by qemu-img.
    Qcow2,
    /// `<role>/disk.vhd`, the same disk as Azure's fixed VHD.
    Vhd,
    /// `<role>/disk.tar.gz`, the same disk as GCE imports it.
    Gce,
    /// `<role>/disk.vmdk`, the same disk as a stream-optimized VMDK.
    Vmdk,
    /// `<role>/disk.ova`, that VMDK with an OVF descriptor, for VMware.
    Ova,
}

impl OutputFormat {
    /// Whether the format is a bootable disk, which needs a whole OS as base.
    pub fn is_disk(self) -> bool {
        use OutputFormat::*;
        matches!(self, Raw | Qcow2 | Vhd | Gce | Vmdk | Ova)
    }
}

/// The operating system under every role layer, unless a role names its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BaseImage {
    /// The role layer alone (Ignition configs, layer-only tarballs).
    #[default]
    None,
    /// Debian (`images.suite`) built by mmdebstrap, cached by a digest of its inputs.
    Debian,
}

/// `images.metadata_access`: the instance metadata service (user-data,
/// instance credentials) answers anyone on the node who reaches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataAccess {
    /// Processes of the host (Ignition, the agent) only: traffic forwarded
    /// from pods to the metadata addresses is dropped.
    #[default]
    Host,
    /// No rule: pods reach it too (for workloads that use instance
    /// credentials).
    Open,
}

/// The Debian release of kiln's base.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    /// Debian 13, the stable release: systemd 257, containerd 1.7, etcd 3.5.16.
    #[default]
    Trixie,
    /// Debian 12, oldstable: systemd 252, containerd 1.6, etcd 3.4.23.
    Bookworm,
}

impl Suite {
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Trixie => "trixie",
            Suite::Bookworm => "bookworm",
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `images.etcd.source`: etcd from Debian's etcd-server and etcd-client packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdPackages {
    Debian,
}

/// An upstream etcd release tarball (`etcd-vX.Y.Z-linux-amd64.tar.gz`),
/// downloaded once, verified and cached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRelease {
    /// http(s) URL of the tarball.
    pub url: String,
    /// Hex SHA-256 of the tarball, as the release's SHA256SUMS lists it.
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSection {
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
    /// The OS every role is baked on; `images.<role>.base` overrides it.
    #[serde(default)]
    pub base: BaseImage,
    /// The Debian release kiln's base is built from.
    #[serde(default)]
    pub suite: Suite,
    /// mtime of every tarball entry; `SOURCE_DATE_EPOCH` overrides it.
    #[serde(default)]
    pub source_date_epoch: Option<u64>,
    /// No longer read: the agent is part of every role's image. Kept so a
    /// profile that still sets it gets a clear error, not "unknown field".
    #[serde(default)]
    pub agent: Option<serde::de::IgnoredAny>,
    /// Bake each role's Ignition config into its disks, for places with no
    /// user-data: the disks then hold the cluster's keys.
    #[serde(default)]
    pub embed_config: bool,
    /// Who may reach the cloud's instance metadata service from masters and
    /// workers: the host only (pods' forwarded traffic dropped), or anyone.
    #[serde(default)]
    pub metadata_access: MetadataAccess,
    /// The largest `.ign` the build writes, in bytes: a config the platform
    /// refuses as user-data is a build error, not a boot that never comes.
    #[serde(default = "default_user_data_limit")]
    pub user_data_limit: u64,
    /// Where master and worker images get kubeadm, kubelet and kubectl.
    #[serde(default)]
    pub kubernetes: Option<KubernetesSource>,
    #[serde(default)]
    pub etcd: RoleImage,
    #[serde(default)]
    pub master: RoleImage,
    #[serde(default)]
    pub worker: RoleImage,
}

impl ImagesSection {
    /// The image settings of `role`.
    pub fn role(&self, role: Role) -> &RoleImage {
        match role {
            Role::Etcd => &self.etcd,
            Role::Master => &self.master,
            Role::Worker => &self.worker,
        }
    }
}

impl Default for ImagesSection {
    fn default() -> Self {
        ImagesSection {
            formats: default_formats(),
            base: BaseImage::None,
            suite: Suite::default(),
            source_date_epoch: None,
            agent: None,
            embed_config: false,
            metadata_access: MetadataAccess::default(),
            user_data_limit: DEFAULT_USER_DATA_LIMIT,
            kubernetes: None,
            etcd: RoleImage::default(),
            master: RoleImage::default(),
            worker: RoleImage::default(),
        }
    }
}

/// Where kubeadm, kubelet and kubectl come from: a one-key table, so TOML
/// itself says "exactly one" (schema.rs words the error).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubernetesSource {
    Apt(AptSource),
    /// A folder, relative to the profile, holding the kubeadm, kubelet and
    /// kubectl executables.
    Binaries(PathBuf),
}

impl KubernetesSource {
    /// The executables a `binaries` folder must hold, installed to
    /// /usr/bin on masters and workers (in the verified OS of a disk).
    pub const BINARIES: [&'static str; 3] = ["kubeadm", "kubelet", "kubectl"];
}

/// An apt repository the Debian base of masters and workers installs from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    /// https URL of a flat repository, like pkgs.k8s.io's.
    pub repository: String,
    /// The repository's signing key (ASCII-armoured or binary), relative to
    /// the profile.
    pub key: PathBuf,
    #[serde(default = "default_kubernetes_packages")]
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleImage {
    /// Base root filesystem: a folder or a .tar/.tar.gz, relative to the profile.
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Extra Debian packages for the base image.
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub files: Vec<ExtraFile>,
    #[serde(default)]
    pub units: Vec<ExtraUnit>,
    /// `images.etcd` only: etcd from Debian packages (the default)...
    #[serde(default)]
    pub source: Option<EtcdPackages>,
    /// ...of this Debian suite rather than the base's (e.g. "sid"), for etcd alone...
    #[serde(default)]
    pub suite: Option<String>,
    /// ...or a folder holding etcd, etcdctl and etcdutl...
    #[serde(default)]
    pub binaries: Option<PathBuf>,
    /// ...or an upstream release tarball.
    #[serde(default)]
    pub release: Option<EtcdRelease>,
}

/// Where the etcd role's etcd comes from, as `images.etcd` chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdSource<'a> {
    /// The packages of the base's suite.
    BaseSuite,
    /// The packages of another Debian suite.
    DebianSuite(&'a str),
    Binaries(&'a std::path::Path),
    Release(&'a EtcdRelease),
}

impl RoleImage {
    /// The etcd source of `images.etcd` (validation allows at most one).
    pub fn etcd_source(&self) -> EtcdSource<'_> {
        match (&self.binaries, &self.release, &self.suite) {
            (Some(dir), _, _) => EtcdSource::Binaries(dir),
            (None, Some(release), _) => EtcdSource::Release(release),
            (None, None, Some(suite)) => EtcdSource::DebianSuite(suite),
            (None, None, None) => EtcdSource::BaseSuite,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFile {
    /// Absolute path on the node.
    pub path: String,
    pub contents: FileSource,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Allows contents over 1 MiB (they go into every image and config).
    #[serde(default)]
    pub large: bool,
}

/// An extra file's contents: a one-key table, so TOML itself says
/// "exactly one" (schema.rs words the error).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    Inline(String),
    /// A file relative to the profile.
    Local(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraUnit {
    pub name: String,
    #[serde(default)]
    pub contents: Option<String>,
    /// Enable the unit (links it into the targets of its `[Install]` section).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub dropins: Vec<ExtraDropin>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraDropin {
    pub name: String,
    pub contents: String,
}

fn default_kubernetes_packages() -> Vec<String> {
    ["kubelet", "kubeadm", "kubectl"]
        .map(str::to_owned)
        .to_vec()
}
fn default_true() -> bool {
    true
}
fn default_replace_dead_after() -> Span {
    Span::from_secs(kiln_node::node_config::DEFAULT_REPLACE_DEAD_AFTER_SECONDS)
}
fn default_backup_interval() -> Span {
    "1h".parse().expect("valid default")
}
fn default_keep_hourly() -> u32 {
    24
}
fn default_keep_daily() -> u32 {
    7
}
fn default_pod_subnet() -> Cidr {
    "10.244.0.0/16".parse().expect("valid default")
}
fn default_service_subnet() -> Cidr {
    "10.96.0.0/12".parse().expect("valid default")
}
fn default_client_port() -> u16 {
    2379
}
fn default_peer_port() -> u16 {
    2380
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/etcd")
}
fn default_discovery() -> Vec<DiscoverySource> {
    vec![DiscoverySource::Static]
}
fn default_ca_validity_days() -> u32 {
    3650
}
fn default_leaf_validity_days() -> u32 {
    365
}
/// EC2's user-data limit, the smallest of the clouds kiln targets.
pub const DEFAULT_USER_DATA_LIMIT: u64 = 16 * 1024;
fn default_user_data_limit() -> u64 {
    DEFAULT_USER_DATA_LIMIT
}
fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Ignition, OutputFormat::Rootfs]
}
fn default_file_mode() -> u32 {
    0o644
}
