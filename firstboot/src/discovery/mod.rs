//! Where the etcd peers are: one small trait, one module per source, tried in
//! the order the node configuration lists them, then the stable client
//! endpoint when the profile has one.

mod dns_srv;
mod endpoint;
mod static_list;

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use kiln_node::node_config::{DiscoverySource, NodeConfig};

/// A source of candidate etcd client URLs to probe.
pub trait PeerSource: Send + Sync {
    /// How the source is named in logs.
    fn describe(&self) -> String;
    /// Client URLs (`https://ip:port`) of possible cluster members.
    fn client_urls(&self) -> anyhow::Result<Vec<String>>;
}

/// The sources the node configuration asks for, in its order, and what
/// each last said when it failed.
pub struct Sources {
    list: Vec<Box<dyn PeerSource>>,
    failed: Mutex<Vec<Option<String>>>,
}

impl Sources {
    pub fn new(config: &NodeConfig, root: &Path) -> Sources {
        let mut list: Vec<Box<dyn PeerSource>> = config
            .etcd
            .discovery
            .iter()
            .map(|source| -> Box<dyn PeerSource> {
                match source {
                    DiscoverySource::Static => Box::new(static_list::StaticList::new(config)),
                    DiscoverySource::DnsSrv => Box::new(dns_srv::DnsSrv::new(config, root)),
                }
            })
            .collect();
        if let Some(at) = &config.etcd.endpoint {
            list.push(Box::new(endpoint::Endpoint::new(at)));
        }
        let failed = Mutex::new(vec![None; list.len()]);
        Sources { list, failed }
    }

    /// Every candidate client URL from every source, without duplicates.
    ///
    /// A failing source is skipped (the next one may still answer) and
    /// logged when its reason is new: the agent asks every round, and the
    /// journal needs the reason once, not every few seconds.
    pub fn candidate_urls(&self, exclude_own: &str) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        for (source, said) in self.list.iter().zip(failed.iter_mut()) {
            match source.client_urls() {
                Ok(found) => {
                    tracing::debug!(source = %source.describe(), ?found, "discovered peers");
                    if said.take().is_some() {
                        tracing::info!(source = %source.describe(), "discovery answers again");
                    }
                    for url in found {
                        if url != exclude_own && !urls.contains(&url) {
                            urls.push(url);
                        }
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if said.as_ref() != Some(&reason) {
                        tracing::warn!(source = %source.describe(), "discovery failed: {reason}");
                        *said = Some(reason);
                    }
                }
            }
        }
        urls
    }
}
