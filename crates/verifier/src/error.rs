//! The one error type of the verifier: each variant names the rule broken and the numbers
//! that break it, so an audit report can point at the exact height, index and value.

use branchledger_crypto::{Hash, VerifyError};
use branchledger_types::{BranchId, Height, Round, ValidationError, ValidatorIndex};

/// Result alias for the verifier's predicates.
pub type Result<T = (), E = VerificationError> = std::result::Result<T, E>;

/// A rule of DESIGN.md §3–§4 that a record, header, block or commit breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationError {
    // Records.
    /// A record breaks a stateless rule (identifier pattern, text length, range, …).
    #[error("record {record_id}: {error}")]
    RecordInvalid {
        /// The record.
        record_id: Hash,
        /// The field and rule.
        error: ValidationError,
    },
    /// A record names another chain than the genesis.
    #[error("record {record_id}: chain id {actual:?}, expected {expected:?}")]
    RecordWrongChain {
        /// The record.
        record_id: Hash,
        /// The genesis chain id.
        expected: String,
        /// The record's chain id.
        actual: String,
    },
    /// A record is signed by a branch that genesis does not list.
    #[error("record {record_id}: branch {branch_id} is not in genesis")]
    UnknownBranch {
        /// The record.
        record_id: Hash,
        /// The branch it names.
        branch_id: BranchId,
    },
    /// The branch signature does not verify under the branch's genesis key.
    #[error("record {record_id}: branch signature: {reason}")]
    BadRecordSignature {
        /// The record.
        record_id: Hash,
        /// Why.
        reason: VerifyError,
    },
    /// A co-signature does not verify under the key it names.
    #[error("record {record_id}: co-signature {co_signature_index}: {reason}")]
    BadCoSignature {
        /// The record.
        record_id: Hash,
        /// Position of the co-signature in the record's list.
        co_signature_index: usize,
        /// Why.
        reason: VerifyError,
    },
    /// Records of a block break record rules (every bad record is named).
    #[error("block at height {height}: {error}")]
    BadRecords {
        /// The block's height.
        height: Height,
        /// Every bad record.
        error: RecordBatchError,
    },

    // Header link.
    /// A header names another chain than the genesis.
    #[error("header at height {height}: chain id {actual:?}, expected {expected:?}")]
    HeaderWrongChain {
        /// The header's height.
        height: Height,
        /// The genesis chain id.
        expected: String,
        /// The header's chain id.
        actual: String,
    },
    /// The height is not one more than the parent's (or not 1 for the first block).
    #[error("header height {actual}, expected {expected}")]
    WrongHeight {
        /// The height that must follow.
        expected: Height,
        /// The header's height.
        actual: Height,
    },
    /// `prev_block_id` is not the parent's block id ([`Hash::ZERO`] at height 1).
    #[error("header at height {height}: prev_block_id {actual}, expected {expected}")]
    WrongParent {
        /// The header's height.
        height: Height,
        /// The parent's block id.
        expected: Hash,
        /// The header's `prev_block_id`.
        actual: Hash,
    },
    /// The block time is not strictly after the parent's time (or the genesis time).
    #[error("header at height {height}: time {actual_ms} ms is not after {previous_ms} ms")]
    TimeNotIncreasing {
        /// The header's height.
        height: Height,
        /// The parent's time (or the genesis time at height 1).
        previous_ms: u64,
        /// The header's time.
        actual_ms: u64,
    },
    /// The header names another validator set than the genesis one.
    #[error("header at height {height}: validator set {actual}, expected {expected}")]
    WrongValidatorSet {
        /// The header's height.
        height: Height,
        /// The genesis validator set id.
        expected: Hash,
        /// The header's `validator_set_id`.
        actual: Hash,
    },
    /// The proposer index is not one that could have proposed this block by the commit round.
    #[error(
        "header at height {height}: proposer {actual} cannot have proposed a block committed \
         in round {round} (round-0 proposer is {expected_round_0} of {validator_count})"
    )]
    WrongProposer {
        /// The header's height.
        height: Height,
        /// The round of the commit certificate.
        round: Round,
        /// `proposer(height, 0)`.
        expected_round_0: ValidatorIndex,
        /// The header's `proposer_index`.
        actual: ValidatorIndex,
        /// Size of the validator set.
        validator_count: usize,
    },
    /// The block time is further ahead of the local clock than the allowed drift.
    #[error(
        "header at height {height}: time {time_ms} ms is more than {max_drift_ms} ms after \
         now ({now_ms} ms)"
    )]
    TimeInFuture {
        /// The header's height.
        height: Height,
        /// The header's time.
        time_ms: u64,
        /// The local clock.
        now_ms: u64,
        /// The allowed drift.
        max_drift_ms: u64,
    },

    // Block contents.
    /// `record_count` does not match the records carried.
    #[error("block at height {height}: header says {header} records, block has {actual}")]
    RecordCountMismatch {
        /// The block's height.
        height: Height,
        /// The header's `record_count`.
        header: u32,
        /// Records in the block.
        actual: usize,
    },
    /// `records_root` is not the Merkle root of the record ids.
    #[error("block at height {height}: records root {header}, computed {computed}")]
    RecordsRootMismatch {
        /// The block's height.
        height: Height,
        /// The header's `records_root`.
        header: Hash,
        /// The root of the records carried.
        computed: Hash,
    },
    /// The same record id appears twice in one block.
    #[error("block at height {height}: record {record_id} at {first_index} and {second_index}")]
    DuplicateRecord {
        /// The block's height.
        height: Height,
        /// The repeated id.
        record_id: Hash,
        /// Its first position.
        first_index: usize,
        /// Its second position.
        second_index: usize,
    },
    /// The encoded block is larger than genesis allows.
    #[error("block at height {height}: {bytes} bytes, limit {limit}")]
    BlockTooLarge {
        /// The block's height.
        height: Height,
        /// Encoded size.
        bytes: usize,
        /// `max_block_bytes` of genesis.
        limit: usize,
    },
    /// The block holds more records than genesis allows.
    #[error("block at height {height}: {count} records, limit {limit}")]
    TooManyRecords {
        /// The block's height.
        height: Height,
        /// Records in the block.
        count: usize,
        /// `max_block_records` of genesis.
        limit: usize,
    },

    // Commit certificates.
    /// The certificate is for another height than the header.
    #[error("commit for height {commit}, header at height {header}")]
    CommitWrongHeight {
        /// The header's height.
        header: Height,
        /// The certificate's height.
        commit: Height,
    },
    /// The certificate is for another block than the header.
    #[error("commit at height {height} is for block {commit}, header is block {header}")]
    CommitWrongBlock {
        /// The height.
        height: Height,
        /// The header's block id.
        header: Hash,
        /// The certificate's block id.
        commit: Hash,
    },
    /// Signatures are not in strictly increasing validator order (a repeat is a duplicate).
    #[error(
        "commit at height {height}: signature {position} is by validator {index}, not after \
         validator {previous}"
    )]
    CommitSignaturesNotIncreasing {
        /// The height.
        height: Height,
        /// Position in the certificate's list.
        position: usize,
        /// The validator of the signature before it.
        previous: ValidatorIndex,
        /// The validator of this signature.
        index: ValidatorIndex,
    },
    /// A signature names a validator index outside the set.
    #[error("commit at height {height}: validator {index} is outside a set of {validator_count}")]
    UnknownValidator {
        /// The height.
        height: Height,
        /// The index named.
        index: ValidatorIndex,
        /// Size of the validator set.
        validator_count: usize,
    },
    /// Fewer distinct signatures than the quorum.
    #[error(
        "commit at height {height}: {signatures} signatures, quorum of {validator_count} \
         validators is {quorum}"
    )]
    InsufficientQuorum {
        /// The height.
        height: Height,
        /// Distinct signatures present.
        signatures: usize,
        /// Signatures needed.
        quorum: usize,
        /// Size of the validator set.
        validator_count: usize,
    },
    /// Precommit signatures that do not verify (every bad one is named).
    #[error("commit at height {height}: bad precommit signatures by validators {validators:?}")]
    BadCommitSignatures {
        /// The height.
        height: Height,
        /// The validators whose signatures fail, in increasing order.
        validators: Vec<ValidatorIndex>,
    },
}

/// The records of a batch that failed, each with its position, id and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} bad record(s), first: {}", bad.len(), first_reason(bad))]
pub struct RecordBatchError {
    /// `(position in the batch, record id, why)`, sorted by position; a record with several
    /// faults appears once per fault.
    pub bad: Vec<(usize, Hash, VerificationError)>,
}

fn first_reason(bad: &[(usize, Hash, VerificationError)]) -> String {
    bad.first()
        .map(|(index, _, reason)| format!("#{index}: {reason}"))
        .unwrap_or_default()
}

impl RecordBatchError {
    /// The positions of the bad records, each once, in increasing order.
    pub fn indices(&self) -> Vec<usize> {
        let mut indices: Vec<usize> = self.bad.iter().map(|b| b.0).collect();
        indices.dedup();
        indices
    }
}
