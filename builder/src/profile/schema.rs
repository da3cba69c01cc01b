//! Turns the TOML deserializer's errors (unknown keys, missing fields, wrong
//! types, bad values) into positioned diagnostics, and keeps deserializing
//! past each one so a user sees every schema error at once.

use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer};
use toml::Spanned;

use super::diagnostic::{Diagnostic, Severity};
use super::locate::{parse_path, Segment, SourceMap};
use super::model::Profile;
use super::suggest::{did_you_mean, example, expected_names, quoted};

/// Upper bound on errors collected before giving up; each costs one re-parse.
const MAX_SCHEMA_ERRORS: usize = 32;

/// Deserializes the profile, or returns every schema error found.
pub fn deserialize(map: &SourceMap<'_>) -> Result<Profile, Vec<Diagnostic>> {
    let mut table = map.root.clone();
    let mut found: Vec<Diagnostic> = Vec::new();
    for _ in 0..MAX_SCHEMA_ERRORS {
        let err = match Profile::deserialize(Deserializer::from(table.clone())) {
            Ok(profile) if found.is_empty() => return Ok(profile),
            Ok(_) => break,
            Err(err) => err,
        };
        let (diagnostic, location) = translate(map, &err);
        let repeated = found.iter().any(|d| related(&d.field, &diagnostic.field));
        // Repair the tree so the next attempt gets past this error: a missing
        // field gets a placeholder, anything else loses its key. A repeat
        // means the repair did not help, so a key further out goes instead.
        let repaired = if repeated {
            remove(&mut table, &location) || remove(&mut table, parent(&location))
        } else if err.message().starts_with("missing field") {
            insert_placeholder(&mut table, &diagnostic.field)
        } else {
            remove(&mut table, &location)
        };
        if !repeated {
            found.push(diagnostic);
        }
        if !repaired {
            break;
        }
    }
    drop_misspelled_missing(&mut found);
    Err(found)
}

/// A misspelled required key shows up twice: as unknown, with a "did you
/// mean" for the missing one, and as missing. Keep only the one with the fix.
fn drop_misspelled_missing(found: &mut Vec<Diagnostic>) {
    let suggested: Vec<String> = found
        .iter()
        .filter_map(|d| {
            let name = quoted(d.hint.strip_prefix("did you mean ")?)?;
            Some(join(parent(&d.field), name))
        })
        .collect();
    found.retain(|d| !(d.message.starts_with("missing required") && suggested.contains(&d.field)));
}

/// The diagnostic for one deserializer error, and the path it points at.
fn translate(map: &SourceMap<'_>, err: &toml::de::Error) -> (Diagnostic, String) {
    let span = err.span().unwrap_or_else(|| map.root.span());
    let location = map.path_at(&span);
    let raw = err.message().trim();
    let word = quoted(raw).unwrap_or_default();
    let valid = expected_names(raw);
    let example_hint = |field: &str| match example(field) {
        Some(line) => format!("write it like: {line}"),
        None => "see docs/profile.md for this field".to_owned(),
    };
    let mut field = location.clone();
    // A one-key table's keys are an enum's variants to serde.
    let one_key_table = ONE_OF
        .iter()
        .any(|(key, ..)| parent(&location).rsplit('.').next() == Some(key));
    let (message, hint) = if raw.starts_with("unknown field")
        || (raw.starts_with("unknown variant") && one_key_table)
    {
        let list = if valid.is_empty() {
            "this table takes no keys".to_owned()
        } else {
            format!("valid keys here: {}", valid.join(", "))
        };
        let hint = match did_you_mean(word, &valid) {
            Some(s) => format!("did you mean `{s}`? {list}"),
            None => format!("remove it; {list}"),
        };
        (format!("unknown key `{word}`"), hint)
    } else if raw.starts_with("unknown variant") {
        unknown_value(&location, word, &valid)
    } else if raw.starts_with("missing field") {
        field = join(&location, word);
        let hint = match example(&field) {
            Some(line) => format!("add it, for example: {line}"),
            None => "add it; see docs/profile.md".to_owned(),
        };
        (format!("missing required field `{word}`"), hint)
    } else if let Some(rest) = raw.strip_prefix("invalid type: ") {
        (format!("wrong type: found {rest}"), example_hint(&field))
    } else if let Some(both) = exactly_one(raw) {
        one_of(&location, both)
    } else if raw == "invalid IP address syntax" {
        let text = map.src.get(span.clone()).unwrap_or_default();
        (format!("{text} is not an IP address"), example_hint(&field))
    } else {
        (raw.to_owned(), example_hint(&field))
    };
    let diagnostic = map.diagnostic(Severity::Error, field, span, message, hint);
    (diagnostic, location)
}

/// Whether a one-key table (an enum of sources) had too many keys (`true`)
/// or none (`false`): toml's wording in de/deserializer/table.rs.
fn exactly_one(raw: &str) -> Option<bool> {
    match raw {
        "wanted exactly 1 element, more than 1 element" => Some(true),
        "wanted exactly 1 element, found 0 elements" => Some(false),
        _ => None,
    }
}

/// The profile's one-key tables: the field's last key, its two keys, how
/// to write each, and what tells them apart.
const ONE_OF: [(&str, [&str; 2], [&str; 2], &str); 3] = [
    (
        "contents",
        ["inline", "local"],
        ["inline = \"text\"", "local = \"files/name\""],
        "",
    ),
    (
        "restore_from",
        ["local", "node"],
        [
            "local = \"snapshots/prod.db\"",
            "node = \"/mnt/backup/prod.db\"",
        ],
        " (local is baked into the etcd image, node is read on the node)",
    ),
    (
        "kubernetes",
        ["apt", "binaries"],
        ["apt = { repository, key }", "binaries = \"bin/\""],
        " (apt installs packages into the Debian base, binaries copies executables from a \
         folder)",
    ),
];

fn one_of(field: &str, both: bool) -> (String, String) {
    let last = field.rsplit('.').next().unwrap_or(field);
    let Some((key, [a, b], [write_a, write_b], why)) = ONE_OF.iter().find(|(k, ..)| *k == last)
    else {
        let message = if both {
            "more than one key is set"
        } else {
            "no key is set"
        };
        return (
            message.to_owned(),
            "set exactly one key; see docs/profile.md".to_owned(),
        );
    };
    if both {
        (
            format!("both {a} and {b} are set"),
            format!("keep one: {write_a} or {write_b}{why}"),
        )
    } else {
        (
            format!("neither {a} nor {b} is set"),
            format!("write {key} = {{ {write_a} }} or {key} = {{ {write_b} }}{why}"),
        )
    }
}

fn unknown_value(field: &str, word: &str, valid: &[&str]) -> (String, String) {
    let choices = valid.join(", ");
    if field.ends_with("key_algorithm") {
        let why = if word.eq_ignore_ascii_case("ed25519") {
            Some("kubeadm accepts only RSA and ECDSA keys, and one CA serves both etcd and kubeadm")
        } else if word.to_ascii_lowercase().starts_with("rsa") {
            Some("kiln generates every key itself and its crypto library cannot generate RSA keys")
        } else {
            None
        };
        if let Some(why) = why {
            return (
                format!("key algorithm `{word}` is not supported"),
                format!("{why}; use key_algorithm = \"ecdsa-p256\" (allowed: {choices})"),
            );
        }
    }
    let what = if field.starts_with("images.formats") {
        "unsupported output format"
    } else {
        "unknown value"
    };
    let hint = match did_you_mean(word, valid) {
        Some(s) => format!("did you mean \"{s}\"? choose one of: {choices}"),
        None => format!("choose one of: {choices}"),
    };
    (format!("{what} `{word}`"), hint)
}

fn join(location: &str, key: &str) -> String {
    if location.is_empty() {
        key.to_owned()
    } else {
        format!("{location}.{key}")
    }
}

/// Whether two field paths are the same or one contains the other.
fn related(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    inside(a, b) || inside(b, a)
}

/// The path of the key enclosing the last key of `path`.
fn parent(path: &str) -> &str {
    let trimmed = path.trim_end_matches(|c: char| c == ']' || c == '[' || c.is_ascii_digit());
    trimmed.rfind('.').map_or("", |i| &trimmed[..i])
}

/// The table that holds the last key of `path`, and that key.
fn owner<'t, 'i, 'p>(
    root: &'t mut Spanned<DeTable<'i>>,
    path: &'p str,
) -> Option<(&'t mut DeTable<'i>, &'p str)> {
    let segments = parse_path(path);
    let last_key = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Key(_)))?;
    let Segment::Key(key) = segments[last_key] else {
        return None;
    };
    let mut table: &mut DeTable<'i> = root.get_mut();
    let mut at = 0;
    while at < last_key {
        let Segment::Key(k) = segments[at] else {
            return None;
        };
        let mut value: &mut DeValue<'i> = table.get_mut(k)?.get_mut();
        at += 1;
        while let (true, Some(Segment::Index(i))) = (at < last_key, segments.get(at)) {
            value = match value {
                DeValue::Array(items) => items.get_mut(*i)?.get_mut(),
                _ => return None,
            };
            at += 1;
        }
        table = match value {
            DeValue::Table(t) => t,
            _ => return None,
        };
    }
    Some((table, key))
}

fn remove(root: &mut Spanned<DeTable<'_>>, path: &str) -> bool {
    owner(root, path).is_some_and(|(table, key)| table.remove(key).is_some())
}

/// Fills a missing field with the value from its documented example, so the
/// fields after it are still checked.
fn insert_placeholder(root: &mut Spanned<DeTable<'_>>, path: &str) -> bool {
    let Some(line) = example(path) else {
        return false;
    };
    let Ok(parsed) = DeTable::parse(line) else {
        return false;
    };
    let Some((table, key)) = owner(root, path) else {
        return false;
    };
    let mut parsed = parsed.into_inner();
    match parsed.remove_entry(key) {
        Some((k, v)) => table.insert(k, v).is_none(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relate_by_containment() {
        assert!(related("cluster", "cluster.domain"));
        assert!(related("etcd.members[1].ip", "etcd.members[1]"));
        assert!(!related("etcd.members[1]", "etcd.members[10]"));
        assert!(!related("cluster.name", "cluster.domain"));
    }

    #[test]
    fn parents_skip_indices() {
        assert_eq!(parent("etcd.members[1].ip"), "etcd.members[1]");
        assert_eq!(parent("etcd.members[1]"), "etcd");
        assert_eq!(parent("cluster"), "");
    }
}
