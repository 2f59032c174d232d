//! `branchd devnet`: a local development chain with realistic sample data.
//!
//! Today it runs a single validator in one process: the sample records of four branches are
//! signed with their branch keys, verified in batches, applied to the state rules, and
//! committed block by block — each with a commit certificate signed by the validator — into
//! RocksDB. Then the leaderboards are printed from the aggregates kept at commit time. The
//! networked 4-validator demo builds on the same steps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_storage::{ChainReader, RocksStore};
use branchledger_types::{
    BranchId, CommitCertificate, CommitSignature, Date, Genesis, Record, SignedRecord, Vote,
    VoteKind,
};

use crate::home::{read_key, Home, KeyRole};
use crate::ledger::Ledger;
use crate::{progress, sample, testnet};

/// Arguments of `branchd devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// Directory for the network's homes (default: a new temporary directory, removed at exit).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Number of branches.
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
    pub block_records: usize,
    /// Seed of the sample data.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the demo.
pub fn run(args: DevnetArgs) -> Result<()> {
    if args.branches == 0 || args.branches > 8 {
        bail!("--branches must be in 1..=8");
    }
    if args.months == 0 || args.months > 24 {
        bail!("--months must be in 1..=24");
    }
    let temp;
    let root = match &args.home {
        Some(path) => path.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("branchledger-devnet-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    let net = root.join("net");
    let genesis = testnet::generate(
        &net,
        "branchledger-devnet",
        1,
        args.branches,
        now_ms().saturating_sub(1_000),
    )?;
    let home = Home::new(net.join("node0"));
    let consensus_key = read_key(&home.key_path(KeyRole::Consensus), KeyRole::Consensus)?;
    let mut branch_keys: BTreeMap<BranchId, Keypair> = BTreeMap::new();
    for (i, branch) in genesis.branches.iter().enumerate() {
        let path = if i == 0 {
            home.key_path(KeyRole::Branch)
        } else {
            net.join("branches")
                .join(format!("{}.json", branch.branch_id))
        };
        branch_keys.insert(branch.branch_id.clone(), read_key(&path, KeyRole::Branch)?);
    }
    let store = Arc::new(RocksStore::open(&home.data_dir().join("store"))?);
    println!(
        "devnet: chain {} with 1 validator and {} branches in {}",
        genesis.chain_id,
        genesis.branches.len(),
        root.display()
    );

    let today = Date::from_unix_ms(now_ms());
    let spec = sample::SampleSpec {
        members_per_branch: args.members_per_branch,
        months: args.months,
        today,
        seed: args.seed,
    };
    let branch_ids: Vec<BranchId> = genesis
        .branches
        .iter()
        .map(|b| b.branch_id.clone())
        .collect();
    let records = sample::generate(&genesis.chain_id, &branch_ids, &spec);
    let sign = |mut record: Record| -> Result<SignedRecord> {
        record.created_at_ms = now_ms();
        let key = branch_keys
            .get(&record.branch_id)
            .ok_or_else(|| anyhow!("no key for branch {}", record.branch_id))?;
        Ok(record.sign(key))
    };
    let signed: Vec<SignedRecord> = records.into_iter().map(sign).collect::<Result<_>>()?;

    let started = Instant::now();
    let mut chain = Chain {
        ledger: Ledger::new(Arc::new(genesis.clone()), store.clone()),
        consensus_key: &consensus_key,
    };
    let mut committed = 0usize;
    let mut rejected = Vec::new();
    for chunk in signed.chunks(args.block_records.max(1)) {
        let (accepted, refused) = chain.commit(chunk)?;
        committed += accepted;
        rejected.extend(refused);
    }
    // A correction: the first study session was recorded at twice its length.
    if let Some(target) = signed
        .iter()
        .find(|r| r.record.body.kind() == branchledger_types::RecordKind::StudySession)
    {
        if let Some(correction) = sample::correction(
            &genesis.chain_id,
            &target.record.branch_id,
            &target.record,
            u64::MAX,
        ) {
            let (accepted, refused) = chain.commit(&[sign(correction)?])?;
            committed += accepted;
            rejected.extend(refused);
        }
    }
    let elapsed = started.elapsed();
    let tip = store
        .tip()?
        .ok_or_else(|| anyhow!("no block was committed"))?;
    println!(
        "devnet: committed {committed} records in {} blocks ({:.0} records/s); {} refused by the state rules",
        tip.height,
        committed as f64 / elapsed.as_secs_f64().max(1e-9),
        rejected.len()
    );
    for (record_id, reason) in rejected.iter().take(5) {
        println!("  refused {record_id}: {reason}");
    }
    print_tables(store.as_ref(), &genesis, &sample::periods(&spec))?;
    Ok(())
}

/// Builds, certifies and stores blocks for a single-validator chain.
struct Chain<'a> {
    ledger: Ledger,
    consensus_key: &'a Keypair,
}

impl Chain<'_> {
    /// Commits the records of `candidates` that pass the state rules as one block; returns
    /// how many were committed and why the others were refused.
    fn commit(&mut self, candidates: &[SignedRecord]) -> Result<(usize, Vec<(Hash, String)>)> {
        let genesis = self.ledger.genesis();
        branchledger_verifier::verify_records_batch(genesis, candidates)
            .map_err(|e| anyhow!("sample records failed verification: {e}"))?;
        let height = self.ledger.next_height()?;
        let proposer = self.ledger.validators().proposer(height, 0);
        let built = self.ledger.build_block(candidates, now_ms(), proposer)?;
        if built.block.records.is_empty() {
            return Ok((0, built.refused));
        }
        let block_id = built.block.id();
        let vote = Vote {
            height,
            round: 0,
            kind: VoteKind::Precommit,
            block_id: Some(block_id),
            validator_index: 0,
        };
        let signature = self
            .consensus_key
            .sign(&vote.signing_message(&genesis.chain_id));
        let certificate = CommitCertificate {
            height,
            round: 0,
            block_id,
            signatures: vec![CommitSignature {
                validator_index: 0,
                signature,
            }],
        };
        let count = built.block.records.len();
        self.ledger.commit(built.block, certificate, &built.delta)?;
        Ok((count, built.refused))
    }
}

fn print_tables(
    store: &RocksStore,
    genesis: &Genesis,
    periods: &[branchledger_types::Period],
) -> Result<()> {
    let span = match (periods.first(), periods.last()) {
        (Some(first), Some(last)) => format!("{first} to {last}"),
        _ => String::new(),
    };
    println!(
        "\nStudy leaderboard, {span} (target {} min per member per month)",
        genesis.rules.study.minutes_per_member_per_month
    );
    println!(
        "{:<4} {:<16} {:>8} {:>9} {:>9} {:>10} {:>8}",
        "rank", "branch", "members", "sessions", "hours", "h/member", "target"
    );
    for (rank, row) in progress::study_leaderboard(store, genesis, periods)?
        .iter()
        .enumerate()
    {
        println!(
            "{:<4} {:<16} {:>8} {:>9} {:>9.1} {:>10.1} {:>7.0}%",
            rank + 1,
            row.branch_id.as_str(),
            row.active_members,
            row.sessions,
            row.minutes as f64 / 60.0,
            row.hours_per_member,
            row.target_ratio * 100.0
        );
    }
    if let Some(period) = periods.last() {
        println!(
            "\nDues for {period} (expected {} per active member)",
            genesis.rules.dues_minor_per_month
        );
        println!(
            "{:<16} {:>9} {:>10} {:>10} {:>12}",
            "branch", "payments", "paid", "expected", "outstanding"
        );
        for row in progress::dues(store, genesis, *period)? {
            println!(
                "{:<16} {:>9} {:>10} {:>10} {:>12}",
                row.branch_id.as_str(),
                row.payments,
                row.paid_minor,
                row.expected_minor,
                row.outstanding_minor
            );
        }
    }
    let rows = progress::meeting_compliance(store, genesis, periods)?;
    println!(
        "\nMeeting compliance: spans met / spans (rules: {})",
        genesis
            .rules
            .meetings
            .iter()
            .map(
                |r| format!("{} >= {} per {:?}", r.kind.as_str(), r.at_least, r.per).to_lowercase()
            )
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{:<16}", "branch");
    for rule in &genesis.rules.meetings {
        print!(" {:>16}", rule.kind.as_str());
    }
    println!();
    for branch in &genesis.branches {
        print!("{:<16}", branch.branch_id.as_str());
        for rule in &genesis.rules.meetings {
            let spans: Vec<&progress::ComplianceRow> = rows
                .iter()
                .filter(|r| r.branch_id == branch.branch_id && r.kind == rule.kind)
                .collect();
            let met = spans.iter().filter(|r| r.met()).count();
            let cell = format!(
                "{met}/{}{}",
                spans.len(),
                if met < spans.len() { " !" } else { "" }
            );
            print!(" {cell:>16}");
        }
        println!();
    }
    println!("\nIssue pool");
    println!(
        "{:<16} {:>7} {:>8} {:>9}",
        "branch", "raised", "claimed", "resolved"
    );
    for branch in &genesis.branches {
        let stats = branchledger_state::read::branch_stats(store, &branch.branch_id)?;
        println!(
            "{:<16} {:>7} {:>8} {:>9}",
            branch.branch_id.as_str(),
            stats.issues_raised,
            stats.issues_claimed,
            stats.issues_resolved
        );
    }
    Ok(())
}
