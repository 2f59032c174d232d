//! The network layer's bounds, over real TCP sockets on loopback (port 0): sync answers in
//! flight, useless messages, records held for gossip, incoming handshakes, and peers that run
//! another chain.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use branchledger_crypto::{Hash, Keypair};
use branchledger_p2p::{
    Client, Event, Events, Multiaddr, PeerId, Topic, Verdict, BAN_DURATION,
    INBOUND_HANDSHAKE_TIMEOUT, PENALTY_THRESHOLD, PENDING_INCOMING_MAX, RECORDS_HELD_BYTES_MAX,
    RECORD_EVENT_QUEUE, REDIAL_INTERVAL, SYNC_PROTOCOL, SYNC_SERVING_MAX, USELESS_PER_PENALTY,
};
use branchledger_types::record::{MemberJoined, MemberStatus};
use branchledger_types::wire::{ConsensusMessage, RecordBatch, SyncRequest, SyncResponse};
use branchledger_types::{
    encoded_len, Block, BlockHeader, BranchId, CommitCertificate, CommittedBlock, Date, MemberId,
    Record, RecordBody, SignedRecord,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, noise, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder};
use prometheus_client::registry::Registry;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

mod support;
use support::*;

const CHAIN: &str = "p2p-bounds-test";

async fn start(i: u8, allowed: &[u8], dial: &[Multiaddr]) -> Node {
    start_on(CHAIN, i, allowed, dial).await
}

/// Waits until `a` and `b` both report the other connected.
async fn connected(a: &mut Node, b: &mut Node) {
    let (pa, pb) = (a.peer, b.peer);
    wait_for(
        &mut a.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == pb),
    )
    .await;
    wait_for(
        &mut b.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == pa),
    )
    .await;
}

/// Waits until the metric named by `prefix` reaches `at_least`; panics after [`DEADLINE`].
async fn wait_metric(registry: &Registry, prefix: &str, at_least: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = metrics(registry);
        if metric_value(&text, prefix) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix} did not reach {at_least} within {DEADLINE:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A record whose member id is `padding` bytes long (to make it as large as wanted).
fn record(nonce: u64, padding: usize) -> SignedRecord {
    let mut member = format!("m{nonce:06}-");
    member.push_str(&"x".repeat(padding));
    Record {
        chain_id: CHAIN.into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: 1_767_225_600_000,
        nonce,
        body: RecordBody::MemberJoined(MemberJoined {
            member_id: MemberId(member),
            joined_on: Date::from_unix_ms(1_767_225_600_000),
            status: MemberStatus::Full,
            mobile: false,
            member_key: None,
        }),
    }
    .sign(&Keypair::from_seed([1; 32]))
}

/// A sync answer of about `bytes` bytes (one block with a long chain id: only its size
/// matters here).
fn answer_of(bytes: usize) -> SyncResponse {
    SyncResponse {
        tip: 1,
        blocks: vec![CommittedBlock {
            block: Block {
                header: BlockHeader {
                    chain_id: "c".repeat(bytes),
                    height: 1,
                    time_ms: 0,
                    prev_block_id: Hash::ZERO,
                    records_root: Hash::ZERO,
                    record_count: 0,
                    state_digest: Hash::ZERO,
                    proposer_index: 0,
                    validator_set_id: Hash::ZERO,
                },
                records: vec![],
            },
            commit: CommitCertificate {
                height: 1,
                round: 0,
                block_id: Hash::ZERO,
                signatures: vec![],
            },
        }],
    }
}

/// A bare libp2p swarm for node key `i` with one behaviour, as a misbehaving or foreign peer.
fn raw_swarm<B: libp2p::swarm::NetworkBehaviour>(
    i: u8,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(seed(i)).expect("key");
    SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|key| behaviour(key))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}

/// The TCP address of a `/ip4/…/tcp/…` multiaddr.
fn socket_address(address: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for part in address.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("ip"), port.expect("port"))
}

/// The asking side of the sync protocol for a peer that never reads its answers: it writes a
/// request and reads one byte of the answer (so an answer refused at once, its stream closed,
/// shows as a failure) and then nothing more, ever.
#[derive(Clone, Copy, Default)]
struct NeverReads;

impl request_response::Codec for NeverReads {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("this peer serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut first = [0u8; 1];
        io.read_exact(&mut first).await?;
        futures::future::pending::<()>().await;
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        branchledger_p2p::write_frame(io, &request.to_bytes()).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// Serves `events` in a task: every sync request is reported on the returned channel and
/// answered, with an answer of `big_bytes` to `big_for` and an empty one to anyone else.
fn serve(
    mut events: Events,
    client: Client,
    big_for: PeerId,
    big_bytes: usize,
) -> mpsc::Receiver<PeerId> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::SyncRequest {
                peer, responder, ..
            } = event
            {
                let _ = tx.send(peer).await;
                let answer = if peer == big_for {
                    answer_of(big_bytes)
                } else {
                    SyncResponse {
                        tip: 0,
                        blocks: vec![],
                    }
                };
                let _ = client.respond(responder, answer).await;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_answers_holds_one_serving_slot_until_they_are_sent() {
    let a = start(0, &[0, 1, 7], &[]).await;
    let a_peer = a.peer;
    let a_address = a.address.clone();
    let registry = a.registry;
    let mut served = serve(a.events, a.client, peer(7), 2 << 20);

    // The greedy peer: an allowed peer that asks many times and never reads an answer.
    let mut greedy = raw_swarm(7, |_| {
        request_response::Behaviour::<NeverReads>::new(
            [(SYNC_PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(300))
                .with_max_concurrent_streams(1_000),
        )
    });
    greedy.dial(a_address.clone()).expect("dial");
    let (ask, mut asks) = mpsc::channel::<usize>(8);
    let (failed, mut failures) = mpsc::channel::<()>(1024);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(n) = asks.recv() => {
                    for _ in 0..n {
                        greedy
                            .behaviour_mut()
                            .send_request(&a_peer, SyncRequest { from: 1, count: 64 });
                    }
                }
                event = greedy.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) = event {
                        let _ = failed.send(()).await;
                    }
                }
            }
        }
    });

    // Ten requests: one is served (its 2 MiB answer, unread, stays in flight), the other nine
    // fail at once (refused, or reset for the streams beyond the connection's limit).
    const ASKED: usize = 10;
    ask.send(ASKED).await.expect("ask");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut greedy_served = 0;
    let mut greedy_failed = 0;
    while greedy_failed < ASKED - 1 || greedy_served < 1 {
        tokio::select! {
            Some(peer) = served.recv() => {
                assert_eq!(peer, self::peer(7));
                greedy_served += 1;
                assert!(greedy_served <= 1, "a second request of the same peer was served");
            }
            Some(()) = failures.recv() => greedy_failed += 1,
            _ = tokio::time::sleep_until(deadline) => panic!(
                "in {DEADLINE:?}: {greedy_served} served, {greedy_failed} failed of {ASKED}"
            ),
        }
    }
    wait_metric(&registry, "p2p_sync_requests_refused", 1.0).await;

    // An honest peer is still served meanwhile.
    let mut honest = start(1, &[0, 1], &[a_address]).await;
    wait_for(
        &mut honest.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == a_peer),
    )
    .await;
    honest
        .client
        .request_blocks(a_peer, SyncRequest { from: 1, count: 64 })
        .expect("request");
    match wait_for(&mut honest.events, |e| {
        matches!(e, Event::SyncResponse { .. })
    })
    .await
    {
        Event::SyncResponse { result, .. } => assert_eq!(
            result,
            Ok(SyncResponse {
                tip: 0,
                blocks: vec![]
            })
        ),
        _ => unreachable!(),
    }
    assert_eq!(served.recv().await, Some(peer(1)));

    // The greedy peer's answer was handed to the network long ago but is still unsent: its
    // slot is still taken, and its next request is refused for it.
    const PEER_BUSY: &str = "p2p_sync_requests_refused_total{reason=\"peer_busy\"}";
    let busy_before = metric_value(&metrics(&registry), PEER_BUSY);
    ask.send(1).await.expect("ask");
    tokio::time::timeout(DEADLINE, failures.recv())
        .await
        .expect("the greedy peer's next request was not refused in time");
    wait_metric(&registry, PEER_BUSY, busy_before + 1.0).await;
    assert!(
        served.try_recv().is_err(),
        "a request was served while the same peer's answer was still in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_requests_beyond_the_serving_budget_are_refused_and_the_asker_moves_on() {
    let askers_count = u8::try_from(SYNC_SERVING_MAX + 1).expect("few");
    let all: Vec<u8> = (0..=askers_count).collect();
    let mut a = start(0, &all, &[]).await;
    let mut askers = Vec::new();
    for i in 1..=askers_count {
        let mut asker = start(i, &all, &[a.address.clone()]).await;
        connected(&mut a, &mut asker).await;
        askers.push(asker);
    }
    // Every answer of the askers arrives on one channel, tagged with the asker's index.
    let (tx, mut answers) = mpsc::channel(64);
    let mut clients = Vec::new();
    for (index, asker) in askers.into_iter().enumerate() {
        clients.push((asker.peer, asker.client));
        let tx = tx.clone();
        let mut events = asker.events;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::SyncResponse { result, .. } = event {
                    let _ = tx.send((index, result)).await;
                }
            }
        });
    }
    for (_, client) in &clients {
        client
            .request_blocks(a.peer, SyncRequest { from: 1, count: 8 })
            .expect("request");
    }

    // The node holds every request it is handed without answering: the budget is taken, one
    // asker is refused at once (it would ask another peer).
    let mut held = Vec::new();
    while held.len() < SYNC_SERVING_MAX {
        match wait_for(&mut a.events, |e| matches!(e, Event::SyncRequest { .. })).await {
            Event::SyncRequest {
                peer, responder, ..
            } => held.push((peer, responder)),
            _ => unreachable!(),
        }
    }
    let (refused, result) = tokio::time::timeout(DEADLINE, answers.recv())
        .await
        .expect("no asker was refused in time")
        .expect("answers");
    assert!(result.is_err(), "{result:?}");
    assert!(
        held.iter().all(|(p, _)| *p != clients[refused].0),
        "the refused asker was also served"
    );
    wait_metric(&a.registry, "p2p_sync_requests_refused", 1.0).await;
    while let Ok(event) = a.events.try_recv() {
        assert!(
            !matches!(event, Event::SyncRequest { .. }),
            "more than {SYNC_SERVING_MAX} requests were handed to the node at once"
        );
    }

    // One answer sent frees a slot: the refused asker, asking again, is served.
    let (first, responder) = held.remove(0);
    a.client
        .respond(
            responder,
            SyncResponse {
                tip: 0,
                blocks: vec![],
            },
        )
        .await
        .expect("respond");
    let (index, result) = tokio::time::timeout(DEADLINE, answers.recv())
        .await
        .expect("the answer did not arrive in time")
        .expect("answers");
    assert_eq!(clients[index].0, first);
    assert!(result.is_ok(), "{result:?}");
    clients[refused]
        .1
        .request_blocks(a.peer, SyncRequest { from: 1, count: 8 })
        .expect("request");
    match wait_for(&mut a.events, |e| matches!(e, Event::SyncRequest { .. })).await {
        Event::SyncRequest { peer, .. } => assert_eq!(peer, clients[refused].0),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn useless_messages_are_harmless_alone_but_a_flood_of_them_gets_the_sender_banned() {
    let mut a = start(0, &[0, 1], &[]).await;
    let mut b = start(1, &[0, 1], &[a.address.clone()]).await;
    connected(&mut a, &mut b).await;

    // `b` sends record batches that `a` finds useless, one at a time.
    let mut nonce = 0u64;
    // Each is published alone: the next only once `a` has had the last.
    let mut next = |b: &Node| {
        nonce += 1;
        b.client
            .publish_records(vec![record(nonce, 0)])
            .expect("publish");
    };
    // Merely ignored, they are not counted: many more than a ban takes.
    let ignored = PENALTY_THRESHOLD * USELESS_PER_PENALTY + 50;
    for _ in 0..ignored {
        next(&b);
        match wait_for(&mut a.events, |e| matches!(e, Event::Records { .. })).await {
            Event::Records {
                source, message_id, ..
            } => a
                .client
                .report(message_id, source, Verdict::Ignore)
                .expect("report"),
            _ => unreachable!(),
        }
    }
    // Reported useless as well, they get `b` banned, after as many as the threshold says.
    let mut useless = 0u32;
    loop {
        assert!(
            useless <= 2 * PENALTY_THRESHOLD * USELESS_PER_PENALTY,
            "not banned after {useless} useless messages"
        );
        next(&b);
        match wait_for(&mut a.events, |e| {
            matches!(e, Event::Records { .. } | Event::PeerDisconnected(_))
        })
        .await
        {
            Event::Records {
                source, message_id, ..
            } => {
                a.client
                    .report(message_id, source, Verdict::Ignore)
                    .expect("report");
                a.client
                    .report_useless(source, "every record already committed")
                    .expect("report");
                useless += 1;
            }
            Event::PeerDisconnected(p) => {
                assert_eq!(p, b.peer);
                break;
            }
            _ => unreachable!(),
        }
    }
    let text = metrics(&a.registry);
    assert_eq!(metric_value(&text, "p2p_peers_banned"), 1.0, "{text}");
    assert!(
        useless >= PENALTY_THRESHOLD * USELESS_PER_PENALTY,
        "banned after {useless} useless messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_held_for_gossip_are_bounded_in_bytes() {
    // No peer: records are held, and the oldest dropped past the byte bound (well under the
    // count bound).
    let a = start(0, &[0, 1], &[]).await;
    let records: Vec<SignedRecord> = (0..128).map(|n| record(n, 200 * 1024)).collect();
    let size = encoded_len(&records[0]);
    assert!(records.iter().all(|r| encoded_len(r) == size));
    for chunk in records.chunks(8) {
        a.client.publish_records(chunk.to_vec()).expect("publish");
    }
    let kept = RECORDS_HELD_BYTES_MAX / size;
    let dropped = records.len() - kept;
    wait_metric(&a.registry, "p2p_records_dropped", dropped as f64).await;
    let text = metrics(&a.registry);
    assert_eq!(
        metric_value(&text, "p2p_records_dropped"),
        dropped as f64,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_incoming_handshakes_are_cut_and_configured_peers_are_dialled_meanwhile() {
    // `b` is a configured peer of `a`, reached through a relay the test opens at will.
    let mut b = start(1, &[0, 1, 2], &[]).await;
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_port = relay.local_addr().expect("address").port();
    let open = Arc::new(AtomicBool::new(false));
    let b_socket = socket_address(&b.address);
    {
        let open = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = relay.accept().await {
                if !open.load(Ordering::SeqCst) {
                    continue; // dropped: the dial fails
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(b_socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
    let b_via_relay: Multiaddr = format!("/ip4/127.0.0.1/tcp/{relay_port}/p2p/{}", b.peer)
        .parse()
        .expect("address");
    let mut a = start(0, &[0, 1, 2], &[b_via_relay]).await;
    let a_socket = socket_address(&a.address);

    // A stranger takes every incoming handshake slot with connections that say nothing: each
    // is closed once the handshake time is up.
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..PENDING_INCOMING_MAX {
        stalled.push(
            tokio::net::TcpStream::connect(a_socket)
                .await
                .expect("connect"),
        );
    }
    let cut_by = INBOUND_HANDSHAKE_TIMEOUT + Duration::from_secs(2);
    let mut closing = Vec::new();
    for mut stream in stalled {
        closing.push(tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut sink)).await;
        }));
    }
    for task in closing {
        task.await.expect("task");
    }
    let elapsed = opened.elapsed();
    assert!(
        elapsed <= cut_by,
        "stalled handshakes were cut after {elapsed:?}, not within {cut_by:?}"
    );

    // While a stranger keeps every slot taken (further connections are refused at once), the
    // configured peer is dialled, and connects.
    let busy = Arc::new(AtomicBool::new(true));
    let stranger = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while busy.load(Ordering::SeqCst) {
                if let Ok(stream) = tokio::net::TcpStream::connect(a_socket).await {
                    held.push(stream);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let denied = metric_value(&metrics(&a.registry), "p2p_connections_denied") + 1.0;
    wait_metric(&a.registry, "p2p_connections_denied", denied).await;
    open.store(true, Ordering::SeqCst);
    connected(&mut a, &mut b).await;
    busy.store(false, Ordering::SeqCst);
    stranger.await.expect("stranger");

    // Once the stranger is gone, an allowed peer can connect in.
    let mut c = start(2, &[0, 1, 2], &[a.address.clone()]).await;
    connected(&mut a, &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_another_chain_is_disconnected_and_not_redialled_for_a_while() {
    // `b` is an allowed, configured peer that runs another chain (its identify protocol
    // version differs); it stays connected unless `a` closes the connection.
    let mut b = raw_swarm(1, |key| {
        identify::Behaviour::new(identify::Config::new(
            "/branchledger/another-chain/1".into(),
            key.public(),
        ))
    });
    b.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let b_address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = b.select_next_some().await {
            break address.with(Protocol::P2p(*b.local_peer_id()));
        }
    };
    let b_peer = *b.local_peer_id();
    let (tx, mut b_events) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let event = b.select_next_some().await;
            let _ = tx.send(format!("{event:?}")).await;
        }
    });
    let mut a = start(0, &[0, 1], &[b_address]).await;
    wait_for(
        &mut a.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == b_peer),
    )
    .await;
    wait_for(
        &mut a.events,
        |e| matches!(e, Event::PeerDisconnected(p) if *p == b_peer),
    )
    .await;

    // Several redial intervals pass without `a` dialling it again (it would connect).
    let window = REDIAL_INTERVAL * 4;
    assert!(window < BAN_DURATION);
    let reconnected = tokio::time::timeout(
        window,
        wait_for(
            &mut a.events,
            |e| matches!(e, Event::PeerConnected(p) if *p == b_peer),
        ),
    )
    .await;
    assert!(
        reconnected.is_err(),
        "the peer on another chain was dialled again within {window:?}"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    while let Ok(event) = b_events.try_recv() {
        if event.starts_with("ConnectionEstablished") {
            *counts.entry("established").or_default() += 1;
        }
    }
    assert_eq!(counts.get("established"), Some(&1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_on_records_still_hears_consensus_messages() {
    let mut a = start(0, &[0, 1], &[]).await;
    let mut b = start(1, &[0, 1], &[a.address.clone()]).await;
    connected(&mut a, &mut b).await;

    // `a` never takes its record batches. `b` sends distinct ones, each its own gossip
    // message, until `a`'s queue of them is full and a further one is shed.
    let deadline = Instant::now() + DEADLINE;
    let mut nonce = 0u64;
    while metric_value(&metrics(&a.registry), "p2p_record_batches_shed") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no record batch shed after {nonce} sent:\n{}",
            metrics(&a.registry)
        );
        for _ in 0..64 {
            nonce += 1;
            let batch = RecordBatch {
                records: vec![record(nonce, 0)],
            };
            b.client
                .publish_raw(Topic::Records, batch.to_bytes())
                .expect("publish");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.events.records.len(), RECORD_EVENT_QUEUE);

    // The event loop did not wait for room: a vote sent now reaches `a`, which reads only its
    // urgent events (with one queue for both, the vote would sit behind the records for good).
    let vote = nil_prevote(CHAIN);
    b.client
        .publish_consensus(ConsensusMessage::Vote(vote))
        .expect("publish");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, a.events.urgent.recv()).await {
            Ok(Some(Event::Consensus { message, .. })) => {
                assert_eq!(message, ConsensusMessage::Vote(vote));
                break;
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("network stopped"),
            Err(_) => panic!("the vote did not arrive within {DEADLINE:?}"),
        }
    }
    // Nothing beyond the bound was queued.
    assert_eq!(a.events.records.len(), RECORD_EVENT_QUEUE);
}
