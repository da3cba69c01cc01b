//! Discovery through the stable client endpoint (`etcd.endpoint`): a load
//! balancer or DNS name in front of whichever members live now, so a new
//! node finds the cluster after every listed address is gone.

use super::PeerSource;
use kiln_node::node_config::endpoint_url;

pub struct Endpoint {
    endpoint: String,
}

impl Endpoint {
    pub fn new(endpoint: &str) -> Endpoint {
        Endpoint {
            endpoint: endpoint.to_owned(),
        }
    }
}

impl PeerSource for Endpoint {
    fn describe(&self) -> String {
        format!(
            "the stable client endpoint etcd.endpoint = {}",
            self.endpoint
        )
    }

    fn client_urls(&self) -> anyhow::Result<Vec<String>> {
        Ok(vec![endpoint_url(&self.endpoint)])
    }
}
