//! The cluster profile: parsing, validation with positions, and the model.

mod diagnostic;
mod load;
mod locate;
mod model;
pub mod resolve;
mod schema;
mod suggest;
mod types;
mod validate;
pub mod versions;

use std::path::{Path, PathBuf};

use kiln_node::node_config::{Role, Topology};

pub use diagnostic::{Diagnostic, ProfileError, Severity};
pub use load::load;
pub use model::*;
pub use types::{Cidr, Span};

/// A profile that passed every check, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub profile: Profile,
    /// The path as given by the user.
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes, recorded in the manifest.
    pub digest: String,
    /// Problems that do not stop a build (e.g. an even number of etcd members).
    pub warnings: Vec<Diagnostic>,
}

impl LoadedProfile {
    /// A path written in the profile, relative to the profile's folder.
    pub fn resolve(&self, rel: &Path) -> PathBuf {
        load::profile_dir(&self.path).join(rel)
    }
}

impl Profile {
    /// The roles a build produces, in build order.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles = Vec::new();
        if self.etcd.topology == Topology::External && !self.etcd.members.is_empty() {
            roles.push(Role::Etcd);
        }
        // Workers always come with a control plane: any number may join later
        // from the same image, even when none are listed.
        if self.control_plane.is_some() {
            roles.extend([Role::Master, Role::Worker]);
        }
        roles
    }
}

#[cfg(test)]
mod tests;
