//! Where the etcd peers are: one small trait, one module per source, tried in
//! the order the node configuration lists them.

mod dns_srv;
mod static_list;

use std::path::Path;

use crate::node_config::{DiscoverySource, NodeConfig};

/// A source of candidate etcd client URLs to probe.
pub trait PeerSource: Send + Sync {
    /// How the source is named in logs.
    fn describe(&self) -> String;
    /// Client URLs (`https://ip:port`) of possible cluster members.
    fn client_urls(&self) -> anyhow::Result<Vec<String>>;
}

/// The sources the node configuration asks for.
pub fn sources(config: &NodeConfig, root: &Path) -> Vec<Box<dyn PeerSource>> {
    config
        .etcd
        .discovery
        .iter()
        .map(|source| -> Box<dyn PeerSource> {
            match source {
                DiscoverySource::Static => Box::new(static_list::StaticList::new(config)),
                DiscoverySource::DnsSrv => Box::new(dns_srv::DnsSrv::new(config, root)),
            }
        })
        .collect()
}

/// Every candidate client URL from every source, without duplicates.
///
/// A failing source is logged and skipped: the next one may still answer.
pub fn candidate_urls(sources: &[Box<dyn PeerSource>], exclude_own: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for source in sources {
        match source.client_urls() {
            Ok(found) => {
                tracing::debug!(source = %source.describe(), ?found, "discovered peers");
                for url in found {
                    if url != exclude_own && !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
            Err(e) => tracing::warn!(source = %source.describe(), "discovery failed: {e:#}"),
        }
    }
    urls
}
