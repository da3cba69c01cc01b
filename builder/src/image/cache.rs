//! The build cache's one lock: parallel builds that share a cache wait for
//! one another's work on a base or an etcd download.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// Holds `path` (a lock file in the cache) exclusively until dropped, so
/// parallel builds sharing a cache wait for one another's work.
pub fn cache_lock(path: &Path) -> Result<Flock<File>> {
    let file = File::create(path)
        .with_context(|| format!("creating the cache lock {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))
}
