//! The role layer: the one internal model of what a role adds to a node's root
//! filesystem (files, directories, links, systemd units and drop-ins, with owner
//! and mode). It is rendered twice, as an Ignition config and as a tarball,
//! and the two renderings must agree (tests apply the Ignition config with the
//! real Ignition and compare).

mod kube;
mod metadata;
mod roles;
pub mod snapshots;
mod timers;

pub use kube::ContainerdConfig;
pub use roles::{build_layer, LayerInputs};
pub use timers::{add_agent_timer, add_renew_timer, AgentTimer};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_node::node_config::Role;

/// Owner and permission bits of a node in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    pub const fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// The bytes themselves, carried in every rendering.
    Inline(Vec<u8>),
    /// Bytes every role carries (the agent's 3 MiB): one copy for the
    /// build, however often a layer is built or split.
    Shared(Arc<[u8]>),
}

impl Contents {
    /// The bytes a baked image holds.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Contents::Inline(b) => b,
            Contents::Shared(b) => b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(Meta),
    File {
        meta: Meta,
        contents: Contents,
        /// Private keys and tokens: recorded in the manifest, must be 0600.
        secret: bool,
    },
    /// A symbolic link.
    Link {
        target: PathBuf,
    },
}

/// A systemd unit in /etc/systemd/system, with its drop-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub contents: Option<String>,
    /// `(name, contents)` of drop-ins in `/etc/systemd/system/<unit>.d/`.
    pub dropins: Vec<(String, String)>,
}

/// Units and unit files are written with this mode by Ignition and by kiln.
pub const UNIT_MODE: u32 = 0o644;
pub use kiln_node::layout::SYSTEMD_DIR;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleLayer {
    pub role: Role,
    /// Absolute node path -> what is there. Parents not listed are implied
    /// directories, root-owned 0755 (as Ignition creates them).
    pub nodes: BTreeMap<PathBuf, Node>,
    pub units: BTreeMap<String, Unit>,
    /// The paths (nodes, unit files and drop-ins) of the role's image: the
    /// same for every cluster, baked into its disks, never in its Ignition
    /// config. The rest is the config: what makes a node one cluster's.
    pub image: BTreeSet<PathBuf>,
}

impl RoleLayer {
    pub fn new(role: Role) -> RoleLayer {
        RoleLayer {
            role,
            nodes: BTreeMap::new(),
            units: BTreeMap::new(),
            image: BTreeSet::new(),
        }
    }

    /// Moves everything at `paths` (nodes, unit files, drop-ins) into the
    /// role's image.
    pub fn mark_image<P: Into<PathBuf>>(&mut self, paths: impl IntoIterator<Item = P>) {
        self.image.extend(paths.into_iter().map(Into::into));
    }

    /// Runs `add` and moves everything it added to the layer (nodes, unit
    /// files, drop-ins, enablement links) into the role's image.
    pub fn in_image(&mut self, add: impl FnOnce(&mut RoleLayer)) {
        let before = self.paths();
        add(self);
        let added: Vec<PathBuf> = self.paths().difference(&before).cloned().collect();
        self.mark_image(added);
    }

    /// Adds a unit (see [`RoleLayer::add_unit`]) that is part of the image.
    pub fn add_image_unit(&mut self, unit: Unit, enable: bool) {
        self.in_image(|layer| layer.add_unit(unit, enable));
    }

    /// Every path of the layer: its nodes, unit files and drop-ins.
    fn paths(&self) -> BTreeSet<PathBuf> {
        let units = self.unit_files().map(|(path, _)| path);
        self.nodes.keys().cloned().chain(units).collect()
    }

    /// The layer's two parts: the image (what is in `image`) and the config
    /// (the rest).
    pub fn split(&self) -> (RoleLayer, RoleLayer) {
        (self.part(true), self.part(false))
    }

    fn part(&self, image: bool) -> RoleLayer {
        let keep = |path: &Path| self.image.contains(path) == image;
        let nodes = (self.nodes.iter())
            .filter(|(path, _)| keep(path))
            .map(|(path, node)| (path.clone(), node.clone()))
            .collect();
        let units = (self.units.values())
            .filter_map(|unit| {
                let main = Path::new(SYSTEMD_DIR).join(&unit.name);
                let dir = Path::new(SYSTEMD_DIR).join(format!("{}.d", unit.name));
                let part = Unit {
                    name: unit.name.clone(),
                    contents: unit.contents.clone().filter(|_| keep(&main)),
                    dropins: (unit.dropins.iter())
                        .filter(|(name, _)| keep(&dir.join(name)))
                        .cloned()
                        .collect(),
                };
                (part.contents.is_some() || !part.dropins.is_empty())
                    .then(|| (unit.name.clone(), part))
            })
            .collect();
        RoleLayer {
            role: self.role,
            nodes,
            units,
            image: BTreeSet::new(),
        }
    }

    pub fn add_file(&mut self, path: impl Into<PathBuf>, meta: Meta, contents: Contents) {
        self.nodes.insert(
            path.into(),
            Node::File {
                meta,
                contents,
                secret: false,
            },
        );
    }

    /// A private key or token: root-owned, 0600.
    pub fn add_secret(&mut self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) {
        self.nodes.insert(
            path.into(),
            Node::File {
                meta: Meta::root(0o600),
                contents: Contents::Inline(bytes.into()),
                secret: true,
            },
        );
    }

    pub fn add_dir(&mut self, path: impl Into<PathBuf>, meta: Meta) {
        self.nodes.insert(path.into(), Node::Dir(meta));
    }

    pub fn add_link(&mut self, path: impl Into<PathBuf>, target: impl Into<PathBuf>) {
        self.nodes.insert(
            path.into(),
            Node::Link {
                target: target.into(),
            },
        );
    }

    /// Adds a unit; when `enable` is set, links it into every target named by
    /// `WantedBy=`/`RequiredBy=` of its `[Install]` section, the way
    /// `systemctl enable` does, so the image needs no preset run.
    pub fn add_unit(&mut self, unit: Unit, enable: bool) {
        if enable {
            for (dir_suffix, target) in install_targets(unit.contents.as_deref().unwrap_or("")) {
                let link = Path::new(SYSTEMD_DIR)
                    .join(format!("{target}{dir_suffix}"))
                    .join(&unit.name);
                self.add_link(link, Path::new(SYSTEMD_DIR).join(&unit.name));
            }
        }
        self.units.insert(unit.name.clone(), unit);
    }

    /// Every file a unit contributes to the tree: `(path, contents)`.
    pub fn unit_files(&self) -> impl Iterator<Item = (PathBuf, &str)> {
        self.units.values().flat_map(|unit| {
            let main = unit
                .contents
                .as_deref()
                .map(|c| (Path::new(SYSTEMD_DIR).join(&unit.name), c));
            let dropins = unit.dropins.iter().map(move |(name, c)| {
                (
                    Path::new(SYSTEMD_DIR)
                        .join(format!("{}.d", unit.name))
                        .join(name),
                    c.as_str(),
                )
            });
            main.into_iter().chain(dropins)
        })
    }

    /// True if any file of the layer is a secret.
    pub fn has_secrets(&self) -> bool {
        self.nodes
            .values()
            .any(|n| matches!(n, Node::File { secret: true, .. }))
    }
}

/// `(".wants" | ".requires", target)` pairs from a unit's `[Install]` section.
fn install_targets(contents: &str) -> Vec<(&'static str, String)> {
    let mut in_install = false;
    let mut targets = Vec::new();
    for line in contents.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let suffix = match key.trim() {
            "WantedBy" => ".wants",
            "RequiredBy" => ".requires",
            _ => continue,
        };
        targets.extend(value.split_whitespace().map(|t| (suffix, t.to_owned())));
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabling_a_unit_links_it_into_its_targets() {
        let mut layer = RoleLayer::new(Role::Etcd);
        layer.add_unit(
            Unit {
                name: "a.service".into(),
                contents: Some("[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target other.target\nRequiredBy=b.service\n".into()),
                dropins: vec![("10-x.conf".into(), "[Service]\n".into())],
            },
            true,
        );
        let links: Vec<_> = layer
            .nodes
            .keys()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            links,
            [
                "/etc/systemd/system/b.service.requires/a.service",
                "/etc/systemd/system/multi-user.target.wants/a.service",
                "/etc/systemd/system/other.target.wants/a.service",
            ]
        );
        let files: Vec<_> = layer.unit_files().map(|(p, _)| p).collect();
        assert_eq!(
            files,
            [
                PathBuf::from("/etc/systemd/system/a.service"),
                PathBuf::from("/etc/systemd/system/a.service.d/10-x.conf")
            ]
        );
    }
}
