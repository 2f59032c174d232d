//! `branchd bench audit` and `branchd bench sync`: how fast a chain is verified offline, and
//! how fast an empty node catches up with it by block sync.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use branchledger_api::pb;

use super::cluster::peak_rss;
use crate::cli::Api;
use crate::localnet;

/// Arguments of `branchd bench audit`.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// The genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// The node's RocksDB store.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Where the replayed state is kept (default: the system's temporary directory).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

/// What the audit measured.
#[derive(Debug, serde::Serialize)]
pub struct AuditBench {
    /// Cores of this machine.
    pub cores: usize,
    /// ed25519 signatures verified per second by one thread, batched: the mean of
    /// `batch_verify_before` and `batch_verify_after`.
    pub batch_verify_per_core: f64,
    /// The batch rate measured just before the audit.
    pub batch_verify_before: f64,
    /// The batch rate measured just after it. This machine's speed drifts between runs and
    /// within one; two measurements around the audit show by how much.
    pub batch_verify_after: f64,
    /// Records verified.
    pub records: u64,
    /// Blocks verified.
    pub blocks: u64,
    /// Seconds the whole audit took.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// `records_per_second / batch_verify_per_core`: how many cores' worth of signature
    /// checking the audit keeps up with.
    pub ratio_to_one_core: f64,
    /// `records_per_second / (cores × batch_verify_per_core)`: the share of this machine's
    /// signature-checking limit the audit reaches (1 would be signatures alone on every core).
    pub ratio_to_cores: f64,
    /// Peak resident memory of the audit, bytes.
    pub peak_rss_bytes: u64,
}

/// Runs the audit between two measurements of the batch rate.
pub fn run(args: &AuditArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = super::batch_verify_rate(50_000);
    let genesis = crate::read_genesis(&args.genesis)?;
    let store = crate::open_store(&args.data_dir)?;
    let started = Instant::now();
    let report = branchledger_audit::verify_store_in(
        &genesis,
        &store,
        args.scratch_dir.as_deref(),
        |_, _| {},
    )
    .map_err(|failure| anyhow::anyhow!("audit failed at {failure}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let after = super::batch_verify_rate(50_000);
    let batch = (before + after) / 2.0;
    let rate = report.records as f64 / seconds.max(1e-9);
    let bench = AuditBench {
        cores,
        batch_verify_per_core: batch,
        batch_verify_before: before,
        batch_verify_after: after,
        records: report.records,
        blocks: report.blocks,
        seconds,
        records_per_second: rate,
        ratio_to_one_core: rate / batch,
        ratio_to_cores: rate / (cores as f64 * batch),
        peak_rss_bytes: peak_rss(std::process::id()),
    };
    println!("{}", serde_json::to_string(&bench)?);
    Ok(())
}

/// Arguments of `branchd bench sync`.
#[derive(Clone, Debug, clap::Args)]
pub struct SyncArgs {
    /// The network directory `gen-chain --validators 2` wrote (`…/net`).
    #[arg(long)]
    pub net: PathBuf,
    /// Where the nodes' logs go.
    #[arg(long)]
    pub logs: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    pub timeout_seconds: u64,
}

/// What the catch-up measured.
#[derive(Debug, serde::Serialize)]
pub struct SyncBench {
    /// Blocks fetched, verified and applied.
    pub blocks: u64,
    /// Records in them.
    pub records: u64,
    /// Seconds from the empty node's start to its reaching the tip.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// Peak resident memory of the node that caught up, and of the node it synced from.
    pub peak_rss_bytes: [u64; 2],
}

/// Starts both nodes and waits until the empty one reaches the full one's tip.
pub fn sync(args: &SyncArgs) -> Result<()> {
    std::fs::create_dir_all(&args.logs)?;
    let started = Instant::now();
    let mut network = localnet::Network::start(&args.net, &args.logs, 2)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (tip, records, seconds) = runtime.block_on(async {
        localnet::wait_connected(&network.apis).await?;
        let full = Api::connect(&network.apis[0]).await?;
        let tip = full.status().await?.height;
        let empty = Api::connect(&network.apis[1]).await?;
        let deadline = started + Duration::from_secs(args.timeout_seconds);
        loop {
            let height = empty
                .node()
                .status(pb::StatusRequest {})
                .await
                .map(|s| s.into_inner().height)
                .unwrap_or(0);
            if height >= tip {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node 1 reached height {height} of {tip} in {} s",
                    args.timeout_seconds
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut records = 0u64;
        let mut ledger = full.ledger();
        for height in 1..=tip {
            records += u64::from(
                ledger
                    .get_block(pb::GetBlockRequest {
                        at: Some(pb::get_block_request::At::Height(height)),
                        include_records: false,
                        records_from: 0,
                    })
                    .await
                    .map_err(crate::cli::status_error)?
                    .into_inner()
                    .header
                    .map_or(0, |h| h.record_count),
            );
        }
        Ok::<_, anyhow::Error>((tip, records, seconds))
    })?;
    let pids = network.pids();
    let rss = [peak_rss(pids[1]), peak_rss(pids[0])];
    network.stop()?;
    let bench = SyncBench {
        blocks: tip,
        records,
        seconds,
        records_per_second: records as f64 / seconds.max(1e-9),
        peak_rss_bytes: rss,
    };
    println!("{}", serde_json::to_string(&bench)?);
    Ok(())
}
