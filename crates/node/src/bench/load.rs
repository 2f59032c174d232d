//! `branchd bench load`: the load generator of the cluster benchmark, a process of its own.
//!
//! It signs every record of the run before the measured window (so signing is not measured),
//! then offers them open-loop at a fixed rate: a `SubmitBatch` every `batch / rate` seconds,
//! round robin over the nodes, never waiting for an answer before the next. It watches one
//! node's block stream for the commits. The report: records offered, admitted, refused by a
//! full mempool, committed, **lost** (admitted but never committed), committed records per
//! second during the window, and submit→commit latency percentiles.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use branchledger_api::pb;
use branchledger_crypto::Hash;
use branchledger_types::record::{StudyForm, StudySession};
use branchledger_types::{Date, Genesis, Record, RecordBody, SignedRecord};
use rayon::prelude::*;

use super::chain::member;
use super::Latency;
use crate::cli::{Api, ApiArgs};

/// Batches in flight at once; a batch due while this many wait is not sent (and counted), so
/// an overloaded cluster shows as such instead of as client memory.
pub const IN_FLIGHT_BATCHES_MAX: usize = 1_024;

/// Arguments of `branchd bench load`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The network directory `branchd testnet` wrote (genesis and branch keys are read there).
    #[arg(long)]
    pub net: PathBuf,
    /// The nodes' APIs, comma separated; batches go to them in turn.
    #[arg(long, value_delimiter = ',', required = true)]
    pub apis: Vec<String>,
    /// Records offered per second.
    #[arg(long)]
    pub rate: u64,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Records per `SubmitBatch`.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Members per branch that joined before the run.
    #[arg(long)]
    pub members_per_branch: u64,
    /// Added to every nonce, so runs never repeat a record.
    #[arg(long, default_value_t = 0)]
    pub nonce_base: u64,
    /// After the window, how long to wait for the last commits, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub drain_seconds: f64,
}

/// What a run measured.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    /// Records per second offered.
    pub offered_rate: u64,
    /// Seconds of the window.
    pub window_seconds: f64,
    /// Records offered.
    pub offered: u64,
    /// Records not sent because too many batches were in flight.
    pub not_sent: u64,
    /// Records admitted by a node.
    pub admitted: u64,
    /// Records refused because the mempool was full (back-pressure: the client knows).
    pub refused_full: u64,
    /// Records refused otherwise, or whose batch failed.
    pub refused_other: u64,
    /// Admitted records seen committed.
    pub committed: u64,
    /// Admitted records never seen committed: must be 0.
    pub lost: u64,
    /// Records committed during the window, per second.
    pub committed_per_second: f64,
    /// Submit→commit latency of the committed records.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Average encoded size of a record, bytes.
    pub record_bytes: f64,
    /// CPU time this load generator used during the window, seconds (its submissions and the
    /// watch of the block stream; the signing before the window is not counted).
    #[serde(default)]
    pub generator_cpu_seconds: f64,
    /// Cores the whole host kept busy during the window, on average (`/proc/stat`): with the
    /// validators' and the generator's CPU it tells a CPU-bound cluster from one that waits.
    #[serde(default)]
    pub host_busy_cores: f64,
}

/// Signs `count` study sessions, spread over the branches and their members.
pub fn records(
    genesis: &Genesis,
    keys: &[(branchledger_types::BranchId, branchledger_crypto::Keypair)],
    members_per_branch: u64,
    nonce_base: u64,
    count: u64,
) -> Vec<SignedRecord> {
    let today = Date::from_unix_ms(crate::devnet::now_ms());
    let created_at_ms = crate::devnet::now_ms();
    (0..count)
        .into_par_iter()
        .map(|n| {
            let b = (n % keys.len() as u64) as usize;
            let (branch_id, key) = &keys[b];
            Record {
                chain_id: genesis.chain_id.clone(),
                branch_id: branch_id.clone(),
                created_at_ms,
                nonce: nonce_base + n,
                body: RecordBody::StudySession(StudySession {
                    member_id: member(b, (n / keys.len() as u64) % members_per_branch),
                    material: format!(
                        "Branch work handbook, chapter {}, section {}",
                        n % 12 + 1,
                        n % 9 + 1
                    ),
                    minutes: (n % 90) as u16 + 15,
                    form: StudyForm::ALL[(n % 4) as usize],
                    occurred_on: today,
                }),
            }
            .sign(key)
        })
        .collect()
}

/// Runs the load and prints the report as JSON.
pub async fn run(args: &LoadArgs) -> Result<()> {
    let genesis = crate::read_genesis(&args.net.join("node0/config/genesis.json"))?;
    let keys: Vec<_> = crate::devnet::branch_keys(&args.net, &genesis)?
        .into_iter()
        .collect();
    let count = (args.rate as f64 * args.seconds).round() as u64;
    let signed = records(
        &genesis,
        &keys,
        args.members_per_branch,
        args.nonce_base,
        count,
    );
    let record_bytes = signed.iter().map(|r| r.to_bytes().len()).sum::<usize>() as f64
        / signed.len().max(1) as f64;
    let mut apis = Vec::new();
    for address in &args.apis {
        apis.push(Arc::new(
            Api::connect(&ApiArgs {
                api: address.clone(),
                token: String::new(),
            })
            .await
            .with_context(|| format!("connecting to {address}"))?,
        ));
    }

    // Commit times, from the first node's block stream.
    let committed_at: Arc<Mutex<HashMap<Hash, Instant>>> = Arc::default();
    let mut stream = apis[0]
        .ledger()
        .stream_blocks(pb::StreamBlocksRequest { from_height: 0 })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let watcher = {
        let committed_at = committed_at.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                let now = Instant::now();
                let mut map = committed_at.lock().unwrap_or_else(|e| e.into_inner());
                for id in event.record_ids {
                    if let Ok(id) = Hash::from_hex(&id) {
                        map.insert(id, now);
                    }
                }
            }
        })
    };

    // Open loop: one batch every `batch / rate` seconds.
    let submitted_at: Arc<Mutex<HashMap<Hash, Instant>>> = Arc::default();
    let outcome: Arc<Mutex<[u64; 3]>> = Arc::default(); // admitted, full, other
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_BATCHES_MAX));
    let period = Duration::from_secs_f64(args.batch as f64 / args.rate.max(1) as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let cpu_started = super::cluster::cpu_ns(std::process::id());
    let host_started = super::cluster::host_cpu_ticks();
    let mut not_sent = 0u64;
    let mut tasks = Vec::new();
    for (i, chunk) in signed.chunks(args.batch.max(1)).enumerate() {
        ticks.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            not_sent += chunk.len() as u64;
            continue;
        };
        let api = apis[i % apis.len()].clone();
        let bytes: Vec<Vec<u8>> = chunk.iter().map(SignedRecord::to_bytes).collect();
        let ids: Vec<Hash> = chunk.iter().map(SignedRecord::id).collect();
        let submitted_at = submitted_at.clone();
        let outcome = outcome.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let now = Instant::now();
            {
                let mut map = submitted_at.lock().unwrap_or_else(|e| e.into_inner());
                for id in &ids {
                    map.insert(*id, now);
                }
            }
            let answer = api
                .submit()
                .submit_batch(pb::SubmitBatchRequest {
                    signed_records: bytes,
                })
                .await;
            let mut outcome = outcome.lock().unwrap_or_else(|e| e.into_inner());
            let mut map = submitted_at.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Ok(answer) => {
                    for (id, result) in ids.iter().zip(answer.into_inner().results) {
                        match result.outcome.as_str() {
                            "ok" => outcome[0] += 1,
                            "full" => {
                                outcome[1] += 1;
                                map.remove(id);
                            }
                            _ => {
                                outcome[2] += 1;
                                map.remove(id);
                            }
                        }
                    }
                }
                Err(_) => {
                    outcome[2] += ids.len() as u64;
                    for id in &ids {
                        map.remove(id);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let window = started.elapsed();
    let window_end = started + window;
    let generator_cpu_seconds =
        super::cluster::cpu_ns(std::process::id()).saturating_sub(cpu_started) as f64 / 1e9;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let host_busy_cores =
        super::cluster::busy_cores(host_started, super::cluster::host_cpu_ticks(), cores);

    // Drain: wait until every admitted record is seen committed, or the drain time is up.
    // Each poll looks only at the ids still pending, and holds the commit map's lock only for
    // that, so the block watcher keeps timing commits while the drain goes on.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_seconds);
    let mut pending: Vec<Hash> = submitted_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect();
    loop {
        {
            let committed = committed_at.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|id| !committed.contains_key(id));
        }
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    let submitted = submitted_at.lock().unwrap_or_else(|e| e.into_inner());
    let committed = committed_at.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies = Vec::new();
    let mut in_window = 0u64;
    for (id, at) in submitted.iter() {
        if let Some(done) = committed.get(id) {
            latencies.push(done.saturating_duration_since(*at).as_secs_f64());
            if *done <= window_end {
                in_window += 1;
            }
        }
    }
    let outcome = *outcome.lock().unwrap_or_else(|e| e.into_inner());
    let latency = Latency::of(&mut latencies);
    let report = LoadReport {
        offered_rate: args.rate,
        window_seconds: window.as_secs_f64(),
        offered: count,
        not_sent,
        admitted: outcome[0],
        refused_full: outcome[1],
        refused_other: outcome[2],
        committed: latency.count as u64,
        lost: submitted.len() as u64 - latency.count as u64,
        committed_per_second: in_window as f64 / window.as_secs_f64().max(1e-9),
        p50_ms: latency.p50_ms,
        p90_ms: latency.p90_ms,
        p99_ms: latency.p99_ms,
        max_ms: latency.max_ms,
        record_bytes,
        generator_cpu_seconds,
        host_busy_cores,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
