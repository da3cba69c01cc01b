//! Running kubeadm: `init`, `join` and the bootstrap-token calls, with
//! kubeadm's own words in every error.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{bail, Context, Result};

use kiln_node::layout::kube::ADMIN_KUBECONFIG;

/// Test images put a stand-in elsewhere; release images use kubeadm on PATH.
const KUBEADM_ENV: &str = "KILN_KUBEADM";
/// Lines of kubeadm's stderr an error repeats: its last words say why.
const STDERR_TAIL: usize = 15;

fn kubeadm() -> OsString {
    std::env::var_os(KUBEADM_ENV).unwrap_or_else(|| "kubeadm".into())
}

/// Runs `kubeadm ARGS`; returns stdout, or an error with stderr's tail.
pub fn run(args: &[&str]) -> Result<String> {
    let program = kubeadm();
    let shown = format!("{} {}", program.to_string_lossy(), args.join(" "));
    tracing::info!(command = %shown, "running kubeadm");
    let out = Command::new(&program)
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "starting `{shown}`: is kubeadm installed? Give the profile an \
                 images.kubernetes source (apt repository or binaries folder) and rebuild"
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL)..].join("\n");
        bail!(
            "`{shown}` failed with {}; kubeadm said:\n{tail}",
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The tokens `kubeadm token list -o json` printed: a stream of objects.
pub fn listed_tokens(json: &str) -> Result<Vec<String>> {
    serde_json::Deserializer::from_str(json)
        .into_iter::<serde_json::Value>()
        .map(|v| {
            let v = v.context("`kubeadm token list -o json` printed something that is not JSON")?;
            Ok(v["token"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Creates the bootstrap token unless the cluster already has it, so every
/// master can call this after init or join and the token of the baked
/// images keeps working.
pub fn ensure_token(token: &str, ttl_seconds: u64) -> Result<bool> {
    let listed = run(&[
        "token",
        "list",
        "--kubeconfig",
        ADMIN_KUBECONFIG,
        "-o",
        "json",
    ])?;
    if listed_tokens(&listed)?.iter().any(|t| t == token) {
        return Ok(false);
    }
    let ttl = format!("{ttl_seconds}s");
    run(&[
        "token",
        "create",
        token,
        "--ttl",
        &ttl,
        "--kubeconfig",
        ADMIN_KUBECONFIG,
    ])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubeadms_stream_of_token_objects() {
        let out = r#"{
    "kind": "BootstrapToken",
    "token": "abcdef.0123456789abcdef",
    "usages": ["signing"]
}
{"kind": "BootstrapToken", "token": "zyxwvu.0123456789abcdef"}
"#;
        assert_eq!(
            listed_tokens(out).unwrap(),
            ["abcdef.0123456789abcdef", "zyxwvu.0123456789abcdef"]
        );
        assert!(listed_tokens("").unwrap().is_empty());
        assert!(listed_tokens("no").is_err());
    }
}
