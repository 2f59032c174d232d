//! Records, blocks, votes and commits; their canonical encoding; their stateless rules;
//! the Merkle tree over records; the genesis document.
//!
//! This crate defines what is hashed, signed and stored, so every change to a type here is a
//! change to the protocol: the golden vectors in `tests/golden.rs` fail when an encoding
//! changes. It must never depend on an async runtime, a database, a network stack or a clock.

pub mod block;
pub mod codec;
pub mod genesis;
pub mod ids;
pub mod limits;
pub mod merkle;
pub mod record;
pub mod validation;
pub mod wire;

pub use block::{
    Block, BlockHeader, CommitCertificate, CommitSignature, CommittedBlock, Evidence, Height,
    Proposal, Round, SignedProposal, SignedVote, ValidatorIndex, Vote, VoteKind,
};
pub use branchledger_crypto::{Hash, PublicKey, Signature};
pub use codec::{decode, encode, encoded_len, DecodeError};
pub use genesis::{Branch, ConsensusParams, Genesis, GenesisError, Validator, ValidatorSet};
pub use ids::{BranchId, Date, IssueId, MeetingId, MemberId, Period};
pub use record::{CoSignedRecord, Record, RecordBody, RecordKind, SignedRecord};
pub use validation::{Rule, ValidationError};
