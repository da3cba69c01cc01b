//! Bootstrap tokens stored as kube-system Secrets in etcd (as the API server
//! would), `kubeadm token list/create`, and the admin kubeconfig that tells
//! those commands where the cluster's etcd is.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::cluster::ExternalEtcd;
use super::etcd::Etcd;
use super::{rules, Refused, Result, Root};
use crate::refuse;

const SECRETS: &str = "/registry/secrets/kube-system/bootstrap-token-";
const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

pub fn secret_key(id: &str) -> String {
    format!("{SECRETS}{id}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (days to civil date, Hinnant).
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Stores `token` with `ttl_secs` (0 = never expires); false if its id exists.
pub fn store(etcd: &Etcd, token: &str, ttl_secs: u64) -> Result<bool> {
    let (id, secret) = token.split_once('.').unwrap_or_default();
    let mut data = json!({
        "token-id": B64.encode(id),
        "token-secret": B64.encode(secret),
        "usage-bootstrap-authentication": B64.encode("true"),
        "usage-bootstrap-signing": B64.encode("true"),
        "auth-extra-groups": B64.encode(GROUP),
    });
    let mut annotations = json!({});
    if ttl_secs > 0 {
        let expires = now() + ttl_secs;
        data["expiration"] = json!(B64.encode(rfc3339(expires)));
        annotations["kiln-standin/expires-unix"] = json!(expires.to_string());
    }
    let secret_obj = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system", "annotations": annotations},
        "data": data,
    });
    etcd.create(&secret_key(id), &secret_obj.to_string())
}

/// A stored, unexpired token: `id.secret` and its expiry (None = never).
fn decode(secret_json: &str) -> Option<(String, Option<u64>)> {
    let v: Value = serde_json::from_str(secret_json).ok()?;
    let field = |k: &str| -> Option<String> {
        String::from_utf8(B64.decode(v["data"][k].as_str()?).ok()?).ok()
    };
    let expires = v["metadata"]["annotations"]["kiln-standin/expires-unix"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok());
    if expires.is_some_and(|e| e <= now()) {
        return None;
    }
    Some((
        format!("{}.{}", field("token-id")?, field("token-secret")?),
        expires,
    ))
}

/// Whether `token` (id.secret) is a stored, unexpired bootstrap token.
pub fn known(etcd: &Etcd, token: &str) -> Result<bool> {
    let id = token.split('.').next().unwrap_or_default();
    Ok(etcd
        .get(&secret_key(id))?
        .and_then(|s| decode(&s))
        .is_some_and(|(t, _)| t == token))
}

/// Every unexpired token, as `kubeadm token list -o json` prints them.
pub fn list(etcd: &Etcd) -> Result<Vec<Value>> {
    Ok(etcd
        .values(SECRETS)?
        .iter()
        .filter_map(|s| decode(s))
        .map(|(token, expires)| {
            let mut out = json!({
                "kind": "BootstrapToken",
                "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
                "token": token,
                "usages": ["authentication", "signing"],
                "groups": [GROUP],
            });
            if let Some(e) = expires {
                out["expires"] = json!(rfc3339(e));
            }
            out
        })
        .collect())
}

/// Creates `token` (CreateNewTokens in
/// cmd/kubeadm/app/phases/bootstraptoken/node/token.go): refuses an
/// existing id, as kubeadm does.
pub fn create(etcd: &Etcd, token: &str, ttl_secs: u64) -> Result<()> {
    if !rules::is_token(token) {
        refuse!("the bootstrap token is invalid (not [a-z0-9]{{6}}.[a-z0-9]{{16}})");
    }
    if !store(etcd, token, ttl_secs)? {
        let id = token.split('.').next().unwrap_or_default();
        refuse!("a token with id {id:?} already exists");
    }
    Ok(())
}

/// Writes a kubeconfig (JSON is valid YAML) for the API server at `server`;
/// on control planes an extension records the etcd the token commands use.
pub fn write_kubeconfig(
    root: &Root,
    path: &str,
    server: &str,
    ca_pem: &[u8],
    etcd: Option<&ExternalEtcd>,
    user: Value,
) -> Result<()> {
    let extensions: Vec<Value> = etcd
        .map(|etcd| {
            json!({"name": "kiln-standin", "extension": {
                "endpoints": etcd.endpoints, "caFile": etcd.ca_file, "certFile": etcd.cert_file, "keyFile": etcd.key_file,
            }})
        })
        .into_iter()
        .collect();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubernetes", "cluster": {
            "server": server,
            "certificate-authority-data": B64.encode(ca_pem),
            "extensions": extensions,
        }}],
        "users": [{"name": "kubernetes-admin", "user": user}],
        "contexts": [{"name": "kubernetes-admin@kubernetes", "context": {"cluster": "kubernetes", "user": "kubernetes-admin"}}],
        "current-context": "kubernetes-admin@kubernetes",
    });
    super::write_private(
        root,
        path,
        &serde_json::to_string_pretty(&config).unwrap_or_default(),
    )
}

/// The etcd a kubeconfig written by [`write_kubeconfig`] names.
pub fn etcd_of_kubeconfig(root: &Root, path: &str) -> Result<ExternalEtcd> {
    let text = std::fs::read_to_string(root.path(path)).map_err(|e| {
        Refused(format!(
            "reading kubeconfig {path}: {e} (run kubeadm init or join first)"
        ))
    })?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| Refused(format!("{path} is not a kubeconfig: {e}")))?;
    let ext = &config["clusters"][0]["cluster"]["extensions"][0]["extension"];
    let s = |k: &str| ext[k].as_str().map(str::to_owned);
    match (
        s("caFile"),
        s("certFile"),
        s("keyFile"),
        ext["endpoints"].as_array(),
    ) {
        (Some(ca_file), Some(cert_file), Some(key_file), Some(eps)) => Ok(ExternalEtcd {
            endpoints: eps
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
            ca_file,
            cert_file,
            key_file,
        }),
        _ => refuse!("{path} was not written by this kubeadm (no cluster extension)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
