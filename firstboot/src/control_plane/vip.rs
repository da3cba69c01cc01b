//! keepalived's unicast peers, learned at run time: a master on an address
//! the profile does not list (a cloud replacement) still joins the VIP.
//!
//! `kiln-firstboot vip-peers` (kiln-vip-peers.service, on masters with a
//! unicast VIP) registers its master in etcd every [`BEAT`], on a lease that
//! ends three beats after the last one, with the peers its keepalived has
//! now. Each master's peers are the listed masters and every registered
//! one; when they change, it rewrites keepalived.conf and reloads
//! keepalived. A master on an unlisted address starts keepalived only once
//! every registered master has it as a peer ([`wait_until_known`]): with
//! unicast VRRP a master nobody sends adverts to would take the VIP beside
//! the one that holds it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::keepalived;
use super::vip_admission::{admit, RefusalLog, Registration};
use crate::backoff::{every_beat, retry, Attempt, Beat};
use crate::context::NodeContext;
use crate::etcd;
use kiln_node::etcd::kv::{KeptLease, KvCluster};
use kiln_node::fsutil::write_with_parents;
use kiln_node::layout::{self, kube::KEEPALIVED_CONFIG};
use kiln_node::node_config::{ControlPlaneSettings, Vip};

/// How often a master registers itself and looks at the others.
pub const BEAT: Duration = Duration::from_secs(2);
/// A registration ends three beats after it was last renewed.
const REGISTRATION_TTL: i64 = 6;

/// The masters with a VIP, as this command needs them.
struct Registrar<'a> {
    node: etcd::EtcdMember<'a>,
    cp: &'a ControlPlaneSettings,
    vip: &'a Vip,
    lease: KeptLease,
    /// The keepalived.conf keepalived runs with (or will start with);
    /// `None` until this command wrote one.
    loaded: Option<String>,
    refusals: RefusalLog,
}

/// The control-plane settings and the VIP, when the VIP is unicast.
fn unicast_vip(ctx: &NodeContext) -> Option<(&ControlPlaneSettings, &Vip)> {
    let cp = ctx.config.control_plane.as_ref()?;
    cp.vip.as_ref().filter(|v| v.unicast).map(|vip| (cp, vip))
}

/// Whether keepalived's peers must be learned before this master's VIP
/// starts: the listed masters do not have its address.
pub fn needs_learned_peers(ctx: &NodeContext) -> bool {
    unicast_vip(ctx).is_some_and(|(cp, _)| cp.masters.iter().all(|m| m.ip != ctx.me.ip))
}

/// `kiln-firstboot vip-peers`: runs until stopped. A failed beat is logged
/// when its reason changes, and the next beat tries again.
pub fn run(ctx: &NodeContext) -> Result<()> {
    let Some((cp, vip)) = unicast_vip(ctx) else {
        bail!(
            "node.toml gives this node no unicast VIP (control_plane.vip with unicast = true); \
             `vip-peers` runs on such masters only"
        );
    };
    let mut registrar = Registrar {
        node: etcd::EtcdMember::new(ctx)?,
        cp,
        vip,
        lease: KeptLease::new(REGISTRATION_TTL, "VIP registration's"),
        loaded: None,
        refusals: RefusalLog::default(),
    };
    tracing::info!(every = ?BEAT, "registering this master as a keepalived peer");
    every_beat(
        BEAT,
        "registered again",
        "no registration this beat",
        || Ok(registrar.beat().map_or_else(Beat::Missed, |()| Beat::Done)),
    )
}

impl Registrar<'_> {
    fn beat(&mut self) -> Result<()> {
        let ctx = self.node.ctx;
        let kv = cluster(&self.node)?;
        let learned: Vec<IpAddr> = registered(&kv, ctx, &mut self.refusals)?
            .into_iter()
            .filter(|(name, _)| *name != ctx.me.name)
            .map(|(_, r)| r.ip)
            .collect();
        let peers = self.apply(&learned)?;
        let lease = self.lease.renew(&kv)?;
        let key = layout::keys::vip_peer(&ctx.config.cluster, &ctx.me.name);
        let value = serde_json::to_string(&Registration {
            ip: ctx.me.ip,
            peers,
        })
        .expect("a registration always serializes");
        kv.call("register this master as a keepalived peer", |c, ep| {
            c.put(ep, &key, &value, lease)
        })
    }

    /// Brings keepalived to the listed and `learned` peers: rewrites
    /// keepalived.conf and has a running keepalived reload it; returns the
    /// peers keepalived has. Before the agent wrote the file (keepalived is
    /// not set up yet) it has none; a file that already holds these peers
    /// is what keepalived started with.
    fn apply(&mut self, learned: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let ctx = self.node.ctx;
        let path = ctx.path(KEEPALIVED_CONFIG);
        let Ok(on_disk) = std::fs::read_to_string(&path) else {
            return Ok(vec![]);
        };
        let peers = keepalived::unicast_peers(self.cp, ctx.me.ip, learned);
        let text = keepalived::config(self.cp, self.vip, &ctx.me.name, ctx.me.ip, &peers)?;
        let loaded = on_disk == text && self.loaded.as_ref().is_none_or(|l| *l == text);
        if !loaded {
            // Not loaded until the reload succeeds: a failed one is retried.
            self.loaded = Some(String::new());
            write_with_parents(&path, text.as_bytes(), 0o644)?;
            tracing::info!(peers = ?peers, "keepalived's unicast peers changed");
            if ctx.start {
                reload_keepalived()?;
            }
        }
        self.loaded = Some(text);
        Ok(peers)
    }
}

/// Has a running keepalived read its configuration again (SIGHUP to its
/// main process, as its own reload does; the image has no /bin/kill for
/// Debian's ExecReload). A keepalived that is not running reads the file
/// when it starts.
fn reload_keepalived() -> Result<()> {
    let active = std::process::Command::new("systemctl")
        .args(["is-active", "--quiet", "keepalived.service"])
        .status()
        .context("running systemctl is-active keepalived.service")?;
    if !active.success() {
        return Ok(());
    }
    crate::systemd::systemctl(
        &[
            "kill",
            "--signal=SIGHUP",
            "--kill-whom=main",
            "keepalived.service",
        ],
        "; see journalctl -u keepalived",
    )
}

/// The etcd cluster through its voting members, found by discovery.
fn cluster(node: &etcd::EtcdMember) -> Result<KvCluster> {
    let members = node
        .members_now()
        .context("no etcd member answers through discovery")?;
    Ok(KvCluster {
        client: node.client.clone(),
        endpoints: node.voting_endpoints(&members),
    })
}

/// The registered masters this one takes as peers, by name
/// ([`admit`]); the others are warned of through `refusals`.
fn registered(
    kv: &KvCluster,
    ctx: &NodeContext,
    refusals: &mut RefusalLog,
) -> Result<BTreeMap<String, Registration>> {
    let Some((cp, _)) = unicast_vip(ctx) else {
        return Ok(BTreeMap::new());
    };
    let prefix = layout::keys::vip_peers(&ctx.config.cluster);
    let found = kv.call(
        "read the masters registered as keepalived peers",
        |c, ep| c.range(ep, &prefix, true, 0),
    )?;
    let (taken, refused) = admit(cp, &prefix, found.kvs);
    refusals.warn(refused);
    Ok(taken)
}

/// The registered masters other than `me` that do not have `ip` as a
/// keepalived peer yet.
fn not_knowing(registered: &BTreeMap<String, Registration>, me: &str, ip: IpAddr) -> Vec<String> {
    registered
        .iter()
        .filter(|(name, r)| *name != me && !r.peers.contains(&ip))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Waits (at most the agent's timeout) until this master is registered and
/// every other registered master has it as a keepalived peer.
pub fn wait_until_known(ctx: &NodeContext) -> Result<()> {
    let node = etcd::EtcdMember::new(ctx)?;
    let me = &ctx.me;
    let mut refusals = RefusalLog::default();
    retry(
        "every registered master to have this one as a keepalived peer",
        ctx.timeout,
        || {
            let seen = cluster(&node).and_then(|kv| registered(&kv, ctx, &mut refusals));
            match seen {
                Err(e) => Attempt::Retry(format!("{e:#}")),
                Ok(seen) if !seen.contains_key(&me.name) => Attempt::Retry(format!(
                    "{} is not registered yet (kiln-vip-peers.service registers it)",
                    me.name
                )),
                Ok(seen) => match not_knowing(&seen, &me.name, me.ip) {
                    waiting if waiting.is_empty() => Attempt::Done(()),
                    waiting => Attempt::Retry(format!(
                        "{} do not have {} as a keepalived peer yet",
                        waiting.join(", "),
                        me.ip
                    )),
                },
            }
        },
    )?;
    tracing::info!(ip = %me.ip, "every registered master has this one as a keepalived peer");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ip: &str, peers: &[&str]) -> Registration {
        Registration {
            ip: ip.parse().unwrap(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_new_master_waits_for_every_other_registered_master() {
        let ip: IpAddr = "10.0.0.44".parse().unwrap();
        let mut seen = BTreeMap::from([
            (
                "master2".to_owned(),
                reg("10.0.0.22", &["10.0.0.21", "10.0.0.44"]),
            ),
            (
                "master3".to_owned(),
                reg("10.0.0.23", &["10.0.0.21", "10.0.0.22"]),
            ),
            ("master4".to_owned(), reg("10.0.0.44", &[])),
        ]);
        assert_eq!(not_knowing(&seen, "master4", ip), ["master3"]);
        seen.insert("master3".into(), reg("10.0.0.23", &["10.0.0.44"]));
        assert!(not_knowing(&seen, "master4", ip).is_empty());
    }
}
