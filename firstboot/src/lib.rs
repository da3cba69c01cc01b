//! kiln-firstboot: the agent that makes a freshly booted node converge into its cluster.
//!
//! Its one entry ([`agent`]), identity, discovery, the etcd role and the
//! master and worker roles (kubeadm). What it shares with the builder (the
//! node configuration, the node layout, certificate issuance) is the
//! contract crate `kiln-node`.

pub mod agent;
pub mod backoff;
pub mod control_plane;
pub mod discovery;
pub mod etcd;
pub mod identity;
pub mod kubeadm;
pub mod logging;
pub mod renew;
pub mod status;
pub mod systemd;
