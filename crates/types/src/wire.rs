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

use crate::block::{Block, CommittedBlock, Height, SignedProposal, SignedVote};
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
    /// vote alone must fit [`CONSENSUS_MESSAGE_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<ConsensusGossip, DecodeError> {
        let gossip: ConsensusGossip = decode(
            "consensus message",
            bytes,
            limit.min(GOSSIP_CONSENSUS_BYTES_MAX),
        )?;
        if matches!(gossip.message, ConsensusMessage::Vote(_))
            && bytes.len() > CONSENSUS_MESSAGE_BYTES_MAX
        {
            return Err(DecodeError::TooLarge {
                what: "vote",
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
