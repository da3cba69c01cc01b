//! Reads a multi-document YAML file (kubeadm configs) into JSON values, as
//! strictly as kubeadm's own decoder: duplicate keys and non-string keys fail.

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use serde_norway::Value as Yaml;

/// The string at `path` (a list of map keys) in a parsed document.
pub fn str_at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(doc, |v, k| v.get(k))?.as_str()
}

/// Parses every `---`-separated document of `text`; empty documents (a
/// leading `---`, a trailing one, comments only) are skipped as kubeadm does.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for (index, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        // serde_norway's own Value rejects duplicate mapping keys, which a
        // serde_json::Value target would silently overwrite.
        let yaml = Yaml::deserialize(de).map_err(|e| format!("document {number}: {e}"))?;
        if yaml.is_null() {
            continue;
        }
        docs.push(to_json(yaml, &format!("document {number}"))?);
    }
    Ok(docs)
}

fn to_json(yaml: Yaml, path: &str) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            number(&n).ok_or_else(|| format!("{path}: number {n} has no JSON form"))?
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let Yaml::String(key) = key else {
                    return Err(format!(
                        "{path}: mapping key {} is not a string; quote it",
                        serde_json::to_string(&key).unwrap_or_else(|_| "?".into())
                    ));
                };
                let child = to_json(value, &format!("{path}.{key}"))?;
                map.insert(key, child);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => {
            return Err(format!(
                "{path}: YAML tag {} is not allowed in a kubeadm config",
                tagged.tag
            ))
        }
    })
}

fn number(n: &serde_norway::Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        Some(Value::Number(i.into()))
    } else if let Some(u) = n.as_u64() {
        Some(Value::Number(u.into()))
    } else {
        n.as_f64().and_then(Number::from_f64).map(Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "---\napiVersion: \"a/v1\"\nkind: A\n---\n# only a comment\n---\nkind: B\nlist:\n- 1\n- \"x\"\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "A");
        assert_eq!(docs[1]["list"], serde_json::json!([1, "x"]));
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        let err = parse_documents("kind: A\nspec:\n  a: 1\n  a: 2\n").unwrap_err();
        assert!(
            err.contains("document 1") && err.contains("duplicate"),
            "{err}"
        );
    }

    #[test]
    fn second_document_errors_name_it() {
        let err = parse_documents("kind: A\n---\nkind: [\n").unwrap_err();
        assert!(err.starts_with("document 2"), "{err}");
    }

    #[test]
    fn json_escaped_strings_and_plain_scalars() {
        let docs =
            parse_documents("a: \"x\\ty\\u00e9\"\nb: true\nc: 6443\nd: 1.5\ne: null\n").unwrap();
        assert_eq!(docs[0]["a"], "x\tyé");
        assert_eq!(docs[0]["b"], true);
        assert_eq!(docs[0]["c"], 6443);
        assert_eq!(docs[0]["d"], 1.5);
        assert!(docs[0]["e"].is_null());
    }

    #[test]
    fn non_string_keys_and_tags_are_rejected() {
        let err = parse_documents("1: a\n").unwrap_err();
        assert!(err.contains("not a string"), "{err}");
        let err = parse_documents("a: !secret x\n").unwrap_err();
        assert!(err.contains("tag"), "{err}");
    }
}
