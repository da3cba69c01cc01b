//! The house's walls, checked: no module of kiln's crates imports, directly
//! or through others, a module that imports it back, and the builder uses
//! nothing of the agent but the contract crate (docs/architecture.md).
//!
//! The graph is read from the sources: every `use` tree and every inline
//! `crate::`/`super::`/`self::` path outside comments and test modules is an
//! edge from the file's module to the deepest module the path names.
//! Declaring a child (`mod x;`) is not an import, nor is a re-export
//! (`pub use child::Item`, a facade): a path to a re-exported item counts
//! as a path to the module that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (`etcd::node`, `` for the crate root) -> its source file.
type Modules = BTreeMap<String, PathBuf>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Every module of the crate rooted at `src/<root>`, from its file tree.
fn modules(src: &Path, root: &str) -> Modules {
    let mut found = Modules::new();
    found.insert(String::new(), src.join(root));
    let mut stack = vec![(src.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}::{name}")
            };
            if path.is_dir() && prefix.is_empty() && name == "bin" {
                // src/bin/*.rs are programs of their own, not modules.
                continue;
            }
            if path.is_dir() {
                if path.join("mod.rs").exists() {
                    found.insert(full.clone(), path.join("mod.rs"));
                }
                stack.push((path, full));
            } else if path.extension().is_some_and(|e| e == "rs")
                && !["mod", "lib", "main"].contains(&name.as_str())
                && !name.ends_with("_tests")
            {
                found.insert(full, path);
            }
        }
    }
    found
}

/// The code of a file without comments, string contents and its inline
/// `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// `a::{b, c::{d, E}}` expanded into `a::b`, `a::c::d`, `a::c::E`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(&tree).to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |s| format!("{prefix}{s}")))
        .collect()
}

/// What a module's code names: the paths it imports (its `use` trees and
/// inline paths) and the paths it re-exports (`pub use`), by exported name.
struct Names {
    imports: Vec<String>,
    reexports: BTreeMap<String, String>,
}

fn names(code: &str) -> Names {
    let mut names = Names {
        imports: Vec::new(),
        reexports: BTreeMap::new(),
    };
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].trim_end();
        let glued = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if glued.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let public = before.ends_with("pub") || before.ends_with("pub(crate)");
        for path in expand(&rest[..end]) {
            if public {
                let name = path.rsplit("::").next().unwrap_or_default().to_owned();
                names.reexports.insert(name, path);
            } else {
                names.imports.push(path);
            }
        }
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            let glued = begin > 0
                && (bytes[begin - 1].is_ascii_alphanumeric()
                    || bytes[begin - 1] == b'_'
                    || bytes[begin - 1] == b':');
            if glued {
                continue;
            }
            let end = code[begin..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| begin + e);
            let path = code[begin..end].trim_end_matches(':');
            if path.len() > start.len() {
                names.imports.push(path.to_owned());
            }
        }
    }
    names
}

/// Re-exported name -> its path, for every module.
type Reexports = BTreeMap<String, BTreeMap<String, String>>;

/// The deepest module that `path`, written in module `from`, names; an
/// item a module re-exports counts as the module it comes from.
fn target(
    modules: &Modules,
    reexports: &Reexports,
    from: &str,
    path: &str,
    depth: usize,
) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("self") => {
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop()?;
            }
        }
        // A child module of `from`, named relative to it.
        Some(first) if modules.contains_key(&join(&base, &[first])) => {}
        _ => return None,
    }
    let mut deepest = None;
    for n in 0..=segments.len() {
        let candidate = join(&base, &segments[..n]);
        if modules.contains_key(&candidate) {
            deepest = Some((candidate, n));
        }
    }
    let (module, n) = deepest?;
    let origin = segments
        .get(n)
        .and_then(|item| reexports.get(&module)?.get(*item));
    match origin {
        Some(origin) if depth < 8 => target(modules, reexports, &module, origin, depth + 1),
        _ => Some(module),
    }
}

fn join(base: &[&str], more: &[&str]) -> String {
    base.iter()
        .chain(more)
        .copied()
        .collect::<Vec<_>>()
        .join("::")
}

/// Module -> the modules it imports.
fn graph(modules: &Modules) -> BTreeMap<String, BTreeSet<String>> {
    let named: BTreeMap<String, Names> = modules
        .iter()
        .map(|(name, file)| {
            let text = fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            (name.clone(), names(&code(&text)))
        })
        .collect();
    let reexports: Reexports = named
        .iter()
        .map(|(name, n)| (name.clone(), n.reexports.clone()))
        .collect();
    named
        .iter()
        .map(|(name, n)| {
            let edges = n
                .imports
                .iter()
                .filter_map(|p| target(modules, &reexports, name, p, 0))
                .filter(|t| t != name)
                .collect();
            (name.clone(), edges)
        })
        .collect()
}

/// One cycle per strongly connected group of modules, as a path.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // Breadth-first from `start` back to `start`: the shortest cycle.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(at) = queue.pop_front() {
            for next in &graph[at] {
                if next == start {
                    let mut back = vec![start.clone()];
                    let mut step = at;
                    while step != start {
                        back.push(step.clone());
                        step = came_from[step];
                    }
                    back.push(start.clone());
                    back.reverse();
                    let cycle = back;
                    reported.extend(cycle.iter().cloned());
                    found.push(cycle);
                    break 'search;
                }
                if graph.contains_key(next) && !came_from.contains_key(next) && next != start {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
    }
    found
}

fn crate_cycles(src: &str, root: &str) -> Vec<String> {
    let modules = modules(&workspace().join(src), root);
    assert!(modules.len() > 3, "{src}: only {modules:?}");
    cycles(&graph(&modules))
        .into_iter()
        .map(|c| format!("{src}: {}", c.join(" -> ")))
        .collect()
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut all = Vec::new();
    for (src, root) in [
        ("node/src", "lib.rs"),
        ("builder/src", "lib.rs"),
        ("firstboot/src", "lib.rs"),
        ("tests/src", "lib.rs"),
    ] {
        all.extend(crate_cycles(src, root));
    }
    assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_through_a_use_tree() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod d;\npub use d::Item;\n",
    );
    // a -> b -> c -> a; d -> b only, through the root's re-export d -> d.
    write(
        "a.rs",
        "use crate::{b::thing, b};\n// use crate::c; in a comment\n",
    );
    write("b.rs", "pub fn thing() { super::c::other(); }\n");
    write(
        "c.rs",
        "pub fn other() { let _ = \"crate::a\"; crate::a::f(); }\n",
    );
    write("d.rs", "pub struct Item;\nfn f() { crate::b::thing(); }\n");
    let modules = modules(dir.path(), "lib.rs");
    let found = cycles(&graph(&modules));
    assert_eq!(found, vec![vec!["a", "b", "c", "a"]], "{found:?}");
    // b naming crate::Item reaches d, which names b: a second cycle.
    write("b.rs", "pub fn thing() { let _ = crate::Item; }\n");
    let found = cycles(&graph(&modules));
    assert_eq!(found, vec![vec!["b", "d", "b"]], "{found:?}");
}

/// The `[dependencies]` table of a crate's manifest.
fn dependencies(krate: &str) -> String {
    let manifest = workspace().join(krate).join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let start = text.find("[dependencies]").expect("a [dependencies] table");
    let table = &text[start + "[dependencies]".len()..];
    table[..table.find("\n[").unwrap_or(table.len())].to_owned()
}

#[test]
fn builder_and_agent_share_only_the_contract() {
    let lines = |krate: &str| -> Vec<String> {
        dependencies(krate)
            .lines()
            .filter_map(|l| l.split_once('.').or_else(|| l.split_once(' ')))
            .map(|(name, _)| name.trim().to_owned())
            .collect()
    };
    let builder = lines("builder");
    let agent = lines("firstboot");
    let contract = lines("node");
    assert!(builder.contains(&"kiln-node".to_owned()), "{builder:?}");
    assert!(agent.contains(&"kiln-node".to_owned()), "{agent:?}");
    assert!(
        !builder.contains(&"kiln-firstboot".to_owned()),
        "{builder:?}"
    );
    assert!(!agent.contains(&"kiln".to_owned()), "{agent:?}");
    for other in ["kiln", "kiln-firstboot"] {
        assert!(!contract.contains(&other.to_owned()), "{contract:?}");
    }
}
