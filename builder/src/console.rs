//! What `kiln` tells its user on stderr. The library reports through
//! tracing, like the agent; the command line prints each event as one plain
//! line: a note as is, a warning after `warning: `. `RUST_LOG=warn` keeps
//! only the warnings, `RUST_LOG=off` silences both.

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the plain-line printer, at `RUST_LOG`'s level or `info`.
pub fn init() {
    let level = kiln_node::logging::level_from_env(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .event_format(PlainLine)
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
}

/// One line per event, prefixed by its severity when it is more than a note.
struct PlainLine;

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(prefix(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        Level::INFO => "",
        Level::DEBUG | Level::TRACE => "debug: ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_notes_go_unprefixed() {
        assert_eq!(prefix(Level::INFO), "");
        assert_eq!(prefix(Level::WARN), "warning: ");
        assert_eq!(prefix(Level::ERROR), "error: ");
        assert_eq!(prefix(Level::DEBUG), "debug: ");
    }
}
