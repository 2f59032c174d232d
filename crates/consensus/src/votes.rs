//! The message log of one height: votes per round, counted per distinct validator, with
//! conflicting votes kept as evidence.
//!
//! A value's count is the number of distinct validators that voted for it. An equivocating
//! validator therefore counts once for each value it voted for, as in the paper's message
//! log: this is safe, because two quorums intersect in at least f+1 validators, one of them
//! honest, and an honest validator votes once per step. Counting only an equivocator's first
//! vote instead would let it hide a polka from the validators that heard its other vote first.

use std::collections::{BTreeMap, BTreeSet};

use branchledger_crypto::Hash;
use branchledger_types::{Evidence, Round, SignedVote, ValidatorIndex, VoteKind};

use crate::CONFLICTING_VOTES_MAX;

/// The votes of one round of one kind.
#[derive(Clone, Debug, Default)]
struct VoteSet {
    /// Every distinct vote of each validator: one for an honest validator, up to
    /// [`CONFLICTING_VOTES_MAX`] + 1 for an equivocating one.
    by_validator: BTreeMap<ValidatorIndex, Vec<SignedVote>>,
    /// Copies received of each vote, for the `CountDuplicates` mutation only.
    copies: BTreeMap<(ValidatorIndex, Option<Hash>), usize>,
}

/// What happened to a vote offered to the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// A new vote.
    New,
    /// Already held (or over the limit of conflicting votes).
    Duplicate,
    /// The validator had voted differently: here is the proof.
    Conflict(Box<Evidence>),
}

/// Every vote of the current height.
#[derive(Clone, Debug, Default)]
pub(crate) struct VoteKeeper {
    rounds: BTreeMap<(Round, VoteKind), VoteSet>,
    /// When set, every copy of a vote counts (a mutation for the simulator's self-test).
    pub(crate) count_copies: bool,
}

impl VoteKeeper {
    /// Adds a vote whose validator index the caller checked.
    pub(crate) fn add(&mut self, vote: SignedVote) -> Added {
        let set = self
            .rounds
            .entry((vote.vote.round, vote.vote.kind))
            .or_default();
        let index = vote.vote.validator_index;
        if self.count_copies {
            *set.copies.entry((index, vote.vote.block_id)).or_default() += 1;
        }
        let held = set
            .by_validator
            .get(&index)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if held.iter().any(|v| v.vote == vote.vote) {
            return Added::Duplicate;
        }
        let Some(first) = held.first().copied() else {
            set.by_validator.insert(index, vec![vote]);
            return Added::New;
        };
        if held.len() > CONFLICTING_VOTES_MAX {
            // An equivocator with every slot taken. Keep the votes whose values the other
            // validators support most: a vote for a value nobody else backs can never
            // complete a quorum, while dropping its vote for a real polka could hide that
            // polka for good. Gossip delivers the dropped votes again later.
            let support = |block_id: Option<Hash>| {
                set.by_validator
                    .iter()
                    .filter(|(other, votes)| {
                        **other != index && votes.iter().any(|v| v.vote.block_id == block_id)
                    })
                    .count()
            };
            let new_support = support(vote.vote.block_id);
            let weakest = held
                .iter()
                .enumerate()
                .skip(1)
                .map(|(position, v)| (support(v.vote.block_id), position))
                .min();
            return match weakest {
                Some((weakest_support, position)) if new_support > weakest_support => {
                    if let Some(votes) = set.by_validator.get_mut(&index) {
                        votes[position] = vote;
                    }
                    Added::New
                }
                _ => Added::Duplicate,
            };
        }
        let votes = set.by_validator.entry(index).or_default();
        votes.push(vote);
        if votes.len() == 2 {
            // Reported once per validator and step: one proof is enough.
            Added::Conflict(Box::new(Evidence::DuplicateVote {
                first,
                second: vote,
            }))
        } else {
            Added::New
        }
    }

    /// Distinct validators that voted `kind` in `round` for exactly `block_id` (`None` is nil).
    pub(crate) fn count_for(&self, round: Round, kind: VoteKind, block_id: Option<Hash>) -> usize {
        let Some(set) = self.rounds.get(&(round, kind)) else {
            return 0;
        };
        if self.count_copies {
            return set
                .copies
                .iter()
                .filter(|((_, b), _)| *b == block_id)
                .map(|(_, copies)| copies)
                .sum();
        }
        set.by_validator
            .values()
            .filter(|votes| votes.iter().any(|v| v.vote.block_id == block_id))
            .count()
    }

    /// Distinct validators that voted `kind` in `round` for anything (Algorithm 1's `*`).
    pub(crate) fn count_any(&self, round: Round, kind: VoteKind) -> usize {
        let Some(set) = self.rounds.get(&(round, kind)) else {
            return 0;
        };
        if self.count_copies {
            return set.copies.values().sum();
        }
        set.by_validator.len()
    }

    /// One vote of `kind` in `round` for `block_id` from each validator that cast one, by
    /// increasing validator index.
    pub(crate) fn votes_for(
        &self,
        round: Round,
        kind: VoteKind,
        block_id: Option<Hash>,
    ) -> Vec<SignedVote> {
        self.rounds
            .get(&(round, kind))
            .into_iter()
            .flat_map(|s| s.by_validator.values())
            .filter_map(|votes| votes.iter().find(|v| v.vote.block_id == block_id))
            .copied()
            .collect()
    }

    /// Every vote held for `round`, of both kinds, conflicting ones included.
    pub(crate) fn all_in(&self, round: Round) -> Vec<SignedVote> {
        [VoteKind::Prevote, VoteKind::Precommit]
            .iter()
            .filter_map(|kind| self.rounds.get(&(round, *kind)))
            .flat_map(|s| s.by_validator.values().flatten())
            .copied()
            .collect()
    }

    /// Distinct validators that voted in `round`, of either kind.
    pub(crate) fn voters(&self, round: Round) -> BTreeSet<ValidatorIndex> {
        [VoteKind::Prevote, VoteKind::Precommit]
            .iter()
            .filter_map(|kind| self.rounds.get(&(round, *kind)))
            .flat_map(|s| s.by_validator.keys().copied())
            .collect()
    }

    /// Rounds in which any vote is held.
    pub(crate) fn rounds(&self) -> BTreeSet<Round> {
        self.rounds.keys().map(|(round, _)| *round).collect()
    }
}
