//! The state machine of Algorithm 1. Each rule's code names the lines of the paper's
//! pseudo-code (arXiv:1807.04938, Algorithm 1) that it implements.
//!
//! The rules are "upon" rules over the message log: after every input, [`Core::progress`]
//! evaluates all of them until none fires, so the order in which messages, verdicts and
//! timeouts arrive does not matter (the paper: "the correctness of the algorithm does not
//! depend on the order in which rules are executed").

use std::collections::{BTreeMap, BTreeSet};

use branchledger_crypto::{Hash, Signer};
use branchledger_types::{
    CommitCertificate, CommitSignature, ConsensusParams, Height, Proposal, Round, SignedProposal,
    SignedVote, ValidatorIndex, ValidatorSet, Vote, VoteKind,
};

use crate::io::{Effect, Input, Message};
use crate::safety::{RoundValue, SafetyState, Step};
use crate::votes::{Added, VoteKeeper};
use crate::{
    FUTURE_MESSAGES_MAX, FUTURE_MESSAGES_PER_VALIDATOR_MAX, PROPOSALS_PER_ROUND_MAX,
    ROUNDS_AHEAD_MAX,
};

/// A rule deliberately broken, so the simulator can prove it notices. Only tests set this.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutation {
    /// The correct algorithm.
    #[default]
    None,
    /// Prevote for any valid proposal, whatever the lock (breaks lines 23 and 29).
    IgnoreLock,
    /// Count every copy of a vote the network delivers, not each validator once.
    CountDuplicates,
    /// Emit the broadcast of a vote before the effect that persists it.
    BroadcastBeforePersist,
}

/// The configuration of a core.
#[derive(Clone, Debug)]
pub struct Config {
    /// The chain id, part of every signed message.
    pub chain_id: String,
    /// Timeouts (from genesis).
    pub params: ConsensusParams,
    /// A deliberately broken rule; [`Mutation::None`] everywhere but in tests.
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl Config {
    /// A configuration for `chain_id` with these parameters.
    pub fn new(chain_id: impl Into<String>, params: ConsensusParams) -> Config {
        Config {
            chain_id: chain_id.into(),
            params,
            mutation: Mutation::None,
        }
    }
}

/// Why a core cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The validator set is empty.
    #[error("the validator set is empty")]
    EmptyValidatorSet,
    /// The signer's key is not one of the validators' consensus keys.
    #[error("the signing key {0} is not a validator's consensus key")]
    NotAValidator(String),
}

/// The duration of the timeout of `step` in `round`: `base + round * increase` (Algorithm 1's
/// `timeoutX(r) = initTimeoutX + r * timeoutDelta`), saturating.
pub fn timeout_duration_ms(params: &ConsensusParams, step: Step, round: Round) -> u64 {
    let base = match step {
        Step::Propose => params.timeout_propose_ms,
        Step::Prevote => params.timeout_prevote_ms,
        Step::Precommit => params.timeout_precommit_ms,
    };
    base.saturating_add(u64::from(round).saturating_mul(params.timeout_increase_ms))
}

/// The consensus core of one validator (or of an observer that signs nothing).
pub struct Core {
    config: Config,
    validators: ValidatorSet,
    /// The key that signs this validator's proposals and votes; none for an observer.
    signer: Option<Box<dyn Signer + Send>>,
    /// This validator's index; none for an observer.
    own_index: Option<ValidatorIndex>,
    /// False until [`Input::Start`]: messages before then are dropped.
    started: bool,

    // Algorithm 1's process state.
    height: Height,
    round: Round,
    step: Step,
    locked: Option<RoundValue>,
    valid: Option<RoundValue>,
    /// The last votes and proposal signed, the double-sign guard (persisted).
    last_prevote: Option<SignedVote>,
    last_precommit: Option<SignedVote>,
    last_proposal: Option<SignedProposal>,
    /// The safety state handed over by the node at construction, used by [`Input::Start`].
    restored: Option<SafetyState>,

    // The message log of the current height.
    proposals: BTreeMap<Round, Vec<SignedProposal>>,
    votes: VoteKeeper,
    /// The application's verdicts on block ids (`valid(v)`).
    verdicts: BTreeMap<Hash, bool>,
    /// Block ids already sent to the application for validation.
    validating: BTreeSet<Hash>,
    /// Blocks judged [`Input::NotYetValid`] in the current round: judged again from the next.
    not_yet: BTreeSet<Hash>,
    /// Messages for `height + 1`, replayed on arrival there.
    future: Vec<Message>,

    // "For the first time" flags of the current round.
    /// Line 34 fired.
    prevote_timeout_scheduled: bool,
    /// Line 36 fired.
    polka_seen: bool,
    /// Line 47 fired.
    precommit_timeout_scheduled: bool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("own_index", &self.own_index)
            .field("height", &self.height)
            .field("round", &self.round)
            .field("step", &self.step)
            .field("locked", &self.locked)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for `validators`, signing with `signer` (none: an observer that follows but
    /// never votes), resuming from the last synced `safety` state if there is one. It does
    /// nothing until [`Input::Start`].
    pub fn new(
        config: Config,
        validators: ValidatorSet,
        signer: Option<Box<dyn Signer + Send>>,
        safety: Option<SafetyState>,
    ) -> Result<Core, ConsensusError> {
        if validators.is_empty() {
            return Err(ConsensusError::EmptyValidatorSet);
        }
        let own_index = match &signer {
            Some(s) => {
                let key = s.public_key();
                Some(
                    validators
                        .index_of(&key)
                        .ok_or_else(|| ConsensusError::NotAValidator(key.to_string()))?,
                )
            }
            None => None,
        };
        let mut votes = VoteKeeper::default();
        votes.count_copies = config.mutation == Mutation::CountDuplicates;
        Ok(Core {
            config,
            validators,
            signer,
            own_index,
            started: false,
            height: 0,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            last_prevote: safety.as_ref().and_then(|s| s.last_prevote),
            last_precommit: safety.as_ref().and_then(|s| s.last_precommit),
            last_proposal: safety.as_ref().and_then(|s| s.last_proposal),
            restored: safety,
            proposals: BTreeMap::new(),
            votes,
            verdicts: BTreeMap::new(),
            validating: BTreeSet::new(),
            not_yet: BTreeSet::new(),
            future: Vec::new(),
            prevote_timeout_scheduled: false,
            polka_seen: false,
            precommit_timeout_scheduled: false,
        })
    }

    /// The height being decided (0 before [`Input::Start`]).
    pub fn height(&self) -> Height {
        self.height
    }

    /// The current round.
    pub fn round(&self) -> Round {
        self.round
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// This validator's index, if it is one.
    pub fn own_index(&self) -> Option<ValidatorIndex> {
        self.own_index
    }

    /// The value this validator is locked on at this height (lines 38-39), if any.
    pub fn locked(&self) -> Option<RoundValue> {
        self.locked
    }

    /// The valid value of this height (lines 42-43), if any.
    pub fn valid(&self) -> Option<RoundValue> {
        self.valid
    }

    /// The safety state as it is now (what the next [`Effect::PersistSafety`] would carry).
    pub fn safety_state(&self) -> SafetyState {
        SafetyState {
            height: self.height,
            round: self.round,
            step: self.step,
            locked: self.locked,
            valid: self.valid,
            valid_proof: self
                .valid
                .map(|v| {
                    self.votes
                        .votes_for(v.round, VoteKind::Prevote, Some(v.block_id))
                })
                .unwrap_or_default(),
            last_prevote: self.last_prevote,
            last_precommit: self.last_precommit,
            last_proposal: self.last_proposal,
        }
    }

    /// Handles one input and returns the effects to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Start { height } => self.start(height, &mut out),
            Input::Message(message) => {
                // A message the log already holds changes nothing: skip the rules, which
                // matters because gossip delivers most messages several times.
                if !self.started || !self.handle_message(message, &mut out) {
                    return out;
                }
            }
            Input::Timeout {
                height,
                round,
                step,
            } => self.handle_timeout(height, round, step, &mut out),
            Input::ProposeValue {
                height,
                round,
                block_id,
            } => self.handle_propose_value(height, round, block_id, &mut out),
            Input::Verdict {
                height,
                block_id,
                valid,
            } => {
                if self.started && height == self.height {
                    self.verdicts.entry(block_id).or_insert(valid);
                }
            }
            Input::NotYetValid { height, block_id } => {
                if self.started && height == self.height && !self.verdicts.contains_key(&block_id) {
                    self.verdicts.insert(block_id, false);
                    self.not_yet.insert(block_id);
                }
            }
            Input::Committed { height } => {
                if self.started && height >= self.height {
                    self.enter_height(height + 1, &mut out);
                }
            }
            Input::Rebroadcast => self.rebroadcast(&mut out),
        }
        if self.started {
            self.progress(&mut out);
        }
        out
    }

    // ----- starting and resuming -------------------------------------------------------

    fn start(&mut self, height: Height, out: &mut Vec<Effect>) {
        if self.started {
            return;
        }
        self.started = true;
        match self.restored.take() {
            Some(safety) if safety.height == height => {
                // Resume where the synced state left off: same round and step, same lock.
                // Signing is still guarded by the last votes, so nothing already signed is
                // contradicted even if the rules fire again.
                self.height = height;
                self.round = safety.round;
                self.step = safety.step;
                self.locked = safety.locked;
                self.valid = safety.valid;
                for v in safety.valid_proof.iter().take(self.validators.len()) {
                    let vote = v.vote;
                    if vote.height == height
                        && vote.kind == VoteKind::Prevote
                        && self.validators.get(vote.validator_index).is_some()
                    {
                        self.record_vote(*v, out);
                    }
                }
                self.resume_round(out);
            }
            _ => {
                // A fresh height. A safety state from a later height (a store that lost
                // blocks) keeps its last votes, which refuses every vote at this height.
                self.enter_height(height, out);
            }
        }
    }

    /// After a restart in the middle of a round: re-send what was signed in it and re-arm
    /// the timeout of the current step where the paper schedules it on entry.
    fn resume_round(&mut self, out: &mut Vec<Effect>) {
        if self.step == Step::Propose {
            // Re-sends a proposal signed before the crash, or asks for a value again.
            self.propose_or_wait(out);
        } else if let Some(p) = self.own_proposal_this_round() {
            self.resend_own_proposal(p, out);
        }
        // The last votes go back into the log (so they count, and are relayed) and out again:
        // a peer may still need them, even from an earlier round, to finish that round.
        for v in [self.last_prevote, self.last_precommit]
            .into_iter()
            .flatten()
        {
            if v.vote.height == self.height {
                out.push(Effect::Broadcast(Message::Vote(v)));
                self.record_vote(v, out);
            }
        }
    }

    /// The proposal this validator signed in the current round, if any.
    fn own_proposal_this_round(&self) -> Option<SignedProposal> {
        self.last_proposal
            .filter(|p| (p.proposal.height, p.proposal.round) == (self.height, self.round))
    }

    /// Sends a proposal signed before a crash again, never a second one for its round.
    ///
    /// Its block is not taken as valid: the shell kept it in memory only, so after a restart
    /// it may no longer hold it. The proposal goes into the log like anyone's, which asks the
    /// shell for a verdict ([`Effect::ValidateValue`]); a block the shell cannot produce is
    /// never decided here (line 49 needs `valid(v)`), and a quorum that decided it elsewhere
    /// reaches this validator by block sync.
    fn resend_own_proposal(&mut self, p: SignedProposal, out: &mut Vec<Effect>) {
        out.push(Effect::Broadcast(Message::Proposal(p)));
        self.record_proposal(p, out);
    }

    /// Lines 52-54: a new height with the lock and valid value reset, then `StartRound(0)`.
    fn enter_height(&mut self, height: Height, out: &mut Vec<Effect>) {
        self.height = height;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        let count_copies = self.votes.count_copies;
        self.votes = VoteKeeper::default();
        self.votes.count_copies = count_copies;
        self.verdicts.clear();
        self.validating.clear();
        self.not_yet.clear();
        self.start_round(0, out);
        let future = std::mem::take(&mut self.future);
        for message in future {
            self.handle_message(message, out);
        }
    }

    /// Lines 11-21: `StartRound(round)`.
    fn start_round(&mut self, round: Round, out: &mut Vec<Effect>) {
        self.round = round; // line 12
        self.step = Step::Propose; // line 13
        self.prevote_timeout_scheduled = false;
        self.polka_seen = false;
        self.precommit_timeout_scheduled = false;
        self.judge_again_what_was_not_yet_valid(out);
        self.propose_or_wait(out);
    }

    /// A block refused in an earlier round only because it was ahead of this node's clock
    /// ([`Input::NotYetValid`]) is judged again: now if a proposal of this round names it,
    /// otherwise when one does.
    fn judge_again_what_was_not_yet_valid(&mut self, out: &mut Vec<Effect>) {
        for block_id in std::mem::take(&mut self.not_yet) {
            self.verdicts.remove(&block_id);
            self.validating.remove(&block_id);
            let proposed_now = self
                .proposals
                .get(&self.round)
                .is_some_and(|list| list.iter().any(|p| p.proposal.block_id == block_id));
            if proposed_now {
                self.validating.insert(block_id);
                out.push(Effect::ValidateValue {
                    height: self.height,
                    round: self.round,
                    block_id,
                });
            }
        }
    }

    /// Lines 14-21: the proposer proposes; everyone arms the propose timeout.
    fn propose_or_wait(&mut self, out: &mut Vec<Effect>) {
        let proposer = self.validators.proposer(self.height, self.round);
        if Some(proposer) == self.own_index {
            // Line 14: this validator is proposer(h_p, round_p).
            if let Some(p) = self.own_proposal_this_round() {
                self.resend_own_proposal(p, out);
            } else if let Some(valid) = self.valid {
                // Lines 15-16 and 19: propose validValue with validRound.
                self.propose(valid.block_id, Some(valid.round), out);
            } else {
                // Line 18: getValue(); the answer comes back as `Input::ProposeValue`.
                out.push(Effect::RequestValue {
                    height: self.height,
                    round: self.round,
                });
            }
        }
        // Line 21 schedules the propose timeout for the other validators. The proposer arms
        // it too, so an application that never answers `RequestValue` cannot stall the
        // round; lines 57-60 only act if the proposer is still in the propose step.
        self.schedule_timeout(Step::Propose, out);
    }

    fn handle_propose_value(
        &mut self,
        height: Height,
        round: Round,
        block_id: Hash,
        out: &mut Vec<Effect>,
    ) {
        let is_proposer = Some(self.validators.proposer(self.height, self.round)) == self.own_index;
        if self.started
            && is_proposer
            && self.own_proposal_this_round().is_none()
            && (height, round) == (self.height, self.round)
            && self.step == Step::Propose
        {
            // Line 18's value, line 19's broadcast with validRound = −1.
            self.propose(block_id, None, out);
        }
    }

    /// Line 19: sign and broadcast `⟨PROPOSAL, h_p, round_p, proposal, validRound_p⟩`,
    /// unless a proposal at an equal or later `(height, round)` was already signed (it is in
    /// the safety state): one proposal per round, even across restarts, as for votes.
    fn propose(&mut self, block_id: Hash, valid_round: Option<Round>, out: &mut Vec<Effect>) {
        let (Some(signer), Some(own)) = (&self.signer, self.own_index) else {
            return;
        };
        if self.last_proposal.is_some_and(|last| {
            (last.proposal.height, last.proposal.round) >= (self.height, self.round)
        }) {
            return;
        }
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            block_id,
            valid_round,
            proposer_index: own,
        }
        .sign(&self.config.chain_id, signer.as_ref());
        self.last_proposal = Some(proposal);
        if valid_round.is_none() {
            // The application built this block for this round. A validValue was approved
            // earlier at this height, and its verdict is in the log; after a restart it is
            // not (the shell may no longer hold the block), and the log asks for one.
            self.verdicts.insert(block_id, true);
        }
        out.push(Effect::PersistSafety(Box::new(self.safety_state())));
        out.push(Effect::Broadcast(Message::Proposal(proposal)));
        if valid_round.is_some() {
            self.broadcast_proof_of_lock(out);
        }
        self.record_proposal(proposal, out);
    }

    // ----- messages --------------------------------------------------------------------

    /// Records a message; true if the log changed.
    fn handle_message(&mut self, message: Message, out: &mut Vec<Effect>) -> bool {
        let height = message.height();
        if height == self.height + 1 {
            let sender = message.sender();
            if self.future.len() < FUTURE_MESSAGES_MAX
                && self.future.iter().filter(|m| m.sender() == sender).count()
                    < FUTURE_MESSAGES_PER_VALIDATOR_MAX
                && !self.future.contains(&message)
            {
                self.future.push(message);
            }
            return false;
        }
        if height != self.height || message.round() > self.round.saturating_add(ROUNDS_AHEAD_MAX) {
            return false;
        }
        match message {
            Message::Proposal(p) => {
                let proposal = p.proposal;
                // A proposal from anyone but proposer(h, r), or whose validRound is not
                // earlier than its round, is malformed (lines 22 and 28 require both).
                if proposal.proposer_index != self.validators.proposer(height, proposal.round)
                    || proposal.valid_round.is_some_and(|vr| vr >= proposal.round)
                {
                    return false;
                }
                self.record_proposal(p, out)
            }
            Message::Vote(v) => {
                if self.validators.get(v.vote.validator_index).is_none() {
                    return false;
                }
                self.record_vote(v, out)
            }
        }
    }

    /// Adds a proposal to the log; true if it was new.
    fn record_proposal(&mut self, p: SignedProposal, out: &mut Vec<Effect>) -> bool {
        let list = self.proposals.entry(p.proposal.round).or_default();
        if list.contains(&p) || list.len() >= PROPOSALS_PER_ROUND_MAX {
            return false;
        }
        list.push(p);
        let block_id = p.proposal.block_id;
        if !self.verdicts.contains_key(&block_id) && self.validating.insert(block_id) {
            out.push(Effect::ValidateValue {
                height: self.height,
                round: p.proposal.round,
                block_id,
            });
        }
        true
    }

    /// Adds a vote to the log; true if it was new.
    fn record_vote(&mut self, v: SignedVote, out: &mut Vec<Effect>) -> bool {
        match self.votes.add(v) {
            Added::New => true,
            Added::Duplicate => false,
            Added::Conflict(evidence) => {
                out.push(Effect::Evidence(*evidence));
                true
            }
        }
    }

    // ----- timeouts --------------------------------------------------------------------

    fn schedule_timeout(&self, step: Step, out: &mut Vec<Effect>) {
        out.push(Effect::ScheduleTimeout {
            height: self.height,
            round: self.round,
            step,
            duration_ms: timeout_duration_ms(&self.config.params, step, self.round),
        });
    }

    fn handle_timeout(&mut self, height: Height, round: Round, step: Step, out: &mut Vec<Effect>) {
        if !self.started || height != self.height || round != self.round {
            return;
        }
        match step {
            // Lines 57-60: OnTimeoutPropose.
            Step::Propose if self.step == Step::Propose => {
                self.step = Step::Prevote;
                self.vote(VoteKind::Prevote, None, out);
            }
            // Lines 61-64: OnTimeoutPrevote.
            Step::Prevote if self.step == Step::Prevote => {
                self.step = Step::Precommit;
                self.vote(VoteKind::Precommit, None, out);
            }
            // Lines 65-67: OnTimeoutPrecommit.
            Step::Precommit => self.start_round(self.round + 1, out),
            _ => {}
        }
    }

    // ----- signing ---------------------------------------------------------------------

    /// Signs and broadcasts a vote of the current height and round, unless a vote at an equal
    /// or later `(height, round, kind)` was already signed: then only the identical vote is
    /// sent again, so no two different votes ever leave for one step, even across restarts.
    fn vote(&mut self, kind: VoteKind, block_id: Option<Hash>, out: &mut Vec<Effect>) {
        let (Some(signer), Some(own)) = (&self.signer, self.own_index) else {
            return;
        };
        let vote = Vote {
            height: self.height,
            round: self.round,
            kind,
            block_id,
            validator_index: own,
        };
        if let Some(last) = self.safety_state().last_vote() {
            let last_key = (last.vote.height, last.vote.round, last.vote.kind);
            let key = (vote.height, vote.round, vote.kind);
            if last_key > key || (last_key == key && last.vote != vote) {
                return;
            }
            if last_key == key {
                out.push(Effect::Broadcast(Message::Vote(last)));
                return;
            }
        }
        let signed = vote.sign(&self.config.chain_id, signer.as_ref());
        match kind {
            VoteKind::Prevote => self.last_prevote = Some(signed),
            VoteKind::Precommit => self.last_precommit = Some(signed),
        }
        let persist = Effect::PersistSafety(Box::new(self.safety_state()));
        let broadcast = Effect::Broadcast(Message::Vote(signed));
        if self.config.mutation == Mutation::BroadcastBeforePersist {
            out.push(broadcast);
            out.push(persist);
        } else {
            out.push(persist);
            out.push(broadcast);
        }
        self.record_vote(signed, out);
    }

    /// Relays every proposal and vote this validator holds of the current and the previous
    /// round, its own last votes of this height, and the proof of its valid value when it
    /// proposes it. Algorithm 1 assumes gossip: a message one correct validator received
    /// eventually reaches all of them, even if the network lost it or its sender crashed and
    /// forgot it. Two rounds are enough for the validators of a lower round to finish it or
    /// to see f+1 validators in a higher one.
    fn rebroadcast(&mut self, out: &mut Vec<Effect>) {
        if !self.started {
            return;
        }
        if self
            .own_proposal_this_round()
            .is_some_and(|p| p.proposal.valid_round.is_some())
        {
            self.broadcast_proof_of_lock(out);
        }
        for v in [self.last_prevote, self.last_precommit]
            .into_iter()
            .flatten()
        {
            if v.vote.height == self.height && v.vote.round.saturating_add(1) < self.round {
                out.push(Effect::Broadcast(Message::Vote(v)));
            }
        }
        let mut rounds = vec![self.round];
        if let Some(previous) = self.round.checked_sub(1) {
            rounds.push(previous);
        }
        for round in rounds {
            for p in self.proposals.get(&round).into_iter().flatten() {
                out.push(Effect::Broadcast(Message::Proposal(*p)));
            }
            for v in self.votes.all_in(round) {
                out.push(Effect::Broadcast(Message::Vote(v)));
            }
        }
    }

    /// Relays the prevotes of `validRound` for `validValue`, which line 28 needs at every
    /// other validator before it can accept a proposal that carries that valid round.
    fn broadcast_proof_of_lock(&self, out: &mut Vec<Effect>) {
        if let Some(valid) = self.valid {
            for v in self
                .votes
                .votes_for(valid.round, VoteKind::Prevote, Some(valid.block_id))
            {
                out.push(Effect::Broadcast(Message::Vote(v)));
            }
        }
    }

    // ----- the upon rules --------------------------------------------------------------

    /// Evaluates every upon rule until none fires.
    fn progress(&mut self, out: &mut Vec<Effect>) {
        // Each firing either raises (height, round, step) or sets a once-per-round flag, so
        // the loop ends; the bound only turns a broken invariant into a loud failure.
        for _ in 0..10_000 {
            if !self.fire_one(out) {
                return;
            }
        }
        panic!("consensus rules did not settle: {self:?}");
    }

    fn quorum(&self) -> usize {
        self.validators.quorum()
    }

    fn verdict(&self, block_id: &Hash) -> Option<bool> {
        self.verdicts.get(block_id).copied()
    }

    /// Fires the first rule whose condition holds; false if none does.
    fn fire_one(&mut self, out: &mut Vec<Effect>) -> bool {
        self.rule_decide(out)
            || self.rule_skip_round(out)
            || self.rule_prevote_on_proposal(out)
            || self.rule_prevote_timeout(out)
            || self.rule_polka_for_value(out)
            || self.rule_polka_for_nil(out)
            || self.rule_precommit_timeout(out)
    }

    /// Lines 49-54: a proposal of round r and 2f+1 precommits for it in r, with no decision
    /// yet at h_p: if valid(v), decide, and move to the next height.
    fn rule_decide(&mut self, out: &mut Vec<Effect>) -> bool {
        let mut decided = None;
        'rounds: for (round, proposals) in &self.proposals {
            for p in proposals {
                let block_id = p.proposal.block_id;
                if self
                    .votes
                    .count_for(*round, VoteKind::Precommit, Some(block_id))
                    >= self.quorum()
                    // Line 50: valid(v).
                    && self.verdict(&block_id) == Some(true)
                {
                    decided = Some((*round, block_id));
                    break 'rounds;
                }
            }
        }
        let Some((round, block_id)) = decided else {
            return false;
        };
        let signatures = self
            .votes
            .votes_for(round, VoteKind::Precommit, Some(block_id))
            .into_iter()
            .map(|v| CommitSignature {
                validator_index: v.vote.validator_index,
                signature: v.signature,
            })
            .collect();
        let certificate = CommitCertificate {
            height: self.height,
            round,
            block_id,
            signatures,
        };
        // Line 51: decision_p[h_p] = v.
        out.push(Effect::Decide {
            height: self.height,
            block_id,
            certificate,
        });
        // Lines 52-54.
        self.enter_height(self.height + 1, out);
        true
    }

    /// Lines 55-56: f+1 distinct validators sent messages of a round above round_p: start it.
    fn rule_skip_round(&mut self, out: &mut Vec<Effect>) -> bool {
        let mut rounds: BTreeSet<Round> = self.votes.rounds();
        rounds.extend(self.proposals.keys().copied());
        let threshold = self.validators.honest_threshold();
        let target = rounds
            .into_iter()
            .filter(|r| *r > self.round)
            .filter(|r| {
                let mut senders = self.votes.voters(*r);
                if let Some(list) = self.proposals.get(r) {
                    senders.extend(list.iter().map(|p| p.proposal.proposer_index));
                }
                senders.len() >= threshold
            })
            .max();
        match target {
            Some(round) => {
                self.start_round(round, out);
                true
            }
            None => false,
        }
    }

    /// Lines 22-27 and 28-33: in the propose step, prevote for the proposal of round_p if it
    /// is valid and the lock allows it, else prevote nil.
    fn rule_prevote_on_proposal(&mut self, out: &mut Vec<Effect>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let ignore_lock = self.config.mutation == Mutation::IgnoreLock;
        let proposals = self.proposals.get(&self.round).cloned().unwrap_or_default();
        for p in proposals {
            let v = p.proposal.block_id;
            let Some(valid) = self.verdict(&v) else {
                // valid(v) is not known yet; the verdict will arrive as an input.
                continue;
            };
            let accept = match p.proposal.valid_round {
                // Line 22: ⟨PROPOSAL, h_p, round_p, v, −1⟩.
                None => {
                    // Line 23: valid(v) ∧ (lockedRound_p = −1 ∨ lockedValue_p = v).
                    valid && (ignore_lock || self.locked.is_none_or(|locked| locked.block_id == v))
                }
                // Line 28: ... AND 2f+1 ⟨PREVOTE, h_p, vr, id(v)⟩, vr < round_p (checked on
                // receipt).
                Some(vr) => {
                    if self.votes.count_for(vr, VoteKind::Prevote, Some(v)) < self.quorum() {
                        continue;
                    }
                    // Line 29: valid(v) ∧ (lockedRound_p ≤ vr ∨ lockedValue_p = v).
                    valid
                        && (ignore_lock
                            || self
                                .locked
                                .is_none_or(|locked| locked.round <= vr || locked.block_id == v))
                }
            };
            // Lines 27 and 33: step_p ← prevote (recorded before the vote is persisted).
            self.step = Step::Prevote;
            // Lines 24/30 prevote id(v); lines 26/32 prevote nil.
            self.vote(VoteKind::Prevote, accept.then_some(v), out);
            return true;
        }
        false
    }

    /// Lines 34-35: 2f+1 prevotes of any kind in round_p while in the prevote step, for the
    /// first time: schedule the prevote timeout.
    fn rule_prevote_timeout(&mut self, out: &mut Vec<Effect>) -> bool {
        if self.step != Step::Prevote
            || self.prevote_timeout_scheduled
            || self.votes.count_any(self.round, VoteKind::Prevote) < self.quorum()
        {
            return false;
        }
        self.prevote_timeout_scheduled = true;
        self.schedule_timeout(Step::Prevote, out);
        true
    }

    /// Lines 36-43: the proposal of round_p and 2f+1 prevotes for it, valid(v), step ≥
    /// prevote, for the first time: lock and precommit if still in the prevote step, and
    /// remember v as the valid value either way.
    fn rule_polka_for_value(&mut self, out: &mut Vec<Effect>) -> bool {
        if self.step < Step::Prevote || self.polka_seen {
            return false;
        }
        let Some(v) = self.proposals.get(&self.round).and_then(|list| {
            list.iter().map(|p| p.proposal.block_id).find(|v| {
                self.verdict(v) == Some(true)
                    && self
                        .votes
                        .count_for(self.round, VoteKind::Prevote, Some(*v))
                        >= self.quorum()
            })
        }) else {
            return false;
        };
        self.polka_seen = true;
        let value = RoundValue {
            round: self.round,
            block_id: v,
        };
        // Lines 42-43: validValue_p ← v, validRound_p ← round_p. Set before the precommit so
        // that the persisted state carries it.
        self.valid = Some(value);
        if self.step == Step::Prevote {
            // Lines 38-39: lock; line 41: step_p ← precommit; line 40: precommit id(v).
            self.locked = Some(value);
            self.step = Step::Precommit;
            self.vote(VoteKind::Precommit, Some(v), out);
        }
        true
    }

    /// Lines 44-46: 2f+1 prevotes for nil in round_p while in the prevote step: precommit nil.
    fn rule_polka_for_nil(&mut self, out: &mut Vec<Effect>) -> bool {
        if self.step != Step::Prevote
            || self.votes.count_for(self.round, VoteKind::Prevote, None) < self.quorum()
        {
            return false;
        }
        self.step = Step::Precommit;
        self.vote(VoteKind::Precommit, None, out);
        true
    }

    /// Lines 47-48: 2f+1 precommits of any kind in round_p, for the first time: schedule
    /// the precommit timeout.
    fn rule_precommit_timeout(&mut self, out: &mut Vec<Effect>) -> bool {
        if self.precommit_timeout_scheduled
            || self.votes.count_any(self.round, VoteKind::Precommit) < self.quorum()
        {
            return false;
        }
        self.precommit_timeout_scheduled = true;
        self.schedule_timeout(Step::Precommit, out);
        true
    }
}
