//! Measures how fast blocks apply: `cargo run --release -p branchledger-state --example
//! apply_throughput [blocks] [records_per_block]`.
//!
//! Three branches of 1000 members each; every block mixes study sessions (70%), dues (20%),
//! meetings of 20 attendees (5%) and corrections (5%). Reports records per second for
//! `apply_block` on a `MemState` that grows as the chain does.

use std::time::Instant;

use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_state::{apply_block, MemState};
use branchledger_types::genesis::{peer_id_of, Rules, StudyRule};
use branchledger_types::record::{
    Attendee, Correction, DuesPaid, MeetingHeld, MeetingKind, MemberJoined, MemberStatus,
    RecordBody, StudyForm, StudySession,
};
use branchledger_types::{
    Branch, BranchId, ConsensusParams, Date, Genesis, MeetingId, MemberId, Period, Record,
    SignedRecord, Validator,
};

const BRANCHES: usize = 3;
const MEMBERS_PER_BRANCH: usize = 1000;
/// 2025-03-10T12:00:00Z.
const T0_MS: u64 = 1_741_608_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let blocks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_block: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);

    let keys: Vec<Keypair> = (0..BRANCHES)
        .map(|i| Keypair::from_seed([100 + i as u8; 32]))
        .collect();
    let genesis = Genesis {
        chain_id: "bench".into(),
        genesis_time_ms: T0_MS - 1,
        validators: vec![Validator {
            name: "v0".into(),
            branch_id: BranchId("b0".into()),
            consensus_key: Keypair::from_seed([1; 32]).public_key(),
            peer_id: peer_id_of(&Keypair::from_seed([2; 32]).public_key()),
        }],
        branches: (0..BRANCHES)
            .map(|i| Branch {
                branch_id: BranchId(format!("b{i}")),
                name: format!("Branch {i}"),
                signing_key: keys[i].public_key(),
            })
            .collect(),
        consensus: ConsensusParams {
            max_block_records: 100_000,
            ..ConsensusParams::default()
        },
        rules: Rules {
            meetings: Vec::new(),
            study: StudyRule {
                minutes_per_member_per_month: 600,
            },
            dues_minor_per_month: 100,
        },
    };
    let mut nonce = 0u64;
    let mut sign = |branch: usize, time_ms: u64, body: RecordBody| -> SignedRecord {
        nonce += 1;
        Record {
            chain_id: "bench".into(),
            branch_id: BranchId(format!("b{branch}")),
            created_at_ms: time_ms,
            nonce,
            body,
        }
        .sign(&keys[branch])
    };
    let member = |branch: usize, n: usize| MemberId(format!("m{branch}-{n}"));
    let day = Date::new(2025, 3, 3);

    let mut state = MemState::new();
    let mut digest = Hash::ZERO;
    let mut time_ms = T0_MS;
    let joins: Vec<SignedRecord> = (0..BRANCHES)
        .flat_map(|b| (0..MEMBERS_PER_BRANCH).map(move |n| (b, n)))
        .map(|(b, n)| {
            sign(
                b,
                time_ms,
                RecordBody::MemberJoined(MemberJoined {
                    member_id: member(b, n),
                    joined_on: day,
                    status: MemberStatus::Full,
                    mobile: false,
                    member_key: None,
                }),
            )
        })
        .collect();
    let (delta, next) =
        apply_block(&state, &genesis, 1, time_ms, &joins, &digest).expect("joins apply");
    state.apply_delta(delta);
    digest = next;

    let mut total_records = 0usize;
    let mut total_seconds = 0f64;
    let mut corrections_targets: Vec<(usize, Hash)> = Vec::new();
    let mut meeting_count = 0usize;
    for height in 2..2 + blocks {
        time_ms += 1000;
        let mut records = Vec::with_capacity(per_block);
        for k in 0..per_block {
            let branch = k % BRANCHES;
            let n = (k * 7919 + height as usize * 31) % MEMBERS_PER_BRANCH;
            let body = match k % 20 {
                0 => {
                    meeting_count += 1;
                    RecordBody::MeetingHeld(MeetingHeld {
                        meeting_id: MeetingId(format!("mt-{meeting_count}")),
                        kind: MeetingKind::Group,
                        topic: "weekly group".into(),
                        held_on: day,
                        attendees: (0..20)
                            .map(|a| Attendee {
                                member_id: member(branch, (n + a) % MEMBERS_PER_BRANCH),
                                guest: false,
                            })
                            .collect(),
                        absentees: Vec::new(),
                    })
                }
                1 if !corrections_targets.is_empty() => {
                    let (signer, target) = corrections_targets.swap_remove(0);
                    records.push(sign(
                        signer,
                        time_ms,
                        RecordBody::Correction(Correction {
                            target,
                            reason: "minutes mistyped".into(),
                            replacement: None,
                        }),
                    ));
                    continue;
                }
                2..=5 => RecordBody::DuesPaid(DuesPaid {
                    member_id: member(branch, n),
                    period: Period::new(2025, 3),
                    amount_minor: 500,
                    reference_commitment: None,
                }),
                _ => RecordBody::StudySession(StudySession {
                    member_id: member(branch, n),
                    material: "Constitution, chapter 2".into(),
                    minutes: 45,
                    form: StudyForm::SelfStudy,
                    occurred_on: day,
                }),
            };
            let record = sign(branch, time_ms, body);
            if k % 20 == 7 {
                corrections_targets.push((branch, record.id()));
            }
            records.push(record);
        }
        let start = Instant::now();
        let (delta, next) = apply_block(&state, &genesis, height, time_ms, &records, &digest)
            .unwrap_or_else(|e| panic!("block {height}: {e}"));
        total_seconds += start.elapsed().as_secs_f64();
        total_records += records.len();
        state.apply_delta(delta);
        digest = next;
    }
    println!(
        "{total_records} records in {blocks} blocks: {:.0} records/s in apply_block ({:.1} µs each); state has {} entries; digest {digest}",
        total_records as f64 / total_seconds,
        total_seconds * 1e6 / total_records as f64,
        state.len()
    );
}
