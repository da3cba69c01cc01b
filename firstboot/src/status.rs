//! What the agent leaves behind: `/run/kiln/status.json` for operators and
//! tools, and the done-marker that turns a rerun into a no-op.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use kiln_node::fsutil::write_with_parents;
use kiln_node::layout::{under_root, DONE_MARKER, STATUS_FILE};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Configuration written, membership prepared; etcd not yet confirmed healthy.
    Configured,
    /// The local member is a healthy voting member.
    Converged,
    /// The cluster removed this member while it was away (another node took
    /// its place); its data was moved aside.
    Removed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub phase: Phase,
    pub role: String,
    pub member: String,
    /// The decision, as the sentence the agent logged.
    pub decision: String,
    /// The etcd member ID of this node when `run` added it (or found it) as
    /// a learner: `settle` promotes it without asking the local etcd first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub updated: u64,
}

pub fn write_status(root: &Path, status: &Status) -> Result<()> {
    let path = under_root(root, Path::new(STATUS_FILE));
    let json = serde_json::to_string_pretty(status).context("serializing the status")?;
    write_with_parents(&path, json.as_bytes(), 0o644)
}

pub fn read_status(root: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(under_root(root, Path::new(STATUS_FILE))).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn is_done(root: &Path) -> bool {
    under_root(root, Path::new(DONE_MARKER)).exists()
}

pub fn mark_done(root: &Path) -> Result<()> {
    write_with_parents(&under_root(root, Path::new(DONE_MARKER)), b"", 0o644)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
