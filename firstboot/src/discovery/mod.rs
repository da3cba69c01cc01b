//! Where the etcd peers are: one small trait, one module per source, tried in
//! the order the node configuration lists them, then the stable client
//! endpoint when the profile has one.

mod dns_client;
mod dns_message;
mod dns_srv;
mod endpoint;
#[cfg(test)]
mod fake_dns;
mod static_list;

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use kiln_node::node_config::{DiscoverySource, NodeConfig};

/// The most candidate URLs one round asks, from all sources together: each
/// is probed on a thread of its own, so a hostile or broken source (a DNS
/// answer naming thousands of addresses) must not decide how many threads
/// the agent starts. etcd clusters have a handful of members; this leaves
/// room for the listed ones, a full DNS answer ([`dns_srv`]'s own caps) and
/// the endpoint.
pub const MAX_CANDIDATES: usize = 32;

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
    said: Mutex<Said>,
}

/// What the journal was last told, so that it hears each thing once.
struct Said {
    /// Per source, the reason it last failed.
    failed: Vec<Option<String>>,
    /// How many candidates the last round dropped past [`MAX_CANDIDATES`].
    dropped: usize,
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
        let said = Mutex::new(Said {
            failed: vec![None; list.len()],
            dropped: 0,
        });
        Sources { list, said }
    }

    /// Every candidate client URL from every source, without duplicates,
    /// at most [`MAX_CANDIDATES`] (the first sources' first).
    ///
    /// A failing source is skipped (the next one may still answer) and
    /// logged when its reason is new: the agent asks every round, and the
    /// journal needs the reason once, not every few seconds.
    pub fn candidate_urls(&self, exclude_own: &str) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        let mut said_now = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        for (source, said) in self.list.iter().zip(said_now.failed.iter_mut()) {
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
        let dropped = urls.len().saturating_sub(MAX_CANDIDATES);
        if dropped > 0 && dropped != said_now.dropped {
            tracing::warn!(
                "discovery gave {} candidate etcd URLs; asking the first {MAX_CANDIDATES} and \
                 dropping {dropped}: {}",
                urls.len(),
                urls[MAX_CANDIDATES..].join(", ")
            );
        }
        said_now.dropped = dropped;
        urls.truncate(MAX_CANDIDATES);
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Many(usize);

    impl PeerSource for Many {
        fn describe(&self) -> String {
            "many".into()
        }
        fn client_urls(&self) -> anyhow::Result<Vec<String>> {
            Ok((0..self.0)
                .map(|i| format!("https://10.77.{}.{}:2379", i / 250, i % 250 + 1))
                .collect())
        }
    }

    fn sources(list: Vec<Box<dyn PeerSource>>) -> Sources {
        let said = Mutex::new(Said {
            failed: vec![None; list.len()],
            dropped: 0,
        });
        Sources { list, said }
    }

    #[test]
    fn a_flood_of_candidates_is_cut_to_the_cap_first_sources_first() {
        let flood = sources(vec![Box::new(Many(3)), Box::new(Many(5000))]);
        let urls = flood.candidate_urls("https://10.77.0.2:2379");
        assert_eq!(urls.len(), MAX_CANDIDATES);
        assert_eq!(urls[0], "https://10.77.0.1:2379");
        assert_eq!(urls[1], "https://10.77.0.3:2379", "own URL left out");
        let few = sources(vec![Box::new(Many(4))]);
        assert_eq!(few.candidate_urls("").len(), 4);
    }
}
