//! The consensus core: Tendermint's Algorithm 1 (Buchman, Kwon, Milosevic, "The latest gossip
//! on BFT consensus", arXiv:1807.04938) with the proposer chosen round-robin,
//! `proposer(h, r) = validators[(h + r) mod n]`, as a pure state machine.
//!
//! This crate owns the rules of agreement: when to propose, prevote, precommit, lock, unlock,
//! skip a round and decide, and the safety state that must survive a crash so that a validator
//! never signs two different votes for one height, round and step. [`Core::handle`] takes one
//! [`Input`] (a message, a timeout firing, an answer from the application) and returns the
//! [`Effect`]s the shell must carry out, in order. A [`Effect::PersistSafety`] always comes
//! before the broadcast of any vote or proposal it covers, and the shell must sync it to disk
//! before it executes the next effect.
//!
//! It must never do IO, read a clock, draw randomness, spawn a task or depend on an async
//! runtime, a database or a network stack: everything it knows arrives as an input, and
//! everything it wants done leaves as an effect. That is what lets the simulator in
//! `branchledger-sim` replay any interleaving from a seed.

mod certificate;
mod core;
mod io;
mod safety;
mod votes;

pub use crate::certificate::{verify_certificate, CertificateError};
pub use crate::core::{timeout_duration_ms, Config, ConsensusError, Core, Mutation};
pub use crate::io::{Effect, Input, Message};
pub use crate::safety::{RoundValue, SafetyState, Step};

/// Messages for rounds further than this beyond the current one are dropped, so a faulty
/// validator cannot make the core hold votes for an unbounded number of future rounds.
pub const ROUNDS_AHEAD_MAX: u32 = 1_000;

/// Most proposals kept for one round. An honest proposer signs one; a faulty one may sign
/// many, and keeping a few is enough to find the one that the others decide.
pub const PROPOSALS_PER_ROUND_MAX: usize = 4;

/// Most votes beyond its first that one validator may have counted for one step. Only an
/// equivocating validator ever has any; the bound keeps it from filling memory.
pub const CONFLICTING_VOTES_MAX: usize = 3;

/// Most messages for the next height held until this validator gets there.
pub const FUTURE_MESSAGES_MAX: usize = 4 * branchledger_types::limits::VALIDATORS_MAX;

/// Most of those held from one validator (the proposer or voter that signed it), so a faulty
/// validator cannot take the places of the others' messages.
pub const FUTURE_MESSAGES_PER_VALIDATOR_MAX: usize = 8;
