//! kiln: turns one cluster profile into role-specific node images.

pub mod layer;
pub mod profile;
