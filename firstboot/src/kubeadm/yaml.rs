//! A tiny YAML emitter for kubeadm's configuration files: block-style maps
//! and lists, every string double-quoted with JSON escaping, so no value
//! (a token, an IPv6 address, "yes") can ever be read as anything else.

/// A YAML node; maps keep their keys in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    List(Vec<Node>),
    Map(Vec<(&'static str, Node)>),
}

impl Node {
    pub fn str(value: impl Into<String>) -> Node {
        Node::Str(value.into())
    }

    pub fn strs<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Node {
        Node::List(values.into_iter().map(Node::str).collect())
    }
}

/// Renders maps as YAML documents separated by `---` lines.
pub fn documents(docs: &[Node]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match doc {
            Node::Map(entries) => map(&mut out, entries, 0),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
    out
}

fn map(out: &mut String, entries: &[(&str, Node)], indent: usize) {
    let pad = " ".repeat(indent);
    for (key, value) in entries {
        out.push_str(&pad);
        out.push_str(key);
        out.push(':');
        nested(out, value, indent);
    }
}

/// Writes what follows `key:` (or `- `): a scalar on the same line, a
/// non-empty collection on the lines below, indented two more.
fn nested(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            map(out, entries, indent + 2);
        }
        Node::List(items) if !items.is_empty() => {
            out.push('\n');
            list(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn list(out: &mut String, items: &[Node], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push('-');
        match item {
            // The first entry shares the dash's line; the rest align with it.
            Node::Map(entries) if !entries.is_empty() => {
                let mut inner = String::new();
                map(&mut inner, entries, indent + 2);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            other => nested(out, other, indent),
        }
    }
}

fn inline(node: &Node) -> String {
    match node {
        Node::Str(s) => serde_json::Value::from(s.as_str()).to_string(),
        Node::Int(i) => i.to_string(),
        Node::List(_) => "[]".into(),
        Node::Map(_) => "{}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Node> {
        vec![
            Node::Map(vec![
                ("kind", Node::str("Sample")),
                ("port", Node::Int(6443)),
                ("quoted", Node::str("yes: \"no\"\n\u{1}")),
                (
                    "args",
                    Node::List(vec![
                        Node::Map(vec![("name", Node::str("a")), ("value", Node::str("b"))]),
                        Node::Map(vec![("name", Node::str("c")), ("value", Node::str("d"))]),
                    ]),
                ),
                ("nested", Node::Map(vec![("list", Node::strs(["x", "y"]))])),
                ("empty", Node::List(vec![])),
                ("none", Node::Map(vec![])),
            ]),
            Node::Map(vec![("kind", Node::str("Second"))]),
        ]
    }

    #[test]
    fn emits_block_style_with_quoted_strings() {
        let expected = r#"kind: "Sample"
port: 6443
quoted: "yes: \"no\"\n\u0001"
args:
  - name: "a"
    value: "b"
  - name: "c"
    value: "d"
nested:
  list:
    - "x"
    - "y"
empty: []
none: {}
---
kind: "Second"
"#;
        assert_eq!(documents(&sample()), expected);
    }

    /// The emitter's output read back by a real YAML parser is the tree it
    /// was given.
    #[test]
    fn output_parses_back_to_the_same_tree() {
        let text = documents(&sample());
        for (doc, node) in text.split("---\n").zip(sample()) {
            let parsed: serde_json::Value = serde_norway::from_str(doc).unwrap();
            assert_eq!(parsed, to_json(&node), "{doc}");
        }
    }

    pub(crate) fn to_json(node: &Node) -> serde_json::Value {
        match node {
            Node::Str(s) => s.as_str().into(),
            Node::Int(i) => (*i).into(),
            Node::List(items) => items.iter().map(to_json).collect(),
            Node::Map(entries) => entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), to_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}
