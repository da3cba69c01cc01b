//! This node as every role path sees it: its configuration, who it is among
//! the members its role lists, and how the agent was asked to run. The one
//! context below every role: roles wrap it (`etcd::EtcdMember`,
//! `control_plane::KubeNode`), nothing here knows them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::identity::{identify, HostFacts, NodeIdentity};
use kiln_node::layout::under_root;
use kiln_node::node_config::{Member, NodeConfig, Role};

/// This node as every role path sees it: its configuration, who it is,
/// and how the agent was asked to run.
pub struct NodeContext {
    pub config: NodeConfig,
    pub root: PathBuf,
    pub me: NodeIdentity,
    /// Every wait of the agent ends after this long.
    pub timeout: Duration,
    /// Start services (etcd, keepalived) through systemctl; off in tests.
    pub start: bool,
}

impl NodeContext {
    /// Finds out who this node is among the members its role lists.
    pub fn new(config: NodeConfig, root: &Path, timeout: Duration, start: bool) -> Result<Self> {
        let me = identify(&HostFacts::detect()?, listed_members(&config))?;
        Ok(NodeContext {
            config,
            root: root.to_owned(),
            me,
            timeout,
            start,
        })
    }

    /// A node path under the agent's root.
    pub fn path(&self, node_path: impl AsRef<Path>) -> PathBuf {
        under_root(&self.root, node_path.as_ref())
    }
}

/// Whom identity matches the host against: the members the profile lists
/// for the node's role (workers are never listed).
fn listed_members(config: &NodeConfig) -> &[Member] {
    match config.role {
        Role::Etcd => &config.etcd.members,
        Role::Master => config
            .control_plane
            .as_ref()
            .map_or(&[], |cp| cp.masters.as_slice()),
        Role::Worker => &[],
    }
}
