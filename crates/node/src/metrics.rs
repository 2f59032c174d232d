//! Prometheus metrics, in the registry type libp2p's own metrics use, served at `/metrics`.
//!
//! The endpoint is a deliberately small HTTP/1.1 responder: it reads one request head (at most
//! [`REQUEST_HEAD_BYTES_MAX`] bytes, within [`REQUEST_TIMEOUT`]), answers `GET /metrics` with
//! the text exposition format and anything else with 404, and closes the connection. At most
//! [`CONNECTIONS_MAX`] requests are served at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest request head read.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time allowed to send the request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once.
pub const CONNECTIONS_MAX: usize = 16;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Height of the last committed block.
    pub height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// Connected peers.
    pub peers: Gauge,
    /// Records in the mempool.
    pub mempool_records: Gauge,
    /// Records committed since start.
    pub records_committed: Counter,
    /// Blocks committed since start.
    pub blocks_committed: Counter,
    /// Messages from peers rejected (bad signature, undecodable, oversized).
    pub messages_rejected: Counter,
    /// Seconds from a record's admission here to its commit.
    pub commit_latency_seconds: Histogram,
    /// Outbound gossip dropped because the network's queue was full.
    pub gossip_dropped: Counter,
    /// Blocks applied through block sync.
    pub blocks_synced: Counter,
    /// Evidence of misbehaviour (conflicting votes) held.
    pub evidence: Gauge,
    /// Gossip messages judged by this node, by topic and verdict.
    pub gossip_verdicts: Family<VerdictLabels, Counter>,
    /// Record batches judged too late to report the verdict to gossipsub: they waited on the
    /// records queue longer than `branchledger_p2p::GOSSIP_VERDICT_WINDOW`.
    pub gossip_verdicts_late: Counter,
    /// Compact proposals, by what happened to them here.
    pub compact_proposals: Family<CompactLabels, Counter>,
}

/// Labels of [`Metrics::compact_proposals`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompactLabels {
    /// `sent` (by this node as proposer), `rebuilt` (received, its block rebuilt at once
    /// from the mempool), `wanted` (received lacking records here: the block was asked for
    /// whole) or `answered` (a peer's request for one of this node's blocks, answered whole).
    pub outcome: &'static str,
}

/// Labels of [`Metrics::gossip_verdicts`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `records` or `consensus`.
    pub topic: &'static str,
    /// `accept` (valid, forwarded), `reject` (invalid: a bad signature, an unknown signer,
    /// another chain's message; counted against the sender) or `ignore` (harmless but useless:
    /// stale heights, records already known).
    pub verdict: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `branchd` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("branchd");
        let metrics = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            peers: Gauge::default(),
            mempool_records: Gauge::default(),
            records_committed: Counter::default(),
            blocks_committed: Counter::default(),
            messages_rejected: Counter::default(),
            commit_latency_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            gossip_dropped: Counter::default(),
            blocks_synced: Counter::default(),
            evidence: Gauge::default(),
            gossip_verdicts: Family::default(),
            gossip_verdicts_late: Counter::default(),
            compact_proposals: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "height",
            "Height of the last committed block",
            metrics.height.clone(),
        );
        registry.register("round", "Current consensus round", metrics.round.clone());
        registry.register("peers", "Connected peers", metrics.peers.clone());
        registry.register(
            "mempool_records",
            "Records waiting in the mempool",
            metrics.mempool_records.clone(),
        );
        registry.register(
            "records_committed",
            "Records committed since start",
            metrics.records_committed.clone(),
        );
        registry.register(
            "blocks_committed",
            "Blocks committed since start",
            metrics.blocks_committed.clone(),
        );
        registry.register(
            "messages_rejected",
            "Peer messages rejected",
            metrics.messages_rejected.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Seconds from admission of a record at this node to its commit",
            metrics.commit_latency_seconds.clone(),
        );
        registry.register(
            "gossip_dropped",
            "Outbound gossip dropped because the network queue was full",
            metrics.gossip_dropped.clone(),
        );
        registry.register(
            "blocks_synced",
            "Blocks applied through block sync",
            metrics.blocks_synced.clone(),
        );
        registry.register(
            "evidence",
            "Evidence of misbehaviour (conflicting votes) held",
            metrics.evidence.clone(),
        );
        registry.register(
            "gossip_verdicts",
            "Gossip messages judged by this node, by topic and verdict (accept, reject, ignore)",
            metrics.gossip_verdicts.clone(),
        );
        registry.register(
            "gossip_verdicts_late",
            "Record batches judged after waiting longer than gossipsub keeps messages: not \
             reported to it, not relayed",
            metrics.gossip_verdicts_late.clone(),
        );
        registry.register(
            "compact_proposals",
            "Compact proposals by outcome (sent, rebuilt, wanted, answered)",
            metrics.compact_proposals.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The registry, so the network layer can register its own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut head = Vec::with_capacity(1024);
            let mut buffer = [0u8; 1024];
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n")
                    && head.len() < REQUEST_HEAD_BYTES_MAX
                {
                    let n = socket.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buffer[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let response = if head.starts_with(b"GET /metrics ")
                || head.starts_with(b"GET /metrics?")
            {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut response = String::new();
        socket.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let metrics = Arc::new(Metrics::new());
        metrics.height.set(42);
        metrics.records_committed.inc_by(7);
        metrics.commit_latency_seconds.observe(0.02);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(serve(listener, metrics));
        let response = get(address, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("branchd_height 42"), "{response}");
        assert!(
            response.contains("branchd_records_committed_total 7"),
            "{response}"
        );
        assert!(
            response.contains("branchd_commit_latency_seconds_count 1"),
            "{response}"
        );
        assert!(get(address, "/other").await.starts_with("HTTP/1.1 404"));
        // Garbage does not stop the server.
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        socket.write_all(&[0xff; 100]).await.expect("write");
        drop(socket);
        assert!(get(address, "/metrics")
            .await
            .starts_with("HTTP/1.1 200 OK"));
        server.abort();
    }
}
