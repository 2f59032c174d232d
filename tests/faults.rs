//! Faults against real `branchd` processes: a node that was down while thousands of blocks
//! committed catches up by block sync; validators killed with SIGKILL at random instants under
//! load lose nothing they acknowledged, never sign conflicting votes, and end with identical
//! chains that an auditor verifies.
//!
//! A validator whose clock is an hour ahead never gets a block of its own committed: the
//! others refuse its proposals as coming from the future, and the chain's times stay true.
//!
//! A validator that equivocates (two proposals per round it leads, a conflicting vote for
//! every vote) gets no fork past the honest three, and its double votes are reported as
//! evidence by their API.
//!
//! The crash test is randomised: it prints its seed, and `BRANCHLEDGER_CRASH_SEED=<seed>`
//! replays the same kill schedule; `BRANCHLEDGER_CRASH_KILLS=<n>` runs the long form.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use branchledger_api::pb;
use branchledger_storage::ChainReader;
use rand::{RngExt, SeedableRng};
use support::{fast_timeouts, member_joined, metric, metrics, study, submit, Cluster};

/// Blocks committed while the node is down.
const SYNC_BLOCKS: u64 = 2_000;
/// SIGKILLs in the short (CI) form.
const CRASH_KILLS_DEFAULT: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_while_thousands_of_blocks_commit_catches_up_by_block_sync() {
    // A heartbeat of 1 ms makes blocks back to back, records or not. Every fourth height
    // waits out the absent node's propose timeout and a round of nil precommits, so those
    // timeouts are short here.
    let mut cluster = Cluster::new(4, |g| {
        fast_timeouts(g);
        g["consensus"]["heartbeat_ms"] = 1.into();
        g["consensus"]["timeout_propose_ms"] = 50.into();
        g["consensus"]["timeout_precommit_ms"] = 50.into();
    });
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_connected().await;
    let started = Instant::now();
    let status = cluster
        .wait_status(0, "thousands of blocks", Duration::from_secs(600), |s| {
            s.height >= SYNC_BLOCKS
        })
        .await;
    let produced_per_second = status.height as f64 / started.elapsed().as_secs_f64();
    cluster.start(3);
    let synced_from = Instant::now();
    let target = cluster.status(0).await.expect("node 0").height;
    let status = cluster
        .wait_status(3, "caught up", Duration::from_secs(600), |s| {
            s.height >= target
        })
        .await;
    let caught_up = synced_from.elapsed();
    let text = metrics(&cluster, 3).expect("metrics");
    let synced = metric(&text, "branchd_blocks_synced_total");
    println!(
        "produced {produced_per_second:.0} blocks/s; node 3 reached height {} in {caught_up:?}, {synced} blocks by sync",
        status.height
    );
    assert!(synced >= (SYNC_BLOCKS / 2) as f64, "{synced} blocks synced");
    // It takes part in consensus again: a record submitted to it commits.
    let response = submit(&cluster, 3, member_joined("m-3"), 60_000)
        .await
        .expect("submitted to the caught-up node");
    let height = response.committed.expect("committed").height;
    cluster
        .wait_status(0, "the record's block", Duration::from_secs(60), |s| {
            s.height >= height
        })
        .await;
    cluster.terminate_all();
    let blocks: Vec<Vec<Vec<u8>>> = (0..4).map(|i| cluster.blocks(i)).collect();
    let shortest = blocks.iter().map(Vec::len).min().expect("nodes");
    assert!(shortest as u64 >= height);
    for (i, chain) in blocks.iter().enumerate().skip(1) {
        assert_eq!(chain[..shortest], blocks[0][..shortest], "node {i} differs");
    }
    let (ok, report) = cluster.audit(3);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_killed_at_random_instants_under_load_lose_nothing_acknowledged() {
    let seed: u64 = std::env::var("BRANCHLEDGER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let kills: usize = std::env::var("BRANCHLEDGER_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CRASH_KILLS_DEFAULT);
    println!("crash test: seed {seed}, {kills} kills (replay with BRANCHLEDGER_CRASH_SEED={seed})");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let mut cluster = Cluster::new(4, fast_timeouts);
    cluster.start_all();
    cluster.wait_connected().await;
    support::join_members(&cluster, 0..4, 30_000).await;

    // Steady load: each node's branch records a study session for its member, one request
    // in flight per node, waiting for the commit. What commits is acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..4 {
        let mut client = cluster.submit_client(i);
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut minutes = 1u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                minutes = minutes % 700 + 1;
                let request = pb::SubmitRecordRequest {
                    body: Some(study(&format!("m-{i}"), minutes)),
                    nonce: 0,
                    created_at_ms: 0,
                    wait: Some(pb::WaitOptions {
                        wait_committed: true,
                        timeout_ms: 5_000,
                    }),
                };
                match client.submit_record(request).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        if let Some(committed) = response.committed {
                            acknowledged
                                .lock()
                                .expect("lock")
                                .push((response.record_id, committed.height));
                        }
                    }
                    // The node is down or restarting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }

    for kill in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
        let victim = rng.random_range(0..4);
        cluster.kill(victim);
        println!("kill {kill}: node {victim}");
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1_000))).await;
        cluster.start(victim);
        cluster
            .wait_status(victim, "restarted", Duration::from_secs(60), |_| true)
            .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= kills,
        "too little committed under load: {}",
        acknowledged.len()
    );
    let top = acknowledged.iter().map(|(_, h)| *h).max().unwrap_or(0);
    for i in 0..4 {
        cluster
            .wait_status(
                i,
                "every acknowledged block",
                Duration::from_secs(120),
                |s| s.height >= top,
            )
            .await;
        let text = metrics(&cluster, i).expect("metrics");
        assert_eq!(
            metric(&text, "branchd_evidence"),
            0.0,
            "node {i} saw conflicting votes"
        );
    }
    cluster.terminate_all();
    let chains: Vec<Vec<Vec<u8>>> = (0..4).map(|i| cluster.blocks(i)).collect();
    let shortest = chains.iter().map(Vec::len).min().expect("nodes");
    for (i, chain) in chains.iter().enumerate().skip(1) {
        assert_eq!(chain[..shortest], chains[0][..shortest], "node {i} differs");
    }
    for i in 0..4 {
        let store =
            branchledger_storage::RocksStore::open(&cluster.nodes[i].home.join("data/store"))
                .expect("store");
        let missing: BTreeSet<&String> = acknowledged
            .iter()
            .filter(|(id, _)| {
                let id = branchledger_crypto::Hash::from_hex(id).expect("hex id");
                store.record(&id).expect("read").is_none()
            })
            .map(|(id, _)| id)
            .collect();
        assert!(
            missing.is_empty(),
            "node {i} lost acknowledged records: {missing:?}"
        );
        drop(store);
        let (ok, report) = cluster.audit(i);
        assert!(ok, "audit of node {i}:\n{report}");
    }
    println!(
        "crash test: {} records acknowledged, {} blocks, all present on every node",
        acknowledged.len(),
        shortest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_with_its_clock_an_hour_ahead_cannot_get_a_block_from_the_future_committed() {
    let mut cluster = Cluster::new(4, fast_timeouts);
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.start_with(3, &["--clock-offset-ms", "3600000"]);
    cluster.wait_connected().await;
    // Enough heights that node 3 is the first proposer of several of them.
    support::join_members(&cluster, 0..4, 60_000).await;
    let mut top = 0;
    for n in 0..12u32 {
        let i = (n % 4) as usize;
        let response = submit(&cluster, i, study(&format!("m-{i}"), 10 + n), 60_000)
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        top = top.max(response.committed.expect("committed").height);
    }
    assert!(top >= 16, "only {top} heights");
    let drift_ms = 2_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    cluster.terminate_all();
    let mut by_proposer = [0usize; 4];
    for bytes in cluster.blocks(0) {
        let block = branchledger_types::Block::from_bytes(&bytes, usize::MAX).expect("block");
        assert!(
            block.header.time_ms <= now_ms + drift_ms,
            "block {} carries time {} ms, {} ms ahead of the true clock",
            block.header.height,
            block.header.time_ms,
            block.header.time_ms - now_ms
        );
        by_proposer[usize::from(block.header.proposer_index)] += 1;
    }
    assert_eq!(
        by_proposer[3], 0,
        "a block of the fast clock was committed: {by_proposer:?}"
    );
    assert!(by_proposer[..3].iter().all(|n| *n > 0), "{by_proposer:?}");
    let said = |i: usize| {
        cluster
            .log(i)
            .lines()
            .any(|l| l.contains("proposed block refused") && l.contains("ms after now"))
    };
    assert!(
        said(0) || said(1) || said(2),
        "no validator said why it refused node 3's proposals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_validator_causes_no_fork_and_its_double_votes_are_reported() {
    let mut cluster = Cluster::new(4, fast_timeouts);
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.start_with(3, &["--test-equivocate"]);
    cluster.wait_connected().await;
    support::join_members(&cluster, 0..3, 60_000).await;
    let mut top = 0;
    for n in 0..12u32 {
        let i = (n % 3) as usize;
        let response = submit(&cluster, i, study(&format!("m-{i}"), 10 + n), 60_000)
            .await
            .unwrap_or_else(|e| panic!("node {i} beside the equivocator: {e}"));
        top = top.max(response.committed.expect("committed").height);
    }
    // The honest nodes hold evidence against validator 3, and report it.
    for i in 0..3 {
        let evidence = branchledger_api::pb::audit_client::AuditClient::new(cluster.channel(i))
            .evidence(pb::EvidenceRequest {})
            .await
            .expect("evidence")
            .into_inner();
        assert!(
            !evidence.duplicate_votes.is_empty(),
            "node {i} reported no evidence"
        );
        for pair in &evidence.duplicate_votes {
            let (first, second) = (
                pair.first.clone().expect("vote"),
                pair.second.clone().expect("vote"),
            );
            assert_eq!(
                first.validator_index, 3,
                "an honest validator accused: {pair:?}"
            );
            assert_eq!(
                (first.height, first.round, &first.kind),
                (second.height, second.round, &second.kind)
            );
            assert_ne!(first.block_id, second.block_id);
        }
    }
    cluster
        .wait_height(0..4, top, Duration::from_secs(60))
        .await;
    cluster.terminate_all();
    let chains: Vec<Vec<Vec<u8>>> = (0..4).map(|i| cluster.blocks(i)).collect();
    let shortest = chains.iter().map(Vec::len).min().expect("nodes");
    for (i, chain) in chains.iter().enumerate().skip(1) {
        assert_eq!(chain[..shortest], chains[0][..shortest], "node {i} forked");
    }
    for i in 0..3 {
        let (ok, report) = cluster.audit(i);
        assert!(ok, "audit of node {i}:\n{report}");
    }
}
