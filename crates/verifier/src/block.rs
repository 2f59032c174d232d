//! Block-level predicates: the header's link to its parent, the proposer, the records root and
//! limits, the commit certificate, the clock (DESIGN.md §4), and their composition.

use std::collections::HashMap;

use branchledger_crypto::{BatchVerifier, Hash};
use branchledger_types::genesis::ConsensusParams;
use branchledger_types::{
    encoded_len, merkle, Block, BlockHeader, CommitCertificate, CommittedBlock, Genesis, Round,
    ValidatorIndex, ValidatorSet,
};

use crate::error::{Result, VerificationError};
use crate::record::check_records;

/// The header follows `prev` (none: it is the first block) on the genesis chain
/// (DESIGN.md §4):
///
/// * `chain_id` is the genesis chain id;
/// * `height` is `prev.height + 1`, or 1 for the first block;
/// * `prev_block_id` is `prev`'s block id, or [`Hash::ZERO`] for the first block;
/// * `time_ms` is strictly after `prev.time_ms`, or after `genesis_time_ms` for the first block;
/// * `validator_set_id` is the id of the genesis validator set.
///
/// The proposer depends on the commit round as well: see [`check_proposer`].
pub fn check_header_link(
    prev: Option<&BlockHeader>,
    header: &BlockHeader,
    genesis: &Genesis,
) -> Result {
    if header.chain_id != genesis.chain_id {
        return Err(VerificationError::HeaderWrongChain {
            height: header.height,
            expected: genesis.chain_id.clone(),
            actual: header.chain_id.clone(),
        });
    }
    let expected_height = prev.map_or(1, |p| p.height.saturating_add(1));
    // The second condition only matters at the (unreachable) top of the height range, where
    // the saturating addition would otherwise let a header repeat its parent's height.
    if header.height != expected_height || prev.is_some_and(|p| header.height <= p.height) {
        return Err(VerificationError::WrongHeight {
            expected: expected_height,
            actual: header.height,
        });
    }
    let expected_parent = prev.map_or(Hash::ZERO, BlockHeader::block_id);
    if header.prev_block_id != expected_parent {
        return Err(VerificationError::WrongParent {
            height: header.height,
            expected: expected_parent,
            actual: header.prev_block_id,
        });
    }
    let previous_ms = prev.map_or(genesis.genesis_time_ms, |p| p.time_ms);
    if header.time_ms <= previous_ms {
        return Err(VerificationError::TimeNotIncreasing {
            height: header.height,
            previous_ms,
            actual_ms: header.time_ms,
        });
    }
    let expected_set = genesis.validator_set().id();
    if header.validator_set_id != expected_set {
        return Err(VerificationError::WrongValidatorSet {
            height: header.height,
            expected: expected_set,
            actual: header.validator_set_id,
        });
    }
    Ok(())
}

/// The header's `proposer_index` is a validator that proposes at this height in some round
/// up to `commit_round`, with `proposer(h, r) = (h + r) mod n` (DESIGN.md §4).
///
/// Why not exactly `proposer(h, commit_round)`: in Tendermint (Algorithm 1, line 16) the
/// proposer of round `r` re-proposes its `validValue` when it has one, a block built (with its
/// header, proposer index included) by the proposer of an earlier round. Its header cannot be
/// changed without changing the block id the polka was for, so the rule a verifier can hold
/// every honest chain to is "the builder's first proposing round at this height is no later
/// than the commit round".
pub fn check_proposer(set: &ValidatorSet, header: &BlockHeader, commit_round: Round) -> Result {
    let validator_count = set.len();
    let wrong = || VerificationError::WrongProposer {
        height: header.height,
        round: commit_round,
        expected_round_0: set.proposer(header.height, 0),
        actual: header.proposer_index,
        validator_count,
    };
    let n = validator_count as u64;
    let index = u64::from(header.proposer_index);
    if index >= n {
        return Err(wrong());
    }
    // The smallest r >= 0 with (h + r) mod n == index.
    let first_round = (index + n - header.height % n) % n;
    if first_round > u64::from(commit_round) {
        return Err(wrong());
    }
    Ok(())
}

/// The block's records match its header (DESIGN.md §4): `record_count` is the number of
/// records, no record id appears twice, and `records_root` is the Merkle root of the record
/// ids in block order.
pub fn check_records_root(block: &Block) -> Result {
    checked_record_ids(block).map(drop)
}

/// [`check_records_root`], giving the record ids in block order (computed once, in parallel)
/// for a caller that needs them next, as the state rules do.
pub fn checked_record_ids(block: &Block) -> Result<Vec<Hash>> {
    let height = block.header.height;
    if block.records.len() != block.header.record_count as usize {
        return Err(VerificationError::RecordCountMismatch {
            height,
            header: block.header.record_count,
            actual: block.records.len(),
        });
    }
    let ids: Vec<Hash> = crate::record::map_records(&block.records, |_, record| record.id());
    let mut first_seen: HashMap<Hash, usize> = HashMap::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        if let Some(first_index) = first_seen.insert(*id, index) {
            return Err(VerificationError::DuplicateRecord {
                height,
                record_id: *id,
                first_index,
                second_index: index,
            });
        }
    }
    let computed = merkle::root(&ids);
    if computed != block.header.records_root {
        return Err(VerificationError::RecordsRootMismatch {
            height,
            header: block.header.records_root,
            computed,
        });
    }
    Ok(ids)
}

/// The block is within the genesis limits: at most `max_block_records` records and at most
/// `max_block_bytes` encoded bytes (DESIGN.md §4).
pub fn check_block_size(block: &Block, params: &ConsensusParams) -> Result {
    let height = block.header.height;
    let limit = params.max_block_records as usize;
    if block.records.len() > limit {
        return Err(VerificationError::TooManyRecords {
            height,
            count: block.records.len(),
            limit,
        });
    }
    let bytes = encoded_len(block);
    let limit = params.max_block_bytes as usize;
    if bytes > limit {
        return Err(VerificationError::BlockTooLarge {
            height,
            bytes,
            limit,
        });
    }
    Ok(())
}

/// The certificate proves that a quorum of `set` precommitted this header's block
/// (DESIGN.md §4):
///
/// * its height and block id are the header's;
/// * its signatures are in strictly increasing validator order, so no validator counts twice;
/// * every index is inside the set;
/// * there are at least ⌊2n/3⌋ + 1 of them;
/// * every signature verifies (ZIP-215, batched) over the precommit
///   [`CommitCertificate::vote_of`] that validator, on `chain_id`.
///
/// Every signature must verify, even beyond the quorum: a certificate is stored and served as
/// proof, and must not carry garbage.
pub fn verify_commit(
    set: &ValidatorSet,
    chain_id: &str,
    header: &BlockHeader,
    cert: &CommitCertificate,
) -> Result {
    let height = header.height;
    if cert.height != height {
        return Err(VerificationError::CommitWrongHeight {
            header: height,
            commit: cert.height,
        });
    }
    let block_id = header.block_id();
    if cert.block_id != block_id {
        return Err(VerificationError::CommitWrongBlock {
            height,
            header: block_id,
            commit: cert.block_id,
        });
    }
    let validator_count = set.len();
    let mut previous: Option<ValidatorIndex> = None;
    let mut keys = Vec::with_capacity(cert.signatures.len());
    for (position, signature) in cert.signatures.iter().enumerate() {
        let index = signature.validator_index;
        if let Some(previous) = previous {
            if index <= previous {
                return Err(VerificationError::CommitSignaturesNotIncreasing {
                    height,
                    position,
                    previous,
                    index,
                });
            }
        }
        let Some(validator) = set.get(index) else {
            return Err(VerificationError::UnknownValidator {
                height,
                index,
                validator_count,
            });
        };
        keys.push(validator.consensus_key);
        previous = Some(index);
    }
    let quorum = set.quorum();
    if cert.signatures.len() < quorum {
        return Err(VerificationError::InsufficientQuorum {
            height,
            signatures: cert.signatures.len(),
            quorum,
            validator_count,
        });
    }
    let messages: Vec<Vec<u8>> = cert
        .signatures
        .iter()
        .map(|s| cert.vote_of(s.validator_index).signing_message(chain_id))
        .collect();
    let mut batch = BatchVerifier::with_capacity(cert.signatures.len());
    for ((signature, message), key) in cert.signatures.iter().zip(&messages).zip(keys) {
        batch.queue(key, message, signature.signature);
    }
    batch.verify_parallel().map_err(|failed| {
        let validators = failed
            .bad
            .iter()
            .map(|(item, _)| cert.signatures[*item].validator_index)
            .collect();
        VerificationError::BadCommitSignatures { height, validators }
    })
}

/// For a live validator only (an auditor has no "now" to compare with): the block's time is
/// not more than `max_drift_ms` ahead of the local clock `now_ms` (genesis
/// `max_clock_drift_ms`).
pub fn check_time_not_future(header: &BlockHeader, now_ms: u64, max_drift_ms: u64) -> Result {
    if header.time_ms > now_ms.saturating_add(max_drift_ms) {
        return Err(VerificationError::TimeInFuture {
            height: header.height,
            time_ms: header.time_ms,
            now_ms,
            max_drift_ms,
        });
    }
    Ok(())
}

/// Everything that makes a committed block valid on top of `prev_header` (none: the first
/// block), given the genesis alone: [`check_header_link`], [`check_proposer`],
/// [`verify_commit`], [`check_block_size`], [`check_records_root`], and every record's
/// stateless rules and signatures (batched on all cores). The cheap checks run first; the
/// first rule broken is returned, and for records every bad record is named.
///
/// Stateful record rules (a member exists, an id is unused, …) and the `state_digest` need
/// the derived state and are checked when the block is applied.
pub fn verify_committed_block(
    genesis: &Genesis,
    prev_header: Option<&BlockHeader>,
    committed: &CommittedBlock,
) -> Result {
    verify_committed_block_ids(genesis, prev_header, committed).map(drop)
}

/// [`verify_committed_block`], giving the record ids in block order.
pub fn verify_committed_block_ids(
    genesis: &Genesis,
    prev_header: Option<&BlockHeader>,
    committed: &CommittedBlock,
) -> Result<Vec<Hash>> {
    let header = &committed.block.header;
    let set = genesis.validator_set();
    check_header_link(prev_header, header, genesis)?;
    check_proposer(&set, header, committed.commit.round)?;
    verify_commit(&set, &genesis.chain_id, header, &committed.commit)?;
    check_block_size(&committed.block, &genesis.consensus)?;
    let ids = checked_record_ids(&committed.block)?;
    check_records(genesis, &committed.block.records).map_err(|error| {
        VerificationError::BadRecords {
            height: header.height,
            error,
        }
    })?;
    Ok(ids)
}
