//! A validator restarted from its safety state: it never signs a second proposal for a
//! height and round it already proposed in, and never decides a block on the strength of a
//! verdict it gave before the crash (the shell kept blocks in memory only). Also the bound on
//! the messages one validator may have held for the next height.

#![allow(clippy::unwrap_used)]

use branchledger_consensus::{
    Config, Core, Effect, Input, Message, SafetyState, FUTURE_MESSAGES_MAX,
    FUTURE_MESSAGES_PER_VALIDATOR_MAX,
};
use branchledger_crypto::{Hash, Keypair};
use branchledger_types::{ConsensusParams, Vote, VoteKind};

mod support;
use support::{keys, validator_set};

const CHAIN: &str = "restart-chain";

/// Validator `own` of `keys`, resuming from `safety`.
fn core(keys: &[Keypair], own: usize, safety: Option<SafetyState>) -> Core {
    Core::new(
        Config::new(CHAIN, ConsensusParams::default()),
        validator_set(keys),
        Some(Box::new(keys[own].clone())),
        safety,
    )
    .unwrap()
}

fn first_persisted(effects: &[Effect]) -> SafetyState {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::PersistSafety(s) => Some(s.as_ref().clone()),
            _ => None,
        })
        .unwrap()
}

fn last_persisted(effects: &[Effect]) -> SafetyState {
    effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::PersistSafety(s) => Some(s.as_ref().clone()),
            _ => None,
        })
        .unwrap()
}

fn own_proposals(effects: &[Effect]) -> Vec<(u64, u32, Hash)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(Message::Proposal(p)) => {
                Some((p.proposal.height, p.proposal.round, p.proposal.block_id))
            }
            _ => None,
        })
        .collect()
}

/// A one-validator chain decides heights 1 and 2; its store loses block 1 (say a reset kept
/// the safety state), and restarted at height 1 it is asked for a value again: it signs no
/// second proposal for a (height, round) it already proposed in.
#[test]
fn no_second_proposal_for_one_height_and_round_after_restart() {
    let keys = keys(1);
    let mut first = core(&keys, 0, None);
    let mut log = first.handle(Input::Start { height: 1 });
    log.extend(first.handle(Input::ProposeValue {
        height: 1,
        round: 0,
        block_id: Hash::of(b"A"),
    }));
    assert!(log
        .iter()
        .any(|e| matches!(e, Effect::Decide { height: 1, .. })));
    log.extend(first.handle(Input::ProposeValue {
        height: 2,
        round: 0,
        block_id: Hash::of(b"X"),
    }));
    assert!(log
        .iter()
        .any(|e| matches!(e, Effect::Decide { height: 2, .. })));
    let synced = last_persisted(&log);
    assert_eq!(synced.height, 2);
    let mut signed = own_proposals(&log);

    let mut restarted = core(&keys, 0, Some(synced));
    let mut log = restarted.handle(Input::Start { height: 1 });
    log.extend(restarted.handle(Input::ProposeValue {
        height: 1,
        round: 0,
        block_id: Hash::of(b"B"),
    }));
    signed.extend(own_proposals(&log));
    for p in &signed {
        for q in &signed {
            assert!(
                (p.0, p.1) != (q.0, q.1) || p.2 == q.2,
                "two proposals signed for height {} round {}: {} and {}",
                p.0,
                p.1,
                p.2,
                q.2
            );
        }
    }
    assert!(!log.iter().any(|e| matches!(e, Effect::Decide { .. })));
}

/// A one-validator chain crashes after its proposal's safety state was synced and before the
/// block was stored. Restarted, it sends the proposal again but asks the shell whether the
/// block is valid before deciding it: the shell no longer holds it, says nothing, and no
/// decision is made; the round then times out and a new block goes through.
#[test]
fn a_restarted_proposer_decides_nothing_the_shell_did_not_check_again() {
    let keys = keys(1);
    let lost = Hash::of(b"the block lost in the crash");
    let mut first = core(&keys, 0, None);
    let mut log = first.handle(Input::Start { height: 1 });
    log.extend(first.handle(Input::ProposeValue {
        height: 1,
        round: 0,
        block_id: lost,
    }));
    let synced = first_persisted(&log);
    assert!(synced.last_proposal.is_some());

    let mut restarted = core(&keys, 0, Some(synced));
    let effects = restarted.handle(Input::Start { height: 1 });
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Decide { .. })),
        "decided a block the shell may no longer hold: {effects:#?}"
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::ValidateValue { height: 1, block_id, .. } if *block_id == lost
    )));
    // The shell has no verdict to give; the timeouts run and round 1 decides a new block.
    let mut log = effects;
    for _ in 0..3 {
        let (height, round, step) = log
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::ScheduleTimeout {
                    height,
                    round,
                    step,
                    ..
                } => Some((*height, *round, *step)),
                _ => None,
            })
            .unwrap();
        log.extend(restarted.handle(Input::Timeout {
            height,
            round,
            step,
        }));
        if restarted.round() == 1 {
            break;
        }
    }
    assert_eq!(restarted.round(), 1);
    let fresh = Hash::of(b"a new block");
    let effects = restarted.handle(Input::ProposeValue {
        height: 1,
        round: 1,
        block_id: fresh,
    });
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Decide { height: 1, block_id, .. } if *block_id == fresh)));
}

/// One validator cannot fill the buffer of next-height messages: past its share, its
/// messages are dropped, and another validator's still get in and count there.
#[test]
fn one_validator_cannot_fill_the_next_height_buffer() {
    let keys = keys(4);
    let mut own = core(&keys, 0, None);
    own.handle(Input::Start { height: 1 });
    let vote = |validator: usize, round: u32, block: &[u8]| {
        Vote {
            height: 2,
            round,
            kind: VoteKind::Prevote,
            block_id: Some(Hash::of(block)),
            validator_index: validator as u16,
        }
        .sign(CHAIN, &keys[validator])
    };
    for round in 0..=FUTURE_MESSAGES_MAX as u32 {
        own.handle(Input::Message(Message::Vote(vote(3, round, b"junk"))));
    }
    let honest = vote(1, 0, b"B");
    own.handle(Input::Message(Message::Vote(honest)));
    // At height 2 the held messages are replayed: the honest vote is among them, and the
    // faulty validator's are at most its share.
    own.handle(Input::Committed { height: 1 });
    let state = own.safety_state();
    assert_eq!(state.height, 2);
    let effects = own.handle(Input::Rebroadcast);
    let relayed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(Message::Vote(v)) => Some(*v),
            _ => None,
        })
        .collect();
    assert!(relayed.contains(&honest), "the honest vote was crowded out");
    assert!(
        relayed
            .iter()
            .filter(|v| v.vote.validator_index == 3)
            .count()
            <= FUTURE_MESSAGES_PER_VALIDATOR_MAX
    );
}
