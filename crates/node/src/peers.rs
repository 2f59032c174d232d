//! The node's side of the network: outbound messages into gossip, block sync as asker and as
//! answerer.
//!
//! **Asking.** The node loop keeps one sync request in flight at most. It asks when the driver
//! says the node is behind (a quorum decided a block it does not have, or peers talk about a
//! later height), and otherwise probes a peer every [`SYNC_PROBE_INTERVAL`] while no block has
//! committed, so a node that was down learns it is behind even on an idle chain. Each block of
//! an answer is verified in full (certificate, link, records, state digest) before it is
//! stored; a peer whose block fails is penalised and the next peer is asked.
//!
//! **Answering.** Requests are served off the node loop, by a task that reads the store, at
//! most [`SYNC_SERVE_CONCURRENT_MAX`] at once; beyond that a request is dropped and the asker
//! tries another peer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use branchledger_p2p::{Client, PeerId, Responder};
use branchledger_storage::{ChainReader, RocksStore};
use branchledger_types::wire::{
    ConsensusMessage, SyncRequest, SyncResponse, SYNC_BLOCKS_PER_REQUEST_MAX,
    SYNC_RESPONSE_BYTES_TARGET,
};
use branchledger_types::{encoded_len, Height};
use tokio::sync::{mpsc, Semaphore};

use crate::driver::{Network, Outbound};

/// Blocks asked for in one sync request.
pub const SYNC_BATCH_BLOCKS: u32 = 64;
/// While no block commits, a peer is asked for newer blocks this often.
pub const SYNC_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A sync request unanswered this long is given up (the network layer's own timeout is
/// longer; this keeps the asker moving to another peer).
pub const SYNC_PATIENCE: Duration = Duration::from_secs(10);
/// Sync requests served at once; more are dropped.
pub const SYNC_SERVE_CONCURRENT_MAX: usize = 4;
/// Sync requests waiting for the serving task.
pub const SYNC_SERVE_QUEUE: usize = 64;

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

    /// Whether a request is in flight (and not yet given up).
    pub fn busy(&mut self, now: Instant) -> bool {
        if self
            .in_flight
            .is_some_and(|(_, at)| now.duration_since(at) > SYNC_PATIENCE)
        {
            self.in_flight = None;
        }
        self.in_flight.is_some()
    }

    /// Sends a request for blocks from `from` to the next peer, unless one is in flight or no
    /// peer is connected. `prefer` is asked first if connected (the peer that just answered).
    pub fn ask(&mut self, client: &Client, from: Height, prefer: Option<PeerId>, now: Instant) {
        if self.busy(now) || self.peers.is_empty() {
            return;
        }
        let peer = match prefer.filter(|p| self.peers.contains(p)) {
            Some(peer) => peer,
            None => {
                self.next = (self.next + 1) % self.peers.len();
                self.peers[self.next]
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

    /// An answer (or failure) came from `peer`: the request is no longer in flight.
    pub fn answered(&mut self, peer: PeerId, tip: Option<Height>) {
        if self.in_flight.is_some_and(|(p, _)| p == peer) {
            self.in_flight = None;
        }
        if let Some(tip) = tip {
            self.best_tip = self.best_tip.max(tip);
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
pub fn spawn_sync_server(store: Arc<RocksStore>, client: Client) -> mpsc::Sender<ServeRequest> {
    let (tx, mut rx) = mpsc::channel::<ServeRequest>(SYNC_SERVE_QUEUE);
    let permits = Arc::new(Semaphore::new(SYNC_SERVE_CONCURRENT_MAX));
    tokio::spawn(async move {
        while let Some(serve) = rx.recv().await {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(peer = %serve.peer, "sync request dropped: serving at capacity");
                continue;
            };
            let store = store.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let request = serve.request;
                let answer =
                    tokio::task::spawn_blocking(move || read_blocks(&store, request)).await;
                match answer {
                    Ok(Ok(response)) => {
                        let _ = client.respond(serve.responder, response).await;
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, "reading blocks for a peer failed");
                    }
                    Err(error) => tracing::error!(%error, "sync serving task failed"),
                }
                drop(permit);
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
