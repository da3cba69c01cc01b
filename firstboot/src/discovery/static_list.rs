//! Discovery from the initial members listed in the node configuration.

use super::PeerSource;
use kiln_node::node_config::NodeConfig;

pub struct StaticList {
    urls: Vec<String>,
}

impl StaticList {
    pub fn new(config: &NodeConfig) -> StaticList {
        StaticList {
            urls: config.etcd_client_urls(),
        }
    }
}

impl PeerSource for StaticList {
    fn describe(&self) -> String {
        "the profile's member list".into()
    }

    fn client_urls(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.urls.clone())
    }
}
