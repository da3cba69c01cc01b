//! InitConfiguration.bootstrapTokens read as kubeadm reads it, for `init`
//! and `token create --config` alike: kubeadm's defaults for a missing
//! field and its ValidateBootstrapTokens
//! (cmd/kubeadm/app/apis/kubeadm/validation/validation.go).

use serde_json::Value;

use super::{rules, Result};
use crate::refuse;

/// KnownTokenUsages (k8s.io/cluster-bootstrap/token/api/types.go); also
/// kubeadm's default when `usages` is missing (DefaultTokenUsages).
const USAGES: [&str; 2] = ["signing", "authentication"];
/// kubeadm's default `groups` (NodeBootstrapTokenAuthGroup).
const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token and its lifetime in seconds (0 = never expires).
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub ttl_secs: u64,
}

/// `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z` (BootstrapGroupPattern,
/// k8s.io/cluster-bootstrap/token/api/types.go; ValidateBootstrapGroupName).
pub fn is_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let body = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-';
    rest.len() <= 256
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && rest.bytes().all(body)
}

fn strings<'a>(value: &'a Value, default: &[&'a str]) -> Vec<&'a str> {
    match value.as_array() {
        Some(items) => items.iter().filter_map(Value::as_str).collect(),
        None => default.to_vec(),
    }
}

/// Every `bootstrapTokens` entry of the InitConfiguration `init` in `path`.
/// An empty list is refused: kubeadm would generate a random token, which
/// the baked worker images cannot know.
pub fn from_init(path: &str, init: &Value) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let entries = init["bootstrapTokens"].as_array().into_iter().flatten();
    for (i, t) in entries.enumerate() {
        let at = format!("{path}: InitConfiguration.bootstrapTokens[{i}]");
        let token = t["token"].as_str().unwrap_or_default();
        if !rules::is_token(token) {
            // ValidateToken: the value itself stays out of the message.
            refuse!(
                "{at}.token: the bootstrap token is invalid (not [a-z0-9]{{6}}.[a-z0-9]{{16}})"
            );
        }
        let usages = strings(&t["usages"], &USAGES);
        if let Some(bad) = usages.iter().find(|u| !USAGES.contains(u)) {
            refuse!("{at}.usages: {bad:?} is not one of {USAGES:?} (ValidateTokenUsages)");
        }
        let groups = strings(&t["groups"], &[DEFAULT_GROUP]);
        if !groups.is_empty() && !usages.contains(&"authentication") {
            refuse!("{at}.groups: token groups cannot be specified unless --usages includes \"authentication\"");
        }
        if let Some(bad) = groups.iter().find(|g| !is_group(g)) {
            refuse!("{at}.groups: {bad:?} does not match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]");
        }
        if t.get("ttl").is_some() && t.get("expires").is_some() {
            refuse!("{at}: the BootstrapToken .TTL and .Expires fields are mutually exclusive");
        }
        // kubeadm's default ttl (DefaultTokenDuration) is 24 h.
        let ttl = t["ttl"].as_str().unwrap_or("24h0m0s");
        let Some(ttl_secs) = rules::go_duration_secs(ttl) else {
            refuse!(
                "{at}.ttl {ttl:?} is not a Go duration like 24h0m0s (at most {})",
                rules::GO_MAX_DURATION
            );
        };
        tokens.push(Token {
            token: token.to_owned(),
            ttl_secs,
        });
    }
    if tokens.is_empty() {
        refuse!("{path}: InitConfiguration.bootstrapTokens is empty: kubeadm would generate a random token the baked worker images cannot know");
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_follow_the_bootstrap_group_pattern() {
        assert!(is_group(DEFAULT_GROUP));
        for bad in [
            "system:bootstrappers:",
            "system:bootstrappers:x-",
            "system:nodes",
            "system:bootstrappers:UPPER",
        ] {
            assert!(!is_group(bad), "{bad}");
        }
    }

    #[test]
    fn reads_tokens_with_kubeadms_defaults_and_rules() {
        let t = "abcdef.0123456789abcdef";
        let ok = from_init(
            "i",
            &json!({"bootstrapTokens": [{"token": t, "ttl": "0s"}]}),
        )
        .unwrap();
        assert_eq!((ok[0].token.as_str(), ok[0].ttl_secs), (t, 0));
        let refused = |entry: Value| {
            from_init("i", &json!({"bootstrapTokens": [entry]}))
                .unwrap_err()
                .0
        };
        assert!(refused(json!({"token": "nope"})).contains("invalid"));
        assert!(refused(json!({"token": t, "usages": ["signing"]})).contains("authentication"));
        assert!(refused(json!({"token": t, "usages": ["ssh"]})).contains("ValidateTokenUsages"));
        assert!(
            refused(json!({"token": t, "ttl": "1h", "expires": "2030-01-01T00:00:00Z"}))
                .contains("mutually exclusive")
        );
        assert!(from_init("i", &json!({})).unwrap_err().0.contains("empty"));
    }
}
