//! The event loop: owns the swarm, carries out the client's commands, and turns swarm events
//! into [`Event`]s for the node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use branchledger_types::wire::{ConsensusGossip, RecordBatch, GOSSIP_RECORDS_BYTES_MAX};
use futures::StreamExt;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, connection_limits, identify, noise, tcp, yamux, Multiaddr, PeerId};
use libp2p::{Swarm, SwarmBuilder, Transport};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::codec::{SyncCodec, SYNC_PROTOCOL};
use crate::held::HeldRecords;
use crate::metrics::P2pMetrics;
use crate::penalties::Penalties;
use crate::serving::Serving;
use crate::{
    Command, Config, Event, P2pError, Responder, Topic, Verdict, BAN_DURATION,
    CONNECTIONS_PER_PEER_MAX, DIAL_TIMEOUT, GOSSIP_HEARTBEAT, GOSSIP_HISTORY_HEARTBEATS,
    IDLE_CONNECTION_TIMEOUT, INBOUND_HANDSHAKE_TIMEOUT, PENALTY_THRESHOLD, PENDING_INCOMING_MAX,
    RECORD_FLUSH_INTERVAL, REDIAL_INTERVAL, SYNC_REQUEST_TIMEOUT, SYNC_STREAMS_PER_CONNECTION_MAX,
};

/// Room for the record batch's own framing inside the topic's size limit.
const BATCH_OVERHEAD_BYTES: usize = 64;

/// A serving slot still held this long is freed even though libp2p never reported its
/// request's end (it reports it within [`SYNC_REQUEST_TIMEOUT`]; this is a safety net so a
/// missed report cannot stop this node serving for good).
const SERVING_SLOT_EXPIRY: Duration = SYNC_REQUEST_TIMEOUT.saturating_mul(2);

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// Refuses every peer not in genesis.
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Refuses peers banned for misbehaviour.
    banned: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Record batches, apart from the other events ([`crate::RECORD_EVENT_QUEUE`]).
    record_events: mpsc::Sender<Event>,
    records_topic: IdentTopic,
    consensus_topic: IdentTopic,
    protocol_version: String,
    /// Records waiting to go out as one batch.
    held: HeldRecords,
    /// Configured peers, dialled until connected.
    dial: Vec<(PeerId, Multiaddr)>,
    /// Invalid (and useless) messages per peer in the current window.
    penalties: Penalties,
    /// Banned peers (too many invalid messages, or another chain) and when their ban ends:
    /// refused, and not dialled.
    bans: HashMap<PeerId, Instant>,
    /// Sync requests being answered.
    serving: Serving<InboundRequestId>,
    nonce: u64,
    metrics: P2pMetrics,
    libp2p_metrics: libp2p::metrics::Metrics,
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> P2pError {
    P2pError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

impl EventLoop {
    pub(crate) fn new(
        config: Config,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        record_events: mpsc::Sender<Event>,
        registry: &mut Registry,
    ) -> Result<EventLoop, P2pError> {
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(config.node_key_seed)
            .map_err(|e| invalid("node key", e))?;
        let records_topic = IdentTopic::new(format!("/branchledger/{}/records/1", config.chain_id));
        let consensus_topic =
            IdentTopic::new(format!("/branchledger/{}/consensus/1", config.chain_id));
        let protocol_version = format!("/branchledger/{}/1", config.chain_id);

        let gossip_config = gossipsub::ConfigBuilder::default()
            // The node judges every message before it is forwarded.
            .validate_messages()
            // No message-level signatures: records and votes carry their own, and noise
            // authenticates the connection. Ids are therefore content hashes.
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .heartbeat_interval(GOSSIP_HEARTBEAT)
            .history_length(GOSSIP_HISTORY_HEARTBEATS as usize)
            .message_id_fn(|message: &gossipsub::Message| {
                MessageId::from(blake3::hash(&message.data).as_bytes()[..20].to_vec())
            })
            .max_transmit_size(config.consensus_bytes_max)
            .max_transmit_size_for_topic(
                GOSSIP_RECORDS_BYTES_MAX + BATCH_OVERHEAD_BYTES,
                records_topic.hash(),
            )
            .build()
            .map_err(|e| invalid("gossip configuration", e))?;

        let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for peer in &config.allowed {
            allowed.allow_peer(*peer);
        }
        let local_peer = keypair.public().to_peer_id();
        let peers_max = u32::try_from(config.allowed.len())
            .unwrap_or(u32::MAX)
            .saturating_mul(CONNECTIONS_PER_PEER_MAX);
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(PENDING_INCOMING_MAX))
            .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
            .with_max_established(Some(peers_max.max(CONNECTIONS_PER_PEER_MAX)));
        let identify_config = identify::Config::new(protocol_version.clone(), keypair.public())
            .with_agent_version(format!("branchd/{}", env!("CARGO_PKG_VERSION")));

        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            // TCP with noise and yamux, as `with_tcp` builds it, but with a shorter handshake
            // time for incoming connections: a stranger cannot hold the pending slots long.
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .upgrade(Version::V1Lazy)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default())
                            .inbound_timeout(INBOUND_HANDSHAKE_TIMEOUT),
                    )
                },
            )
            .map_err(|e| invalid("transport", e))?
            // Peers may be named by host (`/dns4/node1/tcp/26656/p2p/…`).
            .with_dns()
            .map_err(|e| invalid("name resolution", e))?
            .with_behaviour(|_key| {
                // gossipsub's own counters (queues, failed and dropped sends, duplicates, mesh
                // churn), so an operator can see what the gossip layer did to a message.
                let gossipsub =
                    gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?
                        .with_metrics(
                            registry.sub_registry_with_prefix("gossipsub"),
                            gossipsub::MetricsConfig::default(),
                        );
                Ok(Behaviour {
                    allowed,
                    banned: Default::default(),
                    limits: connection_limits::Behaviour::new(limits),
                    identify: identify::Behaviour::new(identify_config),
                    gossipsub,
                    sync: request_response::Behaviour::with_codec(
                        SyncCodec,
                        [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(SYNC_REQUEST_TIMEOUT)
                            .with_max_concurrent_streams(SYNC_STREAMS_PER_CONNECTION_MAX),
                    ),
                })
            })
            .map_err(|e| invalid("network behaviour", e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            // Outgoing connections; incoming ones have the shorter time set above.
            .with_connection_timeout(DIAL_TIMEOUT)
            .build();

        for topic in [&records_topic, &consensus_topic] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(topic)
                .map_err(|e| invalid("gossip subscription", e))?;
        }
        swarm
            .listen_on(config.listen.clone())
            .map_err(|e| P2pError::Listen {
                address: config.listen.clone(),
                reason: e.to_string(),
            })?;

        let mut dial = Vec::new();
        for address in &config.peers {
            let Some(Protocol::P2p(peer)) = address.iter().last() else {
                return Err(invalid(
                    format!("peer address {address}"),
                    "must end with /p2p/<peer id>",
                ));
            };
            if peer != local_peer {
                dial.push((peer, address.clone()));
            }
        }

        let metrics = P2pMetrics::default();
        metrics.register(registry.sub_registry_with_prefix("p2p"));
        let libp2p_metrics =
            libp2p::metrics::Metrics::new(registry.sub_registry_with_prefix("libp2p"));
        Ok(EventLoop {
            swarm,
            commands,
            events,
            record_events,
            records_topic,
            consensus_topic,
            protocol_version,
            held: HeldRecords::default(),
            dial,
            penalties: Penalties::default(),
            bans: HashMap::new(),
            serving: Serving::default(),
            nonce: initial_nonce(),
            metrics,
            libp2p_metrics,
        })
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until every [`crate::Client`] is dropped.
    pub async fn run(mut self) {
        let mut flush = tokio::time::interval(RECORD_FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                _ = flush.tick(), if !self.held.is_empty() => self.flush_records(),
                _ = redial.tick() => self.redial(),
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::PublishRecords(records) => {
                let dropped = self.held.push(records);
                if dropped > 0 {
                    self.metrics.records_dropped.inc_by(dropped as u64);
                }
                if self.held.batch_ready() {
                    self.flush_records();
                }
            }
            Command::PublishConsensus(message) => {
                self.nonce = self.nonce.wrapping_add(1);
                let bytes = ConsensusGossip {
                    nonce: self.nonce,
                    message,
                }
                .to_bytes();
                self.publish(Topic::Consensus, bytes);
            }
            Command::PublishRaw(topic, bytes) => {
                self.publish(topic, bytes);
            }
            Command::Report {
                message_id,
                source,
                verdict,
            } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
                if verdict == Verdict::Reject {
                    self.penalise(source, "invalid gossip message");
                }
            }
            Command::Penalise { peer, reason } => self.penalise(peer, &reason),
            Command::Useless { peer, reason } => {
                self.metrics.useless.inc();
                tracing::trace!(%peer, reason, "useless message counted");
                if self.penalties.useless(peer, Instant::now()) {
                    self.metrics.peers_banned.inc();
                    tracing::warn!(%peer, reason, ban_seconds = BAN_DURATION.as_secs(), "peer banned for useless messages");
                    self.ban(peer);
                }
            }
            Command::RequestBlocks { peer, request } => {
                self.swarm.behaviour_mut().sync.send_request(&peer, request);
            }
            Command::Respond {
                responder,
                response,
            } => {
                // The asker may have gone; nothing to do then.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(responder.0, response);
            }
        }
    }

    fn topic(&self, topic: Topic) -> &IdentTopic {
        match topic {
            Topic::Records => &self.records_topic,
            Topic::Consensus => &self.consensus_topic,
        }
    }

    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) -> bool {
        let name = match topic {
            Topic::Records => "records",
            Topic::Consensus => "consensus",
        };
        let labels = crate::metrics::TopicLabels {
            topic: name.to_owned(),
        };
        let hash = self.topic(topic).hash();
        match self.swarm.behaviour_mut().gossipsub.publish(hash, bytes) {
            Ok(_) => {
                self.metrics.published.get_or_create(&labels).inc();
                true
            }
            Err(error) => {
                tracing::debug!(topic = name, %error, "gossip not published");
                self.metrics.publish_failed.get_or_create(&labels).inc();
                false
            }
        }
    }

    /// Sends the waiting records as batches within the topic's limits. With no subscribed peer
    /// they stay queued (bounded by [`crate::RECORDS_HELD_MAX`] and
    /// [`crate::RECORDS_HELD_BYTES_MAX`]) for the next flush.
    fn flush_records(&mut self) {
        let subscribed = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&self.records_topic.hash()));
        if !subscribed {
            return;
        }
        while let Some(batch) = self.held.next_batch() {
            let encoded = RecordBatch { records: batch }.to_bytes();
            self.publish(Topic::Records, encoded);
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().banned.unblock_peer(peer);
            tracing::info!(%peer, "peer ban ended");
        }
        let expired = self.serving.expire(now, SERVING_SLOT_EXPIRY);
        if expired > 0 {
            tracing::warn!(
                expired,
                "sync serving slots freed without their requests' end"
            );
            self.metrics.sync_serving.set(self.serving.len() as i64);
        }
        for (peer, address) in self.dial.clone() {
            if self.swarm.is_connected(&peer) || self.bans.contains_key(&peer) {
                continue;
            }
            let options = DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(error) = self.swarm.dial(options) {
                tracing::debug!(%peer, %error, "dial not started");
            }
        }
    }

    fn penalise(&mut self, peer: PeerId, reason: &str) {
        if self.penalties.invalid(peer, Instant::now()) {
            self.metrics.peers_banned.inc();
            tracing::warn!(%peer, reason, threshold = PENALTY_THRESHOLD, ban_seconds = BAN_DURATION.as_secs(), "peer banned for invalid messages");
            self.ban(peer);
        } else {
            let count = self.penalties.count(&peer);
            tracing::debug!(%peer, reason, count, "peer penalised");
        }
    }

    /// Disconnects `peer` and refuses it, and does not dial it, for [`BAN_DURATION`].
    fn ban(&mut self, peer: PeerId) {
        self.bans.insert(peer, Instant::now() + BAN_DURATION);
        // Closes its connections too.
        self.swarm.behaviour_mut().banned.block_peer(peer);
    }

    async fn emit(&mut self, event: Event) {
        // The node stopped: nothing left to tell.
        let _ = self.events.send(event).await;
    }

    /// Hands a record batch to the node, or, if its queue of them is full, ignores it: the
    /// event loop never waits on records, so votes and proposals keep flowing to a node that
    /// cannot keep up with them ([`crate::RECORD_EVENT_QUEUE`]).
    fn emit_records(&mut self, event: Event) {
        let Err(mpsc::error::TrySendError::Full(Event::Records {
            source, message_id, ..
        })) = self.record_events.try_send(event)
        else {
            // Queued, or the node stopped.
            return;
        };
        self.metrics.record_batches_shed.inc();
        tracing::debug!(peer = %source, "record batch ignored: the node's queue of them is full");
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &source, MessageAcceptance::Ignore);
    }

    async fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                tracing::info!(address = %full, "p2p listening");
                self.emit(Event::Listening(full)).await;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                tracing::info!(peer = %peer_id, "peer connected");
                self.emit(Event::PeerConnected(peer_id)).await;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "peer disconnected");
                self.emit(Event::PeerDisconnected(peer_id)).await;
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.metrics.connections_denied.inc();
                    tracing::warn!(from = %send_back_addr, %error, "incoming connection refused");
                } else {
                    self.metrics.handshakes_failed.inc();
                    tracing::debug!(from = %send_back_addr, %error, "incoming connection failed");
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if matches!(error, libp2p::swarm::DialError::Denied { .. }) {
                    self.metrics.connections_denied.inc();
                }
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => {
                self.libp2p_metrics.record(&event);
                self.handle_gossip(event).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    if info.protocol_version != self.protocol_version {
                        tracing::warn!(peer = %peer_id, theirs = %info.protocol_version, ours = %self.protocol_version, ban_seconds = BAN_DURATION.as_secs(), "peer runs another chain: disconnected, and not dialled for a while");
                        self.metrics.reject("identify", "other chain");
                        // Not redialled (nor let in) for a while: it would only fail again.
                        self.ban(peer_id);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.handle_sync(event).await,
            _ => {}
        }
    }

    async fn handle_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let event = if message.topic == self.records_topic.hash() {
            match RecordBatch::from_bytes(&message.data) {
                Ok(batch) => Ok(Event::Records {
                    source: propagation_source,
                    message_id: message_id.clone(),
                    records: batch.records,
                    received: Instant::now(),
                }),
                Err(error) => Err(("records", error.to_string())),
            }
        } else if message.topic == self.consensus_topic.hash() {
            match ConsensusGossip::from_bytes(&message.data, usize::MAX) {
                Ok(gossip) => Ok(Event::Consensus {
                    source: propagation_source,
                    message_id: message_id.clone(),
                    message: gossip.message,
                }),
                Err(error) => Err(("consensus", error.to_string())),
            }
        } else {
            Err(("topic", format!("unknown topic {}", message.topic)))
        };
        match event {
            Ok(event @ Event::Records { .. }) => self.emit_records(event),
            Ok(event) => self.emit(event).await,
            Err((kind, reason)) => {
                tracing::debug!(peer = %propagation_source, kind, %reason, "undecodable gossip rejected");
                self.metrics.reject(kind, "undecodable");
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Reject,
                    );
                self.penalise(propagation_source, "undecodable gossip message");
            }
        }
    }

    async fn handle_sync(
        &mut self,
        event: request_response::Event<
            branchledger_types::wire::SyncRequest,
            branchledger_types::wire::SyncResponse,
        >,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => match self.serving.admit(request_id, peer, Instant::now()) {
                    Ok(()) => {
                        self.metrics.sync_serving.set(self.serving.len() as i64);
                        self.emit(Event::SyncRequest {
                            peer,
                            request,
                            responder: Responder(channel),
                        })
                        .await
                    }
                    Err(refusal) => {
                        // The channel is dropped: the stream is closed at once and the asker
                        // tries another peer.
                        tracing::debug!(%peer, reason = refusal.label(), "sync request refused");
                        self.metrics.refuse_sync(refusal.label());
                        drop(channel);
                    }
                },
                request_response::Message::Response { response, .. } => {
                    self.emit(Event::SyncResponse {
                        peer,
                        result: Ok(response),
                    })
                    .await
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                if let request_response::OutboundFailure::Io(io) = &error {
                    if io.kind() == std::io::ErrorKind::InvalidData {
                        self.metrics.reject("sync", "undecodable");
                        self.penalise(peer, "undecodable sync response");
                    }
                }
                self.emit(Event::SyncResponse {
                    peer,
                    result: Err(error.to_string()),
                })
                .await
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.finished_serving(request_id);
                if let request_response::InboundFailure::Io(io) = &error {
                    if io.kind() == std::io::ErrorKind::InvalidData {
                        self.metrics.reject("sync", "undecodable");
                        self.penalise(peer, "undecodable sync request");
                    }
                }
                tracing::debug!(%peer, %error, "sync request not answered");
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.finished_serving(request_id);
            }
        }
    }

    /// A sync request's answer was sent, or will never be: its slot is free.
    fn finished_serving(&mut self, request_id: InboundRequestId) {
        if self.serving.finished(&request_id) {
            self.metrics.sync_serving.set(self.serving.len() as i64);
        }
    }
}

/// A starting nonce that differs between runs, so a restarted node's first messages are not
/// taken by peers for duplicates of its messages before the restart.
fn initial_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) << 8
}
