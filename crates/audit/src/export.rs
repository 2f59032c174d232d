//! The chain export: a self-contained, versioned file of headers, records and commit
//! certificates that `verify_export` checks with the genesis file alone.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic    8 bytes  "BLEXPORT"
//! version  u32      EXPORT_VERSION
//! header   u32 length ‖ borsh(ExportHeader)    chain id, genesis hash, first and last height
//! blocks   (u32 length ‖ borsh(CommittedBlock)) × (last − first + 1), in height order
//! trailer  u32 length ‖ borsh(ExportTrailer)   block count and the last block id
//! ```
//!
//! The header names the range and the trailer closes it, so a file cut short is reported as
//! truncated, never as a pass. Neither is signed, though: whoever cuts an export short after
//! a whole block can write the header and trailer again, and the shorter file verifies. Like a
//! data directory, an export proves a finalised prefix of the chain; that it reaches a given
//! tip, only a comparison of its last block with a tip the auditor trusts shows
//! ([`verify_export_expecting`]).

use std::io::{Read, Write};

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::Hash;
use branchledger_state::MemState;
use branchledger_storage::{ChainReader, StorageError};
use branchledger_types::codec::{decode, encode};
use branchledger_types::limits::BLOCK_BYTES_MAX;
use branchledger_types::{BlockHeader, CommittedBlock, Genesis, Height};

use crate::tip::{check_tip, ExpectedTip, Subject};
use crate::AuditFailure;

/// The file's first bytes.
pub const EXPORT_MAGIC: &[u8; 8] = b"BLEXPORT";
/// The format version this code writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// Largest export header or trailer.
pub const EXPORT_META_BYTES_MAX: usize = 64 * 1024;
/// Largest block entry: a block at the protocol limit plus its certificate.
pub const EXPORT_BLOCK_BYTES_MAX: usize = BLOCK_BYTES_MAX + 64 * 1024;

/// What an export holds.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ExportHeader {
    /// The chain.
    pub chain_id: String,
    /// The genesis it belongs to.
    pub genesis_hash: Hash,
    /// First height in the file.
    pub from: Height,
    /// Last height in the file.
    pub to: Height,
}

/// Closes an export.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ExportTrailer {
    /// Blocks written.
    pub blocks: u64,
    /// The id of the last block.
    pub last_block_id: Hash,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The range is empty or beyond the tip.
    #[error("cannot export heights {from}..={to}: the store holds 1..={tip}")]
    Range {
        /// First height asked.
        from: Height,
        /// Last height asked.
        to: Height,
        /// The tip.
        tip: Height,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

fn write_entry(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

/// Writes heights `from..=to` of `store` to `out`.
pub fn write_export(
    genesis: &Genesis,
    store: &impl ChainReader,
    from: Height,
    to: Height,
    out: &mut impl Write,
) -> Result<ExportTrailer, ExportError> {
    let tip = store.tip()?.map_or(0, |t| t.height);
    if from == 0 || from > to || to > tip {
        return Err(ExportError::Range { from, to, tip });
    }
    out.write_all(EXPORT_MAGIC)?;
    out.write_all(&EXPORT_VERSION.to_le_bytes())?;
    let header = ExportHeader {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        from,
        to,
    };
    write_entry(out, &encode(&header))?;
    let mut last_block_id = Hash::ZERO;
    for height in from..=to {
        let block = store
            .committed_block(height)?
            .ok_or(ExportError::Range { from, to, tip })?;
        last_block_id = block.block.id();
        write_entry(out, &encode(&block))?;
    }
    let trailer = ExportTrailer {
        blocks: to - from + 1,
        last_block_id,
    };
    write_entry(out, &encode(&trailer))?;
    out.flush()?;
    Ok(trailer)
}

fn read_entry(
    input: &mut impl Read,
    limit: usize,
    what: &str,
    height: Height,
) -> Result<Vec<u8>, AuditFailure> {
    let truncated = || AuditFailure {
        height,
        record: None,
        rule: format!("export truncated: {what} missing or cut short"),
    };
    let mut length = [0u8; 4];
    input.read_exact(&mut length).map_err(|_| truncated())?;
    let length = u32::from_le_bytes(length) as usize;
    if length > limit {
        return Err(AuditFailure {
            height,
            record: None,
            rule: format!("export: {what} of {length} bytes exceeds the limit of {limit}"),
        });
    }
    let mut bytes = vec![0u8; length];
    input.read_exact(&mut bytes).map_err(|_| truncated())?;
    Ok(bytes)
}

/// What a verified export covered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    /// First height.
    pub from: Height,
    /// Last height.
    pub to: Height,
    /// The id of the last block (the block at `to`).
    pub last_block_id: Hash,
    /// Records verified.
    pub records: u64,
    /// Whether state digests were replayed (only for an export from height 1).
    pub state_replayed: bool,
    /// Whether the last block was checked against an expected tip.
    pub tip_expected: bool,
}

/// Verifies an export against `genesis`: format, range, every header link, certificate,
/// records root and record signature; for an export that starts at height 1, also every
/// state digest by replaying the records.
///
/// What passes is a finalised prefix of the chain (or a finalised range of one): the header
/// and trailer are not signed, so an export cut short after a whole block, with its header
/// and trailer written again, passes too. Compare [`ExportReport::last_block_id`] with a
/// trusted tip, or use [`verify_export_expecting`].
pub fn verify_export(
    genesis: &Genesis,
    input: &mut impl Read,
) -> Result<ExportReport, AuditFailure> {
    verify_export_expecting(genesis, input, None)
}

/// [`verify_export`], and, if `expected` is given, its last block must be that tip: an export
/// that ends below it, above it or on another block fails, naming both.
pub fn verify_export_expecting(
    genesis: &Genesis,
    input: &mut impl Read,
    expected: Option<&ExpectedTip>,
) -> Result<ExportReport, AuditFailure> {
    let bad = |height: Height, rule: String| AuditFailure {
        height,
        record: None,
        rule,
    };
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| bad(0, "not an export: too short".into()))?;
    if &magic != EXPORT_MAGIC {
        return Err(bad(0, "not an export: wrong magic bytes".into()));
    }
    let mut version = [0u8; 4];
    input
        .read_exact(&mut version)
        .map_err(|_| bad(0, "export truncated in its version".into()))?;
    let version = u32::from_le_bytes(version);
    if version != EXPORT_VERSION {
        return Err(bad(
            0,
            format!(
                "export version {version} is not supported (this auditor reads {EXPORT_VERSION})"
            ),
        ));
    }
    let header: ExportHeader = decode(
        "export header",
        &read_entry(input, EXPORT_META_BYTES_MAX, "header", 0)?,
        EXPORT_META_BYTES_MAX,
    )
    .map_err(|e| bad(0, e.to_string()))?;
    if header.chain_id != genesis.chain_id || header.genesis_hash != genesis.hash() {
        return Err(bad(header.from, "export belongs to another genesis".into()));
    }
    if header.from == 0 || header.from > header.to {
        return Err(bad(
            0,
            format!("export range {}..={} is empty", header.from, header.to),
        ));
    }
    let replay = header.from == 1;
    let mut state = MemState::new();
    let mut digest = Hash::ZERO;
    let mut prev: Option<BlockHeader> = None;
    let mut records = 0u64;
    let mut last_block_id = Hash::ZERO;
    // The id of the block at the expected tip's height, if the export holds that height.
    let mut at_expected = None;
    for height in header.from..=header.to {
        let bytes = read_entry(input, EXPORT_BLOCK_BYTES_MAX, "block", height)?;
        let committed: CommittedBlock = decode("exported block", &bytes, EXPORT_BLOCK_BYTES_MAX)
            .map_err(|e| bad(height, e.to_string()))?;
        if committed.block.header.height != height {
            return Err(bad(
                height,
                format!(
                    "export holds height {} where {height} belongs",
                    committed.block.header.height
                ),
            ));
        }
        let ids = if replay || prev.is_some() {
            branchledger_verifier::verify_committed_block_ids(genesis, prev.as_ref(), &committed)
                .map_err(|e| crate::verification_failure(height, e))?
        } else {
            // The first block of a partial export has no parent here: check everything but
            // the link.
            verify_unlinked(genesis, &committed)
                .map_err(|e| crate::verification_failure(height, e))?;
            Vec::new()
        };
        if replay {
            let block = &committed.block;
            let (delta, next) = crate::replay_block(&state, genesis, block, &ids, &digest)?;
            state.apply_block(height, &block.records, delta);
            digest = next;
        }
        records += committed.block.records.len() as u64;
        last_block_id = committed.block.id();
        if expected.is_some_and(|e| e.height == height) {
            at_expected = Some(last_block_id);
        }
        prev = Some(committed.block.header);
    }
    let trailer: ExportTrailer = decode(
        "export trailer",
        &read_entry(input, EXPORT_META_BYTES_MAX, "trailer", header.to)?,
        EXPORT_META_BYTES_MAX,
    )
    .map_err(|e| bad(header.to, e.to_string()))?;
    if trailer.blocks != header.to - header.from + 1 || trailer.last_block_id != last_block_id {
        return Err(bad(
            header.to,
            "export trailer does not match the blocks".into(),
        ));
    }
    let mut rest = [0u8; 1];
    if input
        .read(&mut rest)
        .map_err(|e| bad(header.to, e.to_string()))?
        != 0
    {
        return Err(bad(header.to, "bytes after the export trailer".into()));
    }
    if let Some(expected) = expected {
        check_tip(
            expected,
            Subject::Export,
            Some((header.to, last_block_id)),
            at_expected,
        )?;
    }
    Ok(ExportReport {
        from: header.from,
        to: header.to,
        last_block_id,
        records,
        state_replayed: replay,
        tip_expected: expected.is_some(),
    })
}

fn verify_unlinked(genesis: &Genesis, committed: &CommittedBlock) -> branchledger_verifier::Result {
    let set = genesis.validator_set();
    let header = &committed.block.header;
    branchledger_verifier::check_proposer(&set, header, committed.commit.round)?;
    branchledger_verifier::verify_commit(&set, &genesis.chain_id, header, &committed.commit)?;
    branchledger_verifier::check_block_size(&committed.block, &genesis.consensus)?;
    branchledger_verifier::check_records_root(&committed.block)?;
    branchledger_verifier::check_records(genesis, &committed.block.records).map_err(|error| {
        branchledger_verifier::VerificationError::BadRecords {
            height: header.height,
            error,
        }
    })
}
