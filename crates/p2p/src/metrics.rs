//! The network's own counters, in the node's Prometheus registry (beside libp2p's).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming what kind of message was rejected and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `records`, `consensus`, `sync`, `topic`, `identify`.
    pub kind: String,
    /// `undecodable` (bad bytes or over the limit) or `invalid` (judged so by the node).
    pub reason: String,
}

/// Labels naming a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// `records` or `consensus`.
    pub topic: String,
}

/// Labels naming why a sync request was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `peer_busy` (the asker's earlier request is still being answered) or `at_capacity`
    /// (the serving budget is taken).
    pub reason: String,
}

/// Counters of the network layer.
#[derive(Clone, Default)]
pub struct P2pMetrics {
    /// Messages rejected, by kind and reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Gossip messages published, by topic.
    pub published: Family<TopicLabels, Counter>,
    /// Gossip messages that could not be published (no peer, queues full), by topic.
    pub publish_failed: Family<TopicLabels, Counter>,
    /// Records dropped from the gossip queue while no peer was subscribed.
    pub records_dropped: Counter,
    /// Record batches from peers not handed to the node because its queue of them was full
    /// ([`crate::RECORD_EVENT_QUEUE`]): ignored (not forwarded, not held against the sender).
    pub record_batches_shed: Counter,
    /// Connections refused (peer not in genesis, banned, over a limit).
    pub connections_denied: Counter,
    /// Incoming connections that failed before a peer was known (garbage instead of a
    /// handshake, a handshake cut short, a timeout).
    pub handshakes_failed: Counter,
    /// Peers disconnected and refused for a while after too many invalid (or useless)
    /// messages.
    pub peers_banned: Counter,
    /// Messages the node reported useless and costly (counted against their senders).
    pub useless: Counter,
    /// Sync requests refused, by reason.
    pub sync_refused: Family<RefusalLabels, Counter>,
    /// Sync requests being answered now (their answers not yet sent).
    pub sync_serving: Gauge,
}

impl P2pMetrics {
    /// Registers every counter in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "messages_rejected",
            "Peer messages rejected, by kind and reason",
            self.rejected.clone(),
        );
        registry.register(
            "messages_published",
            "Gossip messages published, by topic",
            self.published.clone(),
        );
        registry.register(
            "publish_failed",
            "Gossip messages that could not be published, by topic",
            self.publish_failed.clone(),
        );
        registry.register(
            "records_dropped",
            "Records dropped from the gossip queue while no peer was subscribed",
            self.records_dropped.clone(),
        );
        registry.register(
            "record_batches_shed",
            "Record batches from peers ignored because the node's queue of them was full",
            self.record_batches_shed.clone(),
        );
        registry.register(
            "connections_denied",
            "Connections refused (unknown peer, banned, over a limit)",
            self.connections_denied.clone(),
        );
        registry.register(
            "handshakes_failed",
            "Incoming connections that failed before the peer was known",
            self.handshakes_failed.clone(),
        );
        registry.register(
            "peers_banned",
            "Peers disconnected for sending too many invalid (or useless) messages",
            self.peers_banned.clone(),
        );
        registry.register(
            "useless_messages",
            "Messages the node reported useless and costly, counted against their senders",
            self.useless.clone(),
        );
        registry.register(
            "sync_requests_refused",
            "Sync requests refused: the asker's earlier one still answered, or serving at capacity",
            self.sync_refused.clone(),
        );
        registry.register(
            "sync_requests_serving",
            "Sync requests being answered now, their answers not yet sent",
            self.sync_serving.clone(),
        );
    }

    /// Counts a refused sync request.
    pub fn refuse_sync(&self, reason: &str) {
        self.sync_refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a rejected message.
    pub fn reject(&self, kind: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}
