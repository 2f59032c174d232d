//! The network layer over real TCP sockets on loopback (port 0): genesis peers connect and
//! exchange gossip and sync messages; a stranger is refused at connection time; a peer that
//! sends garbage is rejected, counted and banned.

use std::time::{Duration, Instant};

use branchledger_crypto::Keypair;
use branchledger_p2p::{Event, Multiaddr, Topic, Verdict};
use branchledger_types::record::{MemberJoined, MemberStatus};
use branchledger_types::wire::{ConsensusMessage, SyncRequest, SyncResponse};
use branchledger_types::{BranchId, Date, MemberId, Record, RecordBody, SignedRecord};

mod support;
use support::*;

const CHAIN: &str = "p2p-test";

async fn start(i: u8, allowed: &[u8], dial: &[Multiaddr]) -> Node {
    start_on(CHAIN, i, allowed, dial).await
}

fn record(nonce: u64) -> SignedRecord {
    Record {
        chain_id: CHAIN.into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: 1_767_225_600_000,
        nonce,
        body: RecordBody::MemberJoined(MemberJoined {
            member_id: MemberId(format!("m{nonce}")),
            joined_on: Date::from_unix_ms(1_767_225_600_000),
            status: MemberStatus::Full,
            mobile: false,
            member_key: None,
        }),
    }
    .sign(&Keypair::from_seed([1; 32]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesis_peers_gossip_and_sync_while_a_stranger_is_refused() {
    let mut a = start(0, &[0, 1], &[]).await;
    let mut b = start(1, &[0, 1], &[a.address.clone()]).await;
    wait_for(
        &mut a.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == b.peer),
    )
    .await;
    wait_for(
        &mut b.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == a.peer),
    )
    .await;

    // A stranger with a key not in the allow list dials `a`: refused when the handshake
    // reveals its id; `a` never reports it connected, and counts the refusal.
    let mut stranger = start(9, &[0, 1, 9], &[a.address.clone()]).await;
    let deadline = Instant::now() + DEADLINE;
    while metric_value(&metrics(&a.registry), "p2p_connections_denied") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stranger was not refused in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Ok(event) = a.events.try_recv() {
        assert!(
            !matches!(event, Event::PeerConnected(p) if p == stranger.peer),
            "a stranger connected"
        );
    }
    // The stranger may see its side of the connection open for a moment; it is closed.
    let mut connected = false;
    while let Ok(event) = stranger.events.try_recv() {
        match event {
            Event::PeerConnected(p) if p == a.peer => connected = true,
            Event::PeerDisconnected(p) if p == a.peer => connected = false,
            _ => {}
        }
    }
    if connected {
        wait_for(
            &mut stranger.events,
            |e| matches!(e, Event::PeerDisconnected(p) if *p == a.peer),
        )
        .await;
    }

    // Records are batched and gossiped; the receiver judges and reports them.
    let records: Vec<SignedRecord> = (0..50).map(record).collect();
    a.client.publish_records(records.clone()).expect("publish");
    let mut received = Vec::new();
    while received.len() < records.len() {
        match wait_for(&mut b.events, |e| matches!(e, Event::Records { .. })).await {
            Event::Records {
                source,
                message_id,
                records,
                ..
            } => {
                assert_eq!(source, a.peer);
                b.client
                    .report(message_id, source, Verdict::Accept)
                    .expect("report");
                received.extend(records);
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(received, records, "every record arrives, in order");

    // A vote sent twice arrives twice: each sending is a distinct gossip message.
    let vote = nil_prevote(CHAIN);
    for _ in 0..2 {
        a.client
            .publish_consensus(ConsensusMessage::Vote(vote))
            .expect("publish");
        match wait_for(&mut b.events, |e| matches!(e, Event::Consensus { .. })).await {
            Event::Consensus { message, .. } => {
                assert_eq!(message, ConsensusMessage::Vote(vote));
            }
            _ => unreachable!(),
        }
    }

    // Block sync: request, answer, response.
    b.client
        .request_blocks(a.peer, SyncRequest { from: 5, count: 10 })
        .expect("request");
    let (request, responder) =
        match wait_for(&mut a.events, |e| matches!(e, Event::SyncRequest { .. })).await {
            Event::SyncRequest {
                peer,
                request,
                responder,
            } => {
                assert_eq!(peer, b.peer);
                (request, responder)
            }
            _ => unreachable!(),
        };
    assert_eq!(request, SyncRequest { from: 5, count: 10 });
    a.client
        .respond(
            responder,
            SyncResponse {
                tip: 4,
                blocks: vec![],
            },
        )
        .await
        .expect("respond");
    match wait_for(&mut b.events, |e| matches!(e, Event::SyncResponse { .. })).await {
        Event::SyncResponse { peer, result } => {
            assert_eq!(peer, a.peer);
            assert_eq!(
                result,
                Ok(SyncResponse {
                    tip: 4,
                    blocks: vec![]
                })
            );
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gossip_is_rejected_counted_and_its_sender_banned() {
    let mut a = start(0, &[0, 1], &[]).await;
    let mut b = start(1, &[0, 1], &[a.address.clone()]).await;
    wait_for(
        &mut a.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == b.peer),
    )
    .await;
    wait_for(
        &mut b.events,
        |e| matches!(e, Event::PeerConnected(p) if *p == a.peer),
    )
    .await;

    // Garbage on both topics, each message distinct; `b` never hands any of it to its node
    // and, past the threshold, disconnects `a`.
    let mut sent = 0u32;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = metrics(&b.registry);
        if metric_value(&text, "p2p_peers_banned") >= 1.0 {
            assert!(
                metric_value(&text, "p2p_messages_rejected_total")
                    >= f64::from(branchledger_p2p::PENALTY_THRESHOLD),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no ban in time:\n{text}");
        let topic = if sent.is_multiple_of(2) {
            Topic::Records
        } else {
            Topic::Consensus
        };
        let mut garbage = vec![0xee; 40];
        garbage.extend_from_slice(&sent.to_le_bytes());
        let _ = a.client.publish_raw(topic, garbage);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for(
        &mut b.events,
        |e| matches!(e, Event::PeerDisconnected(p) if *p == a.peer),
    )
    .await;
    while let Ok(event) = b.events.try_recv() {
        assert!(
            !matches!(event, Event::Records { .. } | Event::Consensus { .. }),
            "garbage reached the node: {event:?}"
        );
    }
}
