//! `kiln`: entry point. Exit codes: 0 ok, 1 runtime failure, 2 bad input.

use std::process::ExitCode;

use clap::Parser;
use kiln::cli::{run, Cli};
use kiln::output::FolderConflict;
use kiln::profile::ProfileError;

fn main() -> ExitCode {
    kiln::console::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ProfileError>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) if e.downcast_ref::<FolderConflict>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
