//! Exactly one master runs `kubeadm init`: the decision read from etcd
//! (Kubernetes data or kiln's marker means "initialized"), and the init lock
//! (an `etcd::lease_lock`), so a holder that dies loses it within the
//! lease's TTL.

use anyhow::Result;

use kiln_node::etcd::kv::KvCluster;

/// Where the API server keeps everything: any key here means a cluster exists.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// kiln's keys for the cluster `cluster` (node.toml's `cluster`).
#[derive(Debug, Clone)]
pub struct InitKeys {
    pub lock: String,
    pub marker: String,
}

impl InitKeys {
    pub fn new(cluster: &str) -> InitKeys {
        InitKeys {
            lock: format!("/kiln/{cluster}/kubeadm/init-lock"),
            marker: format!("/kiln/{cluster}/kubeadm/initialized"),
        }
    }
}

/// What etcd holds, as far as the decision goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Some key under `/registry/`, if there is one.
    pub registry_key: Option<String>,
    /// The node kiln's marker names.
    pub marker: Option<String>,
    /// The node holding the init lock.
    pub holder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The control plane exists: join it (the sentence says how we know).
    Join(String),
    /// Nobody initialized and nobody is trying: take the lock.
    TakeLock,
    /// The named node holds the lock and is running `kubeadm init`.
    WaitFor(String),
}

pub fn decide(seen: &Observed) -> Step {
    if let Some(node) = &seen.marker {
        return Step::Join(format!(
            "kiln's marker says {node} initialized the control plane"
        ));
    }
    if let Some(key) = &seen.registry_key {
        return Step::Join(format!("etcd already holds Kubernetes data ({key})"));
    }
    match &seen.holder {
        Some(holder) => Step::WaitFor(holder.clone()),
        None => Step::TakeLock,
    }
}

pub fn observe(kv: &KvCluster, keys: &InitKeys) -> Result<Observed> {
    let registry = kv.call("read /registry/", |c, ep| {
        c.range(ep, REGISTRY_PREFIX, true, 1)
    })?;
    let marker = kv.call("read kiln's init marker", |c, ep| c.get(ep, &keys.marker))?;
    let holder = kv.call("read the init lock", |c, ep| c.get(ep, &keys.lock))?;
    Ok(Observed {
        registry_key: registry.kvs.into_iter().next().map(|kv| kv.key),
        marker: marker.map(|kv| kv.value),
        holder: holder.map(|kv| kv.value),
    })
}

/// Records that `node` initialized the control plane; it outlives the lock.
pub fn mark_initialized(kv: &KvCluster, keys: &InitKeys, node: &str) -> Result<()> {
    kv.call("write kiln's init marker", |c, ep| {
        c.put(ep, &keys.marker, node, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_cluster() {
        let keys = InitKeys::new("prod");
        assert_eq!(keys.lock, "/kiln/prod/kubeadm/init-lock");
        assert_eq!(keys.marker, "/kiln/prod/kubeadm/initialized");
    }

    #[test]
    fn the_marker_or_kubernetes_data_means_join() {
        let marker = Observed {
            marker: Some("master1".into()),
            holder: Some("master2".into()),
            ..Observed::default()
        };
        assert!(matches!(decide(&marker), Step::Join(s) if s.contains("master1")));
        let data = Observed {
            registry_key: Some("/registry/ns/default".into()),
            ..Observed::default()
        };
        assert!(matches!(decide(&data), Step::Join(s) if s.contains("/registry/ns/default")));
    }

    #[test]
    fn a_free_lock_is_taken_and_a_held_one_waited_for() {
        assert_eq!(decide(&Observed::default()), Step::TakeLock);
        let held = Observed {
            holder: Some("master3".into()),
            ..Observed::default()
        };
        assert_eq!(decide(&held), Step::WaitFor("master3".into()));
    }
}
