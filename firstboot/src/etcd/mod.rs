//! The etcd role: form, join and repair the etcd cluster from this node.
//!
//! Two phases, so that tests (and operators) can run etcd themselves:
//!
//! 1. `run` observes the cluster, decides (see [`membership`]), installs
//!    certificates, makes the membership change the decision needs (remove a
//!    dead member, add this node as a learner) and writes etcd's
//!    configuration. With `--no-start` (or a `--root` other than `/`) it
//!    stops here and leaves `status.json` in phase `configured`.
//! 2. `settle` waits for the local etcd to answer, promotes it if it is a
//!    learner and waits until it is healthy; the agent (`crate::agent`) then
//!    writes phase `converged` and the done-marker. `run` on a real node
//!    does both: it starts etcd through systemctl between the two.
//!
//! Every step can be interrupted and rerun: a member already added for this
//! node's peer URL is reused, a dead member already removed is not removed
//! again, and the done-marker makes a rerun after success a no-op.

pub mod backup;
mod certs;
mod configure;
pub mod lease_lock;
pub mod membership;
mod node;
mod removed;
pub mod restore;
mod settle;
mod silence;
pub mod watch;

pub use configure::{describe, plan, plan_under_lock, remove_dead, run};
pub use node::EtcdMember;
pub use settle::settle;
