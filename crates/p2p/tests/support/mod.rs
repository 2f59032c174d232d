//! The harness the network tests share: real nodes on loopback, their events and metrics.

use std::time::Duration;

use branchledger_crypto::Keypair;
use branchledger_p2p::{Client, Event, Events, Multiaddr, PeerId};
use branchledger_types::{SignedVote, Vote, VoteKind};
use prometheus_client::registry::Registry;

/// Longest any awaited event or metric may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running node: its identity, where it listens, its client, events and metrics.
pub struct Node {
    pub peer: PeerId,
    pub address: Multiaddr,
    pub client: Client,
    pub events: Events,
    pub registry: Registry,
}

/// The node key seed of node `i`.
pub fn seed(i: u8) -> [u8; 32] {
    [100 + i; 32]
}

/// The peer id of node `i`.
pub fn peer(i: u8) -> PeerId {
    branchledger_p2p::peer_id_of_seed(seed(i)).expect("peer id")
}

/// Starts node `i` of `chain`, allowing nodes `allowed`, dialling `dial`.
pub async fn start_on(chain: &str, i: u8, allowed: &[u8], dial: &[Multiaddr]) -> Node {
    let mut registry = Registry::default();
    let (client, mut events, event_loop) = branchledger_p2p::new(
        branchledger_p2p::Config {
            node_key_seed: seed(i),
            chain_id: chain.into(),
            listen: "/ip4/127.0.0.1/tcp/0".parse().expect("address"),
            peers: dial.to_vec(),
            allowed: allowed.iter().map(|j| peer(*j)).collect(),
            consensus_bytes_max: 1 << 20,
        },
        &mut registry,
    )
    .expect("network");
    let local = event_loop.local_peer_id();
    tokio::spawn(event_loop.run());
    let address = match wait_for(&mut events, |e| matches!(e, Event::Listening(_))).await {
        Event::Listening(address) => address,
        _ => unreachable!(),
    };
    Node {
        peer: local,
        address,
        client,
        events,
        registry,
    }
}

/// The first event matching `wanted`, skipping others; panics after [`DEADLINE`].
pub async fn wait_for(events: &mut Events, wanted: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("network stopped"),
            Err(_) => panic!("no matching event within {DEADLINE:?}"),
        }
    }
}

/// The metrics of `registry`, as Prometheus text.
pub fn metrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}

/// The sum of the samples of `text` whose line starts with `prefix`.
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A nil prevote of validator 0 at height 1, round 0 of `chain` (its content does not matter
/// to the network layer).
pub fn nil_prevote(chain: &str) -> SignedVote {
    Vote {
        height: 1,
        round: 0,
        kind: VoteKind::Prevote,
        block_id: None,
        validator_index: 0,
    }
    .sign(chain, &Keypair::from_seed([7; 32]))
}
