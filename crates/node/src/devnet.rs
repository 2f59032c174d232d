//! `branchd devnet`: a local 4-validator network on loopback with realistic sample data.
//!
//! It generates the network (`testnet` with free ports), starts one `branchd start` process
//! per validator, waits until they are connected, signs three months of sample activity with
//! each branch's key and submits it to the first node, waits until it is committed, prints
//! the leaderboards and the meeting-compliance table as a peer branch sees them (through the
//! second node's API), and keeps the network running until Ctrl-C, when it stops every node
//! cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use branchledger_api::pb;
use branchledger_crypto::Keypair;
use branchledger_types::{BranchId, ConsensusParams, Date, Genesis, Record, SignedRecord};

use crate::cli::query::{self, Query, SpanArgs};
use crate::cli::Api;
use crate::home::{read_key, Home, KeyRole};
use crate::{localnet, sample, testnet};

/// Validators of the demo network.
pub const DEVNET_VALIDATORS: usize = 4;
/// Records per `SubmitBatch` call while loading the sample data.
const LOAD_BATCH: usize = 1_000;
/// Time allowed for the sample data to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Arguments of `branchd devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// Directory for the network's homes and logs (default: a new temporary directory,
    /// removed at exit).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Number of branches (each of the first four runs a validator).
    #[arg(long, default_value_t = 4)]
    pub branches: usize,
    /// Members per branch.
    #[arg(long, default_value_t = 30)]
    pub members_per_branch: usize,
    /// Months of activity.
    #[arg(long, default_value_t = 3)]
    pub months: u8,
    /// Most records per block.
    #[arg(long, default_value_t = 1000)]
    pub block_records: u32,
    /// Seed of the sample data.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Stop the network after printing the tables instead of running until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Submits every record to node 0 in batches, waiting out a full mempool; returns the ids of
/// the admitted records and the refusals.
async fn load(api: &Api, records: &[SignedRecord]) -> Result<(Vec<String>, Vec<String>)> {
    let mut submit = api.submit();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    let mut pending: Vec<&SignedRecord> = records.iter().collect();
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    while !pending.is_empty() {
        let take = pending.len().min(LOAD_BATCH);
        let batch: Vec<&SignedRecord> = pending.drain(..take).collect();
        let answer = submit
            .submit_batch(pb::SubmitBatchRequest {
                signed_records: batch.iter().map(|r| r.to_bytes()).collect(),
            })
            .await
            .map_err(crate::cli::status_error)?
            .into_inner();
        let mut retry = Vec::new();
        for (record, result) in batch.into_iter().zip(answer.results) {
            match result.outcome.as_str() {
                "ok" | "duplicate" | "committed" => admitted.push(result.record_id),
                // Back-pressure: send it again once the pool has room; keep the order.
                "full" => retry.push(record),
                _ => refused.push(format!("{}: {}", result.record_id, result.message)),
            }
        }
        if !retry.is_empty() {
            if Instant::now() > deadline {
                bail!("the mempool stayed full for {COMMIT_TIMEOUT:?}");
            }
            retry.extend(pending);
            pending = retry;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((admitted, refused))
}

/// Waits until every admitted record is committed (or dropped, which is reported).
async fn wait_committed(api: &Api, ids: &[String]) -> Result<Vec<String>> {
    let mut ledger = api.ledger();
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let mut dropped = Vec::new();
    let mut waiting: Vec<&String> = ids.iter().collect();
    while let Some(id) = waiting.last() {
        let answer = ledger
            .get_record(pb::GetRecordRequest {
                record_id: (*id).clone(),
            })
            .await
            .map(|r| r.into_inner());
        match answer {
            Ok(a) if a.status == "committed" => {
                waiting.pop();
            }
            Ok(a) if a.status == "dropped" => {
                dropped.push(format!("{id}: {}", a.dropped_reason));
                waiting.pop();
            }
            _ => {
                if Instant::now() > deadline {
                    bail!(
                        "{} records not committed within {COMMIT_TIMEOUT:?}",
                        waiting.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(dropped)
}

/// The branch keys of a network `testnet` wrote, in genesis order: the validators' in their
/// homes, the other branches' in `net/branches/`.
pub fn branch_keys(net: &Path, genesis: &Genesis) -> Result<Vec<(BranchId, Keypair)>> {
    let mut keys = Vec::new();
    for (i, branch) in genesis.branches.iter().enumerate() {
        let path = if i < genesis.validators.len() {
            Home::new(net.join(format!("node{i}"))).key_path(KeyRole::Branch)
        } else {
            net.join("branches")
                .join(format!("{}.json", branch.branch_id))
        };
        keys.push((branch.branch_id.clone(), read_key(&path, KeyRole::Branch)?));
    }
    Ok(keys)
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// Runs the demo.
pub fn run(args: DevnetArgs) -> Result<()> {
    if args.branches < DEVNET_VALIDATORS || args.branches > 8 {
        bail!("--branches must be in {DEVNET_VALIDATORS}..=8");
    }
    if args.months == 0 || args.months > 24 {
        bail!("--months must be in 1..=24");
    }
    let (_temp, root) = localnet::work_dir(args.home.as_deref(), "branchledger-devnet-")?;
    let net = root.join("net");
    let genesis = testnet::generate_with(
        &net,
        &testnet::TestnetOptions {
            chain_id: "branchledger-devnet".into(),
            validators: DEVNET_VALIDATORS,
            branches: args.branches,
            genesis_time_ms: now_ms().saturating_sub(1_000),
            ports: testnet::Ports::Free,
            consensus: ConsensusParams {
                max_block_records: args.block_records,
                ..ConsensusParams::default()
            },
        },
    )?;
    println!(
        "devnet: chain {} with {DEVNET_VALIDATORS} validators and {} branches in {}",
        genesis.chain_id,
        genesis.branches.len(),
        root.display()
    );
    let mut network = localnet::Network::start(&net, &root, DEVNET_VALIDATORS)?;
    for (i, api) in network.apis.iter().enumerate() {
        println!(
            "devnet: node {i} gRPC {} (log {}/node{i}.log)",
            api.api,
            root.display()
        );
    }
    let apis = network.apis.clone();
    let keys = branch_keys(&net, &genesis)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        localnet::wait_connected(&apis).await?;
        let today = Date::from_unix_ms(now_ms());
        let spec = sample::SampleSpec {
            members_per_branch: args.members_per_branch,
            months: args.months,
            today,
            seed: args.seed,
        };
        let branch_ids: Vec<BranchId> = genesis.branches.iter().map(|b| b.branch_id.clone()).collect();
        let sign = |mut record: Record| -> Result<SignedRecord> {
            record.created_at_ms = now_ms();
            let (_, key) = keys
                .iter()
                .find(|(branch, _)| *branch == record.branch_id)
                .ok_or_else(|| anyhow!("no key for branch {}", record.branch_id))?;
            Ok(record.sign(key))
        };
        let mut signed: Vec<SignedRecord> = sample::generate(&genesis.chain_id, &branch_ids, &spec)
            .into_iter()
            .map(sign)
            .collect::<Result<_>>()?;
        // A correction: the first study session was recorded at twice its length.
        if let Some(target) = signed
            .iter()
            .find(|r| r.record.body.kind() == branchledger_types::RecordKind::StudySession)
            .cloned()
        {
            if let Some(correction) = sample::correction(
                &genesis.chain_id,
                &target.record.branch_id,
                &target.record,
                u64::MAX,
            ) {
                signed.push(sign(correction)?);
            }
        }
        let started = Instant::now();
        let node0 = Api::connect(&apis[0]).await?;
        let (admitted, mut refused) = load(&node0, &signed).await?;
        refused.extend(wait_committed(&node0, &admitted).await?);
        let elapsed = started.elapsed();
        let status = node0.status().await?;
        println!(
            "devnet: committed {} records in {} blocks ({:.0} records/s); {} refused by the state rules",
            admitted.len() - refused.len().min(admitted.len()),
            status.height,
            admitted.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            refused.len()
        );
        for reason in refused.iter().take(5) {
            println!("  refused {reason}");
        }
        // The tables, as a peer branch sees them from its own node.
        let periods = sample::periods(&spec);
        let span = SpanArgs {
            from: periods.first().map(ToString::to_string),
            to: periods.last().map(ToString::to_string),
        };
        let peer = &apis[1];
        println!("\nStudy leaderboard, {} to {} (as {} sees it)", span.from.clone().unwrap_or_default(), span.to.clone().unwrap_or_default(), genesis.branches[1].branch_id);
        query::run(peer, &Query::Leaderboard { span: span.clone() }, false).await?;
        println!("\nDues for {}", span.to.clone().unwrap_or_default());
        query::run(
            peer,
            &Query::Dues {
                branch: None,
                per_member: false,
                span: SpanArgs {
                    from: span.to.clone(),
                    to: None,
                },
            },
            false,
        )
        .await?;
        println!("\nMeeting compliance");
        query::run(peer, &Query::Compliance { branch: None, span: span.clone() }, false).await?;
        println!("\nIssue pool");
        query::run(peer, &Query::IssueLeaderboard, false).await?;
        if args.exit {
            return Ok(());
        }
        println!(
            "\ndevnet: running; try `branchd query leaderboard --api {}` or `branchd status --api {}`; Ctrl-C stops every node",
            peer.api, apis[0].api
        );
        interrupted().await;
        Ok::<_, anyhow::Error>(())
    })?;
    network.stop()?;
    println!("devnet: every node stopped cleanly");
    Ok(())
}
