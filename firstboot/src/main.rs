//! `kiln-firstboot`: command-line entry point of the first-boot agent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use kiln_firstboot::node_config::Role;
use kiln_firstboot::{control_plane, etcd, layout, NodeConfig};

/// kiln's first-boot agent: makes this node converge into its cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Prefix for every path the agent reads or writes (tests use a folder).
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    /// Configure only; never start etcd (implied when --root is not /).
    #[arg(long, global = true)]
    no_start: bool,
    /// Seconds any single wait (for peers, quorum, health) may last.
    #[arg(long, global = true, default_value_t = 300)]
    timeout: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Converge this node into its cluster (the default; what the unit runs).
    Run,
    /// Print what `run` would do and why; change nothing.
    Plan,
    /// After etcd was started: promote it if a learner, confirm health.
    Settle,
    /// Load the node configuration and print it.
    ShowConfig,
    /// Exit 0 when the local API server answers /healthz with ok over TLS
    /// verified by the cluster CA (keepalived's health check on masters).
    CheckApiserver,
    /// Take a verified etcd snapshot, prune old ones, copy it to the
    /// profile's destination (what kiln-snapshot.timer runs).
    Snapshot,
    /// Renew this node's kiln-issued certificates that are inside the
    /// renewal window, keeping their keys (what kiln-renew.timer runs).
    Renew,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let first_boot = matches!(
        cli.command,
        None | Some(Command::Run) | Some(Command::Settle)
    );
    kiln_firstboot::logging::init(tracing::level_filters::LevelFilter::INFO, first_boot);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A node configuration it cannot use is bad input, not a failure to converge.
            match e.downcast_ref::<kiln_firstboot::node_config::NodeConfigError>() {
                Some(_) => ExitCode::from(2),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let path = layout::under_root(&cli.root, layout::NODE_CONFIG.as_ref());
    let config = NodeConfig::load(&path)?;
    let start = cli.root == Path::new("/") && !cli.no_start;
    let node = || etcd_node(&cli, config.clone(), &path);
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::ShowConfig => print!("{}", config.to_toml()),
        Command::Run if config.role != Role::Etcd => {
            let timeout = Duration::from_secs(cli.timeout);
            control_plane::run(&control_plane::Agent::new(
                config, &cli.root, timeout, start,
            )?)?
        }
        Command::CheckApiserver => control_plane::check_apiserver(&cli.root)?,
        Command::Run => etcd::run(&node()?, start)?,
        Command::Plan => println!("{}", etcd::plan(&node()?)?),
        Command::Settle => etcd::settle(&node()?)?,
        Command::Snapshot => etcd::backup::run(&node()?)?,
        Command::Renew => kiln_firstboot::renew::run(&cli.root, &config)?,
    }
    Ok(())
}

/// This node as an etcd member; `run` converges the other roles itself.
fn etcd_node(cli: &Cli, config: NodeConfig, path: &Path) -> Result<etcd::Node> {
    if config.role != Role::Etcd {
        bail!(
            "{} says role = {}; this command is for etcd nodes only",
            path.display(),
            config.role
        );
    }
    etcd::Node::new(config, &cli.root, Duration::from_secs(cli.timeout))
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
