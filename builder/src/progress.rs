//! Progress output: a spinner per long step on a terminal, silence in CI and
//! pipes (the final summary is printed either way).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
        let spinner = spinner(label);
        let result = work();
        spinner.finish_and_clear();
        result
    }

    /// Runs every job at once, each under its own spinner line (one
    /// MultiProgress draws them, so no line runs into another); returns
    /// their results in order.
    pub fn parallel<T: Send, F: FnOnce() -> T + Send>(&self, jobs: Vec<(String, F)>) -> Vec<T> {
        let bars = self.interactive.then(MultiProgress::new);
        std::thread::scope(|s| {
            let running: Vec<_> = jobs
                .into_iter()
                .map(|(label, work)| {
                    let spinner = bars.as_ref().map(|bars| bars.add(spinner(&label)));
                    s.spawn(move || {
                        let result = work();
                        if let Some(spinner) = spinner {
                            spinner.finish_and_clear();
                        }
                        result
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|job| {
                    job.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }
}

fn spinner(label: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_message(label.to_owned());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
