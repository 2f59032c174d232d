//! Blocks, votes, proposals and commit certificates (DESIGN.md §4).

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{hash_tagged, signing_bytes, Domain, Hash, Signature, Signer};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, DecodeError};
use crate::limits::{BLOCK_BYTES_MAX, CONSENSUS_MESSAGE_BYTES_MAX};
use crate::merkle;
use crate::record::SignedRecord;

/// Height of a block; the first block is height 1.
pub type Height = u64;
/// Consensus round within a height, from 0.
pub type Round = u32;
/// Position of a validator in the genesis list.
pub type ValidatorIndex = u16;

/// The header of a block: everything the block id covers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The chain.
    pub chain_id: String,
    /// Height, from 1.
    pub height: Height,
    /// The proposer's clock when it built the block, Unix milliseconds; strictly increasing.
    pub time_ms: u64,
    /// The id of the block at `height - 1` ([`Hash::ZERO`] for height 1).
    pub prev_block_id: Hash,
    /// Merkle root over the record ids in block order.
    pub records_root: Hash,
    /// Number of records.
    pub record_count: u32,
    /// The derived-state digest after applying this block, chained onto the previous one.
    pub state_digest: Hash,
    /// Index of the validator that proposed this block.
    pub proposer_index: ValidatorIndex,
    /// The id of the validator set that must sign this block's commit.
    pub validator_set_id: Hash,
}

impl BlockHeader {
    /// The block id: `H(tag_block_id ‖ canonical(header))`.
    pub fn block_id(&self) -> Hash {
        hash_tagged(Domain::BlockId, &[&encode(self)])
    }
}

/// A block: a header and its records.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The records, in the order their ids are in the Merkle tree.
    pub records: Vec<SignedRecord>,
}

impl Block {
    /// The block id (of the header).
    pub fn id(&self) -> Hash {
        self.header.block_id()
    }

    /// The Merkle root the header must carry for these records.
    pub fn compute_records_root(&self) -> Hash {
        let ids: Vec<Hash> = self.records.iter().map(SignedRecord::id).collect();
        merkle::root(&ids)
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a block of at most `limit` bytes (never more than [`BLOCK_BYTES_MAX`]).
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<Block, DecodeError> {
        decode("block", bytes, limit.min(BLOCK_BYTES_MAX))
    }
}

/// Prevote or precommit.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = false)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    /// First voting step.
    Prevote,
    /// Second voting step; a quorum of these for one block commits it.
    Precommit,
}

/// A vote, as signed.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Vote {
    /// Height voted at.
    pub height: Height,
    /// Round voted at.
    pub round: Round,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block voted for, or none (nil).
    pub block_id: Option<Hash>,
    /// The voter.
    pub validator_index: ValidatorIndex,
}

impl Vote {
    /// The bytes a validator signs: `tag_vote ‖ chain_id ‖ canonical(vote)`.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        signing_bytes(Domain::Vote, chain_id, &encode(self))
    }

    /// Signs this vote.
    pub fn sign(self, chain_id: &str, key: &dyn Signer) -> SignedVote {
        let signature = key.sign(&self.signing_message(chain_id));
        SignedVote {
            vote: self,
            signature,
        }
    }
}

/// A vote with its signature.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct SignedVote {
    /// The vote.
    pub vote: Vote,
    /// The validator's signature over [`Vote::signing_message`].
    pub signature: Signature,
}

impl SignedVote {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded by [`CONSENSUS_MESSAGE_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode("signed vote", bytes, CONSENSUS_MESSAGE_BYTES_MAX)
    }
}

/// A proposal of a block for a height and round (the block travels beside it).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The proposed block.
    pub block_id: Hash,
    /// The round in which the proposer saw a polka for this block, if any (Algorithm 1's
    /// `validRound`; none is the paper's −1).
    pub valid_round: Option<Round>,
    /// The proposer.
    pub proposer_index: ValidatorIndex,
}

impl Proposal {
    /// The bytes the proposer signs: `tag_proposal ‖ chain_id ‖ canonical(proposal)`.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        signing_bytes(Domain::Proposal, chain_id, &encode(self))
    }

    /// Signs this proposal.
    pub fn sign(self, chain_id: &str, key: &dyn Signer) -> SignedProposal {
        let signature = key.sign(&self.signing_message(chain_id));
        SignedProposal {
            proposal: self,
            signature,
        }
    }
}

/// A proposal with its signature.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct SignedProposal {
    /// The proposal.
    pub proposal: Proposal,
    /// The proposer's signature over [`Proposal::signing_message`].
    pub signature: Signature,
}

/// One validator's precommit signature inside a commit certificate.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct CommitSignature {
    /// The validator.
    pub validator_index: ValidatorIndex,
    /// Its signature over the precommit `Vote { height, round, Precommit, Some(block_id), validator_index }`.
    pub signature: Signature,
}

/// Proof that a block is final: a quorum of distinct validators precommitted it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// Height of the block.
    pub height: Height,
    /// Round in which it was committed.
    pub round: Round,
    /// The block's id.
    pub block_id: Hash,
    /// Precommit signatures, strictly increasing by validator index.
    pub signatures: Vec<CommitSignature>,
}

impl CommitCertificate {
    /// The precommit vote that the signature of `validator_index` covers.
    pub fn vote_of(&self, validator_index: ValidatorIndex) -> Vote {
        Vote {
            height: self.height,
            round: self.round,
            kind: VoteKind::Precommit,
            block_id: Some(self.block_id),
            validator_index,
        }
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded by [`CONSENSUS_MESSAGE_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode("commit certificate", bytes, CONSENSUS_MESSAGE_BYTES_MAX)
    }
}

/// A block with the certificate that makes it final.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its commit.
    pub commit: CommitCertificate,
}

/// Misbehaviour that can be proven with signed messages alone.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Two different votes by one validator for the same height, round and kind.
    DuplicateVote {
        /// One vote.
        first: SignedVote,
        /// The conflicting vote.
        second: SignedVote,
    },
}
