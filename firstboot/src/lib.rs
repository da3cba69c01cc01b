//! kiln-firstboot: the agent that makes a freshly booted node converge into its cluster.
//!
//! Its one entry ([`agent`]), identity, discovery, the etcd role and the
//! master and worker roles (kubeadm). What it shares with the builder (the
//! node configuration, the node layout, certificate issuance) is the
//! contract crate `kiln-node`.

mod agent;
mod backoff;
mod context;
mod control_plane;
mod discovery;
mod etcd;
mod identity;
mod kubeadm;
mod redact;
mod renew;
mod status;
mod systemd;

pub use agent::{run, Cli};
