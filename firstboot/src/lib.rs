//! kiln-firstboot: the agent that makes a freshly booted node converge into its cluster.
//!
//! The library owns the contract between the builder and the agent: the node
//! configuration written to `/etc/kiln/node.toml`, where every file lives on a
//! node, and the one routine that issues certificates, used by the builder at
//! bake time and by the agent when a node that no profile listed mints its own.
//! It also holds the agent itself: its one entry ([`agent`]), identity,
//! discovery, the etcd role and the master and worker roles (kubeadm).

pub mod agent;
pub mod backoff;
pub mod control_plane;
pub mod discovery;
pub mod etcd;
pub mod fsutil;
pub mod hex;
pub mod identity;
pub mod kubeadm;
pub mod layout;
pub mod logging;
pub mod node_config;
pub mod pki;
pub mod renew;
pub mod status;
pub mod systemd;

pub use node_config::NodeConfig;
