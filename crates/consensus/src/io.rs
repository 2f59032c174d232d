//! What goes into the core and what comes out of it.

use branchledger_crypto::Hash;
use branchledger_types::{
    CommitCertificate, Evidence, Height, Round, SignedProposal, SignedVote, ValidatorIndex,
};

use crate::safety::{SafetyState, Step};

/// A consensus message between validators. The shell has checked its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// A proposal (the block travels beside it, handled by the shell).
    Proposal(SignedProposal),
    /// A prevote or precommit.
    Vote(SignedVote),
}

impl Message {
    /// The height the message is for.
    pub fn height(&self) -> Height {
        match self {
            Message::Proposal(p) => p.proposal.height,
            Message::Vote(v) => v.vote.height,
        }
    }

    /// The round the message is for.
    pub fn round(&self) -> Round {
        match self {
            Message::Proposal(p) => p.proposal.round,
            Message::Vote(v) => v.vote.round,
        }
    }

    /// The validator that signed it.
    pub fn sender(&self) -> ValidatorIndex {
        match self {
            Message::Proposal(p) => p.proposal.proposer_index,
            Message::Vote(v) => v.vote.validator_index,
        }
    }
}

/// An input to [`crate::Core::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start deciding `height` (the height after the last block in the store). If the safety
    /// state given to [`crate::Core::new`] is at this height, the core resumes from it.
    Start {
        /// The next height to decide.
        height: Height,
    },
    /// A message from a validator (possibly this one, echoed by the network).
    Message(Message),
    /// A timeout scheduled by [`Effect::ScheduleTimeout`] fired.
    Timeout {
        /// Its height.
        height: Height,
        /// Its round.
        round: Round,
        /// Its step.
        step: Step,
    },
    /// The application's answer to [`Effect::RequestValue`]: the block to propose.
    ProposeValue {
        /// Height asked for.
        height: Height,
        /// Round asked for.
        round: Round,
        /// The id of the block the application built.
        block_id: Hash,
    },
    /// The application's answer to [`Effect::ValidateValue`].
    Verdict {
        /// Height of the proposal.
        height: Height,
        /// The block.
        block_id: Hash,
        /// Whether the block may be decided (Algorithm 1's `valid(v)`).
        valid: bool,
    },
    /// The application's answer to [`Effect::ValidateValue`] for a block it cannot accept
    /// now but may later: its time is ahead of this node's clock by more than the chain
    /// allows. `valid(v)` is false for the rest of the current round; from the next round on
    /// the block is checked again ([`Effect::ValidateValue`]) when a proposal names it, so a
    /// node whose clock lagged does not refuse the block for the whole height.
    NotYetValid {
        /// Height of the proposal.
        height: Height,
        /// The block.
        block_id: Hash,
    },
    /// The shell stored block `height` with a verified commit certificate obtained by block
    /// sync; the core moves to `height + 1` if it was not already past it.
    Committed {
        /// The height that is now final.
        height: Height,
    },
    /// Ask the core to send its own messages of the current round again (and the prevotes
    /// justifying its proposal's valid round), because the network may have lost them.
    Rebroadcast,
}

/// An effect for the shell to carry out, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write this safety state and sync it to disk before executing the next effect.
    PersistSafety(Box<SafetyState>),
    /// Send this message to every validator.
    Broadcast(Message),
    /// Fire [`Input::Timeout`] with these fields after `duration_ms`.
    ScheduleTimeout {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// Step the timeout belongs to.
        step: Step,
        /// How long from now.
        duration_ms: u64,
    },
    /// This validator proposes at `(height, round)`: answer with [`Input::ProposeValue`].
    RequestValue {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Check the block a proposal names (fetching it if needed): answer with
    /// [`Input::Verdict`].
    ValidateValue {
        /// Height.
        height: Height,
        /// Round of the first proposal that named it.
        round: Round,
        /// The block.
        block_id: Hash,
    },
    /// `block_id` is decided at `height`: store the block with this certificate (synced)
    /// before executing the next effect.
    Decide {
        /// Height decided.
        height: Height,
        /// The block.
        block_id: Hash,
        /// A quorum of distinct precommit signatures for it.
        certificate: CommitCertificate,
    },
    /// A validator signed two conflicting votes.
    Evidence(Evidence),
}
