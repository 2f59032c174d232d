//! Multi-process tests of the networked node: real `branchd` processes on loopback, each with
//! its own RocksDB store, talking libp2p to each other and gRPC to the test.

mod support;

use std::time::Duration;

use support::{fast_timeouts, member_joined, study, submit, Cluster};

const COMMIT_WAIT_MS: u32 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_commit_records_from_every_node_into_identical_chains() {
    let mut cluster = Cluster::new(4, fast_timeouts);
    cluster.start_all();
    cluster.wait_connected().await;
    let mut committed = Vec::new();
    for i in 0..4 {
        let member = format!("m-{i}-1");
        let joined = submit(&cluster, i, member_joined(&member), COMMIT_WAIT_MS)
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        committed.push(joined.committed.expect("joined committed").height);
        // Without waiting: admitted at once, committed with the rest.
        let admitted = submit(&cluster, (i + 1) % 4, member_joined(&format!("m-{i}-2")), 0)
            .await
            .expect("admitted");
        assert!(admitted.committed.is_none());
        let session = submit(&cluster, i, study(&member, 45), COMMIT_WAIT_MS)
            .await
            .expect("study");
        committed.push(session.committed.expect("study committed").height);
    }
    let top = *committed.iter().max().expect("heights");
    for i in 0..4 {
        cluster
            .wait_status(i, "the highest commit", Duration::from_secs(30), |s| {
                s.height >= top && s.mempool_records == 0
            })
            .await;
    }
    cluster.terminate_all();
    let reference = cluster.blocks(0);
    assert!(reference.len() as u64 >= top);
    for i in 1..4 {
        assert_eq!(cluster.blocks(i), reference, "node {i} holds another chain");
    }
    for i in 0..4 {
        let (ok, report) = cluster.audit(i);
        assert!(ok, "audit of node {i} failed:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_validator_does_not_stop_the_others_and_catches_up_when_restarted() {
    let mut cluster = Cluster::new(4, fast_timeouts);
    cluster.start_all();
    cluster.wait_connected().await;
    support::join_members(&cluster, 0..3, COMMIT_WAIT_MS).await;
    cluster.kill(3);
    let mut last = 0;
    for round in 0..2u32 {
        for i in 0..3 {
            let response = submit(
                &cluster,
                i,
                study(&format!("m-{i}"), 10 + round),
                COMMIT_WAIT_MS,
            )
            .await
            .unwrap_or_else(|e| panic!("node {i} without node 3: {e}"));
            last = last.max(response.committed.expect("committed").height);
        }
    }
    cluster.start(3);
    cluster
        .wait_status(3, "caught up", Duration::from_secs(60), |s| {
            s.height >= last
        })
        .await;
    // Back in consensus: a record submitted to it commits.
    let response = submit(&cluster, 3, member_joined("m-3"), COMMIT_WAIT_MS)
        .await
        .expect("restarted node takes records");
    let height = response.committed.expect("committed").height;
    assert!(height > last);
    cluster
        .wait_height(0..4, height, Duration::from_secs(30))
        .await;
    cluster.terminate_all();
    let reference = cluster.blocks(0);
    for i in 1..4 {
        assert_eq!(cluster.blocks(i), reference, "node {i} holds another chain");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_four_down_stops_commits_without_a_fork_and_one_back_resumes_them() {
    let mut cluster = Cluster::new(4, fast_timeouts);
    cluster.start_all();
    cluster.wait_connected().await;
    let joined = submit(&cluster, 0, member_joined("m-0"), COMMIT_WAIT_MS)
        .await
        .expect("joined");
    let before = joined.committed.expect("committed").height;
    cluster.kill(2);
    cluster.kill(3);
    // No quorum: the record is admitted but does not commit, and the node says why.
    let pending = submit(&cluster, 0, study("m-0", 30), 3_000)
        .await
        .expect("admitted");
    assert!(pending.committed.is_none(), "committed without a quorum");
    let status = cluster
        .wait_status(0, "the reason", Duration::from_secs(30), |s| {
            s.not_committing_reason.contains("quorum")
        })
        .await;
    assert_eq!(status.height, before, "{status:?}");
    assert_eq!(cluster.status(1).await.expect("node 1").height, before);
    // One back: three of four make a quorum again and the waiting record commits.
    cluster.start(2);
    let status = cluster
        .wait_status(0, "commits resumed", Duration::from_secs(60), |s| {
            s.height > before && s.mempool_records == 0
        })
        .await;
    cluster
        .wait_status(2, "caught up", Duration::from_secs(60), |s| {
            s.height >= status.height
        })
        .await;
    cluster.terminate_all();
    let reference = cluster.blocks(0);
    assert!(reference.len() as u64 > before);
    for i in 1..4 {
        let blocks = cluster.blocks(i);
        assert_eq!(blocks[..], reference[..blocks.len()], "node {i} forked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_validator_chain_commits_for_development() {
    let mut cluster = Cluster::new(1, fast_timeouts);
    cluster.start(0);
    cluster.wait_connected().await;
    let joined = submit(&cluster, 0, member_joined("m-1"), COMMIT_WAIT_MS)
        .await
        .expect("joined");
    let committed = joined.committed.expect("committed");
    assert_eq!(committed.height, 1);
    assert_eq!(committed.index, 0);
    let session = submit(&cluster, 0, study("m-1", 60), COMMIT_WAIT_MS)
        .await
        .expect("study");
    assert_eq!(session.committed.expect("committed").height, 2);
    cluster.terminate_all();
    assert_eq!(cluster.blocks(0).len(), 2);
    let (ok, report) = cluster.audit(0);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_key_is_not_in_genesis_is_refused_at_connection_time() {
    let mut cluster = Cluster::new(2, fast_timeouts);
    cluster.start_all();
    cluster.wait_connected().await;
    // A stranger: node 1's configuration and genesis, but a node key of its own and no
    // consensus key, dialling node 0.
    let home = cluster.dir.path().join("stranger");
    std::fs::create_dir_all(home.join("config")).expect("mkdir");
    for file in ["config.toml", "genesis.json", "branch_key.json"] {
        std::fs::copy(
            cluster.nodes[1].home.join("config").join(file),
            home.join("config").join(file),
        )
        .expect("copy");
    }
    let status = support::branchd()
        .args(["keys", "generate", "--role", "node", "--out"])
        .arg(home.join("config/node_key.json"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("keys generate");
    assert!(status.success());
    let genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cluster.genesis_path()).expect("genesis"))
            .expect("json");
    let node0 = cluster.nodes[0].address(genesis["validators"][0]["peer_id"].as_str().expect("id"));
    let log = cluster.dir.path().join("stranger.log");
    cluster.nodes.push(support::Node::configure(
        home,
        log,
        &support::free_ports(3),
        &[node0],
    ));
    cluster.start(2);
    cluster
        .wait_status(2, "the stranger is up", Duration::from_secs(30), |_| true)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = support::metrics(&cluster, 0).expect("metrics");
        if support::metric(&text, "branchd_p2p_connections_denied_total") >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cluster.status(0).await.expect("node 0").peers,
        1,
        "only node 1"
    );
    cluster
        .wait_status(2, "no peers", Duration::from_secs(30), |s| s.peers == 0)
        .await;
    assert!(cluster.log(0).contains("incoming connection refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_grpc_and_peer_to_peer_ports_is_refused_and_the_node_stays_live() {
    use std::io::{Read, Write};
    let mut cluster = Cluster::new(1, fast_timeouts);
    cluster.start(0);
    cluster.wait_connected().await;
    let node = &cluster.nodes[0];
    let p2p = std::net::SocketAddr::from(([127, 0, 0, 1], node.p2p_port));
    let frames: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 4096],
        // An HTTP/2 preface, then a frame header claiming 16 MiB that never comes.
        [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
            &[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
        ]
        .concat(),
        // A multistream header cut short.
        vec![0x13, b'/', b'm', b'u'],
        vec![],
    ];
    for address in [node.api, p2p] {
        for frame in &frames {
            let mut socket = std::net::TcpStream::connect(address).expect("connect");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = socket.write_all(frame);
            let _ = socket.shutdown(std::net::Shutdown::Write);
            // The node answers with an error or closes; it must not hang on to the socket.
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink);
        }
    }
    // Still live: it answers and commits.
    let response = submit(&cluster, 0, member_joined("m-1"), COMMIT_WAIT_MS)
        .await
        .expect("the node still commits");
    assert_eq!(response.committed.expect("committed").height, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = support::metrics(&cluster, 0).expect("metrics");
        if support::metric(&text, "branchd_p2p_handshakes_failed_total")
            >= frames.len() as f64 - 1.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "failed handshakes not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A peer that genesis lists (so it gets past the connection filter) gossips what an honest
/// node never would: undecodable and truncated bytes, records with a bad signature, an unknown
/// signer or another chain's id, votes with a bad signature, an unknown validator index,
/// another chain's signature, and a validly signed vote of a height long past. Every node
/// rejects each of the forged ones (the stale vote is ignored, not held against the sender),
/// counts it in its metrics, and keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gossip_from_a_listed_peer_is_rejected_counted_and_the_cluster_stays_live() {
    use branchledger_crypto::Keypair;
    use branchledger_types::record::{MemberJoined, MemberStatus};
    use branchledger_types::wire::{ConsensusGossip, ConsensusMessage, RecordBatch};
    use branchledger_types::{BranchId, Date, MemberId, Record, RecordBody, Vote, VoteKind};
    use support::metric_with;

    let mut cluster = Cluster::new(4, fast_timeouts);
    for i in 0..3 {
        cluster.start(i);
    }
    for i in 0..3 {
        cluster
            .wait_status(i, "two peers", Duration::from_secs(60), |s| s.peers >= 2)
            .await;
    }
    // Two heights committed, so that a vote of height 1 is stale.
    for member in ["m-1", "m-2"] {
        submit(&cluster, 0, member_joined(member), COMMIT_WAIT_MS)
            .await
            .expect("committed");
    }
    // Validator 3's keys, in a network client of the test's own on its address.
    let genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cluster.genesis_path()).expect("genesis"))
            .expect("json");
    let chain_id = genesis["chain_id"].as_str().expect("chain id").to_owned();
    let peer_ids = support::peer_ids(&genesis);
    let home3 = cluster.nodes[3].home.clone();
    let node_key = cluster.branch_key(&home3.join("config/node_key.json"));
    let consensus_key = cluster.branch_key(&home3.join("config/consensus_key.json"));
    let branch0_key = cluster.branch_key(&cluster.nodes[0].home.join("config/branch_key.json"));
    let config = branchledger_p2p::Config {
        node_key_seed: node_key.seed(),
        chain_id: chain_id.clone(),
        listen: format!("/ip4/127.0.0.1/tcp/{}", cluster.nodes[3].p2p_port)
            .parse()
            .expect("listen address"),
        peers: (0..3)
            .map(|i| {
                cluster.nodes[i]
                    .address(&peer_ids[i])
                    .parse()
                    .expect("peer address")
            })
            .collect(),
        allowed: peer_ids
            .iter()
            .map(|p| branchledger_p2p::parse_peer_id(p).expect("peer id"))
            .collect(),
        consensus_bytes_max: branchledger_types::wire::GOSSIP_CONSENSUS_BYTES_MAX,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (client, mut events, event_loop) =
        branchledger_p2p::new(config, &mut registry).expect("network");
    tokio::spawn(event_loop.run());
    let connected = tokio::time::timeout(Duration::from_secs(60), async {
        let mut peers = std::collections::BTreeSet::new();
        while peers.len() < 3 {
            match events.recv().await.expect("events") {
                branchledger_p2p::Event::PeerConnected(peer) => {
                    peers.insert(peer);
                }
                branchledger_p2p::Event::PeerDisconnected(peer) => {
                    peers.remove(&peer);
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(
        connected.is_ok(),
        "the forging peer never reached the three"
    );
    // The rest of its events are drained and dropped.
    tokio::spawn(async move { while events.recv().await.is_some() {} });

    let branch0 = BranchId(cluster.branch_of(0));
    let record = |chain: &str, nonce: u64, key: &Keypair| {
        Record {
            chain_id: chain.to_owned(),
            branch_id: branch0.clone(),
            created_at_ms: 1_767_225_600_000,
            nonce,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(format!("forged-{nonce}")),
                joined_on: Date::new(2026, 1, 5),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(key)
    };
    let records = |records| RecordBatch { records }.to_bytes();
    let vote = |height: u64, index: u16| Vote {
        height,
        round: 0,
        kind: VoteKind::Prevote,
        block_id: None,
        validator_index: index,
    };
    let gossip = |nonce: u64, vote: branchledger_types::SignedVote| {
        ConsensusGossip {
            nonce,
            message: ConsensusMessage::Vote(vote),
        }
        .to_bytes()
    };
    type Forge<'a> = Box<dyn Fn(u64) -> Vec<u8> + 'a>;
    /// What is forged, where it is sent, and the metric (name, labels) that must count it.
    type Case<'a> = (
        &'a str,
        branchledger_p2p::Topic,
        &'a str,
        &'a [(&'a str, &'a str)],
        Forge<'a>,
    );
    use branchledger_p2p::Topic;
    let undecodable = [("kind", "records"), ("reason", "undecodable")];
    let consensus_undecodable = [("kind", "consensus"), ("reason", "undecodable")];
    let records_rejected = [("topic", "records"), ("verdict", "reject")];
    let consensus_rejected = [("topic", "consensus"), ("verdict", "reject")];
    let consensus_ignored = [("topic", "consensus"), ("verdict", "ignore")];
    let stranger = Keypair::from_seed([77; 32]);
    let cases: Vec<Case> = vec![
        (
            "garbage on the records topic",
            Topic::Records,
            "branchd_p2p_messages_rejected_total",
            &undecodable,
            Box::new(|i| vec![0xA5; 64 + i as usize]),
        ),
        (
            "a record with a bad signature",
            Topic::Records,
            "branchd_gossip_verdicts_total",
            &records_rejected,
            Box::new(|i| {
                let mut forged = record(&chain_id, 100 + i, &branch0_key);
                forged.signature.0[5] ^= 1;
                records(vec![forged])
            }),
        ),
        (
            "a record signed by a key that is no branch's",
            Topic::Records,
            "branchd_gossip_verdicts_total",
            &records_rejected,
            Box::new(|i| records(vec![record(&chain_id, 200 + i, &stranger)])),
        ),
        (
            "a record of another chain",
            Topic::Records,
            "branchd_gossip_verdicts_total",
            &records_rejected,
            Box::new(|i| records(vec![record("another-chain", 300 + i, &branch0_key)])),
        ),
        (
            "garbage on the consensus topic",
            Topic::Consensus,
            "branchd_p2p_messages_rejected_total",
            &consensus_undecodable,
            Box::new(|i| vec![0x5A; 64 + i as usize]),
        ),
        (
            "a truncated vote",
            Topic::Consensus,
            "branchd_p2p_messages_rejected_total",
            &consensus_undecodable,
            Box::new(|i| {
                let bytes = gossip(i, vote(3, 3).sign(&chain_id, &consensus_key));
                bytes[..bytes.len() - 7].to_vec()
            }),
        ),
        (
            "a vote with a bad signature",
            Topic::Consensus,
            "branchd_gossip_verdicts_total",
            &consensus_rejected,
            Box::new(|i| {
                let mut forged = vote(3, 3).sign(&chain_id, &consensus_key);
                forged.signature.0[9] ^= 1;
                gossip(i, forged)
            }),
        ),
        (
            "a vote of an unknown validator",
            Topic::Consensus,
            "branchd_gossip_verdicts_total",
            &consensus_rejected,
            Box::new(|i| gossip(i, vote(3, 9).sign(&chain_id, &stranger))),
        ),
        (
            "a vote signed for another chain",
            Topic::Consensus,
            "branchd_gossip_verdicts_total",
            &consensus_rejected,
            Box::new(|i| gossip(i, vote(3, 3).sign("another-chain", &consensus_key))),
        ),
        (
            "a validly signed vote of a past height",
            Topic::Consensus,
            "branchd_gossip_verdicts_total",
            &consensus_ignored,
            Box::new(|i| gossip(i, vote(1, 3).sign(&chain_id, &consensus_key))),
        ),
    ];
    let records_accepted = [("topic", "records"), ("verdict", "accept")];
    let accepted_before: Vec<f64> = (0..3)
        .map(|i| {
            let text = support::metrics(&cluster, i).expect("metrics");
            metric_with(&text, "branchd_gossip_verdicts_total", &records_accepted)
        })
        .collect();
    let mut attempt = 0u64;
    for (what, topic, name, labels, forge) in &cases {
        let before: Vec<f64> = (0..3)
            .map(|i| {
                metric_with(
                    &support::metrics(&cluster, i).expect("metrics"),
                    name,
                    labels,
                )
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Sent again (each time a distinct message) until every node has counted one: the
        // first sendings may go out before the gossip subscriptions are known.
        'sent: loop {
            attempt += 1;
            client.publish_raw(*topic, forge(attempt)).expect("publish");
            let poll_until = std::time::Instant::now() + Duration::from_millis(500);
            while std::time::Instant::now() < poll_until {
                let counted = (0..3).all(|i| {
                    metric_with(
                        &support::metrics(&cluster, i).expect("metrics"),
                        name,
                        labels,
                    ) > before[i]
                });
                if counted {
                    break 'sent;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not counted by every node as {labels:?} in {name}"
            );
        }
    }
    // Nothing forged was admitted, and the three still commit.
    for (i, before) in accepted_before.iter().enumerate() {
        let text = support::metrics(&cluster, i).expect("metrics");
        assert_eq!(
            metric_with(&text, "branchd_gossip_verdicts_total", &records_accepted),
            *before,
            "node {i} accepted a forged record:\n{text}"
        );
    }
    let response = submit(&cluster, 1, member_joined("m-3"), COMMIT_WAIT_MS)
        .await
        .expect("the cluster still commits");
    assert_eq!(response.committed.expect("committed").height, 3);
    cluster.wait_height(0..3, 3, Duration::from_secs(30)).await;
    drop(cases);
    cluster.terminate_all();
    let blocks: Vec<_> = (0..3).map(|i| cluster.blocks(i)).collect();
    assert!(blocks.iter().all(|b| *b == blocks[0]), "chains differ");
}
