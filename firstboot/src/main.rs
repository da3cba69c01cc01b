//! `kiln-firstboot`: command-line entry point of the first-boot agent.

use std::process::ExitCode;

use clap::Parser;
use kiln_firstboot::{run, Cli};
use kiln_node::node_config::NodeConfigError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kiln_node::logging::init(
        tracing::level_filters::LevelFilter::INFO,
        cli.is_first_boot(),
    );
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A node configuration it cannot use is bad input, not a failure to converge.
            match e.downcast_ref::<NodeConfigError>() {
                Some(_) => ExitCode::from(2),
                None => ExitCode::FAILURE,
            }
        }
    }
}
