//! The node's side of the network: outbound messages into gossip, block sync as asker and as
//! answerer.
//!
//! **Asking.** The node loop keeps one sync request in flight at most. It asks when the driver
//! says the node is behind (a quorum decided a block it does not have, or peers talk about a
//! later height), and otherwise probes a peer every [`SYNC_PROBE_INTERVAL`] while no block has
//! committed, so a node that was down learns it is behind even on an idle chain. Each block of
//! an answer is verified in full (certificate, link, records, state digest) before it is
//! stored; a peer whose block fails is penalised and the next peer is asked. A peer whose
//! request failed (refused because it is busy, timed out, gone) rests for
//! [`SYNC_FAILED_PEER_REST`] while the others are asked.
//!
//! **Answering.** The network layer admits requests: at most
//! [`branchledger_p2p::SYNC_SERVING_MAX`] at once and one per peer, each until its answer is
//! sent (or fails), so answers in flight hold at most
//! [`branchledger_p2p::SYNC_ANSWERS_BYTES_MAX`]; it refuses the rest, and the asker tries
//! another peer. The admitted requests are served off the node loop, each by a task that reads
//! the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use branchledger_p2p::{Client, PeerId, Responder, SYNC_SERVING_MAX};
use branchledger_storage::{ChainReader, RocksStore};
use branchledger_types::wire::{
    ConsensusMessage, SyncRequest, SyncResponse, SYNC_BLOCKS_PER_REQUEST_MAX,
    SYNC_RESPONSE_BYTES_TARGET,
};
use branchledger_types::{encoded_len, Height};
use tokio::sync::mpsc;

use crate::driver::{Network, Outbound};

/// Blocks asked for in one sync request.
pub const SYNC_BATCH_BLOCKS: u32 = 64;
/// While no block commits, a peer is asked for newer blocks this often.
pub const SYNC_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A sync request unanswered this long is given up (the network layer's own timeout is
/// longer; this keeps the asker moving to another peer).
pub const SYNC_PATIENCE: Duration = Duration::from_secs(10);
/// A peer whose sync request failed is not asked again for this long (another peer is, if
/// one is connected): a busy peer refuses at once, and asking it again at once would only
/// spin.
pub const SYNC_FAILED_PEER_REST: Duration = Duration::from_secs(1);
/// Sync requests waiting for the serving task: room for every request the network layer
/// admits at once, so none it admitted is dropped here.
pub const SYNC_SERVE_QUEUE: usize = SYNC_SERVING_MAX;

const _: () = assert!(SYNC_BATCH_BLOCKS <= SYNC_BLOCKS_PER_REQUEST_MAX);

/// Outbound consensus messages and records, into gossip. Sending never blocks the node loop:
/// when the network's queue is full the message is dropped and counted (consensus tolerates
/// loss and rebroadcasts; records stay in the local mempool).
pub struct GossipNetwork {
    client: Client,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl GossipNetwork {
    /// Gossip through `client`, counting drops in `dropped`.
    pub fn new(client: Client, dropped: prometheus_client::metrics::counter::Counter) -> Self {
        GossipNetwork { client, dropped }
    }
}

impl Network for GossipNetwork {
    fn broadcast(&mut self, message: Outbound) {
        let sent = match message {
            Outbound::Proposal(proposal, block) => self
                .client
                .publish_consensus(ConsensusMessage::Proposal { proposal, block }),
            Outbound::CompactProposal(proposal, block) => self
                .client
                .publish_consensus(ConsensusMessage::CompactProposal { proposal, block }),
            Outbound::BlockWanted(wanted) => self
                .client
                .publish_consensus(ConsensusMessage::BlockWanted(wanted)),
            Outbound::Vote(vote) => self.client.publish_consensus(ConsensusMessage::Vote(vote)),
            Outbound::Records(records) => self.client.publish_records(records),
        };
        if sent.is_err() {
            self.dropped.inc();
        }
    }
}

/// The asking side of block sync, kept by the node loop.
#[derive(Default)]
pub struct SyncState {
    /// Connected peers, in the order they connected.
    peers: Vec<PeerId>,
    /// The next peer to ask (round robin).
    next: usize,
    /// The request in flight: the peer and when it was sent.
    in_flight: Option<(PeerId, Instant)>,
    /// Peers whose last request failed, and until when they are not asked.
    resting: HashMap<PeerId, Instant>,
    /// The highest tip a peer reported.
    best_tip: Height,
}

impl SyncState {
    /// A peer connected.
    pub fn connected(&mut self, peer: PeerId) {
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
        }
    }

    /// A peer disconnected; a request in flight to it is given up.
    pub fn disconnected(&mut self, peer: PeerId) {
        self.peers.retain(|p| *p != peer);
        self.resting.remove(&peer);
        if self.in_flight.is_some_and(|(p, _)| p == peer) {
            self.in_flight = None;
        }
    }

    /// Connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The highest tip any peer reported.
    pub fn best_tip(&self) -> Height {
        self.best_tip
    }

    /// Whether a request is in flight (and not yet given up; a peer given up on rests).
    pub fn busy(&mut self, now: Instant) -> bool {
        if let Some((peer, at)) = self.in_flight {
            if now.saturating_duration_since(at) > SYNC_PATIENCE {
                self.in_flight = None;
                self.resting.insert(peer, now + SYNC_FAILED_PEER_REST);
            }
        }
        self.in_flight.is_some()
    }

    /// Sends a request for blocks from `from` to the next peer that is not resting, unless one
    /// is in flight or no such peer is connected. `prefer` is asked first if connected and not
    /// resting (the peer that just answered).
    pub fn ask(&mut self, client: &Client, from: Height, prefer: Option<PeerId>, now: Instant) {
        if self.busy(now) || self.peers.is_empty() {
            return;
        }
        self.resting.retain(|_, until| *until > now);
        let resting = &self.resting;
        let peer = match prefer.filter(|p| self.peers.contains(p) && !resting.contains_key(p)) {
            Some(peer) => peer,
            None => {
                let mut chosen = None;
                for _ in 0..self.peers.len() {
                    self.next = (self.next + 1) % self.peers.len();
                    let candidate = self.peers[self.next];
                    if !resting.contains_key(&candidate) {
                        chosen = Some(candidate);
                        break;
                    }
                }
                let Some(peer) = chosen else {
                    return;
                };
                peer
            }
        };
        let request = SyncRequest {
            from,
            count: SYNC_BATCH_BLOCKS,
        };
        if client.request_blocks(peer, request).is_ok() {
            self.in_flight = Some((peer, now));
        }
    }

    /// An answer (with the peer's `tip`) or a failure (`None`) came from `peer`: the request
    /// is no longer in flight, and after a failure the peer rests for
    /// [`SYNC_FAILED_PEER_REST`].
    pub fn answered(&mut self, peer: PeerId, tip: Option<Height>) {
        if self.in_flight.is_some_and(|(p, _)| p == peer) {
            self.in_flight = None;
        }
        match tip {
            Some(tip) => {
                self.best_tip = self.best_tip.max(tip);
                self.resting.remove(&peer);
            }
            None => {
                self.resting
                    .insert(peer, Instant::now() + SYNC_FAILED_PEER_REST);
            }
        }
    }
}

/// A sync request handed to the serving task.
pub struct ServeRequest {
    /// The asker.
    pub peer: PeerId,
    /// What it asks.
    pub request: SyncRequest,
    /// Where the answer goes.
    pub responder: Responder,
}

/// Starts the task that answers sync requests from `store`; returns where to send them.
///
/// It serves every request it gets: the network layer admitted each (at most
/// [`SYNC_SERVING_MAX`] at once, one per peer, until its answer is sent), which bounds the
/// reads and answers in flight here too. A request dropped unanswered (a failed read) frees
/// its slot in the network layer.
pub fn spawn_sync_server(store: Arc<RocksStore>, client: Client) -> mpsc::Sender<ServeRequest> {
    let (tx, mut rx) = mpsc::channel::<ServeRequest>(SYNC_SERVE_QUEUE);
    tokio::spawn(async move {
        while let Some(serve) = rx.recv().await {
            let store = store.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let ServeRequest {
                    peer,
                    request,
                    responder,
                } = serve;
                let answer =
                    tokio::task::spawn_blocking(move || read_blocks(&store, request)).await;
                match answer {
                    Ok(Ok(response)) => {
                        let _ = client.respond(responder, response).await;
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%peer, %error, "reading blocks for a peer failed");
                    }
                    Err(error) => tracing::error!(%peer, %error, "sync serving task failed"),
                }
            });
        }
    });
    tx
}

/// Consecutive committed blocks from `request.from`, up to its count and about
/// [`SYNC_RESPONSE_BYTES_TARGET`] bytes (at least one block when there is one).
pub fn read_blocks(
    store: &RocksStore,
    request: SyncRequest,
) -> Result<SyncResponse, branchledger_storage::StorageError> {
    let tip = store.tip()?.map_or(0, |t| t.height);
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    let count = request.count.min(SYNC_BLOCKS_PER_REQUEST_MAX);
    let last = tip.min(
        request
            .from
            .saturating_add(u64::from(count))
            .saturating_sub(1),
    );
    for height in request.from..=last {
        let Some(block) = store.committed_block(height)? else {
            break;
        };
        let size = encoded_len(&block.block) + encoded_len(&block.commit);
        if !blocks.is_empty() && bytes + size > SYNC_RESPONSE_BYTES_TARGET {
            break;
        }
        bytes += size;
        blocks.push(block);
    }
    Ok(SyncResponse { tip, blocks })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        branchledger_p2p::peer_id_of_seed([i; 32]).expect("peer id")
    }

    /// A client whose requests go nowhere (the event loop is kept, not run).
    pub(crate) fn client() -> (Client, branchledger_p2p::EventLoop) {
        let mut registry = prometheus_client::registry::Registry::default();
        let (client, _events, event_loop) = branchledger_p2p::new(
            branchledger_p2p::Config {
                node_key_seed: [9; 32],
                chain_id: "peers-test".into(),
                listen: "/ip4/127.0.0.1/tcp/0".parse().expect("address"),
                peers: vec![],
                allowed: vec![],
                consensus_bytes_max: 1 << 20,
            },
            &mut registry,
        )
        .expect("network");
        (client, event_loop)
    }

    fn asked(sync: &SyncState) -> Option<PeerId> {
        sync.in_flight.map(|(p, _)| p)
    }

    #[tokio::test]
    async fn a_peer_whose_request_failed_rests_while_another_is_asked() {
        let (client, _event_loop) = client();
        let (a, b) = (peer(1), peer(2));
        let mut sync = SyncState::default();
        sync.connected(a);
        sync.connected(b);
        let now = Instant::now();
        sync.ask(&client, 1, Some(a), now);
        assert_eq!(asked(&sync), Some(a));

        // `a` refused (it is busy): preferred or not, `b` is asked instead.
        sync.answered(a, None);
        sync.ask(&client, 1, Some(a), now);
        assert_eq!(asked(&sync), Some(b));

        // Both failed: nobody is asked until a rest is over, then they are again.
        sync.answered(b, None);
        sync.ask(&client, 1, None, now);
        assert_eq!(asked(&sync), None);
        sync.ask(&client, 1, None, Instant::now() + 2 * SYNC_FAILED_PEER_REST);
        assert!(asked(&sync).is_some());

        // An answer ends a peer's rest at once.
        let asked_peer = asked(&sync).expect("asked");
        sync.answered(asked_peer, Some(5));
        assert_eq!(sync.best_tip(), 5);
        sync.ask(&client, 1, Some(asked_peer), Instant::now());
        assert_eq!(asked(&sync), Some(asked_peer));
    }

    #[tokio::test]
    async fn a_peer_given_up_on_rests_too() {
        let (client, _event_loop) = client();
        let (a, b) = (peer(1), peer(2));
        let mut sync = SyncState::default();
        sync.connected(a);
        sync.connected(b);
        let start = Instant::now();
        sync.ask(&client, 1, Some(a), start);
        assert_eq!(asked(&sync), Some(a));
        let later = start + SYNC_PATIENCE + Duration::from_millis(1);
        sync.ask(&client, 1, Some(a), later);
        assert_eq!(asked(&sync), Some(b));
    }
}
