//! Log output of both programs: to stderr, at the level `RUST_LOG` names.

use tracing::level_filters::LevelFilter;

/// Logs to stderr at the level `RUST_LOG` names (`off`, `error`, `warn`,
/// `info`, `debug`, `trace`), else at `default`. A level only: per-module
/// filters would put a regex engine into the agent every image carries.
pub fn init(default: LevelFilter) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level(std::env::var("RUST_LOG").ok().as_deref(), default))
        .init();
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
}
