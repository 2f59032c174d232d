//! The state rules' cost per record: `apply_block` on a block of study sessions and dues
//! payments (as `branchd bench gen-chain` writes them), and on a mixed block that also holds
//! meetings of 20 attendees (5%) and corrections of earlier records (5%), over a state that
//! already holds earlier blocks; next to the cost of verifying the first block's signatures
//! in one batch on one core (the ratio the auditor and the proposal check are judged by).
//!
//!   cargo bench -p branchledger-state --bench apply

use branchledger_crypto::{BatchVerifier, Hash, Keypair, Signer};
use branchledger_state::{apply_block, MemState};
use branchledger_types::genesis::{Rules, StudyRule};
use branchledger_types::record::{
    Attendee, Correction, DuesPaid, MeetingHeld, MeetingKind, MemberJoined, MemberStatus,
    StudyForm, StudySession,
};
use branchledger_types::{
    Branch, BranchId, ConsensusParams, Date, Genesis, MeetingId, MemberId, Period, Record,
    RecordBody, SignedRecord, Validator,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BRANCHES: usize = 4;
const MEMBERS_PER_BRANCH: u64 = 50;
const BLOCK_RECORDS: u64 = 5_000;
/// Blocks applied before the measured one, so reads find a populated state.
const EARLIER_BLOCKS: u64 = 4;
/// 2025-03-10T12:00:00Z.
const T0_MS: u64 = 1_741_608_000_000;

fn branch_key(b: usize) -> Keypair {
    Keypair::from_seed([100 + b as u8; 32])
}

fn genesis() -> Genesis {
    let key = |seed: u8| Keypair::from_seed([seed; 32]).public_key();
    Genesis {
        chain_id: "bench-chain".into(),
        genesis_time_ms: T0_MS - 86_400_000,
        validators: vec![Validator {
            name: "v0".into(),
            branch_id: BranchId("b0".into()),
            consensus_key: key(10),
            peer_id: branchledger_types::genesis::peer_id_of(&key(20)),
        }],
        branches: (0..BRANCHES)
            .map(|b| Branch {
                branch_id: BranchId(format!("b{b}")),
                name: format!("Branch {b}"),
                signing_key: branch_key(b).public_key(),
            })
            .collect(),
        consensus: ConsensusParams {
            max_block_records: BLOCK_RECORDS as u32,
            ..ConsensusParams::default()
        },
        rules: Rules {
            meetings: Vec::new(),
            study: StudyRule {
                minutes_per_member_per_month: 600,
            },
            dues_minor_per_month: 100,
        },
    }
}

/// The branch that signs record `n`.
fn branch_of(n: u64) -> usize {
    (n % BRANCHES as u64) as usize
}

fn member(b: usize, m: u64) -> MemberId {
    MemberId(format!("m-{b}-{m}"))
}

/// Record `n`: members join first, then study sessions and dues payments (as the generated
/// benchmark chain has them).
fn record(keys: &[Keypair], n: u64) -> SignedRecord {
    let b = branch_of(n);
    let joins = BRANCHES as u64 * MEMBERS_PER_BRANCH;
    let body = if n < joins {
        RecordBody::MemberJoined(MemberJoined {
            member_id: member(b, n / BRANCHES as u64),
            joined_on: Date::new(2024, 1, 1),
            status: MemberStatus::Full,
            mobile: false,
            member_key: None,
        })
    } else if n % 5 == 4 {
        dues(b, n)
    } else {
        study(b, n)
    };
    signed(keys, b, n, body)
}

fn dues(b: usize, n: u64) -> RecordBody {
    RecordBody::DuesPaid(DuesPaid {
        member_id: member(b, (n / 7) % MEMBERS_PER_BRANCH),
        period: Period::new(2024, (n % 12) as u8 + 1),
        amount_minor: 2_000,
        reference_commitment: None,
    })
}

fn study(b: usize, n: u64) -> RecordBody {
    RecordBody::StudySession(StudySession {
        member_id: member(b, (n / 7) % MEMBERS_PER_BRANCH),
        material: format!("Branch work handbook, chapter {}", n % 12 + 1),
        minutes: (n % 120) as u16 + 15,
        form: StudyForm::ALL[(n % 4) as usize],
        occurred_on: Date::new(2024, (n % 12) as u8 + 1, (n % 28) as u8 + 1),
    })
}

/// The mixed block: record `k` is a meeting if `k % 20 == 0`, a retraction of the next of
/// `targets` (study sessions of earlier blocks) if `k % 20 == 1`, dues if `k % 20` is 2 to 5,
/// else a study session.
fn mixed_block(keys: &[Keypair], first: u64, targets: &[SignedRecord]) -> Vec<SignedRecord> {
    let mut targets = targets.iter();
    (first..first + BLOCK_RECORDS)
        .map(|n| {
            let b = branch_of(n);
            match (n - first) % 20 {
                0 => {
                    let attendees = (0..20)
                        .map(|a| Attendee {
                            member_id: member(b, (n + a) % MEMBERS_PER_BRANCH),
                            guest: false,
                        })
                        .collect();
                    let body = RecordBody::MeetingHeld(MeetingHeld {
                        meeting_id: MeetingId(format!("mt-{n}")),
                        kind: MeetingKind::Group,
                        topic: "weekly group".into(),
                        held_on: Date::new(2024, 6, 1),
                        attendees,
                        absentees: Vec::new(),
                    });
                    signed(keys, b, n, body)
                }
                1 => {
                    let target = targets.next().expect("enough earlier study sessions");
                    let body = RecordBody::Correction(Correction {
                        target: target.id(),
                        reason: "minutes mistyped".into(),
                        replacement: None,
                    });
                    signed(keys, branch_of(target.record.nonce), n, body)
                }
                2..=5 => signed(keys, b, n, dues(b, n)),
                _ => signed(keys, b, n, study(b, n)),
            }
        })
        .collect()
}

/// `body`, signed by branch `b` with nonce `n`.
fn signed(keys: &[Keypair], b: usize, n: u64, body: RecordBody) -> SignedRecord {
    Record {
        chain_id: "bench-chain".into(),
        branch_id: BranchId(format!("b{b}")),
        created_at_ms: T0_MS - 3_600_000,
        nonce: n,
        body,
    }
    .sign(&keys[b])
}

fn bench(c: &mut Criterion) {
    let genesis = genesis();
    genesis.validate().expect("bench genesis is valid");
    let keys: Vec<Keypair> = (0..BRANCHES).map(branch_key).collect();
    let mut state = MemState::new();
    let mut digest = Hash::ZERO;
    let mut n = 0u64;
    let block = |n: &mut u64| {
        let records: Vec<SignedRecord> =
            (*n..*n + BLOCK_RECORDS).map(|i| record(&keys, i)).collect();
        *n += BLOCK_RECORDS;
        records
    };
    for height in 1..=EARLIER_BLOCKS {
        let records = block(&mut n);
        let (delta, next) = apply_block(&state, &genesis, height, T0_MS, &records, &digest)
            .expect("generated records follow the rules");
        state.apply_block(height, &records, delta);
        digest = next;
    }
    let measured = block(&mut n);
    let height = EARLIER_BLOCKS + 1;
    // Study sessions of the earlier blocks (after the joins), one per correction.
    let earlier: Vec<SignedRecord> = (BRANCHES as u64 * MEMBERS_PER_BRANCH..n - BLOCK_RECORDS)
        .filter(|i| i % 5 != 4)
        .take(BLOCK_RECORDS as usize / 20)
        .map(|i| record(&keys, i))
        .collect();
    let mixed = mixed_block(&keys, n + BLOCK_RECORDS, &earlier);

    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(BLOCK_RECORDS));
    group.sample_size(20);
    group.bench_function("apply_block of 5000 records", |b| {
        b.iter(|| {
            apply_block(&state, &genesis, height, T0_MS, &measured, &digest)
                .expect("generated records follow the rules")
        })
    });
    group.bench_function("apply_block of 5000 mixed records", |b| {
        b.iter(|| {
            apply_block(&state, &genesis, height, T0_MS, &mixed, &digest)
                .expect("generated records follow the rules")
        })
    });
    let messages: Vec<Vec<u8>> = measured.iter().map(|r| r.signing_message()).collect();
    group.bench_function("batch-verify 5000 record signatures on one core", |b| {
        b.iter_batched(
            || {
                let mut batch = BatchVerifier::with_capacity(measured.len());
                for (record, message) in measured.iter().zip(&messages) {
                    let key = keys[branch_of(record.record.nonce)].public_key();
                    batch.queue(key, message, record.signature);
                }
                batch
            },
            |batch| batch.verify().expect("generated signatures verify"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
