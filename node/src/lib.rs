//! kiln-node: the contract between kiln's builder and its first-boot agent.
//!
//! Everything both programs must agree on lives here and nowhere else: the
//! node configuration written to `/etc/kiln/node.toml` ([`node_config`]),
//! where every file lives on a node ([`layout`]), and the one routine that
//! issues certificates ([`pki`]), used by the builder at bake time and by
//! the agent when a node mints its own. A change here is a change of the
//! contract: images built by one side must keep working with the other.

pub mod etcd;
pub mod fsutil;
pub mod hex;
pub mod layout;
pub mod logging;
pub mod net;
pub mod node_config;
pub mod pki;
pub mod renewal;
pub mod tls;
pub mod versions;

pub use node_config::NodeConfig;
