//! When an initial member that found no cluster may bootstrap one: after
//! enough silence, or at once when every listed peer's host refuses the
//! connection (the cluster is forming). Only the profile's list may shorten
//! the wait: discovery answers (DNS SRV) are not authenticated, so a
//! spoofed one must never make a member bootstrap beside a live cluster.

use std::time::{Duration, Instant};

/// How long no member may answer before an initial member bootstraps,
/// unless the cluster is forming ([`forming`]). One silent round is not
/// enough: a replacement booting beside a live but loaded cluster can miss
/// one round of answers, and would then start etcd with state=new, which
/// etcd refuses ("member has already been bootstrapped") for as long as the
/// cluster lives.
pub const BOOTSTRAP_SILENCE: Duration = Duration::from_secs(15);
/// ... and in at least this many rounds of asking every candidate.
const BOOTSTRAP_ROUNDS: u32 = 3;

/// Whether the cluster has been silent long enough to bootstrap: any answer
/// starts the count again. A candidate that refuses or cannot be reached
/// is silence, not an answer.
#[derive(Debug, Default)]
pub struct Silence {
    since: Option<Instant>,
    rounds: u32,
}

impl Silence {
    /// Records one round of observation; true once silence has lasted.
    pub fn long_enough(&mut self, answered: bool, now: Instant) -> bool {
        if answered {
            *self = Self::default();
            return false;
        }
        let since = *self.since.get_or_insert(now);
        self.rounds += 1;
        self.rounds >= BOOTSTRAP_ROUNDS && now.duration_since(since) >= BOOTSTRAP_SILENCE
    }
}

/// What a connection to a peer's client port found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The host is up and nothing listens there.
    Refused,
    /// Accepted, timed out or unreachable: a member may be there, busy.
    MayBeThere,
}

/// Whether the cluster is forming, so an initial member may bootstrap
/// without the silence: every other listed member's host refuses (it is
/// up and its etcd is not yet), and so does every discovered candidate (no
/// cluster hides behind a slow answer). Discovered candidates can only hold
/// the bootstrap, never allow it: with no listed peer to ask (a cluster of
/// one), the silence rule applies.
pub fn forming(listed_peers: &[Probe], discovered: &[Probe]) -> bool {
    !listed_peers.is_empty()
        && listed_peers
            .iter()
            .chain(discovered)
            .all(|p| *p == Probe::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Probe::{MayBeThere, Refused};

    #[test]
    fn silence_must_last_and_span_rounds_and_any_answer_restarts_it() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut silence = Silence::default();
        assert!(!silence.long_enough(false, at(0)), "one silent round");
        assert!(!silence.long_enough(false, at(1)));
        assert!(!silence.long_enough(false, at(14)), "three rounds, 14 s");
        assert!(!silence.long_enough(true, at(15)), "an answer");
        assert!(!silence.long_enough(false, at(16)));
        assert!(
            !silence.long_enough(false, at(30)),
            "two rounds since the answer"
        );
        assert!(silence.long_enough(false, at(31)), "three rounds, 15 s");

        let mut slow = Silence::default();
        assert!(!slow.long_enough(false, at(0)));
        assert!(
            !slow.long_enough(false, at(20)),
            "two rounds are not enough"
        );
        assert!(slow.long_enough(false, at(40)));
    }

    #[test]
    fn only_refusing_listed_peers_make_a_cluster_forming() {
        assert!(forming(&[Refused, Refused], &[]));
        assert!(forming(&[Refused], &[Refused, Refused]));
        assert!(!forming(&[Refused, MayBeThere], &[]), "a busy listed peer");
        assert!(!forming(&[Refused], &[MayBeThere]), "a slow discovered one");
    }

    #[test]
    fn a_refusing_discovered_address_never_shortens_the_silence() {
        // A spoofed SRV answer naming an address that refuses, while a
        // listed peer may be alive (or there is no listed peer at all).
        assert!(!forming(&[MayBeThere], &[Refused]));
        assert!(!forming(&[], &[Refused]));
        assert!(!forming(&[], &[Refused, Refused, Refused]));
    }
}
