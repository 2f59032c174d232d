//! Table-driven tests of single steps of the core, with no runtime at all: each case puts a
//! core of validator `own` (of four) into a state with `given` inputs, feeds one `when`
//! input and checks the effects and the state against Algorithm 1 (arXiv:1807.04938).

#![allow(clippy::unwrap_used)]

use branchledger_consensus::{
    timeout_duration_ms, verify_certificate, Config, Core, Effect, Input, Message, Mutation,
    RoundValue, SafetyState, Step,
};
use branchledger_crypto::{Hash, Keypair};
use branchledger_types::{
    ConsensusParams, Evidence, Height, Proposal, Round, ValidatorIndex, Vote, VoteKind,
};

mod support;
use support::{keys, validator_set};

const CHAIN: &str = "rules-chain";
const N: usize = 4;

fn a() -> Hash {
    Hash::of(b"block A")
}
fn b() -> Hash {
    Hash::of(b"block B")
}

/// A core under test and the keys of its peers.
struct Harness {
    core: Core,
    keys: Vec<Keypair>,
    own: ValidatorIndex,
    mutation: Mutation,
    /// Every effect so far, in order.
    log: Vec<Effect>,
}

impl Harness {
    fn new(own: ValidatorIndex) -> Harness {
        Harness::with(own, Mutation::None, None)
    }

    fn with(own: ValidatorIndex, mutation: Mutation, safety: Option<SafetyState>) -> Harness {
        let keys = keys(N);
        let mut config = Config::new(CHAIN, ConsensusParams::default());
        config.mutation = mutation;
        let core = Core::new(
            config,
            validator_set(&keys),
            Some(Box::new(keys[usize::from(own)].clone())),
            safety,
        )
        .expect("own key is a validator");
        let mut harness = Harness {
            core,
            keys,
            own,
            mutation,
            log: Vec::new(),
        };
        harness.feed(Input::Start { height: 1 });
        harness
    }

    /// Feeds one input and checks the ordering invariant on its effects: every vote or
    /// proposal of this validator is preceded, in the same list, by a persisted state that
    /// already holds it.
    fn feed(&mut self, input: Input) -> Vec<Effect> {
        let before = self.core.safety_state();
        let effects = self.core.handle(input);
        if self.mutation != Mutation::BroadcastBeforePersist {
            assert_persisted_before_sent(self.own, &before, &effects);
        }
        self.log.extend(effects.iter().cloned());
        effects
    }

    fn vote(&self, from: ValidatorIndex, kind: VoteKind, round: Round, v: Option<Hash>) -> Input {
        let vote = Vote {
            height: 1,
            round,
            kind,
            block_id: v,
            validator_index: from,
        };
        Input::Message(Message::Vote(
            vote.sign(CHAIN, &self.keys[usize::from(from)]),
        ))
    }

    fn prevotes(&mut self, from: &[ValidatorIndex], round: Round, v: Option<Hash>) {
        for i in from {
            let input = self.vote(*i, VoteKind::Prevote, round, v);
            self.feed(input);
        }
    }

    fn precommits(&mut self, from: &[ValidatorIndex], round: Round, v: Option<Hash>) {
        for i in from {
            let input = self.vote(*i, VoteKind::Precommit, round, v);
            self.feed(input);
        }
    }

    /// A proposal signed by proposer(1, round) = (1 + round) mod 4.
    fn proposal(&self, round: Round, v: Hash, valid_round: Option<Round>) -> Input {
        let proposer = ((1 + round) % N as u32) as ValidatorIndex;
        let proposal = Proposal {
            height: 1,
            round,
            block_id: v,
            valid_round,
            proposer_index: proposer,
        };
        Input::Message(Message::Proposal(
            proposal.sign(CHAIN, &self.keys[usize::from(proposer)]),
        ))
    }

    fn verdict(&mut self, v: Hash, valid: bool) {
        self.feed(Input::Verdict {
            height: 1,
            block_id: v,
            valid,
        });
    }

    /// Round 0's proposal of A, judged ahead of this node's clock.
    fn a_ahead_of_the_clock_in_round_0(&mut self) {
        let p = self.proposal(0, a(), None);
        self.feed(p);
        self.feed(Input::NotYetValid {
            height: 1,
            block_id: a(),
        });
    }

    fn timeout(&mut self, round: Round, step: Step) -> Vec<Effect> {
        self.feed(Input::Timeout {
            height: 1,
            round,
            step,
        })
    }

    /// Validator 0 locks on B in round 1: skip there (line 55), prevote B (line 22), see a
    /// polka (line 36).
    fn lock_b_in_round_1(&mut self) {
        self.verdict(b(), true);
        self.prevotes(&[2, 3], 1, Some(b()));
        assert_eq!(self.core.round(), 1);
        let p = self.proposal(1, b(), None);
        self.feed(p);
        self.prevotes(&[1], 1, Some(b()));
        assert_eq!(
            self.core.safety_state().locked,
            Some(RoundValue {
                round: 1,
                block_id: b()
            })
        );
    }
}

/// `before` is the state already persisted when the input arrived: a vote it holds may be
/// sent again without a new write.
fn assert_persisted_before_sent(own: ValidatorIndex, before: &SafetyState, effects: &[Effect]) {
    let mut persisted: Option<&SafetyState> = Some(before);
    for effect in effects {
        match effect {
            Effect::PersistSafety(state) => persisted = Some(state.as_ref()),
            Effect::Broadcast(Message::Vote(v)) if v.vote.validator_index == own => {
                let state = persisted.unwrap_or_else(|| {
                    panic!("vote {v:?} sent before any persisted state in {effects:?}")
                });
                let held = match v.vote.kind {
                    VoteKind::Prevote => state.last_prevote,
                    VoteKind::Precommit => state.last_precommit,
                };
                assert_eq!(held, Some(*v), "vote sent before its state was persisted");
            }
            Effect::Broadcast(Message::Proposal(p)) if p.proposal.proposer_index == own => {
                // A proposal re-sent after a restart was persisted before the crash.
                if let Some(state) = persisted {
                    assert_eq!(state.last_proposal, Some(*p));
                }
            }
            _ => {}
        }
    }
}

/// What a case expects after its `when` input.
#[derive(Debug)]
enum Expect {
    /// This validator broadcasts a vote of this kind for this value.
    Votes(VoteKind, Option<Hash>),
    /// It signs no vote.
    NoVote,
    /// It proposes this value with this valid round.
    Proposes(Hash, Option<Round>),
    /// It asks the application for a value.
    RequestsValue,
    /// It schedules a timeout of this step, with the duration of its round.
    Schedules(Step),
    /// It schedules no timeout of this step.
    NoSchedule(Step),
    /// It decides this value with a verifying certificate.
    Decides(Hash),
    /// It decides nothing.
    NoDecision,
    /// It reports this validator's duplicate vote.
    Evidence(ValidatorIndex),
    /// It reports nothing.
    NoEvidence,
    /// It asks the application to check this block.
    Validates(Hash),
    /// Nothing at all comes out.
    NoEffects,
    /// State after the input.
    AtStep(Step),
    AtRound(Round),
    AtHeight(Height),
    Locked(Option<(Round, Hash)>),
    Valid(Option<(Round, Hash)>),
}

struct Case {
    name: &'static str,
    own: ValidatorIndex,
    mutation: Mutation,
    given: fn(&mut Harness),
    when: fn(&mut Harness) -> Input,
    expect: Vec<Expect>,
}

fn case(
    name: &'static str,
    own: ValidatorIndex,
    given: fn(&mut Harness),
    when: fn(&mut Harness) -> Input,
    expect: Vec<Expect>,
) -> Case {
    Case {
        name,
        own,
        mutation: Mutation::None,
        given,
        when,
        expect,
    }
}

fn check(case: &Case) {
    let mut h = Harness::with(case.own, case.mutation, None);
    (case.given)(&mut h);
    let input = (case.when)(&mut h);
    let effects = h.feed(input);
    let own = case.own;
    let keys = validator_set(&h.keys);
    let state = h.core.safety_state();
    let own_votes: Vec<Vote> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(Message::Vote(v)) if v.vote.validator_index == own => Some(v.vote),
            _ => None,
        })
        .collect();
    let as_pair = |v: Option<RoundValue>| v.map(|v| (v.round, v.block_id));
    for expect in &case.expect {
        let ok = match expect {
            Expect::Votes(kind, value) => own_votes
                .iter()
                .any(|v| v.kind == *kind && v.block_id == *value),
            Expect::NoVote => own_votes.is_empty(),
            Expect::Proposes(value, vr) => effects.iter().any(|e| {
                matches!(e, Effect::Broadcast(Message::Proposal(p))
                    if p.proposal.block_id == *value && p.proposal.valid_round == *vr
                        && p.proposal.proposer_index == own)
            }),
            Expect::RequestsValue => effects
                .iter()
                .any(|e| matches!(e, Effect::RequestValue { .. })),
            Expect::Schedules(step) => effects.iter().any(|e| {
                matches!(e, Effect::ScheduleTimeout { step: s, round, duration_ms, .. }
                    if s == step
                        && *duration_ms == timeout_duration_ms(&ConsensusParams::default(), *step, *round))
            }),
            Expect::NoSchedule(step) => !effects
                .iter()
                .any(|e| matches!(e, Effect::ScheduleTimeout { step: s, .. } if s == step)),
            Expect::Decides(value) => effects.iter().any(|e| match e {
                Effect::Decide {
                    block_id,
                    certificate,
                    ..
                } => {
                    block_id == value
                        && certificate.block_id == *value
                        && verify_certificate(CHAIN, &keys, certificate).is_ok()
                }
                _ => false,
            }),
            Expect::NoDecision => !effects.iter().any(|e| matches!(e, Effect::Decide { .. })),
            Expect::Evidence(culprit) => effects.iter().any(|e| {
                matches!(e, Effect::Evidence(Evidence::DuplicateVote { first, second })
                    if first.vote.validator_index == *culprit
                        && second.vote.validator_index == *culprit
                        && first.vote.block_id != second.vote.block_id)
            }),
            Expect::NoEvidence => !effects.iter().any(|e| matches!(e, Effect::Evidence(_))),
            Expect::Validates(value) => effects.iter().any(
                |e| matches!(e, Effect::ValidateValue { block_id, .. } if block_id == value),
            ),
            Expect::NoEffects => effects.is_empty(),
            Expect::AtStep(step) => h.core.step() == *step,
            Expect::AtRound(round) => h.core.round() == *round,
            Expect::AtHeight(height) => h.core.height() == *height,
            Expect::Locked(locked) => as_pair(state.locked) == *locked,
            Expect::Valid(valid) => as_pair(state.valid) == *valid,
        };
        assert!(
            ok,
            "case `{}`: expected {expect:?}\neffects: {effects:#?}\nstate: {state:?} step {:?} round {}",
            case.name,
            h.core.step(),
            h.core.round()
        );
    }
}

fn nothing(_: &mut Harness) {}

#[test]
fn every_rule_of_algorithm_1() {
    use Expect::*;
    use VoteKind::{Precommit as PC, Prevote as PV};
    let cases =
        vec![
        // Lines 10-21: StartRound(0) for a validator that is not proposer(1, 0) = 1.
        case(
            "L11-21 start: a non-proposer arms the propose timeout",
            0,
            nothing,
            |_| Input::Rebroadcast,
            vec![AtRound(0), AtStep(Step::Propose), AtHeight(1), NoVote],
        ),
        case(
            "L14-18 the proposer of the next round asks the application for a value",
            2,
            nothing,
            |_| Input::Timeout {
                height: 1,
                round: 0,
                step: Step::Precommit,
            },
            vec![AtRound(1), RequestsValue, NoVote, Schedules(Step::Propose)],
        ),
        case(
            "L18-19 the proposer proposes the application's value, then prevotes it (L22)",
            1,
            nothing,
            |_| Input::ProposeValue {
                height: 1,
                round: 0,
                block_id: a(),
            },
            vec![Proposes(a(), None), Votes(PV, Some(a())), AtStep(Step::Prevote)],
        ),
        case(
            "L15-16, L19 a proposer with a valid value proposes it with its valid round",
            2,
            |h| {
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.verdict(a(), true);
                h.prevotes(&[0, 1, 3], 0, Some(a()));
                h.precommits(&[0, 1, 3], 0, None);
            },
            |_| Input::Timeout {
                height: 1,
                round: 0,
                step: Step::Precommit,
            },
            vec![AtRound(1), Proposes(a(), Some(0)), Votes(PV, Some(a()))],
        ),
        case(
            "L22-24 a valid proposal with no lock gets a prevote",
            0,
            |h| h.verdict(a(), true),
            |h| h.proposal(0, a(), None),
            vec![Votes(PV, Some(a())), AtStep(Step::Prevote)],
        ),
        case(
            "L22, L26 a block ahead of this node's clock gets a nil prevote for now",
            0,
            |h| {
                let p = h.proposal(0, a(), None);
                h.feed(p);
            },
            |_| Input::NotYetValid {
                height: 1,
                block_id: a(),
            },
            vec![Votes(PV, None), AtStep(Step::Prevote)],
        ),
        case(
            "L22 a block refused only as ahead of the clock is judged again in the next round",
            0,
            |h| {
                h.a_ahead_of_the_clock_in_round_0();
                h.prevotes(&[2, 3], 1, None);
            },
            |h| h.proposal(1, a(), None),
            vec![AtRound(1), NoVote, Validates(a()), AtStep(Step::Propose)],
        ),
        case(
            "L22, L55 a block refused only as ahead of the clock, proposed again as the round \
             starts, is judged again",
            0,
            |h| {
                h.a_ahead_of_the_clock_in_round_0();
                h.prevotes(&[3], 1, None);
            },
            // Recorded while the verdict still stands; with the prevote, f + 1 messages of
            // round 1: the round starts (L55) and judges the block again.
            |h| h.proposal(1, a(), None),
            vec![AtRound(1), Validates(a())],
        ),
        case(
            "L26 an invalid block stays invalid for the height: nil at once in the next round",
            0,
            |h| {
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.verdict(a(), false);
                h.prevotes(&[2, 3], 1, None);
            },
            |h| h.proposal(1, a(), None),
            vec![AtRound(1), Votes(PV, None)],
        ),
        case(
            "L22 a proposal whose validity is unknown waits for the verdict",
            0,
            nothing,
            |h| h.proposal(0, a(), None),
            vec![NoVote, Validates(a()), AtStep(Step::Propose)],
        ),
        case(
            "L22 the verdict arriving later releases the prevote",
            0,
            |h| {
                let p = h.proposal(0, a(), None);
                h.feed(p);
            },
            |_| Input::Verdict {
                height: 1,
                block_id: a(),
                valid: true,
            },
            vec![Votes(PV, Some(a()))],
        ),
        case(
            "L25-26 an invalid proposal gets a nil prevote",
            0,
            |h| h.verdict(a(), false),
            |h| h.proposal(0, a(), None),
            vec![Votes(PV, None), AtStep(Step::Prevote)],
        ),
        case(
            "L23, L26 locked on another value: prevote nil",
            0,
            |h| {
                h.lock_b_in_round_1();
                h.verdict(a(), true);
                h.prevotes(&[1, 3], 2, None);
            },
            |h| h.proposal(2, a(), None),
            vec![AtRound(2), Votes(PV, None), Locked(Some((1, b())))],
        ),
        case(
            "L23-24 locked on the proposed value: prevote it",
            0,
            |h| {
                h.lock_b_in_round_1();
                h.prevotes(&[1, 3], 2, None);
            },
            |h| h.proposal(2, b(), None),
            vec![AtRound(2), Votes(PV, Some(b()))],
        ),
        case(
            "L28-30 unlock: a proposal with a polka newer than the lock gets a prevote",
            0,
            |h| {
                h.verdict(b(), true);
                h.verdict(a(), true);
                let p = h.proposal(0, b(), None);
                h.feed(p);
                h.prevotes(&[1, 2], 0, Some(b())); // polka for B in round 0 with our own
                assert_eq!(h.core.safety_state().locked.map(|l| l.round), Some(0));
                h.prevotes(&[1, 2, 3], 1, Some(a())); // a polka for A in round 1 ...
                h.prevotes(&[1, 3], 2, None); // ... and f+1 in round 2: skip there (L55)
            },
            |h| h.proposal(2, a(), Some(1)),
            vec![AtRound(2), Votes(PV, Some(a()))],
        ),
        case(
            "L29, L31-32 a polka older than the lock does not unlock: prevote nil",
            0,
            |h| {
                h.lock_b_in_round_1();
                h.verdict(a(), true);
                h.prevotes(&[1, 2, 3], 0, Some(a()));
                h.prevotes(&[1, 3], 2, None);
            },
            |h| h.proposal(2, a(), Some(0)),
            vec![AtRound(2), Votes(PV, None), Locked(Some((1, b())))],
        ),
        case(
            "L28 without 2f+1 prevotes of its valid round a proposal is not acted on",
            0,
            |h| {
                h.verdict(a(), true);
                h.prevotes(&[1, 2], 0, Some(a()));
                h.prevotes(&[2, 3], 1, None);
            },
            |h| h.proposal(1, a(), Some(0)),
            vec![AtRound(1), NoVote, AtStep(Step::Propose)],
        ),
        case(
            "L28 a valid round not below the round is malformed and dropped",
            0,
            |h| h.verdict(a(), true),
            |h| h.proposal(0, a(), Some(0)),
            vec![NoEffects, AtStep(Step::Propose)],
        ),
        case(
            "L34-35 2f+1 prevotes of any value in the prevote step arm the prevote timeout",
            0,
            |h| {
                h.timeout(0, Step::Propose);
                h.prevotes(&[1], 0, Some(a()));
            },
            |h| h.vote(2, PV, 0, Some(b())),
            vec![Schedules(Step::Prevote), NoVote, AtStep(Step::Prevote)],
        ),
        case(
            "L34 for the first time only",
            0,
            |h| {
                h.timeout(0, Step::Propose);
                h.prevotes(&[1, 2], 0, Some(a()));
            },
            |h| h.vote(3, PV, 0, Some(b())),
            vec![NoSchedule(Step::Prevote)],
        ),
        case(
            "L36-41 a polka for the proposal in the prevote step: lock and precommit",
            0,
            |h| {
                h.verdict(a(), true);
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.prevotes(&[1], 0, Some(a()));
            },
            |h| h.vote(2, PV, 0, Some(a())),
            vec![
                Votes(PC, Some(a())),
                AtStep(Step::Precommit),
                Locked(Some((0, a()))),
                Valid(Some((0, a()))),
            ],
        ),
        case(
            "L36, L42-43 a polka seen after precommitting nil sets the valid value, not the lock",
            0,
            |h| {
                h.verdict(a(), true);
                h.timeout(0, Step::Propose);
                h.timeout(0, Step::Prevote); // not armed yet: ignored
                h.prevotes(&[1, 2], 0, Some(b()));
                h.timeout(0, Step::Prevote); // L61: precommit nil
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.prevotes(&[1, 2], 0, Some(a())); // equivocators: conflicts
            },
            |h| h.vote(3, PV, 0, Some(a())),
            vec![
                NoVote,
                AtStep(Step::Precommit),
                Locked(None),
                Valid(Some((0, a()))),
            ],
        ),
        case(
            "L44-46 2f+1 nil prevotes in the prevote step: precommit nil",
            0,
            |h| {
                h.timeout(0, Step::Propose);
                h.prevotes(&[1], 0, None);
            },
            |h| h.vote(2, PV, 0, None),
            vec![Votes(PC, None), AtStep(Step::Precommit), Locked(None)],
        ),
        case(
            "L47-48 2f+1 precommits of any value arm the precommit timeout",
            0,
            |h| h.precommits(&[1, 2], 0, Some(a())),
            |h| h.vote(3, PC, 0, None),
            vec![Schedules(Step::Precommit), NoDecision],
        ),
        case(
            "L49-54 the proposal and 2f+1 precommits for it: decide and start the next height",
            0,
            |h| {
                h.verdict(a(), true);
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.precommits(&[1, 2], 0, Some(a()));
            },
            |h| h.vote(3, PC, 0, Some(a())),
            vec![
                Decides(a()),
                AtHeight(2),
                AtRound(0),
                Locked(None),
                Valid(None),
                Schedules(Step::Propose),
            ],
        ),
        case(
            "L49 a decision in an earlier round than the current one",
            0,
            |h| {
                h.verdict(a(), true);
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.prevotes(&[2, 3], 3, None);
                assert_eq!(h.core.round(), 3);
                h.precommits(&[1, 2], 0, Some(a()));
            },
            |h| h.vote(3, PC, 0, Some(a())),
            vec![Decides(a()), AtHeight(2)],
        ),
        case(
            "L50 no decision on an invalid value",
            0,
            |h| {
                h.verdict(a(), false);
                let p = h.proposal(0, a(), None);
                h.feed(p);
                h.precommits(&[1, 2], 0, Some(a()));
            },
            |h| h.vote(3, PC, 0, Some(a())),
            vec![NoDecision, AtHeight(1)],
        ),
        case(
            "L49 no decision without the proposal",
            0,
            |h| {
                h.verdict(a(), true);
                h.precommits(&[1, 2], 0, Some(a()));
            },
            |h| h.vote(3, PC, 0, Some(a())),
            vec![NoDecision, AtHeight(1)],
        ),
        case(
            "L55-56 f+1 validators in a higher round: skip to it",
            0,
            |h| h.prevotes(&[1], 5, None),
            |h| h.vote(2, PC, 5, None),
            vec![AtRound(5), AtStep(Step::Propose), Schedules(Step::Propose)],
        ),
        case(
            "L55 one validator in a higher round is not enough",
            0,
            |h| h.prevotes(&[1], 5, None),
            |h| h.vote(1, PC, 5, None),
            vec![AtRound(0)],
        ),
        case(
            "L57-60 the propose timeout in the propose step: prevote nil",
            0,
            nothing,
            |_| Input::Timeout {
                height: 1,
                round: 0,
                step: Step::Propose,
            },
            vec![Votes(PV, None), AtStep(Step::Prevote)],
        ),
        case(
            "L58 a timeout of another round is ignored",
            0,
            nothing,
            |_| Input::Timeout {
                height: 1,
                round: 1,
                step: Step::Propose,
            },
            vec![NoEffects, AtStep(Step::Propose)],
        ),
        case(
            "L61-64 the prevote timeout in the prevote step: precommit nil",
            0,
            |h| {
                h.timeout(0, Step::Propose);
            },
            |_| Input::Timeout {
                height: 1,
                round: 0,
                step: Step::Prevote,
            },
            vec![Votes(PC, None), AtStep(Step::Precommit)],
        ),
        case(
            "L65-67 the precommit timeout: next round",
            0,
            nothing,
            |_| Input::Timeout {
                height: 1,
                round: 0,
                step: Step::Precommit,
            },
            vec![AtRound(1), AtStep(Step::Propose), Schedules(Step::Propose)],
        ),
        case(
            "evidence: two different prevotes of one validator in one round",
            0,
            |h| h.prevotes(&[2], 0, Some(a())),
            |h| h.vote(2, PV, 0, Some(b())),
            vec![Evidence(2)],
        ),
        case(
            "evidence is reported once per validator and step",
            0,
            |h| {
                h.prevotes(&[2], 0, Some(a()));
                h.prevotes(&[2], 0, Some(b()));
            },
            |h| h.vote(2, PV, 0, None),
            vec![NoEvidence],
        ),
        case(
            "an equivocator's vote for a real polka is kept even after many junk votes",
            0,
            |h| {
                h.verdict(a(), true);
                for junk in 0..4u8 {
                    let input = h.vote(2, PV, 0, Some(Hash([junk; 32])));
                    h.feed(input);
                }
                let p = h.proposal(0, a(), None);
                h.feed(p); // own prevote for A
                h.prevotes(&[1], 0, Some(a()));
            },
            |h| h.vote(2, PV, 0, Some(a())),
            vec![Votes(PC, Some(a())), Locked(Some((0, a())))],
        ),
        case(
            "a vote repeated by the network counts once",
            0,
            |h| {
                h.timeout(0, Step::Propose);
                h.prevotes(&[1, 1, 1], 0, None);
            },
            |h| h.vote(1, PV, 0, None),
            vec![NoVote, NoEffects, AtStep(Step::Prevote)],
        ),
        case(
            "a vote from outside the validator set is dropped",
            0,
            nothing,
            |h| {
                let vote = Vote {
                    height: 1,
                    round: 0,
                    kind: PV,
                    block_id: None,
                    validator_index: 9,
                };
                Input::Message(Message::Vote(vote.sign(CHAIN, &h.keys[1])))
            },
            vec![NoEffects],
        ),
        case(
            "a proposal from a validator that is not the round's proposer is dropped",
            0,
            nothing,
            |h| {
                let proposal = Proposal {
                    height: 1,
                    round: 0,
                    block_id: a(),
                    valid_round: None,
                    proposer_index: 2,
                };
                Input::Message(Message::Proposal(proposal.sign(CHAIN, &h.keys[2])))
            },
            vec![NoEffects],
        ),
        case(
            "a message for another height is dropped",
            0,
            nothing,
            |h| {
                let vote = Vote {
                    height: 7,
                    round: 0,
                    kind: PV,
                    block_id: None,
                    validator_index: 1,
                };
                Input::Message(Message::Vote(vote.sign(CHAIN, &h.keys[1])))
            },
            vec![NoEffects],
        ),
        case(
            "block sync: a committed height moves the core past it",
            0,
            |h| h.prevotes(&[1], 0, None),
            |_| Input::Committed { height: 3 },
            vec![AtHeight(4), AtRound(0), Schedules(Step::Propose)],
        ),
        Case {
            mutation: Mutation::IgnoreLock,
            ..case(
                "the IgnoreLock mutation really breaks line 23",
                0,
                |h| {
                    h.lock_b_in_round_1();
                    h.verdict(a(), true);
                    h.prevotes(&[1, 3], 2, None);
                },
                |h| h.proposal(2, a(), None),
                vec![Votes(PV, Some(a()))],
            )
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn the_proposer_asks_for_a_value_at_start() {
    let h = Harness::new(1);
    assert!(h.log.iter().any(|e| matches!(
        e,
        Effect::RequestValue {
            height: 1,
            round: 0
        }
    )));
    let h = Harness::new(0);
    assert!(!h
        .log
        .iter()
        .any(|e| matches!(e, Effect::RequestValue { .. })));
}

#[test]
fn timeouts_grow_with_the_round() {
    let params = ConsensusParams::default();
    assert_eq!(timeout_duration_ms(&params, Step::Propose, 0), 1_000);
    assert_eq!(timeout_duration_ms(&params, Step::Propose, 3), 2_500);
    assert_eq!(timeout_duration_ms(&params, Step::Prevote, 2), 1_500);
    let huge = ConsensusParams {
        timeout_increase_ms: u64::MAX / 2,
        ..ConsensusParams::default()
    };
    assert_eq!(
        timeout_duration_ms(&huge, Step::Precommit, u32::MAX),
        u64::MAX,
        "durations saturate instead of wrapping"
    );
}

/// Drives a validator through a script, and after every effect pretends it crashed there:
/// restarts a core from the last persisted state, drives it through inputs that would make a
/// forgetful core vote differently, and checks that no two different votes were ever sent
/// for one `(height, round, kind)`.
#[test]
fn no_double_sign_after_a_restart_from_any_persisted_state() {
    let mut h = Harness::new(0);
    h.verdict(a(), true);
    h.verdict(b(), true);
    let script: Vec<Input> = {
        let mut s = vec![h.proposal(0, a(), None)];
        for i in [1, 2] {
            s.push(h.vote(i, VoteKind::Prevote, 0, Some(a())));
        }
        for i in [1, 2, 3] {
            s.push(h.vote(i, VoteKind::Precommit, 0, None));
        }
        s.push(Input::Timeout {
            height: 1,
            round: 0,
            step: Step::Precommit,
        });
        s.push(h.proposal(1, b(), None));
        s.push(Input::Timeout {
            height: 1,
            round: 1,
            step: Step::Propose,
        });
        s
    };
    for input in script {
        h.feed(input);
    }
    let tail: Vec<Input> = {
        let mut s = Vec::new();
        for round in 0..2 {
            for step in [Step::Propose, Step::Prevote, Step::Precommit] {
                s.push(Input::Timeout {
                    height: 1,
                    round,
                    step,
                });
            }
            s.push(h.proposal(round, b(), None));
            for i in [1, 2, 3] {
                s.push(h.vote(i, VoteKind::Prevote, round, Some(b())));
                s.push(h.vote(i, VoteKind::Prevote, round, None));
            }
        }
        s
    };
    let log = h.log.clone();
    let mut crash_points = 0;
    for cut in 0..=log.len() {
        let before = &log[..cut];
        let Some(state) = before.iter().rev().find_map(|e| match e {
            Effect::PersistSafety(s) => Some(s.as_ref().clone()),
            _ => None,
        }) else {
            continue;
        };
        crash_points += 1;
        // The state as synced, and the same state with its step and lock rolled back: only
        // the last votes then stand between the core and a second, different vote.
        let rolled_back = SafetyState {
            step: Step::Propose,
            locked: None,
            ..state.clone()
        };
        for restored in [state, rolled_back] {
            let mut sent = own_votes(0, before);
            let mut restarted = Harness::with(0, Mutation::None, Some(restored));
            restarted.verdict(a(), true);
            restarted.verdict(b(), true);
            for input in &tail {
                restarted.feed(input.clone());
            }
            sent.extend(own_votes(0, &restarted.log));
            for x in &sent {
                for y in &sent {
                    assert!(
                        (x.height, x.round, x.kind) != (y.height, y.round, y.kind)
                            || x.block_id == y.block_id,
                        "crash after effect {cut}: signed {x:?} and {y:?}"
                    );
                }
            }
        }
    }
    assert!(crash_points >= 4, "the script persisted too few states");
}

fn own_votes(own: ValidatorIndex, effects: &[Effect]) -> Vec<Vote> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(Message::Vote(v)) if v.vote.validator_index == own => Some(v.vote),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mutated_core_sends_before_persisting() {
    let mut h = Harness::with(0, Mutation::BroadcastBeforePersist, None);
    let effects = h.timeout(0, Step::Propose);
    let first_send = effects
        .iter()
        .position(|e| matches!(e, Effect::Broadcast(Message::Vote(_))));
    let first_persist = effects
        .iter()
        .position(|e| matches!(e, Effect::PersistSafety(_)));
    assert!(first_send < first_persist, "{effects:?}");
}

#[test]
fn the_safety_state_encoding_is_fixed() {
    let key = Keypair::from_seed([1; 32]);
    let vote = Vote {
        height: 7,
        round: 2,
        kind: VoteKind::Prevote,
        block_id: Some(Hash([0x33; 32])),
        validator_index: 0,
    };
    let state = SafetyState {
        height: 7,
        round: 2,
        step: Step::Prevote,
        locked: Some(RoundValue {
            round: 1,
            block_id: Hash([0x11; 32]),
        }),
        valid: Some(RoundValue {
            round: 2,
            block_id: Hash([0x22; 32]),
        }),
        valid_proof: vec![vote.sign("golden-chain", &key)],
        last_prevote: Some(vote.sign("golden-chain", &key)),
        last_precommit: None,
        last_proposal: None,
    };
    let bytes = borsh::to_vec(&state).expect("encodes");
    let golden = include_str!("golden/safety_state.hex").trim();
    assert_eq!(
        hex::encode(&bytes),
        golden,
        "the SafetyState encoding changed"
    );
    let back: SafetyState = borsh::from_slice(&bytes).expect("decodes");
    assert_eq!(back, state);
}

#[test]
fn a_core_refuses_a_signer_outside_the_set() {
    let keys = keys(N);
    let stranger = Keypair::from_seed([99; 32]);
    let result = Core::new(
        Config::new(CHAIN, ConsensusParams::default()),
        validator_set(&keys),
        Some(Box::new(stranger)),
        None,
    );
    assert!(result.is_err());
}
