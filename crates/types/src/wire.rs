//! Messages between nodes (DESIGN.md §5): what travels on the two gossip topics and on the
//! block-sync protocol, with the limits every decoder applies.
//!
//! Gossip messages carry no signature of their own: records carry their branch's signature,
//! proposals and votes their validator's, and the connection is authenticated by noise. A
//! message-level signature would double the cryptography for nothing.
//!
//! Every decoder here takes bytes from a peer, so each is bounded, strict (no trailing bytes)
//! and fuzzed.

use borsh::{BorshDeserialize, BorshSerialize};

use branchledger_crypto::Hash;

use crate::block::{Block, BlockHeader, CommittedBlock, Height, Round, SignedProposal, SignedVote};
use crate::codec::{decode, encode, DecodeError};
use crate::limits::{BLOCK_BYTES_MAX, CONSENSUS_MESSAGE_BYTES_MAX, RECORD_BYTES_MAX};
use crate::record::SignedRecord;

/// Most records in one gossiped batch.
pub const GOSSIP_RECORDS_MAX: usize = 2_048;
/// Largest encoded record batch on the records topic, in bytes.
pub const GOSSIP_RECORDS_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest encoded consensus message: a proposal with a block at the protocol's limit.
pub const GOSSIP_CONSENSUS_BYTES_MAX: usize = BLOCK_BYTES_MAX + CONSENSUS_MESSAGE_BYTES_MAX;
/// Most blocks one sync request may ask for.
pub const SYNC_BLOCKS_PER_REQUEST_MAX: u32 = 256;
/// A node answering a sync request stops adding blocks once the answer reaches this size (it
/// always sends at least one block, so a block at the protocol's limit still travels).
pub const SYNC_RESPONSE_BYTES_TARGET: usize = 8 * 1024 * 1024;
/// Largest encoded sync response: the target, plus one block at the protocol's limit with its
/// certificate.
pub const SYNC_RESPONSE_BYTES_MAX: usize =
    SYNC_RESPONSE_BYTES_TARGET + BLOCK_BYTES_MAX + CONSENSUS_MESSAGE_BYTES_MAX;
/// Largest encoded sync request.
pub const SYNC_REQUEST_BYTES_MAX: usize = 64;

const _: () = assert!(RECORD_BYTES_MAX < GOSSIP_RECORDS_BYTES_MAX);
const _: () = assert!(SYNC_RESPONSE_BYTES_TARGET < SYNC_RESPONSE_BYTES_MAX);

/// A batch of records admitted by the sending node's mempool, on the records topic.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RecordBatch {
    /// The records, at most [`GOSSIP_RECORDS_MAX`].
    pub records: Vec<SignedRecord>,
}

impl RecordBatch {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a batch of at most [`GOSSIP_RECORDS_BYTES_MAX`] bytes and
    /// [`GOSSIP_RECORDS_MAX`] records.
    pub fn from_bytes(bytes: &[u8]) -> Result<RecordBatch, DecodeError> {
        let batch: RecordBatch = decode("record batch", bytes, GOSSIP_RECORDS_BYTES_MAX)?;
        if batch.records.len() > GOSSIP_RECORDS_MAX {
            return Err(DecodeError::TooLarge {
                what: "record batch records",
                actual: batch.records.len(),
                limit: GOSSIP_RECORDS_MAX,
            });
        }
        Ok(batch)
    }
}

/// A consensus message, on the consensus topic.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMessage {
    /// A proposal with the block it proposes.
    Proposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// The block (its id must be the proposal's `block_id`).
        block: Box<Block>,
    },
    /// A prevote or precommit.
    Vote(SignedVote),
    /// A proposal whose block travels compact: its header, and for each record either the
    /// record or only its id, when the receivers hold it already (it reached them on the
    /// records topic). The receiver rebuilds the block from its mempool; the header's
    /// `records_root` still binds every record, so a wrong id makes the block invalid, not
    /// another block.
    CompactProposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// The block (its header's id must be the proposal's `block_id`).
        block: Box<CompactBlock>,
    },
    /// A node that could not rebuild a compact proposal's block (it lacks some records) asks
    /// for it whole; the proposer answers with a [`ConsensusMessage::Proposal`].
    BlockWanted(BlockWanted),
}

/// One record of a [`CompactBlock`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum CompactRecord {
    /// Only the record's id: the receiver holds the record already.
    Id(Hash),
    /// The record itself (boxed, so a list of ids stays small in memory).
    Full(Box<SignedRecord>),
}

/// A block with some records replaced by their ids.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CompactBlock {
    /// The header (its `record_count` must be the number of `records`).
    pub header: BlockHeader,
    /// The records in block order, each whole or as its id.
    pub records: Vec<CompactRecord>,
}

impl CompactBlock {
    /// The compact form of `block`, whose record ids are `ids` (in block order): a record
    /// for which `by_id` says true travels as its id, any other whole.
    pub fn new(block: &Block, ids: &[Hash], mut by_id: impl FnMut(&Hash) -> bool) -> CompactBlock {
        let records = block
            .records
            .iter()
            .zip(ids)
            .map(|(record, id)| {
                if by_id(id) {
                    CompactRecord::Id(*id)
                } else {
                    CompactRecord::Full(Box::new(record.clone()))
                }
            })
            .collect();
        CompactBlock {
            header: block.header.clone(),
            records,
        }
    }

    /// Records that travel as their ids.
    pub fn ids_only(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, CompactRecord::Id(_)))
            .count()
    }
}

/// A request for the whole block of a compact proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockWanted {
    /// The proposal's height.
    pub height: Height,
    /// The proposal's round.
    pub round: Round,
    /// The block wanted.
    pub block_id: Hash,
}

/// A consensus message as gossiped. The nonce makes each sending a distinct gossip message, so
/// a message sent again (to reach a peer that lost it) is not suppressed as a duplicate by the
/// gossip layer; the receiver ignores the nonce.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConsensusGossip {
    /// Distinct per sending.
    pub nonce: u64,
    /// The message.
    pub message: ConsensusMessage,
}

impl ConsensusGossip {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes at most `limit` bytes (never more than [`GOSSIP_CONSENSUS_BYTES_MAX`]); a
    /// vote or a block request must fit [`CONSENSUS_MESSAGE_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<ConsensusGossip, DecodeError> {
        let gossip: ConsensusGossip = decode(
            "consensus message",
            bytes,
            limit.min(GOSSIP_CONSENSUS_BYTES_MAX),
        )?;
        let small = match gossip.message {
            ConsensusMessage::Vote(_) => Some("vote"),
            ConsensusMessage::BlockWanted(_) => Some("block request"),
            ConsensusMessage::Proposal { .. } | ConsensusMessage::CompactProposal { .. } => None,
        };
        if let Some(what) = small.filter(|_| bytes.len() > CONSENSUS_MESSAGE_BYTES_MAX) {
            return Err(DecodeError::TooLarge {
                what,
                actual: bytes.len(),
                limit: CONSENSUS_MESSAGE_BYTES_MAX,
            });
        }
        Ok(gossip)
    }
}

/// A block-sync request: committed blocks from a height on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncRequest {
    /// First height wanted.
    pub from: Height,
    /// Most blocks wanted, at most [`SYNC_BLOCKS_PER_REQUEST_MAX`].
    pub count: u32,
}

impl SyncRequest {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a request, refusing a count above [`SYNC_BLOCKS_PER_REQUEST_MAX`] or a height 0.
    pub fn from_bytes(bytes: &[u8]) -> Result<SyncRequest, DecodeError> {
        let request: SyncRequest = decode("sync request", bytes, SYNC_REQUEST_BYTES_MAX)?;
        if request.count > SYNC_BLOCKS_PER_REQUEST_MAX {
            return Err(DecodeError::TooLarge {
                what: "sync request count",
                actual: request.count as usize,
                limit: SYNC_BLOCKS_PER_REQUEST_MAX as usize,
            });
        }
        if request.from == 0 {
            return Err(DecodeError::Malformed {
                what: "sync request",
                reason: "heights start at 1".into(),
            });
        }
        Ok(request)
    }
}

/// The answer to a [`SyncRequest`]: consecutive committed blocks from the height asked, and
/// the answering node's tip, so the asker knows whether to ask again.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncResponse {
    /// The answering node's last committed height.
    pub tip: Height,
    /// Blocks from the height asked, consecutive; empty when it has none.
    pub blocks: Vec<CommittedBlock>,
}

impl SyncResponse {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes at most [`SYNC_RESPONSE_BYTES_MAX`] bytes and [`SYNC_BLOCKS_PER_REQUEST_MAX`]
    /// blocks.
    pub fn from_bytes(bytes: &[u8]) -> Result<SyncResponse, DecodeError> {
        let response: SyncResponse = decode("sync response", bytes, SYNC_RESPONSE_BYTES_MAX)?;
        if response.blocks.len() > SYNC_BLOCKS_PER_REQUEST_MAX as usize {
            return Err(DecodeError::TooLarge {
                what: "sync response blocks",
                actual: response.blocks.len(),
                limit: SYNC_BLOCKS_PER_REQUEST_MAX as usize,
            });
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::block::{Proposal, Vote, VoteKind};
    use crate::ids::{BranchId, Date, MemberId};
    use crate::record::{Record, RecordBody, StudyForm, StudySession};
    use branchledger_crypto::Keypair;

    /// A block of two records, its compact form (the first by id), and a proposal of it.
    fn compact_sample() -> (Block, CompactBlock, SignedProposal) {
        let key = Keypair::from_seed([7; 32]);
        let records: Vec<SignedRecord> = (0..2)
            .map(|nonce| {
                Record {
                    chain_id: "wire-test".into(),
                    branch_id: BranchId("b0".into()),
                    created_at_ms: 1,
                    nonce,
                    body: RecordBody::StudySession(StudySession {
                        member_id: MemberId("m-1".into()),
                        material: "handbook".into(),
                        minutes: 30,
                        form: StudyForm::Group,
                        occurred_on: Date::new(2025, 3, 1),
                    }),
                }
                .sign(&key)
            })
            .collect();
        let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
        let block = Block {
            header: BlockHeader {
                chain_id: "wire-test".into(),
                height: 3,
                time_ms: 1,
                prev_block_id: Hash::ZERO,
                records_root: crate::merkle::root(&ids),
                record_count: 2,
                state_digest: Hash::ZERO,
                proposer_index: 0,
                validator_set_id: Hash::ZERO,
            },
            records,
        };
        let first = ids[0];
        let compact = CompactBlock::new(&block, &ids, |id| *id == first);
        let proposal = Proposal {
            height: 3,
            round: 0,
            block_id: block.id(),
            valid_round: None,
            proposer_index: 0,
        }
        .sign("wire-test", &key);
        (block, compact, proposal)
    }

    #[test]
    fn a_compact_block_names_the_chosen_records_by_id_and_round_trips() {
        let (block, compact, proposal) = compact_sample();
        assert_eq!(compact.ids_only(), 1);
        assert_eq!(compact.records[0], CompactRecord::Id(block.records[0].id()));
        assert_eq!(
            compact.records[1],
            CompactRecord::Full(Box::new(block.records[1].clone()))
        );
        assert_eq!(compact.header, block.header);
        let gossip = ConsensusGossip {
            nonce: 5,
            message: ConsensusMessage::CompactProposal {
                proposal,
                block: Box::new(compact),
            },
        };
        let bytes = gossip.to_bytes();
        let whole = ConsensusGossip {
            nonce: 5,
            message: ConsensusMessage::Proposal {
                proposal,
                block: Box::new(block),
            },
        };
        assert!(bytes.len() < whole.to_bytes().len());
        assert_eq!(ConsensusGossip::from_bytes(&bytes, usize::MAX), Ok(gossip));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(ConsensusGossip::from_bytes(&trailing, usize::MAX).is_err());
    }

    #[test]
    fn consensus_messages_keep_their_tags() {
        let (block, compact, proposal) = compact_sample();
        let vote = Vote {
            height: 3,
            round: 0,
            kind: VoteKind::Prevote,
            block_id: Some(block.id()),
            validator_index: 0,
        }
        .sign("wire-test", &Keypair::from_seed([7; 32]));
        let wanted = BlockWanted {
            height: 3,
            round: 0,
            block_id: block.id(),
        };
        // The tag follows the 8-byte nonce; the first two are those of earlier versions.
        let messages = [
            ConsensusMessage::Proposal {
                proposal,
                block: Box::new(block),
            },
            ConsensusMessage::Vote(vote),
            ConsensusMessage::CompactProposal {
                proposal,
                block: Box::new(compact),
            },
            ConsensusMessage::BlockWanted(wanted),
        ];
        for (tag, message) in messages.into_iter().enumerate() {
            let bytes = ConsensusGossip { nonce: 0, message }.to_bytes();
            assert_eq!(usize::from(bytes[8]), tag);
        }
        // A request with bytes after it is refused.
        let mut padded = ConsensusGossip {
            nonce: 0,
            message: ConsensusMessage::BlockWanted(wanted),
        }
        .to_bytes();
        padded.push(0);
        assert!(ConsensusGossip::from_bytes(&padded, usize::MAX).is_err());
    }

    #[test]
    fn sync_requests_are_bounded() {
        let ok = SyncRequest { from: 1, count: 10 };
        assert_eq!(SyncRequest::from_bytes(&ok.to_bytes()), Ok(ok));
        let too_many = SyncRequest {
            from: 1,
            count: SYNC_BLOCKS_PER_REQUEST_MAX + 1,
        };
        assert!(matches!(
            SyncRequest::from_bytes(&too_many.to_bytes()),
            Err(DecodeError::TooLarge { .. })
        ));
        let zero = SyncRequest { from: 0, count: 1 };
        assert!(matches!(
            SyncRequest::from_bytes(&zero.to_bytes()),
            Err(DecodeError::Malformed { .. })
        ));
        let mut trailing = ok.to_bytes();
        trailing.push(0);
        assert!(SyncRequest::from_bytes(&trailing).is_err());
    }

    #[test]
    fn empty_and_garbage_input_is_refused() {
        assert!(RecordBatch::from_bytes(&[]).is_err());
        assert!(RecordBatch::from_bytes(&[0xff; 16]).is_err());
        assert!(ConsensusGossip::from_bytes(&[7; 3], 1 << 20).is_err());
        assert!(SyncResponse::from_bytes(&[1, 2, 3]).is_err());
        let empty = RecordBatch { records: vec![] };
        assert_eq!(RecordBatch::from_bytes(&empty.to_bytes()), Ok(empty));
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; GOSSIP_RECORDS_BYTES_MAX + 1];
        assert!(matches!(
            RecordBatch::from_bytes(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let limit = 1024;
        assert!(matches!(
            ConsensusGossip::from_bytes(&vec![0u8; limit + 1], limit),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_batch_count_above_the_limit_is_refused() {
        // The length prefix claims more records than allowed; decoding stops at the count
        // check or at truncation, never allocating for the claim.
        let mut bytes = ((GOSSIP_RECORDS_MAX + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 64]);
        assert!(RecordBatch::from_bytes(&bytes).is_err());
    }
}
