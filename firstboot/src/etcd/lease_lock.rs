//! Cluster-wide locks in etcd (the masters' init and restart locks, the etcd
//! membership lock): a key attached to a short lease that its holder keeps
//! alive, so a holder that dies loses the lock within the lease's TTL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::backoff::{retry, Attempt, TimedOut};
use kiln_node::etcd::kv::KvCluster;

/// The lock's lease lives this long without a keepalive.
pub const LEASE_TTL_SECONDS: i64 = 15;
/// Well inside the TTL, so one lost keepalive costs nothing.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// A lock (the init lock, the restart lock), held by this process until dropped.
pub struct HeldLock {
    kv: KvCluster,
    key: String,
    lease: i64,
    stop: Option<Sender<()>>,
    keeper: Option<JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

/// Takes the lock `key` for `node` if nobody holds it; `None` when someone does.
pub fn try_acquire(kv: &KvCluster, key: &str, node: &str) -> Result<Option<HeldLock>> {
    let lease = kv.call(&format!("grant the lease of the lock {key}"), |c, ep| {
        c.lease_grant(ep, LEASE_TTL_SECONDS)
    })?;
    let created = kv.call(&format!("take the lock {key}"), |c, ep| {
        c.create(ep, key, node, lease)
    });
    if !matches!(created, Ok(true)) {
        // Lost the race (or could not tell): give the lease back at once.
        let _ = kv.call("revoke an unused lease", |c, ep| c.lease_revoke(ep, lease));
        return created.map(|_| None);
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let lost = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (kv, lost, key) = (kv.clone(), lost.clone(), key.to_owned());
        std::thread::spawn(move || loop {
            match stopped.recv_timeout(KEEPALIVE_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match kv.call(
                &format!("keep the lease of the lock {key} alive"),
                |c, ep| c.lease_keepalive(ep, lease),
            ) {
                Ok(ttl) if ttl > 0 => {}
                Ok(_) => {
                    tracing::error!(
                        "the lease of the lock {key} expired: another node may take over"
                    );
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!("could not renew the lease of the lock {key}: {e:#}"),
            }
        })
    };
    Ok(Some(HeldLock {
        kv: kv.clone(),
        key: key.to_owned(),
        lease,
        stop: Some(stop),
        keeper: Some(keeper),
        lost,
    }))
}

impl HeldLock {
    /// Whether the lease expired while held (etcd then deleted the lock).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Gives the lock back on another thread, while the caller goes on.
    pub fn release_in_background(self) -> Releasing {
        Releasing(Some(std::thread::spawn(move || drop(self))))
    }
}

/// A lock being given back; dropping this waits until it is.
pub struct Releasing(Option<JoinHandle<()>>);

impl Drop for Releasing {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.join();
        }
    }
}

impl Drop for HeldLock {
    /// Stops the keepalives and revokes the lease, which deletes the lock:
    /// the next holder need not wait for the TTL.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        let lease = self.lease;
        if let Err(e) = self
            .kv
            .call(&format!("release the lock {}", self.key), |c, ep| {
                c.lease_revoke(ep, lease)
            })
        {
            tracing::warn!("{e:#}; the lock expires on its own within {LEASE_TTL_SECONDS} s");
        }
    }
}

/// Waits (at most `within`) until `node` holds the lock `key`; `what`
/// names the lock and why it exists, for the log and the error.
pub fn acquire(
    kv: &KvCluster,
    key: &str,
    node: &str,
    what: &str,
    within: Duration,
) -> Result<HeldLock, TimedOut> {
    retry(what, within, || match try_acquire(kv, key, node) {
        Ok(Some(held)) => Attempt::Done(held),
        Ok(None) => {
            let holder = kv
                .call(&format!("read the lock {key}"), |c, e| c.get(e, key))
                .ok()
                .flatten();
            Attempt::Retry(format!(
                "{} holds it",
                holder.map_or_else(|| "another node".into(), |kv| kv.value)
            ))
        }
        Err(e) => Attempt::Retry(format!("{e:#}")),
    })
}
