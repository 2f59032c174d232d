//! The digest depends only on records, genesis, height and block time; proposer and
//! validators agree; aggregates stay consistent with the registry.

use branchledger_crypto::Hash;
use branchledger_state::entries::{BranchStats, DuesTotals, MemberEntry, StudyTotals};
use branchledger_state::read::decode_value;
use branchledger_state::{apply_block, keys, BlockExecutor, MemState, StateDelta, Table};
use branchledger_types::record::{IssueScope, MeetingKind, RecordBody, Reviewer};
use branchledger_types::{Period, SignedRecord};

use crate::fixture::*;

/// The digest after [`scripted_blocks`]. It changes only if the rules or an encoding change:
/// then the change is a protocol change and this constant is updated deliberately.
const SCRIPTED_DIGEST_HEX: &str =
    "2e2737b837749c2fa4348682d45e736c456b19f4b6cbc659b8f101c6dc0a5650";

/// A fixed history: registrations, study, dues, a meeting with a guest, the issue life cycle,
/// a transfer, corrections and a retraction, over eight blocks.
fn scripted_blocks() -> (Vec<(u64, Vec<SignedRecord>)>, Chain) {
    let mut chain = Chain::new();
    let mut blocks = Vec::new();
    let push = |chain: &mut Chain,
                blocks: &mut Vec<(u64, Vec<SignedRecord>)>,
                bodies: Vec<(usize, RecordBody)>| {
        let records: Vec<SignedRecord> = bodies
            .into_iter()
            .map(|(branch, body)| chain.record(branch, body))
            .collect();
        let time_ms = chain.next_time_ms();
        chain.block(&records).expect("scripted block is valid");
        blocks.push((time_ms, records));
    };
    push(
        &mut chain,
        &mut blocks,
        vec![
            (0, joined("a0", true)),
            (0, joined("a1", false)),
            (1, joined("c0", true)),
            (1, joined("c1", false)),
            (2, joined("d0", false)),
        ],
    );
    push(
        &mut chain,
        &mut blocks,
        vec![
            (0, study("a0", 60)),
            (0, study_on("a1", 90, "2025-02-20")),
            (1, dues("c0", Period::new(2025, 3), 500)),
            (
                0,
                meeting(
                    "mt-1",
                    MeetingKind::Committee,
                    "2025-03-04",
                    &[("a0", false), ("c0", true)],
                    &["a1"],
                ),
            ),
        ],
    );
    let first_study = blocks[1].1[0].id();
    let dues_record = blocks[1].1[2].id();
    push(
        &mut chain,
        &mut blocks,
        vec![
            (2, raised("is-1", IssueScope::Public)),
            (0, claimed("is-1", &["a1", "c0"])),
            (0, progress("is-1", 50)),
            (0, correction(first_study, Some(study("a0", 45)))),
        ],
    );
    push(
        &mut chain,
        &mut blocks,
        vec![(0, resolved("is-1")), (1, transferred("c1", 2))],
    );
    push(
        &mut chain,
        &mut blocks,
        vec![
            (2, reviewed("is-1", 5, Reviewer::Member(m("d0")))),
            (2, accepted("c1", 1)),
            (2, study("c1", 30)),
        ],
    );
    push(
        &mut chain,
        &mut blocks,
        vec![(1, correction(dues_record, None))],
    );
    push(&mut chain, &mut blocks, vec![]);
    push(
        &mut chain,
        &mut blocks,
        vec![
            (0, left("a1")),
            (2, raised("is-2", IssueScope::Member(m("c1")))),
        ],
    );
    (blocks, chain)
}

fn replay(blocks: &[(u64, Vec<SignedRecord>)]) -> (Vec<(StateDelta, Hash)>, MemState) {
    let genesis = genesis();
    let mut state = MemState::new();
    let mut digest = Hash::ZERO;
    let mut results = Vec::new();
    for (height, (time_ms, records)) in (1u64..).zip(blocks) {
        let (delta, next) = apply_block(&state, &genesis, height, *time_ms, records, &digest)
            .expect("replayed block is valid");
        state.apply_block(height, records, delta.clone());
        digest = next;
        results.push((delta, next));
    }
    (results, state)
}

#[test]
fn scripted_chain_has_the_checked_in_digest() {
    let (_, chain) = scripted_blocks();
    assert_eq!(
        chain.digest.to_hex(),
        SCRIPTED_DIGEST_HEX,
        "the state digest changed: the rules or an encoding changed"
    );
}

#[test]
fn replays_from_scratch_give_identical_deltas() {
    let (blocks, chain) = scripted_blocks();
    let (first, first_state) = replay(&blocks);
    let (second, second_state) = replay(&blocks);
    assert_eq!(first, second);
    assert_eq!(first_state, second_state);
    assert_eq!(first_state, chain.state);
    assert_eq!(first.last().map(|(_, digest)| *digest), Some(chain.digest));
    // The digest chains: every block's differs, the empty one's too.
    let digests: std::collections::BTreeSet<Hash> = first.iter().map(|(_, d)| *d).collect();
    assert_eq!(digests.len(), blocks.len());
    // The same records at another height or time give another digest.
    let genesis = genesis();
    let (blocks_head, _) = blocks.split_at(1);
    let (_, at_one) = apply_block(
        &MemState::new(),
        &genesis,
        1,
        blocks_head[0].0,
        &blocks_head[0].1,
        &Hash::ZERO,
    )
    .expect("valid");
    let (_, at_two) = apply_block(
        &MemState::new(),
        &genesis,
        2,
        blocks_head[0].0,
        &blocks_head[0].1,
        &Hash::ZERO,
    )
    .expect("valid");
    assert_ne!(at_one, at_two);
}

/// A small deterministic generator (SplitMix64), so a failing run replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Members `m{3k + b}` join branch `b`; most records name a member of the signing
/// branch's share, so a fair part of them is accepted.
fn random_member(rng: &mut Rng, branch: usize) -> String {
    let n = if rng.below(4) == 0 {
        rng.below(48)
    } else {
        3 * rng.below(16) + branch
    };
    format!("m{n}")
}

/// A committed record to correct; most often one the signing branch signed.
fn random_target(rng: &mut Rng, branch: usize, committed: &[(Hash, usize)]) -> Hash {
    let (id, signer) = committed[rng.below(committed.len())];
    if signer == branch || rng.below(4) == 0 {
        return id;
    }
    committed
        .iter()
        .rev()
        .find(|(_, signer)| *signer == branch)
        .map_or(id, |(id, _)| *id)
}

fn random_body(rng: &mut Rng, branch: usize, committed: &[(Hash, usize)]) -> RecordBody {
    let member = random_member(rng, branch);
    let member = member.as_str();
    let day = format!("2025-03-{:02}", 1 + rng.below(11));
    let issue = format!("is-{}", rng.below(30));
    match rng.below(16) {
        0 | 1 => joined(member, rng.below(2) == 0),
        2 | 3 => transferred(member, rng.below(3)),
        4 => accepted(member, rng.below(3)),
        5 if rng.below(4) == 0 => left(member),
        5..=7 => study_on(member, 1 + rng.below(120) as u16, &day),
        8 => dues(
            member,
            Period::new(2025, 1 + rng.below(3) as u8),
            1 + rng.below(500) as u64,
        ),
        9 => {
            let mut attendees = vec![(member.to_owned(), false)];
            let mut absentees = Vec::new();
            for _ in 0..rng.below(4) {
                let other = random_member(rng, branch);
                if attendees.iter().any(|(id, _)| *id == other) || absentees.contains(&other) {
                    continue;
                }
                match rng.below(4) {
                    0 => absentees.push(other),
                    1 => attendees.push((other, true)),
                    _ => attendees.push((other, false)),
                }
            }
            let attendees: Vec<(&str, bool)> = attendees
                .iter()
                .map(|(id, guest)| (id.as_str(), *guest))
                .collect();
            let absentees: Vec<&str> = absentees.iter().map(String::as_str).collect();
            let kind = MeetingKind::ALL[rng.below(MeetingKind::ALL.len())];
            meeting(
                &format!("mt-{}", rng.below(60)),
                kind,
                &day,
                &attendees,
                &absentees,
            )
        }
        10 | 11 => match rng.below(5) {
            0 => raised(&issue, IssueScope::Public),
            1 => claimed(&issue, &[member]),
            2 => progress(&issue, rng.below(101) as u8),
            3 => resolved(&issue),
            _ => reviewed(&issue, 1 + rng.below(5) as u8, Reviewer::Public),
        },
        _ if committed.is_empty() => joined(member, false),
        12 => correction(random_target(rng, branch, committed), None),
        13 | 14 => correction(
            random_target(rng, branch, committed),
            Some(study_on(member, 1 + rng.below(120) as u16, &day)),
        ),
        _ => correction(
            random_target(rng, branch, committed),
            Some(dues(
                member,
                Period::new(2025, 3),
                1 + rng.below(500) as u64,
            )),
        ),
    }
}

fn sum_values<T, F>(state: &MemState, table: Table, mut f: F) -> u64
where
    T: borsh::BorshDeserialize,
    F: FnMut(&T) -> u64,
{
    state
        .iter_table(table)
        .map(|(key, value)| f(&decode_value::<T>(table, key, value).expect("decodes")))
        .sum()
}

/// Invariants that tie the tables together.
fn check_invariants(state: &MemState, seed: u64, height: u64) {
    let context = format!("seed {seed}, height {height}");
    let study_minutes = |t: &StudyTotals| t.minutes;
    assert_eq!(
        sum_values(state, Table::StudyByMember, study_minutes),
        sum_values(state, Table::StudyByBranch, study_minutes),
        "study totals by member and by branch disagree ({context})"
    );
    let dues_amount = |t: &DuesTotals| t.amount_minor;
    assert_eq!(
        sum_values(state, Table::DuesByMember, dues_amount),
        sum_values(state, Table::DuesByBranch, dues_amount),
        "dues totals by member and by branch disagree ({context})"
    );
    for branch in 0..3 {
        let id = b(branch);
        let prefix = keys::id_prefix(id.as_str());
        let listed = state.iter_prefix(Table::BranchMembers, &prefix).count() as u64;
        let active = state
            .iter_table(Table::Members)
            .map(|(key, value)| {
                decode_value::<MemberEntry>(Table::Members, key, value).expect("decodes")
            })
            .filter(|entry| entry.is_active_in(&id))
            .count() as u64;
        let stats: BranchStats = state
            .iter_table(Table::BranchStats)
            .find(|(key, _)| *key == id.as_str().as_bytes())
            .map(|(key, value)| decode_value(Table::BranchStats, key, value).expect("decodes"))
            .unwrap_or_default();
        assert_eq!(listed, active, "branch members of {id} ({context})");
        assert_eq!(
            stats.active_members, active,
            "active members of {id} ({context})"
        );
    }
}

/// The variant's name, to count which rules a random run reached.
fn variant_name(rejection: &branchledger_state::Rejection) -> String {
    let debug = format!("{rejection:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Random candidate records, filtered by a proposer, re-checked by a validator: both compute
/// the same delta, replaying gives the same state, and the tables stay consistent.
/// `STATE_TEST_SEED=<n>` replays a run.
#[test]
fn random_histories_agree_between_proposer_and_validator() {
    let seed = std::env::var("STATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("random_histories_agree_between_proposer_and_validator: STATE_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let mut chain = Chain::new();
    let mut committed: Vec<(Hash, usize)> = Vec::new();
    let mut blocks = Vec::new();
    let mut rejected = 0usize;
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..120 {
        let candidates: Vec<SignedRecord> = (0..25)
            .map(|_| {
                let branch = rng.below(3);
                let body = random_body(&mut rng, branch, &committed);
                chain.record(branch, body)
            })
            .collect();
        let time_ms = chain.next_time_ms();
        let mut executor =
            BlockExecutor::new(&chain.state, &chain.genesis, chain.height + 1, time_ms);
        let mut accepted_records = Vec::new();
        for record in &candidates {
            match executor.apply(record) {
                Ok(_) => accepted_records.push(record.clone()),
                Err(branchledger_state::ApplyError::Rejected(r)) => {
                    rejected += 1;
                    *reasons.entry(variant_name(&r)).or_insert(0usize) += 1;
                }
                Err(error) => panic!("read error (seed {seed}): {error}"),
            }
        }
        let proposed = executor.finish(&chain.digest);
        let delta = chain
            .block(&accepted_records)
            .unwrap_or_else(|e| panic!("validator rejects the proposal (seed {seed}): {e}"));
        assert_eq!((delta, chain.digest), proposed, "seed {seed}");
        committed.extend(accepted_records.iter().map(|r| {
            let signer = chain
                .genesis
                .branches
                .iter()
                .position(|g| g.branch_id == r.record.branch_id);
            (r.id(), signer.unwrap_or(0))
        }));
        check_invariants(&chain.state, seed, chain.height);
        blocks.push((time_ms, accepted_records));
    }
    println!(
        "accepted {}, rejected {rejected}: {reasons:?}",
        committed.len()
    );
    assert!(
        committed.len() > 300,
        "too few records accepted to mean anything (seed {seed})"
    );
    assert!(
        rejected > 300,
        "too few records rejected to mean anything (seed {seed})"
    );
    assert!(
        reasons.len() >= 15,
        "the generator reaches too few rules (seed {seed}): {reasons:?}"
    );
    let (replayed, state) = replay(&blocks);
    assert_eq!(state, chain.state, "seed {seed}");
    assert_eq!(
        replayed.last().map(|(_, d)| *d),
        Some(chain.digest),
        "seed {seed}"
    );
}
