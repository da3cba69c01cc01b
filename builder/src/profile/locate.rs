//! Maps field paths (`etcd.members[1].ip`) to positions in the profile's
//! text and back, from one span-preserving parse of the TOML.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{line_column, Diagnostic, Severity};

/// One step of a field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// Splits `etcd.members[1].ip` into keys and indices.
pub fn parse_path(path: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                segments.push(Segment::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    segments
}

/// The parsed profile with its spans, able to position a diagnostic.
pub struct SourceMap<'a> {
    pub file: &'a Path,
    pub src: &'a str,
    pub root: &'a Spanned<DeTable<'a>>,
}

impl<'a> SourceMap<'a> {
    /// The span of `field`'s value, or of the nearest enclosing table that
    /// exists when the field itself is absent (a missing or defaulted field).
    pub fn span_of(&self, field: &str) -> Range<usize> {
        let mut span = self.root.span();
        let mut table = Some(self.root.get_ref());
        let mut current: Option<&Spanned<DeValue<'a>>> = None;
        for segment in parse_path(field) {
            let next = match segment {
                Segment::Key(k) => table.and_then(|t| t.get(k)),
                Segment::Index(i) => current
                    .and_then(|v| v.get_ref().as_array())
                    .and_then(|a| a.get(i)),
            };
            let Some(next) = next else { break };
            span = next.span();
            table = next.get_ref().as_table();
            current = Some(next);
        }
        span
    }

    /// Whether `field` is written in the profile (not absent or defaulted).
    pub fn has(&self, field: &str) -> bool {
        let parent = field.rsplit_once('.').map_or("", |(p, _)| p);
        self.span_of(field) != self.span_of(parent)
    }

    /// The path of the innermost field whose key or value covers `span`.
    pub fn path_at(&self, span: &Range<usize>) -> String {
        let mut best = (usize::MAX, String::new());
        if *span != self.root.span() {
            search_table(self.root.get_ref(), "", span, &mut best);
        }
        best.1
    }

    pub fn diagnostic(
        &self,
        severity: Severity,
        field: String,
        span: Range<usize>,
        message: String,
        hint: String,
    ) -> Diagnostic {
        let (line, column) = line_column(self.src, span.start);
        Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            column,
            field,
            message,
            hint,
        }
    }

    /// A diagnostic positioned at `field` (or its enclosing table).
    pub fn at_field(
        &self,
        severity: Severity,
        field: String,
        message: String,
        hint: String,
    ) -> Diagnostic {
        let span = self.span_of(&field);
        self.diagnostic(severity, field, span, message, hint)
    }
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start < outer.end && outer.start <= inner.start && inner.end <= outer.end.max(inner.start)
}

fn consider(
    candidate: &Range<usize>,
    path: &str,
    target: &Range<usize>,
    best: &mut (usize, String),
) {
    // `<=` so that a deeper node with the same span (an array of tables and
    // its first element share the header's span) wins.
    if covers(candidate, target) && candidate.len() <= best.0 {
        *best = (candidate.len(), path.to_owned());
    }
}

fn search_table(
    table: &DeTable<'_>,
    prefix: &str,
    target: &Range<usize>,
    best: &mut (usize, String),
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(&key.span(), &path, target, best);
        search_value(value, &path, target, best);
    }
}

fn search_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    target: &Range<usize>,
    best: &mut (usize, String),
) {
    consider(&value.span(), path, target, best);
    match value.get_ref() {
        DeValue::Table(t) => search_table(t, path, target, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                search_value(item, &format!("{path}[{i}]"), target, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str =
        "[cluster]\nname = \"x\"\nnode_subnets = [\"10.0.0.0/24\", \"10.1.0.0/24\"]\n\n\
                       [[etcd.members]]\nname = \"a\"\nip = \"10.0.0.1\"\n\n\
                       [[etcd.members]]\nname = \"b\"\nip = \"10.0.0.2\"\n\n\
                       [control_plane]\nvip = { address = \"10.0.0.9\", interface = \"eth0\" }\n";

    fn with_map(check: impl FnOnce(&SourceMap<'_>)) {
        let root = DeTable::parse(SRC).expect("test profile parses");
        let map = SourceMap {
            file: Path::new("t.toml"),
            src: SRC,
            root: &root,
        };
        check(&map);
    }

    fn position(map: &SourceMap<'_>, field: &str) -> (usize, usize) {
        line_column(map.src, map.span_of(field).start)
    }

    #[test]
    fn paths_parse_into_keys_and_indices() {
        use Segment::*;
        assert_eq!(
            parse_path("etcd.members[1].ip"),
            vec![Key("etcd"), Key("members"), Index(1), Key("ip")]
        );
        assert_eq!(parse_path("a[0][2]"), vec![Key("a"), Index(0), Index(2)]);
        assert_eq!(parse_path(""), vec![]);
    }

    #[test]
    fn field_paths_map_to_value_positions() {
        with_map(|map| {
            assert_eq!(position(map, "cluster.name"), (2, 8));
            assert_eq!(position(map, "cluster.node_subnets[1]"), (3, 32));
            assert_eq!(position(map, "etcd.members[1].ip"), (11, 6));
            assert_eq!(position(map, "control_plane.vip.interface"), (14, 43));
        });
    }

    #[test]
    fn absent_fields_fall_back_to_the_enclosing_table() {
        with_map(|map| {
            assert_eq!(position(map, "etcd.members[1].dns_names"), (9, 1));
            assert_eq!(position(map, "cluster.domain"), (1, 1));
            assert_eq!(position(map, "workers.nodes[0].ip"), (1, 1));
            assert!(map.has("etcd.members[1].ip") && !map.has("cluster.domain"));
        });
    }

    #[test]
    fn spans_map_back_to_the_innermost_field() {
        with_map(|map| {
            for field in [
                "cluster.name",
                "cluster.node_subnets[1]",
                "etcd.members[0].ip",
                "etcd.members[1]",
                "control_plane.vip.address",
            ] {
                assert_eq!(map.path_at(&map.span_of(field)), field);
            }
            assert_eq!(map.path_at(&map.root.span()), "");
        });
    }
}
