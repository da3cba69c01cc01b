//! Command-line interface of `kiln`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::build::{build, print_summary, BuildOptions};
use crate::profile;
use crate::progress::Progress;

/// Bakes role-specific node images (etcd, master, worker) for a highly
/// available Kubernetes cluster from one cluster profile.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the cluster's PKI, Ignition configs and root filesystems.
    Build {
        /// The cluster profile (TOML).
        profile: PathBuf,
        /// Output folder [default: images/<cluster>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Secrets folder, created on first use and reused afterwards
        /// [default: <out>/secrets].
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// The kiln-firstboot binary to bake in [default: beside kiln].
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
    },
    /// Check a profile and report every problem with its position.
    Validate {
        /// The cluster profile (TOML).
        profile: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            profile,
            out,
            secrets,
            agent,
        } => {
            let options = BuildOptions {
                profile,
                out,
                secrets,
                agent,
            };
            let report = build(&options, &Progress::detect())?;
            print_summary(&report);
            Ok(())
        }
        Command::Validate { profile } => {
            let loaded = profile::load(&profile)?;
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            let roles: Vec<_> = loaded.profile.roles().iter().map(|r| r.as_str()).collect();
            println!(
                "profile {} is valid: roles {}",
                profile.display(),
                roles.join(", ")
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
