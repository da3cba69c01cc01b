//! Keys, values and leases over etcd's v3 JSON gateway: what the control
//! plane's init lock needs. Keys and values travel base64-encoded; 64-bit
//! numbers (revisions, lease IDs) travel as decimal strings.

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::etcd::client::{EtcdClient, EtcdRefused};

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
    /// The revision that created the key: it stays while the key is
    /// rewritten, so it orders keys by how long they have existed.
    pub create_revision: i64,
}

/// What a range read found: up to `limit` keys and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct RangeAnswer {
    pub kvs: Vec<KeyValue>,
    pub count: u64,
}

/// The first key after every key that starts with `prefix` (etcd's
/// `range_end` for a prefix read).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the keyspace".
    vec![0]
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(value: &Value) -> Result<String> {
    let text = value.as_str().unwrap_or_default();
    let bytes = B64
        .decode(text)
        .with_context(|| format!("etcd sent {text:?}, which is not base64"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A 64-bit number the gateway sent as a string (or left out when zero).
fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or_default(),
        other => other.as_i64().unwrap_or_default(),
    }
}

fn key_values(value: &Value) -> Result<Vec<KeyValue>> {
    let Some(list) = value["kvs"].as_array() else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: unb64(&kv["key"])?,
                value: unb64(&kv["value"])?,
                lease: int(&kv["lease"]),
                create_revision: int(&kv["create_revision"]),
            })
        })
        .collect()
}

impl EtcdClient {
    /// Reads `key`, or every key starting with it when `prefix`; `limit` 0
    /// means no limit.
    pub fn range(&self, base: &str, key: &str, prefix: bool, limit: i64) -> Result<RangeAnswer> {
        let mut body = json!({ "key": b64(key.as_bytes()), "limit": limit });
        if prefix {
            body["range_end"] = b64(&prefix_end(key)).into();
        }
        let value = self.post(base, "/v3/kv/range", body)?;
        Ok(RangeAnswer {
            kvs: key_values(&value)?,
            count: u64::try_from(int(&value["count"])).unwrap_or_default(),
        })
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, base: &str, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.range(base, key, false, 1)?.kvs.into_iter().next())
    }

    /// Writes `key`; attached to `lease` unless it is 0.
    pub fn put(&self, base: &str, key: &str, value: &str, lease: i64) -> Result<()> {
        let body = json!({
            "key": b64(key.as_bytes()),
            "value": b64(value.as_bytes()),
            "lease": lease.to_string(),
        });
        self.post(base, "/v3/kv/put", body).map(drop)
    }

    pub fn delete(&self, base: &str, key: &str) -> Result<()> {
        let body = json!({ "key": b64(key.as_bytes()) });
        self.post(base, "/v3/kv/deleterange", body).map(drop)
    }

    /// Writes `key` only if it does not exist (a transaction comparing its
    /// create revision with 0); true when this call created it.
    pub fn create(&self, base: &str, key: &str, value: &str, lease: i64) -> Result<bool> {
        let key = b64(key.as_bytes());
        let body = json!({
            "compare": [{
                "target": "CREATE",
                "result": "EQUAL",
                "key": key,
                "create_revision": "0",
            }],
            "success": [{ "request_put": {
                "key": key,
                "value": b64(value.as_bytes()),
                "lease": lease.to_string(),
            }}],
        });
        let value = self.post(base, "/v3/kv/txn", body)?;
        Ok(value["succeeded"].as_bool().unwrap_or(false))
    }

    /// Grants a lease of `ttl_seconds`; returns its ID.
    pub fn lease_grant(&self, base: &str, ttl_seconds: i64) -> Result<i64> {
        let value = self.post(base, "/v3/lease/grant", json!({ "TTL": ttl_seconds }))?;
        match int(&value["ID"]) {
            0 => anyhow::bail!("{base} granted a lease without an ID: {value}"),
            id => Ok(id),
        }
    }

    /// Renews a lease; returns the TTL it has again, 0 when it expired.
    pub fn lease_keepalive(&self, base: &str, id: i64) -> Result<i64> {
        let value = self.post(base, "/v3/lease/keepalive", json!({ "ID": id.to_string() }))?;
        Ok(int(&value["result"]["TTL"]))
    }

    /// Ends a lease now, deleting every key attached to it.
    pub fn lease_revoke(&self, base: &str, id: i64) -> Result<()> {
        self.post(base, "/v3/lease/revoke", json!({ "ID": id.to_string() }))
            .map(drop)
    }
}

/// An etcd cluster reached through whichever of its client URLs answers.
#[derive(Clone)]
pub struct KvCluster {
    pub client: EtcdClient,
    pub endpoints: Vec<String>,
}

impl KvCluster {
    /// Runs `call` against each endpoint in turn until one answers; an
    /// answer that is a refusal is returned as it is, not tried elsewhere.
    pub fn call<T>(&self, what: &str, call: impl Fn(&EtcdClient, &str) -> Result<T>) -> Result<T> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match call(&self.client, endpoint) {
                Ok(value) => return Ok(value),
                Err(e) if e.downcast_ref::<EtcdRefused>().is_some() => {
                    return Err(e.context(format!("etcd refused to {what}")))
                }
                Err(e) => last = Some(e),
            }
        }
        let last = last.map_or_else(
            || "no endpoint is configured".to_owned(),
            |e| format!("{e:#}"),
        );
        anyhow::bail!(
            "no etcd member ({}) answered to {what}; last error: {last}",
            self.endpoints.join(", ")
        )
    }
}

/// A lease granted once and kept alive by each [`KeptLease::renew`]; granted
/// anew when it ended (the keys on it went with it).
pub struct KeptLease {
    id: Option<i64>,
    ttl_seconds: i64,
    what: &'static str,
}

impl KeptLease {
    /// `what` names the keys it holds, for errors.
    pub fn new(ttl_seconds: i64, what: &'static str) -> KeptLease {
        KeptLease {
            id: None,
            ttl_seconds,
            what,
        }
    }

    /// The lease's ID, alive for another TTL.
    pub fn renew(&mut self, kv: &KvCluster) -> Result<i64> {
        if let Some(id) = self.id {
            let alive = kv
                .call(&format!("keep the {} lease alive", self.what), |c, ep| {
                    c.lease_keepalive(ep, id)
                })
                .is_ok_and(|ttl| ttl > 0);
            if alive {
                return Ok(id);
            }
        }
        let ttl = self.ttl_seconds;
        let id = kv.call(&format!("grant the {} lease", self.what), |c, ep| {
            c.lease_grant(ep, ttl)
        })?;
        self.id = Some(id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/"), b"/registry0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn reads_gateway_range_answers() {
        let value: Value = serde_json::from_str(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"L2tpbG4vbG9jaw==",
              "create_revision":"5","value":"bWFzdGVyMQ==","lease":"7587869950217127947"}],
              "count":"1"}"#,
        )
        .unwrap();
        let kvs = key_values(&value).unwrap();
        assert_eq!(kvs[0].key, "/kiln/lock");
        assert_eq!(kvs[0].value, "master1");
        assert_eq!(kvs[0].lease, 7587869950217127947);
        assert_eq!(kvs[0].create_revision, 5);
        assert!(key_values(&json!({"header": {}})).unwrap().is_empty());
    }
}
