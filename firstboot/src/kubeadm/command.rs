//! Running kubeadm: `init`, `join` and the bootstrap-token calls, with
//! kubeadm's own words in every error and no secret in its argv or our logs.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::redact;
use kiln_node::layout::kube::{ADMIN_KUBECONFIG, KUBEADM_INIT_CONFIG};

/// Test images put a stand-in elsewhere; release images use kubeadm on PATH.
const KUBEADM_ENV: &str = "KILN_KUBEADM";
/// Lines of kubeadm's stderr an error repeats: its last words say why.
const STDERR_TAIL: usize = 15;

fn kubeadm() -> OsString {
    std::env::var_os(KUBEADM_ENV).unwrap_or_else(|| "kubeadm".into())
}

/// Runs `kubeadm ARGS`; returns stdout, or an error with stderr's tail.
/// The line logged and the stderr repeated go through [`redact`]; stdout,
/// where kubeadm prints tokens (`init`'s join command, `token list`), is
/// returned to the caller and never logged.
pub fn run(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(kubeadm());
    cmd.args(args);
    let shown = redact::command(&cmd);
    tracing::info!(command = %shown, "running kubeadm");
    let out = cmd.output().with_context(|| {
        format!(
            "starting `{shown}`: is kubeadm installed? Give the profile an \
             images.kubernetes source (apt repository or binaries folder) and rebuild"
        )
    })?;
    if !out.status.success() {
        let stderr = redact::text(&String::from_utf8_lossy(&out.stderr));
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
///
/// The token reaches kubeadm in the init configuration (0600, written by
/// `host::prepare` on every master), never as an argument: an argument is in
/// /proc/PID/cmdline for every local user while kubeadm runs. `kubeadm token
/// create --config FILE` loads an InitConfiguration and creates each of its
/// `bootstrapTokens` with their ttl, usages and groups (RunCreateToken:
/// LoadOrDefaultInitConfiguration, then tokenphase.CreateNewTokens, in
/// cmd/kubeadm/app/cmd/token.go). `--kubeconfig` is one of the flags kubeadm
/// lets beside `--config`; `--ttl` is not (isAllowedFlag in
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go).
pub fn ensure_token(token: &str) -> Result<bool> {
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
    run(&[
        "token",
        "create",
        "--config",
        KUBEADM_INIT_CONFIG,
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
