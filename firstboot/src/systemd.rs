//! The agent's calls to systemctl, with the unit and the failure named.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// `systemctl ARGS`; fails with the command and `hint` when it does.
pub fn systemctl(args: &[&str], hint: &str) -> Result<()> {
    let mut cmd = Command::new("systemctl");
    cmd.args(args);
    let shown = crate::redact::command(&cmd);
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}{hint}");
    }
    Ok(())
}
