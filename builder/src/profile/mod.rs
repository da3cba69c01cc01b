//! The cluster profile: parsing, validation with positions, and the model.

mod model;
mod types;

pub use model::*;
pub use types::{Cidr, KubeVersion};
