//! Log output of both programs, at the level `RUST_LOG` names. On a
//! terminal: colours and timestamps. Piped: plain text. Under systemd with
//! the journal on stderr (`JOURNAL_STREAM`): events go to the journal
//! natively, with their fields (MEMBER, PEER, DECISION, ...) as journal
//! fields and no second timestamp, and a plain copy goes to the console,
//! where an operator watching a node boot reads the agent's decisions.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs at the level `RUST_LOG` names (`off`, `error`, `warn`, `info`,
/// `debug`, `trace`), else at `default`. A level only: per-module filters
/// would put a regex engine into the agent every image carries. With
/// `console`, journal entries are copied to the console too: for the
/// first-boot decisions, not for the timers' routine runs.
pub fn init(default: LevelFilter, console: bool) {
    let max = level_from_env(default);
    let journal = journal_on_stderr()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    match journal {
        Some(journal) => {
            let console = console
                .then(|| {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open("/dev/console")
                        .ok()
                })
                .flatten();
            let copy = console.map(|file| {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .with_writer(std::sync::Mutex::new(file))
            });
            tracing_subscriber::registry()
                .with(journal.with_field_prefix(None))
                .with(copy)
                .with(max)
                .init();
        }
        None => {
            let stderr = std::io::stderr();
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(stderr.is_terminal())
                        .with_writer(std::io::stderr),
                )
                .with(max)
                .init();
        }
    }
}

/// systemd's `JOURNAL_STREAM` names the device and inode of the stream
/// it connected; it counts only while stderr is still that stream.
fn journal_on_stderr() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    matches_stream(&stream, meta.dev(), meta.ino())
}

fn matches_stream(setting: &str, dev: u64, ino: u64) -> bool {
    setting.split_once(':').is_some_and(|(d, i)| {
        d.parse::<u64>().is_ok_and(|d| d == dev) && i.parse::<u64>().is_ok_and(|i| i == ino)
    })
}

/// The level `RUST_LOG` names, else `default`.
pub fn level_from_env(default: LevelFilter) -> LevelFilter {
    level(std::env::var("RUST_LOG").ok().as_deref(), default)
}

fn level(setting: Option<&str>, default: LevelFilter) -> LevelFilter {
    setting
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_names_a_level_or_the_default_holds() {
        assert_eq!(level(Some("debug"), LevelFilter::INFO), LevelFilter::DEBUG);
        assert_eq!(level(Some(" OFF "), LevelFilter::INFO), LevelFilter::OFF);
        for unusable in [None, Some(""), Some("kiln=debug")] {
            assert_eq!(level(unusable, LevelFilter::WARN), LevelFilter::WARN);
        }
    }

    #[test]
    fn the_journal_counts_only_on_its_own_stream() {
        assert!(matches_stream("8:12345", 8, 12345));
        assert!(!matches_stream("8:12345", 8, 1));
        assert!(!matches_stream("garbage", 8, 12345));
    }
}
