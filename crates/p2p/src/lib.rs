//! The peer-to-peer layer (DESIGN.md §5): a libp2p swarm over TCP with noise and yamux,
//! identify, gossipsub (one topic for records, one for consensus messages, each message
//! validated by the node before it is forwarded) and a request-response protocol for block
//! sync.
//!
//! The shape is that of rust-libp2p's `file-sharing` example: a cloneable [`Client`] sends
//! commands, an [`EventLoop`] owns the swarm, and [`Event`]s come out on two bounded channels
//! ([`Events`]): record batches on their own, so that consensus messages, sync answers and
//! peer changes never wait behind them.
//!
//! What it guarantees:
//! - only peers whose ids are in the allow list (genesis) may connect; any other connection is
//!   refused when its noise handshake reveals the peer id;
//! - every message has a size limit, applied before decoding; a message that does not decode,
//!   or that the node judges invalid, is not forwarded and counts against its sender, and a
//!   sender with too many such messages is disconnected and refused for a while;
//! - every queue is bounded: commands, events, and records waiting to be gossiped
//!   ([`RECORDS_HELD_MAX`], [`RECORDS_HELD_BYTES_MAX`]); commands and events are counted in
//!   messages, and [`COMMAND_QUEUE`], [`EVENT_QUEUE`] and [`RECORD_EVENT_QUEUE`] say what that
//!   means in memory. A full event queue holds the swarm back (back-pressure); a full queue of
//!   record batches does not: further batches are ignored and counted, so a node that cannot
//!   keep up with the records still hears every vote;
//! - block sync answers at most [`SYNC_SERVING_MAX`] requests at once, one per peer, each
//!   until its answer is sent, so answers in flight hold at most [`SYNC_ANSWERS_BYTES_MAX`];
//! - a stranger cannot hold incoming handshakes open for long ([`INBOUND_HANDSHAKE_TIMEOUT`]),
//!   and configured peers are dialled whatever it does with incoming ones;
//! - useless messages are harmless ([`Verdict::Ignore`]), but the node can count costly ones
//!   against their sender ([`Client::report_useless`]).
//!
//! It never judges the content of a message: that is the node's job, reported back with
//! [`Client::report`].

mod codec;
mod event_loop;
mod held;
mod metrics;
mod penalties;
pub mod ports;
mod serving;

use std::str::FromStr;
use std::time::{Duration, Instant};

use branchledger_types::wire::{
    ConsensusMessage, SyncRequest, SyncResponse, SYNC_RESPONSE_BYTES_MAX,
};
use branchledger_types::SignedRecord;
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;

pub use codec::{read_frame, write_frame, SyncCodec, SYNC_PROTOCOL};
pub use event_loop::EventLoop;
pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};
pub use metrics::P2pMetrics;

/// Commands waiting for the event loop; beyond this, `try_*` calls fail (the caller drops
/// or retries).
///
/// Counted in commands, not bytes. Commands come from this node only: what it gossips (records
/// its mempool admitted, its own proposals and votes), verdicts, sync requests and answers. The
/// largest is one of its proposals with a block (at most the chain's `consensus_bytes_max`,
/// itself at most [`GOSSIP_CONSENSUS_BYTES_MAX`], about 32 MiB), so the bound in bytes is
/// `COMMAND_QUEUE` times that (about 256 GiB) in theory; in practice the node proposes once per
/// round, publishes records only as its mempool (bounded in bytes) admits them, and its sync
/// answers count within [`SYNC_ANSWERS_BYTES_MAX`].
///
/// [`GOSSIP_CONSENSUS_BYTES_MAX`]: branchledger_types::wire::GOSSIP_CONSENSUS_BYTES_MAX
pub const COMMAND_QUEUE: usize = 8_192;
/// Events other than record batches waiting for the node ([`Events::urgent`]); beyond this the
/// event loop waits (back-pressure on the swarm).
///
/// Counted in events, not bytes. The largest event is a proposal with its block (at most the
/// chain's `consensus_bytes_max`, itself at most [`GOSSIP_CONSENSUS_BYTES_MAX`], about
/// 32 MiB); a sync answer at most [`SYNC_RESPONSE_BYTES_MAX`] (about 40 MiB; only answers to
/// this node's own requests, which it keeps to one in flight); a sync request is a few bytes.
/// The worst case is therefore `EVENT_QUEUE` proposals, `EVENT_QUEUE * consensus_bytes_max`
/// (about 128 GiB at the largest block limit), if allowed peers send distinct proposals faster
/// than the node judges them. libp2p buffers a few more messages per connection. Only allowed
/// peers can send, and invalid messages get a peer banned ([`PENALTY_THRESHOLD`]).
///
/// [`GOSSIP_CONSENSUS_BYTES_MAX`]: branchledger_types::wire::GOSSIP_CONSENSUS_BYTES_MAX
pub const EVENT_QUEUE: usize = 4_096;
/// Record batches from the records topic waiting for the node ([`Events::records`]). Past it a
/// further batch is not queued: it is reported [`Verdict::Ignore`] (not forwarded, not held
/// against its sender) and counted (`p2p_record_batches_shed`), and the event loop goes on, so
/// consensus messages never wait for room behind records. A record shed here is not lost: its
/// origin holds it in its mempool, and a proposal naming it brings the block whole
/// (docs/consensus.md, compact proposals).
///
/// A batch is at most [`GOSSIP_RECORDS_BYTES_MAX`] (2 MiB), so queued batches take at most
/// 2 GiB; at the batches nodes actually send (a client's `SubmitBatch` of up to a few hundred
/// records) far less. 1 024 batches of 100 records are twice a default mempool.
///
/// [`GOSSIP_RECORDS_BYTES_MAX`]: branchledger_types::wire::GOSSIP_RECORDS_BYTES_MAX
pub const RECORD_EVENT_QUEUE: usize = 1_024;
/// How often records waiting to be gossiped are sent as one batch.
pub const RECORD_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Most records held for gossip while no peer is subscribed; older ones are dropped (they stay
/// in the local mempool and are proposed by this node).
pub const RECORDS_HELD_MAX: usize = 20_000;
/// Most bytes of records (encoded) held for gossip while no peer is subscribed; past it the
/// oldest are dropped, as past [`RECORDS_HELD_MAX`].
pub const RECORDS_HELD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How often configured peers that are not connected are dialled again.
pub const REDIAL_INTERVAL: Duration = Duration::from_secs(1);
/// Time allowed for a sync request to be answered, on either side: an answer a peer does not
/// read within it is given up and its memory freed.
pub const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Sync streams open at once on one connection, both directions together (libp2p's default is
/// 100); a further stream the peer opens is reset unread.
pub const SYNC_STREAMS_PER_CONNECTION_MAX: usize = 4;
/// Sync requests being answered at once, all peers together: from the moment a request is
/// handed to the node as [`Event::SyncRequest`] until its answer is sent, has failed, or
/// [`SYNC_REQUEST_TIMEOUT`] passed. A request beyond it is refused (its stream closed at once,
/// so the asker tries another peer) and counted.
pub const SYNC_SERVING_MAX: usize = 4;
/// Sync requests from one peer being answered at once; a further one is refused like one
/// beyond [`SYNC_SERVING_MAX`]. A peer that never reads its answers holds this many slots, no
/// more, and honest peers share the rest.
pub const SYNC_SERVING_PER_PEER_MAX: usize = 1;
const _: () = assert!(SYNC_SERVING_PER_PEER_MAX < SYNC_SERVING_MAX);
/// Most bytes held by sync answers in flight (encoded size): [`SYNC_SERVING_MAX`] answers of at
/// most [`SYNC_RESPONSE_BYTES_MAX`] each (about 8 MiB of blocks plus one block at the 32 MiB
/// limit), about 160 MiB. While an answer is encoded its blocks and its bytes exist together,
/// for a moment; decoded blocks take somewhat more memory than their encoding.
pub const SYNC_ANSWERS_BYTES_MAX: usize = SYNC_SERVING_MAX * SYNC_RESPONSE_BYTES_MAX;
/// Gossipsub's heartbeat: each one, the oldest slot of its message cache is let go.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats a gossip message stays in gossipsub's cache, waiting for the node's verdict
/// (then to be forwarded, or dropped).
pub const GOSSIP_HISTORY_HEARTBEATS: u32 = 5;
/// How long after its arrival a gossip message is surely still in gossipsub's cache: the
/// cache's slots less the one in progress. A record batch the node judges later than this
/// (it waited that long on the records queue) may be gone from it: its verdict would change
/// nothing (no forwarding, no penalty there) and only log a warning, so the node does not
/// report it ([`Client::report`]) and counts it instead.
pub const GOSSIP_VERDICT_WINDOW: Duration =
    Duration::from_secs(GOSSIP_HEARTBEAT.as_secs() * (GOSSIP_HISTORY_HEARTBEATS as u64 - 1));
/// Invalid messages from one peer within [`PENALTY_WINDOW`] that get it disconnected.
pub const PENALTY_THRESHOLD: u32 = 20;
/// Messages reported with [`Client::report_useless`] that count as one invalid message: a peer
/// is banned after `PENALTY_THRESHOLD * USELESS_PER_PENALTY` of them within [`PENALTY_WINDOW`]
/// (fewer when it also sent invalid ones).
pub const USELESS_PER_PENALTY: u32 = 10;
/// The window over which a peer's invalid messages are counted.
pub const PENALTY_WINDOW: Duration = Duration::from_secs(60);
/// How long a peer that reached the threshold, or runs another chain (its identify protocol
/// version differs), is refused and not dialled.
pub const BAN_DURATION: Duration = Duration::from_secs(30);
/// Connections to one peer at once (both sides may dial at the same time).
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;
/// Incoming connections still in their handshake at once. Outgoing connections are not
/// counted: configured peers are still dialled, and connect, while these are all taken.
pub const PENDING_INCOMING_MAX: u32 = 32;
/// Time an incoming connection has for its handshake (TCP accepted to noise and yamux done);
/// a connection that has not finished by then is closed and frees its
/// [`PENDING_INCOMING_MAX`] slot.
pub const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time an outgoing connection has for its dial and handshake.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections are closed after this long without any protocol using them.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// How the node judged a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and count it against the sender.
    Reject,
    /// Harmless but useless (stale, duplicate): drop it. Not counted against the sender; for
    /// useless messages that cost the node work and that an honest peer sends rarely, also call
    /// [`Client::report_useless`].
    Ignore,
}

/// What the event loop needs to start.
pub struct Config {
    /// This node's identity (its Ed25519 node key's 32-byte seed).
    pub node_key_seed: [u8; 32],
    /// The chain: topics and the identify protocol name carry it, so two chains never mix.
    pub chain_id: String,
    /// Where to listen.
    pub listen: Multiaddr,
    /// Peers to dial and keep dialling, each with `/p2p/<peer id>`.
    pub peers: Vec<Multiaddr>,
    /// The only peers that may connect (genesis).
    pub allowed: Vec<PeerId>,
    /// Largest consensus message (a proposal with its block) this chain allows.
    pub consensus_bytes_max: usize,
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A key, address or peer id is malformed.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was malformed.
        what: String,
        /// Why.
        reason: String,
    },
    /// The listener could not be opened.
    #[error("listening on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// Parses a peer id (base58, as genesis lists them).
pub fn parse_peer_id(text: &str) -> Result<PeerId, P2pError> {
    PeerId::from_str(text).map_err(|e| P2pError::Invalid {
        what: format!("peer id {text:?}"),
        reason: e.to_string(),
    })
}

/// The peer id of a node key seed.
pub fn peer_id_of_seed(seed: [u8; 32]) -> Result<PeerId, P2pError> {
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(seed).map_err(|e| P2pError::Invalid {
            what: "node key".into(),
            reason: e.to_string(),
        })?;
    Ok(keypair.public().to_peer_id())
}

/// An answer to a sync request, to hand back with [`Client::respond`].
pub struct Responder(ResponseChannel<SyncResponse>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// What the network tells the node.
#[derive(Debug)]
pub enum Event {
    /// The node listens on this address (logged for operators and tests).
    Listening(Multiaddr),
    /// A peer connected (first connection).
    PeerConnected(PeerId),
    /// A peer's last connection closed.
    PeerDisconnected(PeerId),
    /// Records from the records topic, to judge and report.
    Records {
        /// The peer that sent them to us.
        source: PeerId,
        /// The gossip message, for [`Client::report`].
        message_id: MessageId,
        /// The records.
        records: Vec<SignedRecord>,
        /// When the swarm handed the batch over. It may wait on the records queue before the
        /// node reads it, and what was news when it arrived may be committed by then: that is
        /// not the sender's fault.
        received: Instant,
    },
    /// A consensus message, to judge and report.
    Consensus {
        /// The peer that sent it to us.
        source: PeerId,
        /// The gossip message, for [`Client::report`].
        message_id: MessageId,
        /// The message.
        message: ConsensusMessage,
    },
    /// A peer asks for blocks. At most [`SYNC_SERVING_MAX`] of these (and
    /// [`SYNC_SERVING_PER_PEER_MAX`] per peer) are outstanding: each until its answer is sent
    /// (or fails); further requests are refused by the network layer.
    SyncRequest {
        /// Who asks.
        peer: PeerId,
        /// What it asks.
        request: SyncRequest,
        /// Where the answer goes.
        responder: Responder,
    },
    /// The answer to a request sent with [`Client::request_blocks`].
    SyncResponse {
        /// Who answered.
        peer: PeerId,
        /// The answer, or why none came.
        result: Result<SyncResponse, String>,
    },
}

/// A gossip topic, for [`Client::publish_raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Record batches.
    Records,
    /// Proposals and votes.
    Consensus,
}

enum Command {
    PublishRecords(Vec<SignedRecord>),
    PublishConsensus(ConsensusMessage),
    PublishRaw(Topic, Vec<u8>),
    Report {
        message_id: MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    Penalise {
        peer: PeerId,
        reason: String,
    },
    Useless {
        peer: PeerId,
        reason: &'static str,
    },
    RequestBlocks {
        peer: PeerId,
        request: SyncRequest,
    },
    Respond {
        responder: Responder,
        response: SyncResponse,
    },
}

/// Why a command did not reach the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The command queue is full.
    #[error("the network's command queue is full")]
    Full,
    /// The event loop has stopped.
    #[error("the network has stopped")]
    Closed,
}

/// A handle on the network; cheap to clone.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl Client {
    fn try_send(&self, command: Command) -> Result<(), SendError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Gossips records (batched with others sent within [`RECORD_FLUSH_INTERVAL`]).
    pub fn publish_records(&self, records: Vec<SignedRecord>) -> Result<(), SendError> {
        self.try_send(Command::PublishRecords(records))
    }

    /// Gossips a proposal or vote.
    pub fn publish_consensus(&self, message: ConsensusMessage) -> Result<(), SendError> {
        self.try_send(Command::PublishConsensus(message))
    }

    /// Gossips bytes as they are, for fault-injection tests and tools: peers must reject them.
    pub fn publish_raw(&self, topic: Topic, bytes: Vec<u8>) -> Result<(), SendError> {
        self.try_send(Command::PublishRaw(topic, bytes))
    }

    /// Reports the node's verdict on a gossip message: forwarded if accepted, counted against
    /// its sender if rejected.
    pub fn report(
        &self,
        message_id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> Result<(), SendError> {
        self.try_send(Command::Report {
            message_id,
            source,
            verdict,
        })
    }

    /// Counts a misbehaviour outside gossip (e.g. an invalid synced block) against `peer`.
    pub fn penalise(&self, peer: PeerId, reason: String) -> Result<(), SendError> {
        self.try_send(Command::Penalise { peer, reason })
    }

    /// Counts a useless and costly message against `peer`: one the node had to work on (decode,
    /// verify, look up) to find it useless, and that an honest peer sends rarely — e.g. a record
    /// batch whose every record was committed long before it arrived ([`Event::Records`] says
    /// when it did: what was news then may have been committed while it waited in the records
    /// queue, which is no fault of the sender). The message's verdict is still reported
    /// with [`Client::report`] (as [`Verdict::Ignore`]); this only counts. Every
    /// [`USELESS_PER_PENALTY`] such messages count as one invalid message, so a peer flooding
    /// them is disconnected and refused like one sending invalid messages.
    pub fn report_useless(&self, peer: PeerId, reason: &'static str) -> Result<(), SendError> {
        self.try_send(Command::Useless { peer, reason })
    }

    /// Asks `peer` for blocks; the answer arrives as [`Event::SyncResponse`].
    pub fn request_blocks(&self, peer: PeerId, request: SyncRequest) -> Result<(), SendError> {
        self.try_send(Command::RequestBlocks { peer, request })
    }

    /// Answers a sync request (waits for room in the queue). Dropping the [`Responder`]
    /// instead refuses the request; either way its serving slot ([`SYNC_SERVING_MAX`]) is freed
    /// once the answer is sent or has failed.
    pub async fn respond(
        &self,
        responder: Responder,
        response: SyncResponse,
    ) -> Result<(), SendError> {
        self.commands
            .send(Command::Respond {
                responder,
                response,
            })
            .await
            .map_err(|_| SendError::Closed)
    }
}

/// What the network tells the node, on two queues: record batches ([`Event::Records`]) on
/// their own, every other event in order on the other.
#[derive(Debug)]
pub struct Events {
    /// Every event but record batches, in the order they happened: consensus messages, sync
    /// requests and answers, peers coming and going ([`EVENT_QUEUE`]).
    pub urgent: mpsc::Receiver<Event>,
    /// Record batches ([`RECORD_EVENT_QUEUE`]).
    pub records: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, an urgent one first if any is waiting; `None` once the event loop has
    /// stopped and both queues are empty.
    pub async fn recv(&mut self) -> Option<Event> {
        tokio::select! {
            biased;
            Some(event) = self.urgent.recv() => Some(event),
            Some(event) = self.records.recv() => Some(event),
            else => None,
        }
    }

    /// The next event already waiting, an urgent one first.
    pub fn try_recv(&mut self) -> Result<Event, mpsc::error::TryRecvError> {
        self.urgent.try_recv().or_else(|_| self.records.try_recv())
    }
}

/// Builds the network: the client, the events, and the event loop to spawn. The event loop
/// has already started listening; its first event is [`Event::Listening`].
pub fn new(
    config: Config,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<(Client, Events, EventLoop), P2pError> {
    let (tx_commands, rx_commands) = mpsc::channel(COMMAND_QUEUE);
    let (tx_events, rx_events) = mpsc::channel(EVENT_QUEUE);
    let (tx_records, rx_records) = mpsc::channel(RECORD_EVENT_QUEUE);
    let event_loop = EventLoop::new(config, rx_commands, tx_events, tx_records, registry)?;
    Ok((
        Client {
            commands: tx_commands,
        },
        Events {
            urgent: rx_events,
            records: rx_records,
        },
        event_loop,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use branchledger_crypto::{Keypair, Signer};

    #[test]
    fn the_peer_id_of_a_seed_is_the_one_genesis_derives() {
        let seed = [42u8; 32];
        let from_libp2p = peer_id_of_seed(seed).expect("peer id");
        let from_genesis =
            branchledger_types::genesis::peer_id_of(&Keypair::from_seed(seed).public_key());
        assert_eq!(from_libp2p.to_base58(), from_genesis);
        assert_eq!(parse_peer_id(&from_genesis).expect("parse"), from_libp2p);
        assert!(parse_peer_id("not-a-peer-id").is_err());
    }
}
