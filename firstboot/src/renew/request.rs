//! What a node without the etcd CA key puts in etcd to have its client
//! certificate renewed, and the checks an etcd node makes before it signs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kiln_node::pki::{key_fingerprint, requested_public_key, verify_chain, CertInfo};

/// Where a node asks, and finds the answer, in etcd: a [`RenewalRequest`]
/// under `requests/<node>/<stem>`, the certificate under `issued/...`.
pub const REQUESTS: &str = "/kiln/certs/requests/";
pub const ISSUED: &str = "/kiln/certs/issued/";
/// What an etcd node signs for others, by the request's key name: the
/// client certificates masters hold, each under its one common name. The
/// name is the certificate's whole identity: every master holds the same
/// pair from the builder's secrets folder, so no certificate names a node.
pub const SIGNED_FOR_OTHERS: [(&str, &str); 2] = [
    ("kiln-agent", "kiln-agent"),
    ("apiserver-etcd-client", "kube-apiserver-etcd-client"),
];

/// The body of a request: a PKCS#10 request for the node's key and the
/// certificate it holds for that key now, both PEM. The current
/// certificate is what entitles it: a fresh key with a request alone gets
/// nothing. Agents before this format put the bare PKCS#10 PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalRequest {
    pub csr: String,
    pub current: String,
}

impl RenewalRequest {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a request always serializes")
    }

    pub fn from_json(body: &str) -> Result<RenewalRequest, String> {
        serde_json::from_str(body).map_err(|e| {
            if body.trim_start().starts_with("-----BEGIN") {
                "it carries no current certificate (a bare PKCS#10 request, as agents before \
                 issue 33 sent; update the node's image)"
                    .to_owned()
            } else {
                format!("it is no renewal request with a current certificate: {e}")
            }
        })
    }
}

/// The node and certificate stem a request's key names.
pub fn requester(key: &str) -> Option<(&str, &str)> {
    let (node, stem) = key.strip_prefix(REQUESTS)?.split_once('/')?;
    (!node.is_empty() && !stem.contains('/')).then_some((node, stem))
}

/// A request the signer may sign: for this key, under this name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub common_name: String,
    /// DER SubjectPublicKeyInfo of the key to certify.
    pub public_key: Vec<u8>,
    /// [`key_fingerprint`] of it.
    pub fingerprint: String,
    pub current: CertInfo,
}

/// Whether the request under `requests/<node>/<stem>` is a renewal the
/// signer may sign at `now`: its PKCS#10 request is signed by the key it
/// names; its current certificate chains to the etcd CA `ca_pem`, has not
/// expired, is inside its renewal window (`renew_before` seconds, as the
/// node's own timer judges it), certifies that same key, and names the
/// common name `stem` stands for. The answer says why not.
pub fn approve(
    stem: &str,
    request: &RenewalRequest,
    ca_pem: &str,
    now: OffsetDateTime,
    renew_before: u64,
) -> Result<Approved, String> {
    let Some((_, common_name)) = SIGNED_FOR_OTHERS.iter().find(|(s, _)| *s == stem) else {
        return Err(format!(
            "etcd nodes sign only {SIGNED_FOR_OTHERS:?} (key name, common name) for others"
        ));
    };
    let public_key = requested_public_key(&request.csr).map_err(|e| e.to_string())?;
    let current = CertInfo::from_pem(&request.current)
        .map_err(|e| format!("its current certificate: {e}"))?;
    if current.seconds_left(now) <= 0 {
        return Err(format!(
            "its current certificate ended at {}",
            current.not_after
        ));
    }
    verify_chain(ca_pem, &request.current)
        .map_err(|e| format!("its current certificate is not the etcd CA's: {e}"))?;
    if !current.inside_window(now, renew_before) {
        return Err(format!(
            "its current certificate has {} s left, more than renew_before ({renew_before} s)",
            current.seconds_left(now)
        ));
    }
    if current.public_key != public_key {
        return Err("its current certificate is for another key than the request".into());
    }
    if current.common_name.as_deref() != Some(common_name) {
        return Err(format!(
            "its current certificate names {:?}, {stem} is {common_name:?}",
            current.common_name
        ));
    }
    Ok(Approved {
        common_name: (*common_name).to_owned(),
        fingerprint: key_fingerprint(&public_key),
        public_key,
        current,
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
