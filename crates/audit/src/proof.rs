//! Inclusion proofs: a record with its Merkle path, its block's header and the block's commit
//! certificate, checkable offline with the genesis file alone.
//!
//! The file is JSON (hex for hashes, keys and signatures), versioned:
//! `{ "version": 1, "record": SignedRecord, "proof": { "index", "tree_size", "path": [hex] },
//! "header": BlockHeader, "commit": CommitCertificate }`, the same field names as the
//! canonical types (docs/audit.md). Checking it: the record's id from its canonical bytes; the
//! path from that id to the header's `records_root` for a tree of `record_count` leaves
//! (RFC 6962 with BLAKE3); the header's chain and validator set; a quorum of valid precommit
//! signatures for the header's block id; and the record's signatures by its branch's key.

use branchledger_storage::{ChainReader, StorageError};
use branchledger_types::merkle::{self, InclusionProof};
use branchledger_types::{BlockHeader, CommitCertificate, Genesis, Hash, SignedRecord};
use serde::{Deserialize, Serialize};

/// The proof format version.
pub const PROOF_VERSION: u32 = 1;

/// A record with everything needed to show it is in a final block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordProof {
    /// Format version.
    pub version: u32,
    /// The record.
    pub record: SignedRecord,
    /// Its Merkle path in the block.
    pub proof: InclusionProof,
    /// The block's header.
    pub header: BlockHeader,
    /// The block's commit certificate.
    pub commit: CommitCertificate,
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The store holds no such record.
    #[error("record {0} is not in this chain")]
    NotFound(Hash),
    /// The store failed or is corrupt.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Another format version.
    #[error("proof version {0} is not supported (this checker reads {PROOF_VERSION})")]
    Version(u32),
    /// The header is of another chain or validator set.
    #[error("the header is not of this genesis: {0}")]
    WrongChain(String),
    /// The Merkle path does not lead to the header's root.
    #[error("the record is not in the block: {0}")]
    NotIncluded(String),
    /// The commit certificate does not make the block final.
    #[error("the block has no valid commit: {0}")]
    NoValidCommit(String),
    /// The record's signatures do not verify.
    #[error("the record's signatures do not verify: {0}")]
    BadRecord(String),
}

/// Builds the proof for `record_id` from a store.
pub fn prove(store: &impl ChainReader, record_id: &Hash) -> Result<RecordProof, ProveError> {
    let stored = store
        .record(record_id)?
        .ok_or(ProveError::NotFound(*record_id))?;
    let ids = store
        .record_ids(stored.height)?
        .ok_or(ProveError::NotFound(*record_id))?;
    let header = store
        .header(stored.height)?
        .ok_or(ProveError::NotFound(*record_id))?;
    let commit = store
        .commit(stored.height)?
        .ok_or(ProveError::NotFound(*record_id))?;
    let proof =
        merkle::prove(&ids, stored.index as usize).ok_or(ProveError::NotFound(*record_id))?;
    Ok(RecordProof {
        version: PROOF_VERSION,
        record: stored.record,
        proof,
        header,
        commit,
    })
}

/// Checks a proof with the genesis file alone.
pub fn check(genesis: &Genesis, proof: &RecordProof) -> Result<(), CheckError> {
    if proof.version != PROOF_VERSION {
        return Err(CheckError::Version(proof.version));
    }
    let set = genesis.validator_set();
    if proof.header.chain_id != genesis.chain_id || proof.header.validator_set_id != set.id() {
        return Err(CheckError::WrongChain(format!(
            "chain {}",
            proof.header.chain_id
        )));
    }
    proof
        .proof
        .verify(
            &proof.record.id(),
            &proof.header.records_root,
            u64::from(proof.header.record_count),
        )
        .map_err(|e| CheckError::NotIncluded(e.to_string()))?;
    branchledger_verifier::verify_commit(&set, &genesis.chain_id, &proof.header, &proof.commit)
        .map_err(|e| CheckError::NoValidCommit(e.to_string()))?;
    branchledger_verifier::check_record_stateless(genesis, &proof.record)
        .and_then(|()| branchledger_verifier::verify_record_signatures(genesis, &proof.record))
        .map_err(|e| CheckError::BadRecord(e.to_string()))
}
