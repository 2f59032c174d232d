//! Which sync requests are being answered: at most [`SYNC_SERVING_MAX`] at once, and
//! [`SYNC_SERVING_PER_PEER_MAX`] per peer, each from the moment it is handed to the node until
//! its answer is sent or has failed.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::{SYNC_SERVING_MAX, SYNC_SERVING_PER_PEER_MAX};

/// Why a sync request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The asker already has [`SYNC_SERVING_PER_PEER_MAX`] requests being answered.
    PeerBusy,
    /// [`SYNC_SERVING_MAX`] requests are being answered.
    AtCapacity,
}

impl Refusal {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::PeerBusy => "peer_busy",
            Refusal::AtCapacity => "at_capacity",
        }
    }
}

/// The requests being answered, by request id.
#[derive(Debug)]
pub(crate) struct Serving<K> {
    requests: HashMap<K, (PeerId, Instant)>,
}

impl<K> Default for Serving<K> {
    fn default() -> Self {
        Serving {
            requests: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Copy> Serving<K> {
    /// Takes a slot for request `id` of `peer`, or says why not.
    pub(crate) fn admit(&mut self, id: K, peer: PeerId, now: Instant) -> Result<(), Refusal> {
        let of_peer = self.requests.values().filter(|(p, _)| *p == peer).count();
        if of_peer >= SYNC_SERVING_PER_PEER_MAX {
            return Err(Refusal::PeerBusy);
        }
        if self.requests.len() >= SYNC_SERVING_MAX {
            return Err(Refusal::AtCapacity);
        }
        self.requests.insert(id, (peer, now));
        Ok(())
    }

    /// Request `id` is done with (its answer sent, or failed); false if it held no slot.
    pub(crate) fn finished(&mut self, id: &K) -> bool {
        self.requests.remove(id).is_some()
    }

    /// Frees the slots held longer than `age` (a safety net: the network layer reports every
    /// request's end well before), returning how many.
    pub(crate) fn expire(&mut self, now: Instant, age: Duration) -> usize {
        let before = self.requests.len();
        self.requests
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= age);
        before - self.requests.len()
    }

    /// Requests being answered.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        crate::peer_id_of_seed([i; 32]).expect("peer id")
    }

    #[test]
    fn one_request_per_peer_and_a_bounded_total_until_each_is_finished() {
        let mut serving = Serving::<u64>::default();
        let now = Instant::now();
        assert_eq!(serving.admit(1, peer(1), now), Ok(()));
        // The same peer again: refused until its first is finished, however long it takes.
        assert_eq!(serving.admit(2, peer(1), now), Err(Refusal::PeerBusy));
        // Other peers fill the budget; beyond it, refused.
        let mut id = 10;
        for i in 2..=u8::try_from(SYNC_SERVING_MAX).expect("few") {
            id += 1;
            assert_eq!(serving.admit(id, peer(i), now), Ok(()));
        }
        assert_eq!(serving.len(), SYNC_SERVING_MAX);
        assert_eq!(serving.admit(99, peer(200), now), Err(Refusal::AtCapacity));
        // A request that held no slot frees nothing.
        assert!(!serving.finished(&2));
        assert_eq!(serving.len(), SYNC_SERVING_MAX);
        assert!(serving.finished(&1));
        assert_eq!(serving.admit(3, peer(1), now), Ok(()));
        assert_eq!(serving.admit(100, peer(200), now), Err(Refusal::AtCapacity));
        // The safety net frees slots held too long.
        let later = now + Duration::from_secs(100);
        assert_eq!(
            serving.expire(later, Duration::from_secs(60)),
            SYNC_SERVING_MAX
        );
        assert_eq!(serving.len(), 0);
    }
}
