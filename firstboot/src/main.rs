//! `kiln-firstboot`: command-line entry point of the first-boot agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kiln_firstboot::{layout, NodeConfig};

/// kiln's first-boot agent: makes this node converge into its cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Prefix for every path the agent reads or writes (tests use a folder).
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load the node configuration and print it.
    ShowConfig,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::ShowConfig => {
            let path = layout::under_root(&cli.root, layout::NODE_CONFIG.as_ref());
            let config = NodeConfig::load(&path)?;
            print!("{}", config.to_toml());
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
