//! kiln: turns one cluster profile into role-specific node images.

pub mod build;
pub mod certs;
pub mod cli;
pub mod console;
pub mod health;
pub mod image;
pub mod layer;
pub mod manifest;
pub mod node_toml;
pub mod operator_backup;
pub mod output;
pub mod profile;
pub mod progress;
pub mod render;
pub mod sbom;
pub mod secrets;
pub mod verify;
