//! The safety state: what a validator must remember across a crash so that it never signs
//! two different votes (or proposals) for one height, round and step.

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::Hash;
use branchledger_types::{Height, Round, SignedProposal, SignedVote, VoteKind};

/// A step of a round (Algorithm 1's `step_p`). The order is the order of the steps.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = false)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted; waiting for prevotes.
    Prevote,
    /// Precommitted; waiting for precommits.
    Precommit,
}

impl Step {
    /// The step a vote of this kind is cast in.
    pub fn of_vote(kind: VoteKind) -> Step {
        match kind {
            VoteKind::Prevote => Step::Prevote,
            VoteKind::Precommit => Step::Precommit,
        }
    }
}

/// A value (block id) with the round it was seen in: the paper's `(lockedValue, lockedRound)`
/// and `(validValue, validRound)` pairs, where "none" stands for `nil` and −1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct RoundValue {
    /// The round.
    pub round: Round,
    /// The block id.
    pub block_id: Hash,
}

/// Everything that must be on disk before a vote or proposal leaves the node.
///
/// The node writes it and syncs it when it executes [`crate::Effect::PersistSafety`], and
/// gives the last synced copy back to [`crate::Core::new`] after a restart.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SafetyState {
    /// The height being decided.
    pub height: Height,
    /// The current round.
    pub round: Round,
    /// The current step.
    pub step: Step,
    /// `lockedValue` / `lockedRound`.
    pub locked: Option<RoundValue>,
    /// `validValue` / `validRound`.
    pub valid: Option<RoundValue>,
    /// The prevotes of `validRound` for `validValue` (a quorum) that justify proposing it
    /// (line 28 needs them at every other validator). Without them, a restarted validator
    /// locked on its valid value could never convince anyone again, and the height would stall.
    pub valid_proof: Vec<SignedVote>,
    /// The last prevote this validator signed.
    pub last_prevote: Option<SignedVote>,
    /// The last precommit this validator signed. No vote at an equal or earlier
    /// `(height, round, kind)` than the later of the two is ever signed with another block
    /// id; both are kept so that a restarted validator can send its votes of the current
    /// round again, which its peers may need to finish the round.
    pub last_precommit: Option<SignedVote>,
    /// The last proposal this validator signed; it is re-sent, never replaced, in its round.
    pub last_proposal: Option<SignedProposal>,
}

impl SafetyState {
    /// The latest of the two votes, by `(height, round, kind)`: the double-sign guard.
    pub fn last_vote(&self) -> Option<SignedVote> {
        let key = |v: &SignedVote| (v.vote.height, v.vote.round, v.vote.kind);
        match (self.last_prevote, self.last_precommit) {
            (Some(a), Some(b)) => Some(if key(&a) > key(&b) { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The state of a validator that has signed nothing yet at `height`.
    pub fn initial(height: Height) -> SafetyState {
        SafetyState {
            height,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            valid_proof: Vec::new(),
            last_prevote: None,
            last_precommit: None,
            last_proposal: None,
        }
    }
}
