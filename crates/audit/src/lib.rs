//! The auditor: verifies a chain from genesis to tip trusting nothing but the genesis file.
//!
//! For every block it checks, in order: the stored values decode and match their keys
//! (storage's read-back checks); the header's link to its parent, the proposer, the time; the
//! commit certificate against the validator set (a quorum of distinct validators, every
//! signature valid, the right block id); the records root and count; every record's stateless
//! rules and signatures (batched across all cores); and, by replaying every record through the
//! state rules on a fresh state, the block's `state_digest`. After the last block it compares
//! every index and aggregate table the node stored with the replayed state, so an index or
//! aggregate changed on disk without the chain changing is found too.
//!
//! The replayed state lives in a scratch RocksDB store of its own, in a temporary directory
//! removed afterwards, so memory stays bounded whatever the length of the chain. A fast pass
//! compares every table by a keyed multiset digest; only if one differs does the exact pass
//! replay again and walk both stores side by side in key order to name the entry (see
//! [`replay`]).
//!
//! Every entry of the chain tables must be one the verified chain accounts for (see
//! [`chain_tables`]): a block stored above the tip, or any other entry no verified block
//! explains, is refused. A chain that verifies is a finalised prefix of the chain; that it is
//! the whole chain only a tip known from elsewhere can tell ([`AuditOptions::expect_tip`],
//! see [`tip`]). An empty store is refused unless [`AuditOptions::allow_empty`].
//!
//! It never writes to what it audits, and it reports the first failure: the height, the
//! record if one is to blame, and the rule broken.

pub mod chain_tables;
pub mod decoders;
pub mod export;
pub mod proof;
pub mod replay;
pub mod tip;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use branchledger_crypto::Hash;
use branchledger_state::{apply_block_with_ids, BlockError, StateDelta, StateReader, Table};
use branchledger_storage::{ChainReader, RocksStore, StorageError, Tip};
use branchledger_types::{Block, BlockHeader, CommittedBlock, Genesis, Height, SignedRecord};
use branchledger_verifier::VerificationError;
use serde::Serialize;

use replay::{Entries, Keep, Replay};
pub use tip::{ExpectedTip, ParseTipError};

/// Blocks read and verified ahead of the replay.
pub const PIPELINE_BLOCKS: usize = 2;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("height {height}{}: {rule}", record.map(|r| format!(", record {r}")).unwrap_or_default())]
pub struct AuditFailure {
    /// The first bad height (for a stored table that differs from the replay: the last
    /// height that wrote the entry, or the tip if no block wrote it; for an entry of the chain
    /// tables no verified block accounts for: the height it claims if above the tip, the tip
    /// otherwise; for a tip other than the expected one: see [`tip`]).
    pub height: Height,
    /// The record to blame, if one is.
    #[serde(serialize_with = "hex_option")]
    pub record: Option<Hash>,
    /// The rule broken, in words.
    pub rule: String,
}

fn hex_option<S: serde::Serializer>(hash: &Option<Hash>, serializer: S) -> Result<S::Ok, S::Error> {
    match hash {
        Some(hash) => serializer.serialize_some(&hash.to_hex()),
        None => serializer.serialize_none(),
    }
}

/// What a successful audit covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Chain id.
    pub chain_id: String,
    /// Blocks verified.
    pub blocks: u64,
    /// Records verified.
    pub records: u64,
    /// The tip's height (0 for an empty chain).
    pub tip_height: Height,
    /// The tip's block id (none for an empty chain).
    pub tip_block_id: Option<String>,
    /// Whether the tip was checked against an expected one ([`AuditOptions::expect_tip`]).
    pub tip_expected: bool,
    /// The final state digest.
    pub state_digest: String,
    /// State entries compared with the replay.
    pub state_entries: u64,
    /// Entries of the chain tables checked to be the verified chain's.
    pub chain_entries: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

pub(crate) fn fail(height: Height, record: Option<Hash>, rule: impl Into<String>) -> AuditFailure {
    AuditFailure {
        height,
        record,
        rule: rule.into(),
    }
}

/// Replays `block`'s records through the state rules on top of `reader`, after the state
/// whose digest is `digest`: the delta and the new digest, which must be the header's.
/// `ids` are the block's record ids, in order.
pub(crate) fn replay_block(
    reader: &dyn StateReader,
    genesis: &Genesis,
    block: &Block,
    ids: &[Hash],
    digest: &Hash,
) -> Result<(StateDelta, Hash), AuditFailure> {
    let height = block.header.height;
    let (delta, next_digest) = apply_block_with_ids(
        reader,
        genesis,
        height,
        block.header.time_ms,
        &block.records,
        ids,
        digest,
    )
    .map_err(|error| match error {
        BlockError::Rejected(rejection) => fail(
            height,
            Some(rejection.record_id),
            format!(
                "record {} breaks a state rule: {}",
                rejection.index, rejection.reason
            ),
        ),
        other => fail(height, None, other.to_string()),
    })?;
    if next_digest != block.header.state_digest {
        return Err(fail(
            height,
            None,
            format!(
                "state digest: replay gives {next_digest}, header says {}",
                block.header.state_digest
            ),
        ));
    }
    Ok((delta, next_digest))
}

fn storage_failure(height: Height, error: StorageError) -> AuditFailure {
    fail(height, None, format!("stored data: {error}"))
}

pub(crate) fn verification_failure(height: Height, error: VerificationError) -> AuditFailure {
    // A bad record is named; everything else is about the block.
    let record = match &error {
        VerificationError::BadRecords { error, .. } => error.bad.first().map(|b| b.1),
        _ => None,
    };
    fail(height, record, error.to_string())
}

/// What an audit requires besides a valid chain, and where it keeps its scratch store.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditOptions<'a> {
    /// Where the scratch store of the replay is made (the system's temporary directory when
    /// `None`).
    pub scratch_parent: Option<&'a std::path::Path>,
    /// The tip the chain must end at. Without one, a chain that passes is shown to be a
    /// finalised prefix of the chain, not the whole of it.
    pub expect_tip: Option<ExpectedTip>,
    /// Accept a store that holds no block. Refused otherwise: an empty store proves nothing,
    /// and an auditor given one was most likely given the wrong directory.
    pub allow_empty: bool,
}

/// Verifies the chain in `store` against `genesis`, replaying the state in a scratch store
/// under the system's temporary directory. `progress` is called after each block with the
/// height and the records verified so far. An empty store is refused.
pub fn verify_store(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    progress: impl FnMut(Height, u64),
) -> Result<AuditReport, AuditFailure> {
    verify_store_with(genesis, store, &AuditOptions::default(), progress)
}

/// [`verify_store`], with the scratch store under `scratch_parent`.
pub fn verify_store_in(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    scratch_parent: Option<&std::path::Path>,
    progress: impl FnMut(Height, u64),
) -> Result<AuditReport, AuditFailure> {
    let options = AuditOptions {
        scratch_parent,
        ..AuditOptions::default()
    };
    verify_store_with(genesis, store, &options, progress)
}

/// [`verify_store`], with `options`.
///
/// The stored tip is checked first: against the expected tip if one is given, and an empty
/// store is refused unless allowed. Then the fast pass keeps in its scratch store only the
/// tables the state rules read and compares every table by digest (see [`replay`]); if any
/// stored table differs from the replay, the exact pass runs again from genesis, keeping
/// every table, to name the first entry that differs and the block that wrote it. A chain
/// that breaks a rule is reported by the fast pass itself, exactly as the exact pass would
/// report it. Meanwhile a thread of its own checks that every entry of the chain tables is
/// one the verified chain accounts for ([`chain_tables`]); its failure is reported after any
/// failure of the passes, which name heights up to the tip.
pub fn verify_store_with(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    options: &AuditOptions<'_>,
    mut progress: impl FnMut(Height, u64),
) -> Result<AuditReport, AuditFailure> {
    let started = Instant::now();
    let tip = store.tip().map_err(|e| storage_failure(0, e))?;
    let Some(tip) = tip else {
        // Whatever the chain tables hold, no verified block accounts for it.
        let chain_entries = chain_tables::account(store, None, &AtomicBool::new(false))?;
        if let Some(expected) = &options.expect_tip {
            tip::check_tip(expected, tip::Subject::Chain, None, None)?;
        }
        if !options.allow_empty {
            return Err(fail(
                1,
                None,
                "the store holds no block: an empty chain proves nothing (is it the right \
                 directory?); allow an empty store explicitly (--allow-empty) to pass it",
            ));
        }
        let mut report = exact_pass(genesis, store, None, options.scratch_parent, &mut progress)?;
        report.chain_entries = chain_entries;
        report.elapsed_ms = duration_ms(started.elapsed());
        return Ok(report);
    };
    if let Some(expected) = &options.expect_tip {
        let at_expected = if tip.height > expected.height {
            store
                .header(expected.height)
                .ok()
                .flatten()
                .map(|header| header.block_id())
        } else {
            None
        };
        tip::check_tip(
            expected,
            tip::Subject::Chain,
            Some((tip.height, tip.block_id)),
            at_expected,
        )?;
    }
    let secret = replay::digest_secret()?;
    let cancel = AtomicBool::new(false);
    let (verdict, accounted) = std::thread::scope(|scope| {
        let accounting = scope.spawn(|| chain_tables::account(store, Some(&tip), &cancel));
        let verdict = match fast_pass(
            genesis,
            store,
            &tip,
            options.scratch_parent,
            secret,
            &mut progress,
        ) {
            Ok(Pass::Verified(report)) => Ok(report),
            Ok(Pass::Recheck) => exact_pass(
                genesis,
                store,
                Some(&tip),
                options.scratch_parent,
                &mut progress,
            ),
            Err(failure) => Err(failure),
        };
        if verdict.is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
        let accounted = accounting.join().unwrap_or_else(|_| {
            Err(fail(
                tip.height,
                None,
                "the check of the chain tables stopped unexpectedly",
            ))
        });
        (verdict, accounted)
    });
    let report = verdict?;
    // The records of verified blocks were accounted for by the replay, which read each
    // block's whole key range; the walk read the rest of the chain tables.
    let chain_entries = accounted? + report.records;
    Ok(AuditReport {
        elapsed_ms: duration_ms(started.elapsed()),
        chain_entries,
        tip_expected: options.expect_tip.is_some(),
        ..report
    })
}

/// What the fast pass concluded.
enum Pass {
    /// Everything holds.
    Verified(AuditReport),
    /// The chain holds but the stored tables may not: the exact pass decides.
    Recheck,
}

fn fast_pass(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    tip: &Tip,
    scratch_parent: Option<&std::path::Path>,
    secret: replay::DigestKey,
    progress: &mut impl FnMut(Height, u64),
) -> Result<Pass, AuditFailure> {
    let mut state = Replay::new(scratch_parent, Keep::Read, store, true, secret)?;
    let cancel = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The stored tables are digested while the replay runs: the store does not change.
        let stored = scope.spawn(|| replay::digest_tables(store, &secret, &cancel));
        let replayed = replay_chain(genesis, store, Some(tip), &mut state, progress);
        // A failure after a hint may be the hint's: the exact pass, which takes none, decides.
        let recheck = state.cannot_decide() || (replayed.is_err() && state.took_hints());
        if replayed.is_err() || recheck {
            cancel.store(true, Ordering::Relaxed);
        }
        if recheck {
            return Ok(Pass::Recheck);
        }
        let replayed = replayed?;
        state.finish()?;
        let expected = state.table_digests();
        // A digest thread that stopped unexpectedly decides nothing: the exact pass does.
        let Ok(stored) = stored.join() else {
            return Ok(Pass::Recheck);
        };
        match (expected, stored) {
            (Ok(expected), Ok(stored)) if expected == stored => Ok(Pass::Verified(report(
                genesis,
                Some(tip),
                replayed,
                expected.entries(),
            ))),
            _ => Ok(Pass::Recheck),
        }
    })
}

/// The exact pass, for the chain up to `tip` (none: an empty chain, whose stored state must
/// be empty too).
fn exact_pass(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    tip: Option<&Tip>,
    scratch_parent: Option<&std::path::Path>,
    progress: &mut impl FnMut(Height, u64),
) -> Result<AuditReport, AuditFailure> {
    let secret = replay::digest_secret()?;
    let tip_height = tip.map_or(0, |t| t.height);
    let mut state = Replay::new(scratch_parent, Keep::All, store, false, secret)?;
    let replayed = replay_chain(genesis, store, tip, &mut state, progress)?;
    state.finish()?;
    let state_entries = compare_state(store, state.store()).map_err(|mismatch| {
        // Only on failure: replay again to name the last block that wrote the key.
        let height = last_write_height(
            genesis,
            store,
            scratch_parent,
            mismatch.table,
            &mismatch.key,
            tip_height,
        );
        fail(height, None, mismatch.rule)
    })?;
    Ok(report(genesis, tip, replayed, state_entries))
}

fn report(
    genesis: &Genesis,
    tip: Option<&Tip>,
    (records, digest): (u64, Hash),
    state_entries: u64,
) -> AuditReport {
    AuditReport {
        chain_id: genesis.chain_id.clone(),
        blocks: tip.map_or(0, |t| t.height),
        records,
        tip_height: tip.map_or(0, |t| t.height),
        tip_block_id: tip.map(|t| t.block_id.to_hex()),
        tip_expected: false,
        state_digest: digest.to_hex(),
        state_entries,
        chain_entries: 0,
        elapsed_ms: 0,
    }
}

/// Reads, verifies and replays every block up to `tip` into `state`: the records replayed
/// and the final state digest, which must be the stored tip's.
fn replay_chain(
    genesis: &Genesis,
    store: &(impl ChainReader + Sync),
    tip: Option<&Tip>,
    state: &mut Replay,
    progress: &mut impl FnMut(Height, u64),
) -> Result<(u64, Hash), AuditFailure> {
    let tip_height = tip.map_or(0, |t| t.height);
    // Two stages: one thread reads each block and checks its link, certificate, root and
    // signatures (on rayon's threads) a block or two ahead, while this one replays the state
    // rules in order. Verdicts are taken block by block in the order of the rules, so the
    // failure reported is the first one, as if every check ran one after the other.
    let (tx, rx) =
        std::sync::mpsc::sync_channel::<(Height, Result<Verified, AuditFailure>)>(PIPELINE_BLOCKS);
    let (records, digest) = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut prev: Option<BlockHeader> = None;
            for height in 1..=tip_height {
                let checked = read_and_verify(genesis, store, prev.as_ref(), height);
                let stop = checked.is_err();
                if let Ok((committed, _)) = &checked {
                    prev = Some(committed.block.header.clone());
                }
                if tx.send((height, checked)).is_err() || stop {
                    break;
                }
            }
        });
        let mut records = 0u64;
        let mut digest = Hash::ZERO;
        for (height, checked) in rx {
            let (committed, ids) = checked?;
            let block = &committed.block;
            let (delta, next_digest) = replay_block(&*state, genesis, block, &ids, &digest)?;
            state.apply(height, delta)?;
            digest = next_digest;
            records += block.records.len() as u64;
            progress(height, records);
        }
        Ok::<_, AuditFailure>((records, digest))
    })?;
    if let Some(tip) = tip {
        if tip.state_digest != digest {
            return Err(fail(
                tip_height,
                None,
                "the stored tip's state digest differs from the replay",
            ));
        }
    }
    Ok((records, digest))
}

/// A block that passed every check but the state rules, with its record ids in order.
type Verified = (CommittedBlock, Vec<Hash>);

/// Reads the block at `height` and checks everything but the state rules: link to `prev`,
/// certificate, records root, every record's stateless rules and signatures.
fn read_and_verify(
    genesis: &Genesis,
    store: &impl ChainReader,
    prev: Option<&BlockHeader>,
    height: Height,
) -> Result<Verified, AuditFailure> {
    let committed = store
        .committed_block(height)
        .map_err(|e| storage_failure(height, e))?
        .ok_or_else(|| {
            fail(
                height,
                None,
                "block missing below the tip (truncated or deleted)",
            )
        })?;
    let ids = branchledger_verifier::verify_committed_block_ids(genesis, prev, &committed)
        .map_err(|e| verification_failure(height, e))?;
    Ok((committed, ids))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A stored state entry that differs from the replay.
struct Mismatch {
    table: Table,
    key: Vec<u8>,
    rule: String,
}

/// The height of the last block whose replay writes `key` of `table` (the tip if none does:
/// the key was written by no block). The chain below the tip is known good when this runs.
fn last_write_height(
    genesis: &Genesis,
    store: &impl ChainReader,
    scratch_parent: Option<&std::path::Path>,
    table: Table,
    key: &[u8],
    tip_height: Height,
) -> Height {
    let Ok(secret) = replay::digest_secret() else {
        return tip_height;
    };
    let Ok(mut state) = Replay::new(scratch_parent, Keep::All, store, false, secret) else {
        return tip_height;
    };
    let mut digest = Hash::ZERO;
    let mut last = tip_height;
    for height in 1..=tip_height {
        let Ok(Some(committed)) = store.committed_block(height) else {
            break;
        };
        let block = &committed.block;
        let ids: Vec<Hash> = block.records.iter().map(SignedRecord::id).collect();
        let Ok((delta, next)) = replay_block(&state, genesis, block, &ids, &digest) else {
            break;
        };
        if delta.writes.contains_key(&(table, key.to_vec())) {
            last = height;
        }
        if state.apply(height, delta).is_err() {
            break;
        }
        digest = next;
    }
    last
}

/// Every stored state table must equal the replayed state, entry for entry: both are walked
/// in key order side by side.
fn compare_state(
    store: &(impl ChainReader + ?Sized),
    replay: &RocksStore,
) -> Result<u64, Mismatch> {
    let mut compared = 0u64;
    for table in Table::ALL {
        let mismatch = |key: &[u8], rule: String| Mismatch {
            table: *table,
            key: key.to_vec(),
            rule,
        };
        let read_error = |who: &str, e: StorageError| {
            mismatch(&[], format!("{}: reading the {who}: {e}", table.name()))
        };
        let missing = |k: &[u8]| {
            mismatch(
                k,
                format!(
                    "{}: key {} is missing from the store",
                    table.name(),
                    branchledger_state::read::display_key(k)
                ),
            )
        };
        let mut expected = Entries::new(replay, *table);
        let mut stored = Entries::new(store, *table);
        loop {
            let want = expected.next_entry().map_err(|e| read_error("replay", e))?;
            let have = stored.next_entry().map_err(|e| read_error("store", e))?;
            match (want, have) {
                (None, None) => break,
                (Some((k, v)), Some((key, value))) if k == key => {
                    compared += 1;
                    if v != value {
                        return Err(mismatch(
                            &key,
                            format!(
                                "{}: stored value of key {} differs from the replay",
                                table.name(),
                                branchledger_state::read::display_key(&key)
                            ),
                        ));
                    }
                }
                (Some((k, _)), None) => return Err(missing(&k)),
                (Some((k, _)), Some((key, _))) if k < key => return Err(missing(&k)),
                (_, Some((key, _))) => {
                    return Err(mismatch(
                        &key,
                        format!(
                            "{}: stored key {} was written by no block",
                            table.name(),
                            branchledger_state::read::display_key(&key)
                        ),
                    ));
                }
            }
        }
    }
    Ok(compared)
}
