//! On etcd nodes: signs the renewal requests of masters, which hold no etcd
//! CA key, only for a node still in the cluster that shows its current
//! certificate, and once per renewal window per key.

use anyhow::Result;
use time::OffsetDateTime;

use super::request::{approve, requester, Approved, RenewalRequest, ISSUED, REQUESTS};
use kiln_node::etcd::kv::{KeyValue, KvCluster};
use kiln_node::layout;
use kiln_node::node_config::NodeConfig;
use kiln_node::pki::{verify_chain, Authority, CertInfo, LeafSpec, Usage};

/// The certificates signed for others, one key per signature:
/// `signed/<key fingerprint>/<the renewed certificate's end, Unix seconds>`
/// holds the certificate signed for that key in place of that one, on a
/// lease that lasts until both have no use left.
const SIGNED: &str = "/kiln/certs/signed/";

/// Whether the master `node` has left the cluster, as an etcd node can
/// know it: this node's node.toml does not list it (control_plane.masters)
/// and it is not registered now as a keepalived peer (`registered`: the
/// names under `vip/peers/`, which kiln-vip-peers keeps on a lease while the
/// master runs; a replacement on an unlisted address is known only so).
/// A listed master stays in until the etcd nodes are rebuilt without it.
pub fn has_left(config: &NodeConfig, registered: &[String], node: &str) -> bool {
    let listed = (config.control_plane.iter())
        .flat_map(|cp| &cp.masters)
        .any(|m| m.name == node);
    !listed && !registered.iter().any(|r| r == node)
}

/// The masters registered now: keys on a live lease only (a key on a lease
/// goes with it, see kiln_node::etcd::reports::parse_reports).
fn registered_masters(cluster: &KvCluster, config: &NodeConfig) -> Result<Vec<String>> {
    let prefix = layout::keys::vip_peers(&config.cluster);
    let found = cluster.call("read the registered masters", |c, e| {
        c.range(e, &prefix, true, 0)
    })?;
    Ok((found.kvs.into_iter())
        .filter(|kv| kv.lease != 0)
        .filter_map(|kv| Some(kv.key.strip_prefix(&prefix)?.to_owned()))
        .collect())
}

/// Signs the waiting requests that pass (see [`approve`] and [`has_left`]);
/// refuses, logs and drops the others. Returns how many it answered.
pub fn sign_waiting_requests(
    ca: &Authority,
    ca_pem: &str,
    cluster: &KvCluster,
    config: &NodeConfig,
) -> Result<usize> {
    let waiting = cluster.call("read renewal requests", |c, e| {
        c.range(e, REQUESTS, true, 0).map(|r| r.kvs)
    })?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let registered = registered_masters(cluster, config)?;
    let signer = Signer {
        ca,
        ca_pem,
        cluster,
        config,
        now: OffsetDateTime::now_utc(),
    };
    let mut answered = 0;
    for kv in waiting {
        let judged = match requester(&kv.key) {
            None => Err("its key names no node and certificate".to_owned()),
            Some((node, _)) if has_left(config, &registered, node) => Err(format!(
                "{node} has left the cluster: no node.toml master and not registered under {}",
                layout::keys::vip_peers(&config.cluster)
            )),
            Some((node, stem)) => RenewalRequest::from_json(&kv.value).and_then(|request| {
                let approved = approve(
                    stem,
                    &request,
                    ca_pem,
                    signer.now,
                    config.pki.renew_before_seconds,
                )?;
                Ok((node.to_owned(), request, approved))
            }),
        };
        match judged {
            Ok((node, request, approved)) => {
                let cert = signer.certificate(&node, &request, &approved)?;
                let issued = format!("{ISSUED}{}", &kv.key[REQUESTS.len()..]);
                cluster.call("hand out a renewed certificate", |c, e| {
                    c.put(e, &issued, &cert, 0)
                })?;
                answered += 1;
            }
            // One bad request must not stop the others.
            Err(why) => {
                tracing::warn!(request = %kv.key, decision = "refused", "refusing the renewal request {}: {why}", kv.key)
            }
        }
        cluster.call("clear the answered request", |c, e| c.delete(e, &kv.key))?;
    }
    Ok(answered)
}

struct Signer<'a> {
    ca: &'a Authority,
    ca_pem: &'a str,
    cluster: &'a KvCluster,
    config: &'a NodeConfig,
    now: OffsetDateTime,
}

impl Signer<'_> {
    /// The certificate for an approved request: the one this key already got
    /// in this renewal window (masters share their keys, and an answer can
    /// be lost), else a new signature, recorded first.
    fn certificate(&self, node: &str, request: &RenewalRequest, ok: &Approved) -> Result<String> {
        let fp = &ok.fingerprint;
        let record = format!("{SIGNED}{fp}/{}", ok.current.not_after.unix_timestamp());
        let records = self.cluster.call("read the key's signatures", |c, e| {
            c.range(e, &format!("{SIGNED}{fp}/"), true, 0)
                .map(|r| r.kvs)
        })?;
        if let Some(cert) = self.earlier(&records, &record, ok) {
            tracing::info!(node, fingerprint = %fp, decision = "signed-before", "handing {node} the {} certificate key {fp} already got in this renewal window: a key gets one signature per window", ok.common_name);
            return Ok(cert);
        }
        let spec = LeafSpec {
            common_name: ok.common_name.clone(),
            organization: None,
            usage: Usage::Client,
            dns_names: vec![],
            ips: vec![],
            algorithm: self.config.pki.key_algorithm,
            validity_seconds: self.config.pki.leaf_validity_seconds,
        };
        let cert = self.ca.sign_request(&request.csr, &spec)?;
        let info = CertInfo::from_pem(&cert)?;
        // The record lives while the renewed certificate can be shown and
        // while the new one is outside its window.
        let renew_before = i64::try_from(self.config.pki.renew_before_seconds).unwrap_or(i64::MAX);
        let ttl = (info.seconds_left(self.now) - renew_before)
            .max(ok.current.seconds_left(self.now))
            .saturating_add(60);
        let lease = self
            .cluster
            .call("grant a signature record's lease", |c, e| {
                c.lease_grant(e, ttl)
            })?;
        let first = self.cluster.call("record the signature", |c, e| {
            c.create(e, &record, &cert, lease)
        })?;
        if !first {
            // Another etcd node signed the same request a moment ago: its
            // certificate is the one handed out; this one never leaves.
            self.cluster
                .call("end an unused lease", |c, e| c.lease_revoke(e, lease))?;
            let theirs = self
                .cluster
                .call("read the signature record", |c, e| c.get(e, &record))?;
            return theirs
                .map(|kv| kv.value)
                .ok_or_else(|| anyhow::anyhow!("the signature record {record} vanished"));
        }
        tracing::info!(node, fingerprint = %fp, decision = "signed", "signed a {} certificate for {node}, key {fp}, until {}: its current one ends at {}", ok.common_name, info.not_after, ok.current.not_after);
        Ok(cert)
    }

    /// A certificate signed earlier for this key that serves the request: one
    /// still outside its renewal window, or the one signed in place of the
    /// very certificate shown.
    fn earlier(&self, records: &[KeyValue], record: &str, ok: &Approved) -> Option<String> {
        let usable: Vec<(&KeyValue, CertInfo)> = (records.iter())
            .filter(|kv| verify_chain(self.ca_pem, &kv.value).is_ok())
            .filter_map(|kv| Some((kv, CertInfo::from_pem(&kv.value).ok()?)))
            .filter(|(_, info)| {
                info.public_key == ok.public_key
                    && info.common_name.as_deref() == Some(ok.common_name.as_str())
                    && info.not_after > ok.current.not_after
            })
            .collect();
        let renew_before = self.config.pki.renew_before_seconds;
        (usable.iter())
            .find(|(_, info)| !info.inside_window(self.now, renew_before))
            .or_else(|| usable.iter().find(|(kv, _)| kv.key == record))
            .map(|(kv, _)| kv.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeadm::config::tests::sample_config;
    use kiln_node::node_config::Role;

    #[test]
    fn a_master_has_left_when_neither_listed_nor_registered() {
        let mut config = sample_config(Role::Etcd, "1.36.2");
        let registered = ["master7".to_owned()];
        assert!(!has_left(&config, &registered, "master1"));
        assert!(!has_left(&config, &registered, "master7"));
        assert!(has_left(&config, &registered, "master4"));
        config.control_plane = None;
        assert!(has_left(&config, &[], "master1"));
    }
}
