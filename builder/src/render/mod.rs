//! Renderings of a role layer (Ignition config, rootfs tarball) and the one
//! walk of the layer they share, so both see exactly the same tree.

mod base;
pub(crate) mod deflate;
mod deflate_cache;
pub mod ignition;
pub mod rootfs;

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::layer::{Meta, Node, RoleLayer, UNIT_MODE};

pub use ignition::render_ignition;
pub use rootfs::render_rootfs;

/// Why a layer could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("role layer entry {}: {problem}", path.display())]
    Layer { path: PathBuf, problem: String },
    #[error("base root filesystem {}: {problem}", path.display())]
    Base { path: PathBuf, problem: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("serializing the Ignition config: {0}")]
    Json(#[from] serde_json::Error),
}

impl RenderError {
    fn layer(path: &Path, problem: impl Into<String>) -> RenderError {
        RenderError::Layer {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Adds the thing being worked on to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, RenderError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, RenderError> {
        self.map_err(|source| RenderError::Io {
            context: what(),
            source,
        })
    }
}

/// Why an entry is in the tree: Ignition renders each origin differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Listed in `RoleLayer::nodes`.
    Node,
    /// A parent nobody listed: root 0755, created implicitly by Ignition.
    Implied,
    /// A unit file or drop-in from `RoleLayer::units`.
    Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind<'a> {
    Dir,
    /// A file and its bytes.
    File(&'a [u8]),
    Link(&'a Path),
}

/// One entry of the tree a layer puts on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeEntry<'a> {
    pub meta: Meta,
    pub kind: TreeKind<'a>,
    pub origin: Origin,
}

/// The mode and owner every symbolic link gets (Ignition creates them as root).
const LINK_META: Meta = Meta::root(0o777);
/// Parents nobody listed, the way Ignition creates them.
const IMPLIED_DIR: Meta = Meta::root(0o755);

/// Every entry the layer puts on a node, keyed by absolute path and sorted so
/// that a parent comes right before its subtree: nodes, unit files and
/// drop-ins, and the implied parent directories of all of them.
pub fn layer_tree(layer: &RoleLayer) -> Result<BTreeMap<PathBuf, TreeEntry<'_>>, RenderError> {
    let mut tree = BTreeMap::new();
    for (path, node) in &layer.nodes {
        check_path(path)?;
        let (meta, kind) = match node {
            Node::Dir(meta) => (*meta, TreeKind::Dir),
            Node::File { meta, contents, .. } => (*meta, TreeKind::File(contents.bytes())),
            Node::Link { target } => (LINK_META, TreeKind::Link(target)),
        };
        if meta.mode & !0o7777 != 0 {
            return Err(RenderError::layer(
                path,
                format!("mode {:o} has bits beyond 07777", meta.mode),
            ));
        }
        let origin = Origin::Node;
        tree.insert(path.clone(), TreeEntry { meta, kind, origin });
    }
    for (path, contents) in layer.unit_files() {
        check_path(&path)?;
        if tree.contains_key(&path) {
            return Err(RenderError::layer(
                &path,
                "is both a node and a systemd unit file; keep it in `units` only",
            ));
        }
        let entry = TreeEntry {
            meta: Meta::root(UNIT_MODE),
            kind: TreeKind::File(contents.as_bytes()),
            origin: Origin::Unit,
        };
        tree.insert(path, entry);
    }
    add_implied_parents(&mut tree)?;
    Ok(tree)
}

/// Paths are absolute and plain: Ignition rejects `..`, and a tarball entry
/// must not escape the folder it is extracted into.
fn check_path(path: &Path) -> Result<(), RenderError> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(RenderError::layer(path, "must be an absolute path"));
    }
    let mut depth = 0;
    for component in components {
        match component {
            Component::Normal(_) => depth += 1,
            _ => return Err(RenderError::layer(path, "must not contain `.` or `..`")),
        }
    }
    if depth == 0 {
        return Err(RenderError::layer(
            path,
            "the root itself cannot be a layer entry",
        ));
    }
    Ok(())
}

fn add_implied_parents(tree: &mut BTreeMap<PathBuf, TreeEntry<'_>>) -> Result<(), RenderError> {
    let paths: Vec<PathBuf> = tree.keys().cloned().collect();
    for path in &paths {
        for parent in path.ancestors().skip(1).filter(|p| p.parent().is_some()) {
            match tree.get(parent) {
                Some(TreeEntry {
                    kind: TreeKind::Dir,
                    ..
                }) => {}
                Some(_) => {
                    return Err(RenderError::layer(
                        path,
                        format!("its parent {} is not a directory", parent.display()),
                    ))
                }
                None => {
                    let implied = TreeEntry {
                        meta: IMPLIED_DIR,
                        kind: TreeKind::Dir,
                        origin: Origin::Implied,
                    };
                    tree.insert(parent.to_owned(), implied);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Contents, Unit};
    use kiln_node::node_config::Role;

    #[test]
    fn tree_holds_nodes_units_and_implied_parents_in_path_order() {
        let mut layer = RoleLayer::new(Role::Worker);
        layer.add_dir(
            "/var/lib/x",
            Meta {
                mode: 0o750,
                uid: 1000,
                gid: 1000,
            },
        );
        layer.add_file("/etc/a", Meta::root(0o644), Contents::Inline(b"a".to_vec()));
        layer.add_unit(
            Unit {
                name: "u.service".into(),
                contents: None,
                dropins: vec![("d.conf".into(), "x".into())],
            },
            false,
        );
        let tree = layer_tree(&layer).unwrap();
        let listed: Vec<_> = tree
            .iter()
            .map(|(p, e)| (p.to_str().unwrap(), e.origin))
            .collect();
        assert_eq!(
            listed,
            [
                ("/etc", Origin::Implied),
                ("/etc/a", Origin::Node),
                ("/etc/systemd", Origin::Implied),
                ("/etc/systemd/system", Origin::Implied),
                ("/etc/systemd/system/u.service.d", Origin::Implied),
                ("/etc/systemd/system/u.service.d/d.conf", Origin::Unit),
                ("/var", Origin::Implied),
                ("/var/lib", Origin::Implied),
                ("/var/lib/x", Origin::Node),
            ]
        );
        assert_eq!(tree[Path::new("/var/lib/x")].meta.mode, 0o750);
    }

    #[test]
    fn entries_below_a_file_and_relative_paths_are_refused() {
        let mut layer = RoleLayer::new(Role::Worker);
        layer.add_file("/etc/a", Meta::root(0o644), Contents::Inline(vec![]));
        layer.add_file("/etc/a/b", Meta::root(0o644), Contents::Inline(vec![]));
        let err = layer_tree(&layer).unwrap_err().to_string();
        assert!(
            err.contains("/etc/a/b") && err.contains("not a directory"),
            "{err}"
        );

        let mut layer = RoleLayer::new(Role::Worker);
        layer.add_file("etc/a", Meta::root(0o644), Contents::Inline(vec![]));
        let err = layer_tree(&layer).unwrap_err().to_string();
        assert!(err.contains("absolute"), "{err}");
    }
}
