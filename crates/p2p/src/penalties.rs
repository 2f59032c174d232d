//! Misbehaviour counted per peer: invalid messages, and useless ones at a discount
//! ([`USELESS_PER_PENALTY`] useless count as one invalid). A peer that reaches
//! [`PENALTY_THRESHOLD`] within [`PENALTY_WINDOW`] is to be banned.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

use crate::{PENALTY_THRESHOLD, PENALTY_WINDOW, USELESS_PER_PENALTY};

/// What one peer did within its current window.
#[derive(Clone, Copy, Debug)]
struct Strikes {
    /// Invalid messages (and whole multiples of useless ones).
    invalid: u32,
    /// Useless messages not yet counted as an invalid one.
    useless: u32,
    /// When the window started.
    since: Instant,
}

/// Strikes of every peer that misbehaved recently. Only allowed peers can send messages, so
/// this holds at most one entry per allowed peer.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    peers: HashMap<PeerId, Strikes>,
}

impl Penalties {
    /// The strikes of `peer`, starting over when its window has passed.
    fn strikes(&mut self, peer: PeerId, now: Instant) -> &mut Strikes {
        let strikes = self.peers.entry(peer).or_insert(Strikes {
            invalid: 0,
            useless: 0,
            since: now,
        });
        if now.saturating_duration_since(strikes.since) > PENALTY_WINDOW {
            *strikes = Strikes {
                invalid: 0,
                useless: 0,
                since: now,
            };
        }
        strikes
    }

    /// Counts an invalid message from `peer`; true when it reached [`PENALTY_THRESHOLD`] (its
    /// count then starts over).
    pub(crate) fn invalid(&mut self, peer: PeerId, now: Instant) -> bool {
        let strikes = self.strikes(peer, now);
        strikes.invalid += 1;
        let ban = strikes.invalid >= PENALTY_THRESHOLD;
        if ban {
            self.peers.remove(&peer);
        }
        ban
    }

    /// Counts a useless message from `peer`: every [`USELESS_PER_PENALTY`]-th is counted as an
    /// invalid one. True when that reached [`PENALTY_THRESHOLD`].
    pub(crate) fn useless(&mut self, peer: PeerId, now: Instant) -> bool {
        let strikes = self.strikes(peer, now);
        strikes.useless += 1;
        if strikes.useless < USELESS_PER_PENALTY {
            return false;
        }
        strikes.useless = 0;
        self.invalid(peer, now)
    }

    /// Invalid messages counted against `peer` in its current window.
    pub(crate) fn count(&self, peer: &PeerId) -> u32 {
        self.peers.get(peer).map_or(0, |s| s.invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        crate::peer_id_of_seed([i; 32]).expect("peer id")
    }

    #[test]
    fn invalid_messages_ban_at_the_threshold_within_the_window() {
        let mut penalties = Penalties::default();
        let start = Instant::now();
        for n in 1..PENALTY_THRESHOLD {
            assert!(!penalties.invalid(peer(1), start));
            assert_eq!(penalties.count(&peer(1)), n);
        }
        // Another peer's messages count for that peer only.
        assert!(!penalties.invalid(peer(2), start));
        assert!(penalties.invalid(peer(1), start));
        assert_eq!(penalties.count(&peer(1)), 0, "starts over after a ban");

        // At half the rate that bans, spread over several windows, they never ban.
        let mut now = start;
        for _ in 0..(3 * PENALTY_THRESHOLD) {
            now += PENALTY_WINDOW / (PENALTY_THRESHOLD / 2);
            assert!(!penalties.invalid(peer(3), now));
        }
    }

    #[test]
    fn useless_messages_ban_only_at_a_discount() {
        let mut penalties = Penalties::default();
        let now = Instant::now();
        let to_ban = PENALTY_THRESHOLD * USELESS_PER_PENALTY;
        for n in 1..to_ban {
            assert!(!penalties.useless(peer(1), now), "banned after {n}");
        }
        assert!(penalties.useless(peer(1), now));

        // Useless and invalid messages add up.
        for _ in 0..(PENALTY_THRESHOLD - 1) {
            assert!(!penalties.invalid(peer(2), now));
        }
        for _ in 1..USELESS_PER_PENALTY {
            assert!(!penalties.useless(peer(2), now));
        }
        assert!(penalties.useless(peer(2), now));

        // An honest rate (a few per window) is forgotten with each window.
        let mut later = now;
        for _ in 0..10 {
            for _ in 0..(to_ban / 2) {
                assert!(!penalties.useless(peer(3), later));
            }
            later += PENALTY_WINDOW + PENALTY_WINDOW / 10;
        }
    }
}
