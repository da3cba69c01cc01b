//! Which masters registered in etcd a master takes as keepalived peers:
//! only well-formed registrations of an address inside the node subnets,
//! and no more than [`MAX_VIP_MASTERS`] masters in all. Anyone who can write
//! under `vip/peers/` could otherwise make every master send VRRP adverts to,
//! and accept adverts from (`check_unicast_src`), any address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use kiln_node::etcd::kv::KeyValue;
use kiln_node::net::Cidr;
use kiln_node::node_config::{ControlPlaneSettings, MAX_VIP_MASTERS};

/// What a master publishes at `layout::keys::vip_peer(cluster, name)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub ip: IpAddr,
    /// The unicast peers in its keepalived.conf now.
    pub peers: Vec<IpAddr>,
}

/// A registration that is not taken, and why, as the journal says it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub key: String,
    /// The registered address; `None` when the value is not a registration.
    pub address: Option<IpAddr>,
    pub why: String,
}

/// The registrations under `prefix` this master takes, by name, and the
/// ones it refuses. The oldest keys (by etcd's create revision) are taken
/// first, so masters that have been registered keep their place when new
/// keys would go past the cap.
pub fn admit(
    cp: &ControlPlaneSettings,
    prefix: &str,
    mut found: Vec<KeyValue>,
) -> (BTreeMap<String, Registration>, Vec<Refusal>) {
    found.sort_by(|a, b| (a.create_revision, &a.key).cmp(&(b.create_revision, &b.key)));
    // The listed masters come from node.toml and count toward the cap first
    // (the profile lists at most MAX_VIP_MASTERS of them).
    let mut masters: BTreeSet<IpAddr> = cp.masters.iter().map(|m| m.ip).collect();
    let mut taken = BTreeMap::new();
    let mut refused = vec![];
    for kv in found {
        let Some(name) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let refuse = |address, why: String| Refusal {
            key: kv.key.clone(),
            address,
            why,
        };
        let registration: Registration = match serde_json::from_str(&kv.value) {
            Ok(r) => r,
            Err(e) => {
                refused.push(refuse(
                    None,
                    format!("its value is not a registration ({e})"),
                ));
                continue;
            }
        };
        let ip = registration.ip;
        if !cp.node_subnets.iter().any(|net| net.contains(ip)) {
            refused.push(refuse(Some(ip), outside(&cp.node_subnets)));
        } else if !masters.contains(&ip) && masters.len() >= MAX_VIP_MASTERS {
            refused.push(refuse(
                Some(ip),
                format!("{MAX_VIP_MASTERS} masters already share the VIP (MAX_VIP_MASTERS)"),
            ));
        } else {
            masters.insert(ip);
            taken.insert(name.to_owned(), registration);
        }
    }
    (taken, refused)
}

fn outside(subnets: &[Cidr]) -> String {
    if subnets.is_empty() {
        return "node.toml lists no node subnets (built by an older kiln: rebuild the image), \
                so no registered address is trusted"
            .to_owned();
    }
    let nets: Vec<String> = subnets.iter().map(Cidr::to_string).collect();
    format!(
        "the address is outside the node subnets {}",
        nets.join(", ")
    )
}

/// Warns of each refusal once while it lasts: a beat every 2 s would
/// otherwise repeat it in the journal, and remembering only the last beat's
/// refusals keeps the memory bounded by what etcd holds now.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: BTreeSet<Refusal>,
}

impl RefusalLog {
    /// Warns of the refusals the last call did not have.
    pub fn warn(&mut self, refused: Vec<Refusal>) {
        for r in self.fresh(refused) {
            let address = r
                .address
                .map_or_else(|| "none".to_owned(), |a| a.to_string());
            tracing::warn!(
                key = %r.key,
                address = %address,
                decision = "ignored",
                "ignoring the keepalived peer registered at {} (address {address}): {}",
                r.key,
                r.why
            );
        }
    }

    /// The refusals of `refused` the last call did not have.
    fn fresh(&mut self, refused: Vec<Refusal>) -> Vec<Refusal> {
        let now: BTreeSet<Refusal> = refused.into_iter().collect();
        let fresh = now.difference(&self.last).cloned().collect();
        self.last = now;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeadm::config::tests::sample_config;
    use kiln_node::node_config::Role;

    const PREFIX: &str = "/kiln/prod/vip/peers/";

    fn kv(name: &str, value: &str, create_revision: i64) -> KeyValue {
        KeyValue {
            key: format!("{PREFIX}{name}"),
            value: value.to_owned(),
            lease: 7,
            create_revision,
        }
    }

    fn reg(ip: &str) -> String {
        format!(r#"{{"ip":"{ip}","peers":[]}}"#)
    }

    fn control_plane() -> ControlPlaneSettings {
        sample_config(Role::Master, "1.36.2").control_plane.unwrap()
    }

    #[test]
    fn only_well_formed_registrations_inside_the_node_subnets_are_taken() {
        let cp = control_plane();
        let found = vec![
            kv("master4", &reg("10.0.0.44"), 10),
            kv("rogue", &reg("192.0.2.9"), 11),
            kv("rogue6", &reg("fd00::9"), 12),
            kv("garbled", r#"{"ip":"10.0.0.300","peers":[]}"#, 13),
            kv("text", "10.0.0.45", 14),
            kv("master2", &reg("10.0.0.22"), 15),
        ];
        let (taken, refused) = admit(&cp, PREFIX, found);
        assert_eq!(taken.keys().collect::<Vec<_>>(), ["master2", "master4"]);
        let names: Vec<(&str, Option<String>)> = refused
            .iter()
            .map(|r| (&r.key[PREFIX.len()..], r.address.map(|a| a.to_string())))
            .collect();
        assert_eq!(
            names,
            [
                ("rogue", Some("192.0.2.9".into())),
                ("rogue6", Some("fd00::9".into())),
                ("garbled", None),
                ("text", None),
            ]
        );
        assert!(refused[0]
            .why
            .contains("outside the node subnets 10.0.0.0/24"));
        assert!(refused[2].why.contains("not a registration"));
    }

    #[test]
    fn an_old_node_toml_without_subnets_takes_no_registration() {
        let mut cp = control_plane();
        cp.node_subnets.clear();
        let (taken, refused) = admit(&cp, PREFIX, vec![kv("master4", &reg("10.0.0.44"), 1)]);
        assert!(taken.is_empty());
        assert!(refused[0].why.contains("no node subnets"), "{refused:?}");
    }

    #[test]
    fn the_oldest_registrations_fill_the_cap_and_the_rest_are_refused() {
        let cp = control_plane();
        // Three listed masters; newer keys come first in name order, so the
        // cap must follow create revisions, not names.
        let found: Vec<KeyValue> = (0..20)
            .map(|i| {
                kv(
                    &format!("m{:02}", 19 - i),
                    &reg(&format!("10.0.0.{}", 100 + i)),
                    i64::from(i),
                )
            })
            .collect();
        let (taken, refused) = admit(&cp, PREFIX, found);
        let room = MAX_VIP_MASTERS - cp.masters.len();
        assert_eq!(taken.len(), room);
        assert!(taken.contains_key("m19") && !taken.contains_key("m00"));
        assert_eq!(refused.len(), 20 - room);
        assert!(refused
            .iter()
            .all(|r| r.why.contains("already share the VIP")));
        // A listed master's own registration adds no address: never refused.
        let mut found: Vec<KeyValue> = (0..20)
            .map(|i| {
                kv(
                    &format!("x{i:02}"),
                    &reg(&format!("10.0.0.{}", 100 + i)),
                    i64::from(i),
                )
            })
            .collect();
        found.push(kv("master1", &reg("10.0.0.21"), 99));
        let (taken, _) = admit(&cp, PREFIX, found);
        assert!(taken.contains_key("master1"));
    }

    #[test]
    fn a_refusal_is_warned_of_once_while_it_lasts() {
        let refusal = |key: &str| Refusal {
            key: key.into(),
            address: None,
            why: "x".into(),
        };
        let mut log = RefusalLog::default();
        assert_eq!(log.fresh(vec![refusal("a"), refusal("b")]).len(), 2);
        assert!(log.fresh(vec![refusal("b"), refusal("a")]).is_empty());
        assert_eq!(log.fresh(vec![refusal("b"), refusal("c")]), [refusal("c")]);
        log.fresh(vec![]);
        assert_eq!(log.fresh(vec![refusal("b")]), [refusal("b")]);
    }
}
