//! The agent's calls to systemctl, with the unit and the failure named.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// `systemctl ARGS`; fails with the command and `hint` when it does.
pub fn systemctl(args: &[&str], hint: &str) -> Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !status.success() {
        bail!("systemctl {} failed with {status}{hint}", args.join(" "));
    }
    Ok(())
}
