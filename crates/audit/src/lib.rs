//! The auditor: verifies a chain from genesis to tip trusting nothing but the genesis file.
//!
//! For every block it checks, in order: the stored values decode and match their keys
//! (storage's read-back checks); the header's link to its parent, the proposer, the time; the
//! commit certificate against the validator set (a quorum of distinct validators, every
//! signature valid, the right block id); the records root and count; every record's stateless
//! rules and signatures (batched across all cores); and, by replaying every record through the
//! state rules on a fresh in-memory state, the block's `state_digest`. After the last block it
//! compares every index and aggregate table the node stored with the replayed state, so an
//! index or aggregate changed on disk without the chain changing is found too.
//!
//! It never writes to what it audits, and it reports the first failure: the height, the
//! record if one is to blame, and the rule broken.

pub mod export;
pub mod proof;

use std::time::{Duration, Instant};

use branchledger_crypto::Hash;
use branchledger_state::{apply_block, BlockError, MemState, Table};
use branchledger_storage::{ChainReader, Column, StorageError};
use branchledger_types::{BlockHeader, Genesis, Height};
use branchledger_verifier::VerificationError;
use serde::Serialize;

/// Entries read per page when comparing stored state with the replay.
pub const SCAN_PAGE: usize = 4_096;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("height {height}{}: {rule}", record.map(|r| format!(", record {r}")).unwrap_or_default())]
pub struct AuditFailure {
    /// The first bad height (for a stored table that differs from the replay: the last
    /// height that wrote the entry, or the tip if no block wrote it).
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
    /// The tip's block id.
    pub tip_block_id: Option<String>,
    /// The final state digest.
    pub state_digest: String,
    /// State entries compared with the replay.
    pub state_entries: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

fn fail(height: Height, record: Option<Hash>, rule: impl Into<String>) -> AuditFailure {
    AuditFailure {
        height,
        record,
        rule: rule.into(),
    }
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

/// Verifies the chain in `store` against `genesis`. `progress` is called after each block
/// with the height and the records verified so far.
pub fn verify_store(
    genesis: &Genesis,
    store: &impl ChainReader,
    mut progress: impl FnMut(Height, u64),
) -> Result<AuditReport, AuditFailure> {
    let started = Instant::now();
    let tip = store.tip().map_err(|e| storage_failure(0, e))?;
    let tip_height = tip.as_ref().map_or(0, |t| t.height);
    let mut state = MemState::new();
    let mut prev: Option<BlockHeader> = None;
    let mut digest = Hash::ZERO;
    let mut records = 0u64;
    for height in 1..=tip_height {
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
        let block = &committed.block;
        // Signatures and certificate on rayon's threads while the state replay runs beside
        // them: both only read. The verdicts are then taken in the order of the rules, so the
        // failure reported is the same as if they ran one after the other.
        let (verified, replayed) = rayon::join(
            || branchledger_verifier::verify_committed_block(genesis, prev.as_ref(), &committed),
            || {
                apply_block(
                    &state,
                    genesis,
                    height,
                    block.header.time_ms,
                    &block.records,
                    &digest,
                )
            },
        );
        verified.map_err(|e| verification_failure(height, e))?;
        let (delta, next_digest) = replayed.map_err(|error| match error {
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
        state.apply_delta(delta);
        digest = next_digest;
        records += block.records.len() as u64;
        prev = Some(block.header.clone());
        progress(height, records);
    }
    if let Some(tip) = &tip {
        if tip.state_digest != digest {
            return Err(fail(
                tip_height,
                None,
                "the stored tip's state digest differs from the replay",
            ));
        }
    }
    let state_entries = compare_state(store, &state).map_err(|mismatch| {
        // Only on failure: replay again to name the last block that wrote the key.
        let height = last_write_height(genesis, store, mismatch.table, &mismatch.key, tip_height);
        fail(height, None, mismatch.rule)
    })?;
    Ok(AuditReport {
        chain_id: genesis.chain_id.clone(),
        blocks: tip_height,
        records,
        tip_block_id: tip.map(|t| t.block_id.to_hex()),
        state_digest: digest.to_hex(),
        state_entries,
        elapsed_ms: duration_ms(started.elapsed()),
    })
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
    table: Table,
    key: &[u8],
    tip_height: Height,
) -> Height {
    let mut state = MemState::new();
    let mut digest = Hash::ZERO;
    let mut last = tip_height;
    for height in 1..=tip_height {
        let Ok(Some(committed)) = store.committed_block(height) else {
            break;
        };
        let block = &committed.block;
        let Ok((delta, next)) = apply_block(
            &state,
            genesis,
            height,
            block.header.time_ms,
            &block.records,
            &digest,
        ) else {
            break;
        };
        if delta.writes.contains_key(&(table, key.to_vec())) {
            last = height;
        }
        state.apply_delta(delta);
        digest = next;
    }
    last
}

/// Every stored state table must equal the replayed state, entry for entry.
fn compare_state(store: &impl ChainReader, state: &MemState) -> Result<u64, Mismatch> {
    let mut compared = 0u64;
    for table in Table::ALL {
        let mismatch = |key: &[u8], rule: String| Mismatch {
            table: *table,
            key: key.to_vec(),
            rule,
        };
        let mut expected = state.iter_table(*table);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .scan_raw(Column::State(*table), &[], after.as_deref(), SCAN_PAGE)
                .map_err(|e| mismatch(&[], format!("{}: reading the store: {e}", table.name())))?;
            for (key, value) in &page {
                compared += 1;
                match expected.next() {
                    Some((k, v)) if k == key.as_slice() && v == value.as_slice() => {}
                    Some((k, _)) if k == key.as_slice() => {
                        return Err(mismatch(
                            key,
                            format!(
                                "{}: stored value of key {} differs from the replay",
                                table.name(),
                                branchledger_state::read::display_key(key)
                            ),
                        ));
                    }
                    Some((k, _)) if k < key.as_slice() => {
                        return Err(mismatch(
                            k,
                            format!(
                                "{}: key {} is missing from the store",
                                table.name(),
                                branchledger_state::read::display_key(k)
                            ),
                        ));
                    }
                    _ => {
                        return Err(mismatch(
                            key,
                            format!(
                                "{}: stored key {} was written by no block",
                                table.name(),
                                branchledger_state::read::display_key(key)
                            ),
                        ));
                    }
                }
            }
            if page.len() < SCAN_PAGE {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
        }
        if let Some((k, _)) = expected.next() {
            return Err(mismatch(
                k,
                format!(
                    "{}: key {} is missing from the store",
                    table.name(),
                    branchledger_state::read::display_key(k)
                ),
            ));
        }
    }
    Ok(compared)
}
