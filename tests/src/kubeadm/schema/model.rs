//! The schema fixtures' data model: one kubeadm API version's kinds, types
//! and fields, loaded from tests/fixtures/kubeadm/v1beta{3,4}.json.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const FIXTURES: [(&str, &str); 2] = [
    (
        "v1beta3.json",
        include_str!("../../../fixtures/kubeadm/v1beta3.json"),
    ),
    (
        "v1beta4.json",
        include_str!("../../../fixtures/kubeadm/v1beta4.json"),
    ),
];

/// One kubeadm API version's schema, as stored in the fixtures.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schema {
    pub api_version: String,
    pub source: String,
    pub note: String,
    pub kinds: Vec<String>,
    #[serde(rename = "unchecked_kinds")]
    pub unchecked_kinds: Vec<UncheckedKind>,
    pub types: BTreeMap<String, TypeDef>,
}

/// A component config kubeadm accepts in the same file but which is not ours
/// to check beyond apiVersion and kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UncheckedKind {
    pub api_version: String,
    pub kind: String,
    pub source: String,
    pub note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeDef {
    pub source: String,
    pub fields: BTreeMap<String, Field>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Fields an older API version had, with where their setting moved.
    #[serde(default)]
    pub removed: BTreeMap<String, String>,
}

/// A field; `docs_required` records the reference page's own marker where
/// it differs from what kubeadm needs (README.md explains the rule).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    #[serde(rename = "type")]
    pub ty: Ty,
    pub required: bool,
    pub docs_required: Option<bool>,
    pub note: Option<String>,
    #[serde(rename = "enum")]
    pub one_of: Option<Vec<String>>,
    pub range: Option<[i64; 2]>,
    pub format: Option<String>,
    pub hint: Option<String>,
}

/// Cross-field rules kubeadm's validation applies.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    AtMostOneOf(Vec<String>),
    ExactlyOneOf(Vec<String>),
    RequiredUnless { field: String, unless_true: String },
}

/// A field type: `string`, `int`, `bool`, `duration`, `time`, `any`,
/// `list<T>`, `map<string,string>`, `map<string,bool>`, `object<Name>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum Ty {
    String,
    Int,
    Bool,
    Duration,
    Time,
    Any,
    List(Box<Ty>),
    MapOf(Box<Ty>),
    Object(String),
}

impl TryFrom<String> for Ty {
    type Error = String;

    fn try_from(text: String) -> Result<Ty, String> {
        let inner = |prefix: &str| text.strip_prefix(prefix).and_then(|t| t.strip_suffix('>'));
        Ok(match text.as_str() {
            "string" => Ty::String,
            "int" => Ty::Int,
            "bool" => Ty::Bool,
            "duration" => Ty::Duration,
            "time" => Ty::Time,
            "any" => Ty::Any,
            _ => {
                if let Some(t) = inner("list<") {
                    Ty::List(Box::new(Ty::try_from(t.to_owned())?))
                } else if let Some(t) = inner("map<string,") {
                    Ty::MapOf(Box::new(Ty::try_from(t.to_owned())?))
                } else if let Some(name) = inner("object<") {
                    Ty::Object(name.to_owned())
                } else {
                    return Err(format!("unknown field type {text:?}"));
                }
            }
        })
    }
}

impl std::fmt::Display for Ty {
    /// The schema's own spelling, so a message can be looked up in the fixture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::String => f.write_str("string"),
            Ty::Int => f.write_str("int"),
            Ty::Bool => f.write_str("bool"),
            Ty::Duration => {
                f.write_str("duration (a Go duration such as \"0s\", \"15m\" or \"24h0m0s\")")
            }
            Ty::Time => f.write_str("time (RFC 3339 such as \"2024-01-02T03:04:05Z\")"),
            Ty::Any => f.write_str("any"),
            Ty::List(t) => write!(f, "list<{t}>"),
            Ty::MapOf(t) => write!(f, "map<string,{t}>"),
            Ty::Object(name) => write!(f, "object<{name}>"),
        }
    }
}

/// Both versions' schemas; the fixtures are part of this crate, so a broken
/// one is a bug here, reported with its file name.
pub fn schemas() -> &'static [Schema] {
    static SCHEMAS: OnceLock<Vec<Schema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|(file, text)| {
                serde_json::from_str(text).unwrap_or_else(|e| {
                    panic!("tests/fixtures/kubeadm/{file} is not a valid schema: {e}")
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load_and_every_type_reference_resolves() {
        for schema in schemas() {
            for kind in &schema.kinds {
                assert!(
                    schema.types.contains_key(kind),
                    "{}: kind {kind} has no type",
                    schema.api_version
                );
            }
            for (name, def) in &schema.types {
                assert!(
                    def.source.starts_with(&schema.source) || def.source.contains("kubernetes-api"),
                    "{name}"
                );
                for (field, spec) in &def.fields {
                    let mut ty = &spec.ty;
                    while let Ty::List(t) | Ty::MapOf(t) = ty {
                        ty = t;
                    }
                    if let Ty::Object(target) = ty {
                        assert!(
                            schema.types.contains_key(target),
                            "{name}.{field} names missing type {target}"
                        );
                    }
                }
            }
        }
    }
}
