//! The agent's one entry: its command line, and for the first-boot commands
//! the done check, who this node is, the one `match` on its role, and what
//! a converged node leaves behind (status.json in phase converged, the done
//! marker).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use crate::context::NodeContext;
use crate::status::{self, Phase, Status};
use crate::{control_plane, etcd, renew};
use kiln_node::layout::{self, under_root};
use kiln_node::node_config::{NodeConfig, Role};

/// kiln's first-boot agent: makes this node converge into its cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// Prefix for every path the agent reads or writes (tests use a folder).
    #[arg(long, global = true, default_value = "/")]
    pub root: PathBuf,
    /// Configure only; never start etcd (implied when --root is not /).
    #[arg(long, global = true)]
    pub no_start: bool,
    /// Seconds any single wait (for peers, quorum, health) may last.
    #[arg(long, global = true, default_value_t = 300)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
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
    /// Report, until stopped, for how long this etcd member has not seen
    /// each member answer: the cluster's view of who is dead (what
    /// kiln-watch.service runs on etcd members).
    Watch,
    /// Register this master as a keepalived peer in etcd, until stopped,
    /// and keep keepalived's unicast peers at the listed and registered
    /// masters (what kiln-vip-peers.service runs on masters).
    VipPeers,
}

impl Cli {
    /// The first-boot commands, whose decisions go to the console too.
    pub fn is_first_boot(&self) -> bool {
        matches!(self.chosen_command(), Command::Run | Command::Settle)
    }

    fn chosen_command(&self) -> Command {
        self.command.unwrap_or(Command::Run)
    }
}

const ALREADY_CONVERGED: &str = "already converged (done marker present): nothing to do";

/// `kiln-firstboot [COMMAND]`.
pub fn run(cli: &Cli) -> Result<()> {
    let path = under_root(&cli.root, layout::NODE_CONFIG.as_ref());
    let config = NodeConfig::load(&path)?;
    let start = cli.root == Path::new("/") && !cli.no_start;
    let timeout = Duration::from_secs(cli.timeout);
    let node = |config| NodeContext::new(config, &cli.root, timeout, start);
    match cli.chosen_command() {
        Command::ShowConfig => print!("{}", config.to_toml()),
        Command::CheckApiserver => control_plane::check_apiserver(&cli.root)?,
        Command::Renew => renew::run(&cli.root, &config)?,
        Command::Run => converge(config, &cli.root, timeout, start)?,
        Command::Plan => {
            etcd_only(&config, &path)?;
            if status::is_done(&cli.root) {
                println!("{ALREADY_CONVERGED}");
            } else {
                println!("{}", etcd::plan(&etcd::EtcdMember::new(&node(config)?)?)?);
            }
        }
        Command::Settle => {
            etcd_only(&config, &path)?;
            if !already_converged(&cli.root) {
                let node = node(config)?;
                let decision = etcd::settle(&etcd::EtcdMember::new(&node)?)?;
                record_converged(&node, decision)?;
            }
        }
        Command::Snapshot => {
            etcd_only(&config, &path)?;
            etcd::backup::run(&etcd::EtcdMember::new(&node(config)?)?)?;
        }
        Command::Watch => {
            if !config.runs_etcd() {
                bail!(
                    "{} says role = {} with {:?} etcd; `watch` runs on etcd members only",
                    path.display(),
                    config.role,
                    config.etcd.topology
                );
            }
            etcd::watch::run(&etcd::EtcdMember::new(&node(config)?)?)?;
        }
        Command::VipPeers => {
            if config.role != Role::Master {
                bail!(
                    "{} says role = {}; `vip-peers` runs on masters only",
                    path.display(),
                    config.role
                );
            }
            control_plane::vip::run(&node(config)?)?;
        }
    }
    Ok(())
}

/// `run`: the done check, who this node is, its role's path, and once it
/// converged, the record of it.
fn converge(config: NodeConfig, root: &Path, timeout: Duration, start: bool) -> Result<()> {
    if already_converged(root) {
        return Ok(());
    }
    let node = NodeContext::new(config, root, timeout, start)?;
    let decision = match node.config.role {
        Role::Etcd => match etcd::run(&etcd::EtcdMember::new(&node)?)? {
            Some(decision) => decision,
            // Configured, not started: `settle` finishes once etcd runs.
            None => return Ok(()),
        },
        Role::Master => control_plane::master::converge(&control_plane::KubeNode::new(&node)?)?,
        Role::Worker => control_plane::worker::converge(&control_plane::KubeNode::new(&node)?)?,
    };
    record_converged(&node, decision)
}

/// The done check: a node that converged once changes nothing again.
fn already_converged(root: &Path) -> bool {
    let done = status::is_done(root);
    if done {
        tracing::info!("{ALREADY_CONVERGED}");
    }
    done
}

/// What a converged node leaves behind: status.json in phase converged,
/// then the done marker.
fn record_converged(node: &NodeContext, decision: String) -> Result<()> {
    status::write_status(
        &node.root,
        &Status {
            phase: Phase::Converged,
            role: node.config.role.to_string(),
            member: node.me.name.clone(),
            decision,
            learner_id: None,
            updated: status::now(),
        },
    )?;
    status::mark_done(&node.root)
}

/// `plan`, `settle` and `snapshot` are the etcd role's; `run` converges
/// the other roles in one go.
fn etcd_only(config: &NodeConfig, path: &Path) -> Result<()> {
    if config.role != Role::Etcd {
        bail!(
            "{} says role = {}; this command is for etcd nodes only",
            path.display(),
            config.role
        );
    }
    Ok(())
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
