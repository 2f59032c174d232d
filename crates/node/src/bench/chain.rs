//! `branchd bench gen-chain`: a large chain, written directly.
//!
//! A one-validator network home is generated (as `branchd testnet` does, on free ports), then
//! blocks are built from generated records exactly as a proposer builds them (every record
//! through the state rules), certified by the validator's key, and committed to the store, so
//! the result is a chain `branchd start` serves and `branchd audit verify` accepts. Records are
//! signed in parallel; members join first, then study sessions and dues payments spread over
//! the members and the months of last year.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use branchledger_crypto::Signer;
use branchledger_storage::RocksStore;
use branchledger_types::record::{
    Correction, DuesPaid, MemberJoined, MemberStatus, StudyForm, StudySession,
};
use branchledger_types::{
    BranchId, CommitCertificate, CommitSignature, ConsensusParams, Date, MemberId, Period, Record,
    RecordBody, SignedRecord, Vote, VoteKind,
};
use rayon::prelude::*;

use crate::devnet::now_ms;
use crate::home::{read_key, Home, KeyRole};
use crate::ledger::Ledger;
use crate::testnet;

/// Arguments of `branchd bench gen-chain`.
#[derive(Clone, Debug, clap::Args)]
pub struct GenChainArgs {
    /// Where to write the network (must be new); the node home is `OUT/net/node0`.
    #[arg(long)]
    pub out: PathBuf,
    /// Records to write.
    #[arg(long)]
    pub records: u64,
    /// Branches.
    #[arg(long, default_value_t = 4)]
    pub branches: usize,
    /// Members per branch.
    #[arg(long, default_value_t = 50)]
    pub members_per_branch: u64,
    /// Records per block.
    #[arg(long, default_value_t = 5_000)]
    pub block_records: u32,
    /// Validators: every one signs each block's certificate, but only the first node's store
    /// is written, so the others start empty and catch up by block sync.
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Corrections per thousand records of each branch (at most 500): each replaces or
    /// retracts the branch's record `CORRECTION_LAG` records earlier.
    #[arg(long, default_value_t = 0)]
    pub corrections_per_mille: u64,
}

/// How many of its own records back a generated correction's target is, per branch.
pub const CORRECTION_LAG: u64 = 12_500;

/// The summary printed at the end.
#[derive(Debug, serde::Serialize)]
pub struct GenChainReport {
    /// The node home.
    pub home: PathBuf,
    /// Records written.
    pub records: u64,
    /// Blocks written.
    pub blocks: u64,
    /// Seconds taken to write the chain.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// Seconds then spent waiting for RocksDB's background flushes and compactions to end
    /// (at most [`SETTLE_DEADLINE`]).
    pub settle_seconds: f64,
    /// A member with a long history, for the query benchmark.
    pub busy_member: String,
    /// The id of one committed record, for the query benchmark.
    pub sample_record: String,
    /// Peak resident memory of this process, bytes.
    pub peak_rss_bytes: u64,
}

/// Longest wait for a generated chain's store to settle ([`RocksStore::settle`]).
pub const SETTLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// The member `m` of branch `b`.
pub fn member(b: usize, m: u64) -> MemberId {
    MemberId(format!("m-{b}-{m}"))
}

/// The body of generated record `n` (after the members joined), for branch `b`, in `year`.
fn activity(n: u64, b: usize, members: u64, year: u16) -> RecordBody {
    let m = (n / 7) % members;
    // Spread over the months and days 1..28 of `year`.
    let month = (n % 12) as u8 + 1;
    let day = (n % 28) as u8 + 1;
    if n % 5 == 4 {
        RecordBody::DuesPaid(DuesPaid {
            member_id: member(b, m),
            period: Period::new(year, month),
            amount_minor: 2_000,
            reference_commitment: None,
        })
    } else {
        RecordBody::StudySession(StudySession {
            member_id: member(b, m),
            material: format!("Branch work handbook, chapter {}", n % 12 + 1),
            minutes: (n % 120) as u16 + 15,
            form: StudyForm::ALL[(n % 4) as usize],
            occurred_on: Date::new(year, month, day),
        })
    }
}

/// Whether record `n` (of branch `n % branches`) is a correction, and of which record. A
/// branch's `s`-th record is one if `s % 1000 < per_mille`; its target, `CORRECTION_LAG`
/// records back in the branch, then has `s % 1000` in `500..500 + per_mille`, so it is an
/// activity record, and no record is the target of two.
fn correction_target(n: u64, branches: u64, joins: u64, per_mille: u64) -> Option<u64> {
    let target = n.checked_sub(branches * CORRECTION_LAG)?;
    (target >= joins && (n / branches) % 1000 < per_mille).then_some(target)
}

/// Record `n` of the generated chain, by `branch` (the `n % branches`-th).
fn generated(
    n: u64,
    args: &GenChainArgs,
    genesis: &branchledger_types::Genesis,
    branch: &BranchId,
    year: u16,
) -> Record {
    let branches = args.branches as u64;
    let joins = branches * args.members_per_branch;
    let b = (n % branches) as usize;
    let body = if n < joins {
        RecordBody::MemberJoined(MemberJoined {
            member_id: member(b, n / branches),
            joined_on: Date::new(year, 1, 1),
            status: MemberStatus::Full,
            mobile: false,
            member_key: None,
        })
    } else if let Some(target) = correction_target(n, branches, joins, args.corrections_per_mille) {
        let original = generated(target, args, genesis, branch, year);
        // Half are replacements (another duration or amount), half retractions.
        let replacement = n.is_multiple_of(2).then(|| match original.body.clone() {
            RecordBody::StudySession(mut body) => {
                body.minutes = body.minutes % 120 + 16;
                Box::new(RecordBody::StudySession(body))
            }
            RecordBody::DuesPaid(mut body) => {
                body.amount_minor += 500;
                Box::new(RecordBody::DuesPaid(body))
            }
            other => Box::new(other),
        });
        RecordBody::Correction(Correction {
            target: branchledger_types::record::record_id(&original, &[]),
            reason: "generated correction".into(),
            replacement,
        })
    } else {
        activity(n, b, args.members_per_branch, year)
    };
    Record {
        chain_id: genesis.chain_id.clone(),
        branch_id: branch.clone(),
        created_at_ms: genesis.genesis_time_ms,
        nonce: n,
        body,
    }
}

/// Writes the chain.
pub fn run(args: &GenChainArgs) -> Result<()> {
    if args.records == 0
        || args.branches == 0
        || args.members_per_branch == 0
        || args.validators == 0
    {
        bail!("--records, --branches, --members-per-branch and --validators must be at least 1");
    }
    if args.corrections_per_mille > 500 {
        bail!(
            "--corrections-per-mille is {}, at most 500",
            args.corrections_per_mille
        );
    }
    let net = args.out.join("net");
    let genesis = testnet::generate_with(
        &net,
        &testnet::TestnetOptions {
            chain_id: "branchledger-bench".into(),
            validators: args.validators,
            branches: args.branches.max(args.validators),
            genesis_time_ms: now_ms().saturating_sub(1_000),
            ports: testnet::Ports::Free,
            consensus: ConsensusParams {
                max_block_records: args.block_records,
                ..ConsensusParams::default()
            },
        },
    )?;
    let home = Home::new(net.join("node0"));
    let consensus_keys = (0..args.validators)
        .map(|i| {
            let home = Home::new(net.join(format!("node{i}")));
            read_key(&home.key_path(KeyRole::Consensus), KeyRole::Consensus)
        })
        .collect::<Result<Vec<_>>>()?;
    let branch_keys = crate::devnet::branch_keys(&net, &genesis)?;
    // As a node's store: the record-id filter answers the duplicate check of every record.
    let store = Arc::new(RocksStore::open_with(
        &home.store_dir(),
        &branchledger_storage::RocksOptions {
            record_id_filter: true,
            ..branchledger_storage::RocksOptions::default()
        },
    )?);
    let ledger = Ledger::new(Arc::new(genesis.clone()), store.clone());
    // All activity in the year before this one, so no date is in the future.
    let year = Date::from_unix_ms(now_ms()).year - 1;
    let branches = args.branches as u64;
    let started = Instant::now();
    let mut last_report = started;
    let mut written = 0u64;
    let mut sample_record = String::new();
    while written < args.records {
        let count = (args.records - written).min(u64::from(args.block_records));
        let records: Vec<SignedRecord> = (written..written + count)
            .into_par_iter()
            .map(|n| {
                let (branch, key) = &branch_keys[(n % branches) as usize];
                generated(n, args, &genesis, branch, year).sign(key)
            })
            .collect();
        let height = ledger.next_height()?;
        let proposer = ledger.validators().proposer(height, 0);
        let built = ledger.build_block(&records, now_ms(), proposer)?;
        if let Some((id, reason)) = built.refused.first() {
            bail!("generated record {id} refused by the state rules: {reason}");
        }
        if built.block.records.len() as u64 != count {
            bail!(
                "block {height} holds {} of {count} records: raise the genesis block limits",
                built.block.records.len()
            );
        }
        if sample_record.is_empty() {
            sample_record = built.block.records[0].id().to_hex();
        }
        let block_id = built.block.id();
        let signatures = consensus_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let vote = Vote {
                    height,
                    round: 0,
                    kind: VoteKind::Precommit,
                    block_id: Some(block_id),
                    validator_index: index as u16,
                };
                CommitSignature {
                    validator_index: index as u16,
                    signature: key.sign(&vote.signing_message(&genesis.chain_id)),
                }
            })
            .collect();
        let certificate = CommitCertificate {
            height,
            round: 0,
            block_id,
            signatures,
        };
        ledger.commit(built.block, certificate, &built.delta, &built.ids)?;
        written += count;
        if last_report.elapsed().as_secs() >= 5 {
            last_report = Instant::now();
            eprintln!(
                "gen-chain: {written} records, height {height}, {:.0} records/s",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // A node's store compacts in the background as it runs; the chain is left as such a store
    // would be, not with the backlog of a bulk write for the next measurement to pay.
    let settling = Instant::now();
    if !store.settle(settling + SETTLE_DEADLINE)? {
        eprintln!(
            "gen-chain: RocksDB still compacting after {} s; measurements on this chain will pay for it",
            SETTLE_DEADLINE.as_secs()
        );
    }
    let settle_seconds = settling.elapsed().as_secs_f64();
    let report = GenChainReport {
        home: home.root.clone(),
        records: written,
        blocks: ledger.next_height()? - 1,
        seconds,
        records_per_second: written as f64 / seconds.max(1e-9),
        settle_seconds,
        busy_member: member(0, 0).to_string(),
        sample_record,
        peak_rss_bytes: super::cluster::peak_rss(std::process::id()),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_correction_targets_an_earlier_activity_record_of_its_branch() {
        for (branches, per_mille) in [(4u64, 1u64), (3, 10), (5, 500)] {
            let joins = branches * 50;
            let mut corrections = 0;
            for n in 0..joins + branches * CORRECTION_LAG * 3 {
                let Some(target) = correction_target(n, branches, joins, per_mille) else {
                    continue;
                };
                corrections += 1;
                assert!(target >= joins, "{n}: the target is not a join");
                assert_eq!(target % branches, n % branches, "{n}: same branch");
                assert_eq!(
                    correction_target(target, branches, joins, per_mille),
                    None,
                    "{n}: the target {target} is not itself a correction"
                );
            }
            assert!(corrections > 0, "{branches} branches, {per_mille}‰");
        }
        assert_eq!(
            correction_target(1_000_000, 4, 200, 0),
            None,
            "none by default"
        );
    }
}
