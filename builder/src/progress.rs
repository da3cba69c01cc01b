//! Progress output: a spinner per long step on a terminal, silence in CI and
//! pipes (the final summary is printed either way).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    interactive: bool,
}

impl Progress {
    /// Interactive when stderr is a terminal and `CI` is not set.
    pub fn detect() -> Progress {
        Progress {
            interactive: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        }
    }

    /// Runs `work` under a spinner labelled `label`.
    pub fn step<T>(&self, label: &str, work: impl FnOnce() -> T) -> T {
        if !self.interactive {
            return work();
        }
        let spinner = ProgressBar::new_spinner().with_message(label.to_owned());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
        );
        spinner.enable_steady_tick(Duration::from_millis(120));
        let result = work();
        spinner.finish_and_clear();
        result
    }
}
