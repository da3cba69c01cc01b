//! Checks one kubeadm config document against kubeadm's published API schema
//! (tests/fixtures/kubeadm/v1beta{3,4}.json, written from the reference
//! docs): unknown fields, missing required fields, wrong types, each with its
//! JSON path, so kiln's configs are held to kubeadm's names, not kiln's.

mod formats;
mod model;

use serde_json::{Map, Value};

pub use formats::is_go_duration;
use formats::{is_bootstrap_token, is_ca_cert_hash, is_rfc3339};
pub use model::{schemas, Field, Rule, Schema, Ty, TypeDef, UncheckedKind};

/// Checks `doc` (one YAML document as JSON) and returns every problem found.
pub fn check(doc: &Value) -> Result<(), Vec<String>> {
    let Some(map) = doc.as_object() else {
        return Err(vec![format!(
            "a kubeadm config document must be a mapping, found {}",
            describe(doc)
        )]);
    };
    let api = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    let all = schemas();
    if let Some(schema) = all
        .iter()
        .find(|s| s.api_version == api && s.kinds.iter().any(|k| k == kind))
    {
        let mut errors = Vec::new();
        check_object(schema, kind, map, kind, &mut errors);
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        };
    }
    let unchecked = all.iter().flat_map(|s| &s.unchecked_kinds);
    if unchecked
        .clone()
        .any(|u| u.api_version == api && u.kind == kind)
    {
        return Ok(());
    }
    let mut supported: Vec<String> = all
        .iter()
        .map(|s| format!("{} {}", s.api_version, s.kinds.join("/")))
        .collect();
    for u in unchecked {
        let name = format!("{} {}", u.api_version, u.kind);
        if !supported.contains(&name) {
            supported.push(name);
        }
    }
    let kinds: Vec<&str> = all
        .iter()
        .flat_map(|s| s.kinds.iter().map(String::as_str))
        .collect();
    let hint = suggest(kind, kinds.iter().copied())
        .map(|k| format!(" (did you mean kind {k:?}?)"))
        .unwrap_or_default();
    Err(vec![format!(
        "apiVersion {api:?} kind {kind:?} is not a kubeadm config type{hint}; supported: {}",
        supported.join(", ")
    )])
}

fn check_object(
    schema: &Schema,
    type_name: &str,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) {
    let Some(def) = schema.types.get(type_name) else {
        errors.push(format!(
            "{path}: schema {} has no type {type_name}",
            schema.api_version
        ));
        return;
    };
    for (key, value) in map {
        let here = format!("{path}.{key}");
        match def.fields.get(key) {
            Some(_) if value.is_null() => {}
            Some(field) => {
                let hint = field.hint.as_deref();
                check_value(schema, field, &field.ty, value, &here, hint, errors)
            }
            None => errors.push(unknown_field(schema, type_name, def, key, &here)),
        }
    }
    for (name, field) in &def.fields {
        if field.required && map.get(name).is_none_or(Value::is_null) {
            let why = field
                .note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            errors.push(format!(
                "{path}.{name}: missing required field of {type_name} ({}){why}",
                def.source
            ));
        }
    }
    let present = |f: &String| map.get(f).is_some_and(|v| !v.is_null());
    for rule in &def.rules {
        match rule {
            Rule::AtMostOneOf(set) if set.iter().filter(|f| present(f)).count() > 1 => {
                errors.push(format!(
                    "{path}: set only one of {}, they are mutually exclusive",
                    set.join(", ")
                ));
            }
            Rule::ExactlyOneOf(set) if set.iter().filter(|f| present(f)).count() != 1 => {
                errors.push(format!("{path}: set exactly one of {}", set.join(", ")));
            }
            Rule::RequiredUnless { field, unless_true }
                if !present(field) && map.get(unless_true) != Some(&Value::Bool(true)) =>
            {
                errors.push(format!("{path}.{field}: missing; kubeadm refuses this without it unless {unless_true} is true"));
            }
            _ => {}
        }
    }
}

fn unknown_field(schema: &Schema, type_name: &str, def: &TypeDef, key: &str, path: &str) -> String {
    if let Some(moved) = def.removed.get(key) {
        return format!("{path}: unknown field in {}; {moved}", schema.api_version);
    }
    match suggest(key, def.fields.keys().map(String::as_str)) {
        Some(near) => format!("{path}: unknown field (did you mean {near:?}?)"),
        None => {
            let known: Vec<&str> = def.fields.keys().map(String::as_str).collect();
            format!(
                "{path}: unknown field; {type_name} in {} has {}",
                schema.api_version,
                known.join(", ")
            )
        }
    }
}

/// `hint` explains a shape mismatch of the field itself, not of its items.
fn check_value(
    schema: &Schema,
    field: &Field,
    ty: &Ty,
    value: &Value,
    path: &str,
    hint: Option<&str>,
    errors: &mut Vec<String>,
) {
    let matches = match (ty, value) {
        (Ty::Any, _) | (Ty::Bool, Value::Bool(_)) => true,
        (Ty::Int, Value::Number(n)) => match (n.as_i64(), field.range) {
            (Some(i), Some([low, high])) if i < low || i > high => {
                errors.push(format!("{path}: {i} is outside {low}..={high}"));
                true
            }
            (found, _) => found.is_some(),
        },
        (Ty::String, Value::String(s)) => {
            check_string(field, s, path, errors);
            true
        }
        (Ty::Duration, Value::String(s)) => is_go_duration(s),
        (Ty::Time, Value::String(s)) => is_rfc3339(s),
        (Ty::List(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(
                    schema,
                    field,
                    inner,
                    item,
                    &format!("{path}[{i}]"),
                    None,
                    errors,
                );
            }
            true
        }
        (Ty::MapOf(inner), Value::Object(map)) => {
            for (key, item) in map {
                check_value(
                    schema,
                    field,
                    inner,
                    item,
                    &format!("{path}.{key}"),
                    None,
                    errors,
                );
            }
            true
        }
        (Ty::Object(name), Value::Object(map)) => {
            check_object(schema, name, map, path, errors);
            true
        }
        _ => false,
    };
    if !matches {
        let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
        errors.push(format!(
            "{path}: expected {ty}, found {}{hint}",
            describe(value)
        ));
    }
}

fn check_string(field: &Field, s: &str, path: &str, errors: &mut Vec<String>) {
    if let Some(allowed) = &field.one_of {
        if !allowed.iter().any(|a| a == s) {
            errors.push(format!(
                "{path}: {s:?} is not one of {}",
                allowed.join(", ")
            ));
        }
    }
    let (ok, wanted) = match field.format.as_deref() {
        Some("bootstrap-token") => (
            is_bootstrap_token(s),
            "a bootstrap token \"[a-z0-9]{6}.[a-z0-9]{16}\"",
        ),
        Some("ca-cert-hash") => (is_ca_cert_hash(s), "\"sha256:\" and 64 hex digits"),
        _ => (true, ""),
    };
    if !ok {
        errors.push(format!("{path}: expected {wanted}, found {s:?}"));
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// The closest known name, if it is close enough to be a typo or a
/// shortening (`JoinConfig`).
fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .map(|k| {
            let k_lower = k.to_lowercase();
            let shortened = lower.len() >= 4 && k_lower.starts_with(&lower);
            let distance = if shortened {
                1
            } else {
                strsim::levenshtein(&lower, &k_lower)
            };
            (distance, k)
        })
        .filter(|(d, _)| *d <= 2 || d * 4 <= name.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_but_unrelated_names_do_not() {
        let known = ["kubernetesAPICall", "discovery", "etcdAPICall"];
        assert_eq!(
            suggest("kubenetesAPICall", known.into_iter()),
            Some("kubernetesAPICall")
        );
        assert_eq!(suggest("colour", known.into_iter()), None);
    }
}
