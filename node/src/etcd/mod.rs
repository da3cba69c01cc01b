//! What both programs need of etcd: its JSON gateway client, its versions
//! and their settings, its configuration file, and snapshot verification.
//! The agent changes membership through these; the operator's commands
//! (`kiln health`, `kiln certs`, `kiln backup`) only read.

pub mod client;
pub mod config;
pub mod kv;
pub mod reports;
pub mod snapshot;
mod snapshot_stream;
pub mod version;
