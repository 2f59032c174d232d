//! One test per stateful rule, each with an accepted and a rejected case.

use branchledger_crypto::Hash;
use branchledger_state::entries::{IssueStatus, MeetingTotals, StudyTotals};
use branchledger_state::{
    keys, read, BlockExecutor, MemState, Rejection, Table, CORRECTIONS_PER_RECORD_MAX,
};
use branchledger_types::record::{IssueScope, MeetingKind, RecordBody, Reviewer};
use branchledger_types::{BranchId, Period, Record, RecordKind};

use crate::fixture::*;

fn member_branch(chain: &Chain, member: &str) -> BranchId {
    read::member(&chain.state, &m(member))
        .expect("read")
        .expect("registered")
        .branch_id
}

fn active_members(chain: &Chain, branch: usize) -> u64 {
    read::branch_stats(&chain.state, &b(branch))
        .expect("read")
        .active_members
}

#[test]
fn every_record_stateless_rules_must_pass() {
    let mut chain = populated();
    chain.ok(0, study("a0", 720));
    let rejection = chain.rejected(0, study("a0", 0));
    match rejection {
        Rejection::Stateless(error) => assert_eq!(error.field, "body.minutes"),
        other => panic!("expected a stateless rejection, got {other}"),
    }
}

#[test]
fn every_record_chain_id_must_be_this_chain() {
    let mut chain = populated();
    let mut record = chain.record(0, study("a0", 30)).record;
    assert!(chain
        .submit_signed(&record.clone().sign(&branch_key(0)))
        .is_ok());
    record.chain_id = "other-chain".into();
    record.nonce += 1000;
    let rejection = chain
        .submit_signed(&record.sign(&branch_key(0)))
        .expect_err("wrong chain");
    assert_eq!(
        rejection,
        Rejection::WrongChain {
            expected: CHAIN.into(),
            actual: "other-chain".into()
        }
    );
    assert!(rejection.to_string().contains("other-chain"), "{rejection}");
}

#[test]
fn every_record_branch_must_be_in_genesis() {
    let mut chain = populated();
    chain.ok(2, joined("d1", false));
    let record = Record {
        chain_id: CHAIN.into(),
        branch_id: b(9),
        created_at_ms: chain.next_time_ms(),
        nonce: 1,
        body: joined("x0", false),
    }
    .sign(&branch_key(9));
    assert_eq!(
        chain.submit_signed(&record),
        Err(Rejection::UnknownBranch { branch: b(9) })
    );
}

#[test]
fn every_record_created_at_within_clock_drift() {
    let mut chain = populated();
    let drift = chain.genesis.consensus.max_clock_drift_ms;
    let limit = chain.next_time_ms() + drift;
    let mut record = chain.record(0, study("a0", 30)).record;
    record.created_at_ms = limit;
    assert!(chain.submit_signed(&record.sign(&branch_key(0))).is_ok());

    // The next block is one minute later; aim one millisecond past its limit.
    let limit = chain.next_time_ms() + drift;
    let mut record = chain.record(0, study("a0", 30)).record;
    record.created_at_ms = limit + 1;
    assert_eq!(
        chain.submit_signed(&record.sign(&branch_key(0))),
        Err(Rejection::CreatedInFuture {
            created_at_ms: limit + 1,
            limit_ms: limit
        })
    );
}

#[test]
fn every_record_own_date_not_after_block_date() {
    // The blocks of the fixture fall on 2025-03-10 (UTC).
    let today = "2025-03-10";
    let tomorrow = "2025-03-11";
    type Build = fn(&str, &str) -> RecordBody;
    let cases: Vec<(&str, Build)> = vec![
        ("body.joined_on", |id, on| {
            let RecordBody::MemberJoined(mut body) = joined(&format!("new-{id}"), false) else {
                unreachable!()
            };
            body.joined_on = date(on);
            RecordBody::MemberJoined(body)
        }),
        ("body.occurred_on", |_, on| study_on("a0", 30, on)),
        ("body.held_on", |id, on| {
            meeting(
                &format!("mt-{id}"),
                MeetingKind::Group,
                on,
                &[("a0", false)],
                &[],
            )
        }),
        ("body.raised_on", |id, on| {
            let RecordBody::IssueRaised(mut body) = raised(&format!("is-{id}"), IssueScope::Branch)
            else {
                unreachable!()
            };
            body.raised_on = date(on);
            RecordBody::IssueRaised(body)
        }),
    ];
    let mut chain = populated();
    for (field, build) in cases {
        chain.ok(0, build("today", today));
        let rejection = chain.rejected(0, build("tomorrow", tomorrow));
        assert_eq!(
            rejection,
            Rejection::DateInFuture {
                field: field.into(),
                date: date(tomorrow),
                block_date: date(today)
            },
            "{field}"
        );
    }
    // Dues may be paid ahead for a future period.
    chain.ok(0, dues("a0", Period::new(2025, 12), 100));
}

#[test]
fn every_record_is_refused_as_a_duplicate() {
    let mut chain = populated();
    let record = chain.record(0, study("a0", 30));
    assert!(chain.submit_signed(&record).is_ok());
    assert_eq!(
        chain.submit_signed(&record),
        Err(Rejection::DuplicateRecord {
            record_id: record.id()
        })
    );
    // Within one block too: the second copy is refused at index 1.
    let record = chain.record(0, study("a0", 30));
    let error = chain
        .block(&[record.clone(), record.clone()])
        .expect_err("duplicate in block");
    assert!(
        error.to_string().contains("record 1 (") && error.to_string().contains("already"),
        "{error}"
    );
}

#[test]
fn every_block_holds_at_most_max_block_records() {
    let mut genesis = genesis();
    genesis.consensus.max_block_records = 2;
    let mut chain = Chain::with_genesis(genesis);
    let records: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| chain.record(0, joined(id, false)))
        .collect();
    chain.block(&records[..2]).expect("two records fit");
    let records: Vec<_> = ["d", "e", "f"]
        .iter()
        .map(|id| chain.record(0, joined(id, false)))
        .collect();
    let error = chain.block(&records).expect_err("three do not");
    assert!(error.to_string().contains("at most 2 records"), "{error}");
}

#[test]
fn member_joined_id_unused_chain_wide() {
    let mut chain = populated();
    chain.ok(1, joined("c2", false));
    assert_eq!(active_members(&chain, 1), 3);
    assert!(read::is_branch_member(&chain.state, &b(1), &m("c2")).expect("read"));
    for branch in [1, 2] {
        assert_eq!(
            chain.rejected(branch, joined("c2", true)),
            Rejection::MemberIdTaken { member: m("c2") }
        );
    }
    // A member who left keeps their id.
    chain.ok(1, left("c2"));
    assert_eq!(
        chain.rejected(1, joined("c2", false)),
        Rejection::MemberIdTaken { member: m("c2") }
    );
}

#[test]
fn member_transferred_rules() {
    let mut chain = populated();
    let cases: Vec<(usize, RecordBody, Rejection)> = vec![
        (
            0,
            transferred("zz", 1),
            Rejection::UnknownMember { member: m("zz") },
        ),
        (
            1,
            transferred("a1", 2),
            Rejection::MemberNotInBranch {
                member: m("a1"),
                member_branch: b(0),
                branch: b(1),
            },
        ),
        (
            0,
            transferred("a1", 7),
            Rejection::TransferTargetUnknown {
                member: m("a1"),
                to_branch: b(7),
            },
        ),
        (
            0,
            transferred("a1", 0),
            Rejection::TransferToSelf {
                member: m("a1"),
                branch: b(0),
            },
        ),
    ];
    for (branch, body, expected) in cases {
        assert_eq!(chain.rejected(branch, body), expected);
    }

    chain.ok(0, transferred("a1", 1));
    // Pending: the member is still in b0 and may study there, not in b1.
    assert_eq!(member_branch(&chain, "a1"), b(0));
    let entry = read::member(&chain.state, &m("a1"))
        .expect("read")
        .expect("a1");
    assert_eq!(entry.pending_transfer, Some(b(1)));
    chain.ok(0, study("a1", 30));
    assert!(matches!(
        chain.rejected(1, study("a1", 30)),
        Rejection::MemberNotInBranch { .. }
    ));
    assert_eq!(
        chain.rejected(0, transferred("a1", 2)),
        Rejection::TransferPending {
            member: m("a1"),
            to_branch: b(1)
        }
    );

    chain.ok(0, left("a2"));
    assert_eq!(
        chain.rejected(0, transferred("a2", 1)),
        Rejection::MemberNotActive { member: m("a2") }
    );
}

#[test]
fn member_accepted_needs_a_pending_transfer() {
    let mut chain = populated();
    // Nothing pending.
    let none = Rejection::NoPendingTransfer {
        member: m("a1"),
        from_branch: b(0),
        to_branch: b(1),
    };
    assert_eq!(chain.rejected(1, accepted("a1", 0)), none);
    assert_eq!(
        chain.rejected(1, accepted("zz", 0)),
        Rejection::UnknownMember { member: m("zz") }
    );

    chain.ok(0, transferred("a1", 1));
    // Only the receiving branch may accept, naming the right sender.
    assert_eq!(
        chain.rejected(2, accepted("a1", 0)),
        Rejection::NoPendingTransfer {
            member: m("a1"),
            from_branch: b(0),
            to_branch: b(2)
        }
    );
    assert_eq!(
        chain.rejected(1, accepted("a1", 2)),
        Rejection::NoPendingTransfer {
            member: m("a1"),
            from_branch: b(2),
            to_branch: b(1)
        }
    );

    let (before_0, before_1) = (active_members(&chain, 0), active_members(&chain, 1));
    chain.ok(1, accepted("a1", 0));
    assert_eq!(member_branch(&chain, "a1"), b(1));
    assert!(!read::is_branch_member(&chain.state, &b(0), &m("a1")).expect("read"));
    assert!(read::is_branch_member(&chain.state, &b(1), &m("a1")).expect("read"));
    assert_eq!(active_members(&chain, 0), before_0 - 1);
    assert_eq!(active_members(&chain, 1), before_1 + 1);
    // Now b1 records for the member, b0 no longer can; a second accept finds nothing.
    chain.ok(1, study("a1", 30));
    assert!(matches!(
        chain.rejected(0, study("a1", 30)),
        Rejection::MemberNotInBranch { .. }
    ));
    assert_eq!(chain.rejected(1, accepted("a1", 0)), none);
}

#[test]
fn member_left_rules() {
    let mut chain = populated();
    assert!(matches!(
        chain.rejected(1, left("a1")),
        Rejection::MemberNotInBranch { .. }
    ));
    chain.ok(0, transferred("a1", 1));
    chain.ok(0, left("a1"));
    assert_eq!(active_members(&chain, 0), 2);
    assert!(!read::is_branch_member(&chain.state, &b(0), &m("a1")).expect("read"));
    assert_eq!(
        chain.rejected(0, left("a1")),
        Rejection::MemberNotActive { member: m("a1") }
    );
    // Leaving cancelled the pending transfer.
    assert!(matches!(
        chain.rejected(1, accepted("a1", 0)),
        Rejection::NoPendingTransfer { .. }
    ));
}

#[test]
fn study_and_dues_need_a_member_active_in_the_signing_branch() {
    let mut chain = populated();
    chain.ok(0, left("a2"));
    type Build = fn(&str) -> RecordBody;
    let builders: [(&str, Build); 2] = [
        ("study", |member| study(member, 45)),
        ("dues", |member| dues(member, Period::new(2025, 3), 250)),
    ];
    for (name, build) in builders {
        chain.ok(0, build("a0"));
        let cases = [
            (0, "zz", Rejection::UnknownMember { member: m("zz") }),
            (
                0,
                "c1",
                Rejection::MemberNotInBranch {
                    member: m("c1"),
                    member_branch: b(1),
                    branch: b(0),
                },
            ),
            (0, "a2", Rejection::MemberNotActive { member: m("a2") }),
        ];
        for (branch, member, expected) in cases {
            assert_eq!(chain.rejected(branch, build(member)), expected, "{name}");
        }
    }
    let march = Period::new(2025, 3);
    assert_eq!(
        read::study_by_member(&chain.state, &m("a0"), march).expect("read"),
        StudyTotals {
            minutes: 45,
            sessions: 1
        }
    );
    assert_eq!(
        read::study_by_branch(&chain.state, &b(0), march)
            .expect("read")
            .minutes,
        45
    );
    assert_eq!(
        read::dues_by_member(&chain.state, &m("a0"), march)
            .expect("read")
            .amount_minor,
        250
    );
    assert_eq!(
        read::dues_by_branch(&chain.state, &b(0), march)
            .expect("read")
            .payments,
        1
    );
}

#[test]
fn meeting_held_rules() {
    let mut chain = populated();
    chain.ok(1, left("c1"));
    let on = "2025-03-04";
    let kind = MeetingKind::Committee;
    type Attendees<'a> = &'a [(&'a str, bool)];
    let cases: Vec<(Attendees, &[&str], Rejection)> = vec![
        (
            &[("a0", false), ("c1", false)],
            &[],
            Rejection::AttendeeNotActive {
                member: m("c1"),
                branch: b(0),
            },
        ),
        (
            &[("zz", false)],
            &[],
            Rejection::UnknownMember { member: m("zz") },
        ),
        (
            &[("a0", false), ("d0", true)],
            &[],
            Rejection::GuestNotMobile { member: m("d0") },
        ),
        (
            &[("a0", true)],
            &[],
            Rejection::GuestFromOwnBranch {
                member: m("a0"),
                branch: b(0),
            },
        ),
        (
            &[("a0", false)],
            &["d0"],
            Rejection::AbsenteeNotActive {
                member: m("d0"),
                branch: b(0),
            },
        ),
    ];
    for (attendees, absentees, expected) in cases {
        assert_eq!(
            chain.rejected(0, meeting("mt-1", kind, on, attendees, absentees)),
            expected
        );
    }
    // A guest who left is refused.
    chain.ok(1, joined("c2", true));
    chain.ok(1, left("c2"));
    assert_eq!(
        chain.rejected(
            0,
            meeting("mt-1", kind, on, &[("a0", false), ("c2", true)], &[])
        ),
        Rejection::MemberNotActive { member: m("c2") }
    );

    let id = chain.ok(
        0,
        meeting(
            "mt-1",
            kind,
            on,
            &[("a0", false), ("a1", false), ("c0", true)],
            &["a2"],
        ),
    );
    assert_eq!(
        read::meetings_by_branch(&chain.state, &b(0), kind, Period::new(2025, 3)).expect("read"),
        MeetingTotals {
            count: 1,
            attendances: 2,
            absences: 1,
            guest_attendances: 1
        }
    );
    let entry = read::meeting(&chain.state, &branchledger_types::MeetingId("mt-1".into()))
        .expect("read")
        .expect("meeting");
    assert_eq!((entry.branch_id, entry.record_id), (b(0), id));
    // Every participant's history shows the meeting, the guest's included.
    for member in ["a0", "a1", "a2", "c0"] {
        let history: Vec<_> = chain
            .state
            .iter_prefix(Table::MemberHistory, &keys::id_prefix(member))
            .map(|(_, value)| value.to_vec())
            .collect();
        assert_eq!(history.last(), Some(&id.0.to_vec()), "{member}");
    }
    assert_eq!(
        chain.rejected(1, meeting("mt-1", kind, on, &[("c0", false)], &[])),
        Rejection::MeetingIdTaken {
            meeting: branchledger_types::MeetingId("mt-1".into())
        }
    );
}

#[test]
fn issue_raised_rules() {
    let mut chain = populated();
    chain.ok(0, raised("is-1", IssueScope::Member(m("c1"))));
    chain.ok(0, raised("is-2", IssueScope::Public));
    assert_eq!(
        chain.rejected(1, raised("is-1", IssueScope::Branch)),
        Rejection::IssueIdTaken { issue: i("is-1") }
    );
    assert_eq!(
        chain.rejected(0, raised("is-3", IssueScope::Member(m("zz")))),
        Rejection::UnknownMember { member: m("zz") }
    );
    assert_eq!(
        read::branch_stats(&chain.state, &b(0))
            .expect("read")
            .issues_raised,
        2
    );
}

#[test]
fn issue_claimants_are_active_in_the_branch_or_mobile() {
    let mut chain = populated();
    chain.ok(0, left("a2"));
    for issue in ["is-1", "is-2"] {
        chain.ok(2, raised(issue, IssueScope::Branch));
    }
    let cases = [
        (
            &["a1", "c1"][..],
            Rejection::ClaimantNotActive {
                member: m("c1"),
                branch: b(0),
            },
        ),
        (
            &["a2"][..],
            Rejection::ClaimantNotActive {
                member: m("a2"),
                branch: b(0),
            },
        ),
        (&["zz"][..], Rejection::UnknownMember { member: m("zz") }),
    ];
    for (claimants, expected) in cases {
        assert_eq!(chain.rejected(0, claimed("is-1", claimants)), expected);
    }
    // Own members, and mobile members of other branches, may claim together.
    chain.ok(0, claimed("is-1", &["a1", "c0"]));
    let entry = read::issue(&chain.state, &i("is-1"))
        .expect("read")
        .expect("issue");
    assert_eq!(entry.status, IssueStatus::Claimed);
    assert_eq!(entry.claimed_by, Some(b(0)));
    assert_eq!(entry.claimants, vec![m("a1"), m("c0")]);
}

/// Every transition of the issue state machine, legal and illegal.
#[test]
fn issue_state_machine() {
    let mut chain = populated();
    let not_claimed = |status| Rejection::IssueNotClaimed {
        issue: i("is-1"),
        status,
    };
    let not_resolved = |status| Rejection::IssueNotResolved {
        issue: i("is-1"),
        status,
    };
    let not_open = |status| Rejection::IssueNotOpen {
        issue: i("is-1"),
        status,
    };
    let unknown = Rejection::UnknownIssue { issue: i("is-1") };
    for body in [
        claimed("is-1", &["a0"]),
        progress("is-1", 10),
        resolved("is-1"),
        reviewed("is-1", 5, Reviewer::Public),
    ] {
        assert_eq!(chain.rejected(0, body), unknown);
    }

    chain.ok(1, raised("is-1", IssueScope::Public));
    // Open.
    assert_eq!(
        chain.rejected(0, progress("is-1", 10)),
        not_claimed(IssueStatus::Open)
    );
    assert_eq!(
        chain.rejected(0, resolved("is-1")),
        not_claimed(IssueStatus::Open)
    );
    assert_eq!(
        chain.rejected(0, reviewed("is-1", 5, Reviewer::Public)),
        not_resolved(IssueStatus::Open)
    );
    chain.ok(0, claimed("is-1", &["a0", "a1"]));
    // Claimed.
    assert_eq!(
        chain.rejected(1, claimed("is-1", &["c1"])),
        not_open(IssueStatus::Claimed)
    );
    assert_eq!(
        chain.rejected(0, reviewed("is-1", 5, Reviewer::Public)),
        not_resolved(IssueStatus::Claimed)
    );
    let other = Rejection::IssueClaimedByOther {
        issue: i("is-1"),
        claimed_by: b(0),
        branch: b(1),
    };
    assert_eq!(chain.rejected(1, progress("is-1", 10)), other);
    assert_eq!(chain.rejected(1, resolved("is-1")), other);
    chain.ok(0, progress("is-1", 40));
    chain.ok(0, progress("is-1", 40));
    assert_eq!(
        chain.rejected(0, progress("is-1", 39)),
        Rejection::ProgressDecreased {
            issue: i("is-1"),
            from: 40,
            to: 39
        }
    );
    chain.ok(0, progress("is-1", 90));
    chain.ok(0, resolved("is-1"));
    // Resolved.
    let entry = read::issue(&chain.state, &i("is-1"))
        .expect("read")
        .expect("issue");
    assert_eq!((entry.status, entry.percent), (IssueStatus::Resolved, 100));
    assert_eq!(
        chain.rejected(0, progress("is-1", 100)),
        not_claimed(IssueStatus::Resolved)
    );
    assert_eq!(
        chain.rejected(0, resolved("is-1")),
        not_claimed(IssueStatus::Resolved)
    );
    assert_eq!(
        chain.rejected(1, claimed("is-1", &["c1"])),
        not_open(IssueStatus::Resolved)
    );
    assert_eq!(
        chain.rejected(1, reviewed("is-1", 4, Reviewer::Member(m("zz")))),
        Rejection::UnknownMember { member: m("zz") }
    );
    chain.ok(1, reviewed("is-1", 4, Reviewer::Member(m("c1"))));
    // Reviewed: final.
    let entry = read::issue(&chain.state, &i("is-1"))
        .expect("read")
        .expect("issue");
    assert_eq!(entry.status, IssueStatus::Reviewed);
    assert_eq!(entry.rating, Some(4));
    assert_eq!(
        chain.rejected(1, reviewed("is-1", 5, Reviewer::Public)),
        not_resolved(IssueStatus::Reviewed)
    );
    assert_eq!(
        chain.rejected(0, progress("is-1", 100)),
        not_claimed(IssueStatus::Reviewed)
    );
    assert_eq!(
        chain.rejected(0, claimed("is-1", &["a0"])),
        not_open(IssueStatus::Reviewed)
    );
    let stats = read::branch_stats(&chain.state, &b(0)).expect("read");
    assert_eq!((stats.issues_claimed, stats.issues_resolved), (1, 1));
}

fn history_of(chain: &Chain, member: &str) -> Vec<Hash> {
    chain
        .state
        .iter_prefix(Table::MemberHistory, &keys::id_prefix(member))
        .map(|(key, value)| {
            read::decode_record_id(Table::MemberHistory, key, value).expect("record id")
        })
        .collect()
}

#[test]
fn correction_moves_aggregates_and_keeps_history() {
    let mut chain = populated();
    let march = Period::new(2025, 3);
    let original = chain.ok(0, study("a0", 60));
    chain.ok(0, study("a1", 30));
    let fix = chain.ok(0, correction(original, Some(study("a0", 45))));
    assert_eq!(
        read::study_by_member(&chain.state, &m("a0"), march).expect("read"),
        StudyTotals {
            minutes: 45,
            sessions: 1
        }
    );
    assert_eq!(
        read::study_by_branch(&chain.state, &b(0), march).expect("read"),
        StudyTotals {
            minutes: 75,
            sessions: 2
        }
    );
    let history = history_of(&chain, "a0");
    assert_eq!(&history[history.len() - 2..], &[original, fix]);
    let entry = read::correctable(&chain.state, &original)
        .expect("read")
        .expect("correctable");
    assert_eq!(entry.body, study("a0", 45));
    assert_eq!(entry.corrections, vec![fix]);
    assert!(!entry.retracted);

    // A dues payment moved to another period.
    let paid = chain.ok(0, dues("a1", march, 300));
    chain.ok(
        0,
        correction(paid, Some(dues("a1", Period::new(2025, 2), 300))),
    );
    assert_eq!(
        read::dues_by_member(&chain.state, &m("a1"), march).expect("read"),
        Default::default()
    );
    assert_eq!(
        read::dues_by_branch(&chain.state, &b(0), Period::new(2025, 2))
            .expect("read")
            .amount_minor,
        300
    );
    // Reassigning a session to a member who left is refused; keeping the member is allowed
    // even after they left.
    chain.ok(0, left("a2"));
    let session = chain.ok(0, study("a1", 20));
    assert_eq!(
        chain.rejected(0, correction(session, Some(study("a2", 20)))),
        Rejection::MemberNotActive { member: m("a2") }
    );
    chain.ok(0, left("a1"));
    chain.ok(0, correction(session, Some(study("a1", 25))));
}

/// A correctable record never corrected writes no entry of its own: its view is the record,
/// read back from the chain; the first correction writes the entry.
#[test]
fn an_uncorrected_record_is_its_own_view_until_a_correction_writes_one() {
    let mut chain = populated();
    let entries_before = chain.state.iter_table(Table::Correctable).count();
    let session = chain.ok(0, study("a0", 60));
    assert_eq!(
        chain.state.iter_table(Table::Correctable).count(),
        entries_before,
        "no entry for a record never corrected"
    );
    let view = read::correctable(&chain.state, &session)
        .expect("read")
        .expect("a committed correctable record has a view");
    assert_eq!(view.body, study("a0", 60));
    assert_eq!(view.branch_id, b(0));
    assert!(view.corrections.is_empty() && !view.retracted);
    // Records of other kinds have none.
    let joined_id = chain.ok(0, joined("a9", false));
    assert_eq!(
        read::correctable(&chain.state, &joined_id).expect("read"),
        None
    );
    assert_eq!(
        read::correctable(&chain.state, &Hash([9; 32])).expect("read"),
        None
    );

    let fix = chain.ok(0, correction(session, Some(study("a0", 50))));
    assert_eq!(
        chain.state.iter_table(Table::Correctable).count(),
        entries_before + 1
    );
    let view = read::correctable(&chain.state, &session)
        .expect("read")
        .expect("view");
    assert_eq!((view.body, view.corrections), (study("a0", 50), vec![fix]));
}

/// A location that names a position holding another record, or none, is an error naming the
/// table: the rules never take another record's body for the target's.
#[test]
fn a_location_that_does_not_hold_its_record_is_an_error() {
    let mut chain = populated();
    let session = chain.ok(0, study("a0", 60));
    let other = chain.ok(0, study("a1", 30));
    let location_of = |chain: &Chain, id: &Hash| {
        read::record_location(&chain.state, id)
            .expect("read")
            .expect("located")
    };
    let mut wrong = location_of(&chain, &session);
    wrong.index = location_of(&chain, &other).index;
    wrong.height = location_of(&chain, &other).height;
    let mut tampered = chain.state.clone();
    tampered.insert_raw(
        Table::RecordLocations,
        keys::record_id(&session),
        branchledger_types::encode(&wrong),
    );
    let error = read::correctable(&tampered, &session).expect_err("another record's position");
    assert!(
        error.0.contains("index_record_location") && error.0.contains("another record"),
        "{error}"
    );
    wrong.height += 1_000;
    tampered.insert_raw(
        Table::RecordLocations,
        keys::record_id(&session),
        branchledger_types::encode(&wrong),
    );
    let error = read::correctable(&tampered, &session).expect_err("no record there");
    assert!(error.0.contains("no record at height"), "{error}");
}

#[test]
fn correction_retraction_and_double_retraction() {
    let mut chain = populated();
    let march = Period::new(2025, 3);
    let original = chain.ok(0, study("a0", 60));
    chain.ok(0, correction(original, None));
    // The totals are gone, not zero.
    let key = keys::id_period("a0", march);
    assert_eq!(
        chain.state.iter_prefix(Table::StudyByMember, &key).count(),
        0
    );
    assert!(
        read::correctable(&chain.state, &original)
            .expect("read")
            .expect("kept")
            .retracted
    );
    for replacement in [None, Some(study("a0", 30))] {
        assert_eq!(
            chain.rejected(0, correction(original, replacement)),
            Rejection::AlreadyRetracted { target: original }
        );
    }
}

#[test]
fn correction_target_rules() {
    let mut chain = populated();
    let session = chain.ok(0, study("a0", 60));
    let joined_record = read::member(&chain.state, &m("a0"))
        .expect("read")
        .expect("a0")
        .joined_record;
    let unknown = Hash([7; 32]);
    let cases = [
        (
            0,
            correction(unknown, None),
            Rejection::CorrectionTargetUnknown { target: unknown },
        ),
        (
            1,
            correction(session, None),
            Rejection::CorrectionOtherBranch {
                target: session,
                target_branch: b(0),
                branch: b(1),
            },
        ),
        (
            0,
            correction(session, Some(dues("a0", Period::new(2025, 3), 1))),
            Rejection::CorrectionKindMismatch {
                target: session,
                expected: RecordKind::StudySession,
                actual: RecordKind::DuesPaid,
            },
        ),
        (
            0,
            correction(joined_record, None),
            Rejection::NotCorrectable {
                target: joined_record,
                kind: RecordKind::MemberJoined,
            },
        ),
        (
            0,
            correction(session, Some(study_on("a0", 60, "2025-03-11"))),
            Rejection::DateInFuture {
                field: "body.replacement.occurred_on".into(),
                date: date("2025-03-11"),
                block_date: date("2025-03-10"),
            },
        ),
    ];
    for (branch, body, expected) in cases {
        let rejection = chain.rejected(branch, body);
        assert_eq!(rejection, expected);
    }
    // A correction is not itself correctable.
    let fix = chain.ok(0, correction(session, Some(study("a0", 50))));
    assert_eq!(
        chain.rejected(0, correction(fix, None)),
        Rejection::NotCorrectable {
            target: fix,
            kind: RecordKind::Correction
        }
    );
}

#[test]
fn correction_of_a_meeting() {
    let mut chain = populated();
    let kind = MeetingKind::Committee;
    let original = chain.ok(
        0,
        meeting(
            "mt-1",
            kind,
            "2025-03-04",
            &[("a0", false), ("a1", false)],
            &["a2"],
        ),
    );
    // Moving a member between attendees and absentees, and changing the kind and month.
    chain.ok(
        0,
        correction(
            original,
            Some(meeting(
                "mt-1",
                MeetingKind::Lecture,
                "2025-02-27",
                &[("a0", false), ("a2", false), ("c0", true)],
                &["a1"],
            )),
        ),
    );
    let march = Period::new(2025, 3);
    let february = Period::new(2025, 2);
    assert_eq!(
        read::meetings_by_branch(&chain.state, &b(0), kind, march).expect("read"),
        MeetingTotals::default()
    );
    assert_eq!(
        read::meetings_by_branch(&chain.state, &b(0), MeetingKind::Lecture, february)
            .expect("read"),
        MeetingTotals {
            count: 1,
            attendances: 2,
            absences: 1,
            guest_attendances: 1
        }
    );
    let id = branchledger_types::MeetingId("mt-1".into());
    let entry = read::meeting(&chain.state, &id)
        .expect("read")
        .expect("meeting");
    assert_eq!(
        (entry.kind, entry.held_on),
        (MeetingKind::Lecture, date("2025-02-27"))
    );

    let cases = [
        (
            meeting("mt-2", kind, "2025-03-04", &[("a0", false)], &[]),
            Rejection::CorrectionChangesIdentity {
                target: original,
                field: "meeting_id",
            },
        ),
        (
            meeting(
                "mt-1",
                kind,
                "2025-03-04",
                &[("a0", false), ("c1", false)],
                &[],
            ),
            Rejection::AttendeeNotActive {
                member: m("c1"),
                branch: b(0),
            },
        ),
        (
            meeting(
                "mt-1",
                kind,
                "2025-03-04",
                &[("a0", false), ("d0", true)],
                &[],
            ),
            Rejection::GuestNotMobile { member: m("d0") },
        ),
    ];
    for (replacement, expected) in cases {
        assert_eq!(
            chain.rejected(0, correction(original, Some(replacement))),
            expected
        );
    }
    // Retraction: the meeting no longer counts, its id stays taken.
    chain.ok(0, correction(original, None));
    assert_eq!(
        read::meetings_by_branch(&chain.state, &b(0), MeetingKind::Lecture, february)
            .expect("read"),
        MeetingTotals::default()
    );
    assert!(
        read::meeting(&chain.state, &id)
            .expect("read")
            .expect("kept")
            .retracted
    );
    assert!(matches!(
        chain.rejected(
            0,
            meeting("mt-1", kind, "2025-03-04", &[("a0", false)], &[])
        ),
        Rejection::MeetingIdTaken { .. }
    ));
}

#[test]
fn correction_count_is_bounded() {
    let mut chain = populated();
    let session = chain.ok(0, study("a0", 60));
    let records: Vec<_> = (0..CORRECTIONS_PER_RECORD_MAX)
        .map(|n| chain.record(0, correction(session, Some(study("a0", 1 + n as u16)))))
        .collect();
    chain.block(&records).expect("corrections up to the limit");
    assert_eq!(
        chain.rejected(0, correction(session, None)),
        Rejection::TooManyCorrections {
            target: session,
            max: CORRECTIONS_PER_RECORD_MAX
        }
    );
}

#[test]
fn reads_see_earlier_records_of_the_same_block() {
    let mut chain = Chain::new();
    let join = chain.record(0, joined("a0", false));
    let session = chain.record(0, study("a0", 30));
    let fix = chain.record(0, correction(session.id(), Some(study("a0", 20))));
    chain
        .block(&[join, session, fix])
        .expect("join, study and correct in one block");
    assert_eq!(
        read::study_by_member(&chain.state, &m("a0"), Period::new(2025, 3))
            .expect("read")
            .minutes,
        20
    );
}

/// The proposer filters with per-record `apply`; a rejected record leaves nothing behind,
/// so the delta equals what a validator computes from the accepted records alone.
#[test]
fn rejected_record_leaves_the_overlay_unchanged() {
    let mut chain = populated();
    let good = [
        chain.record(0, study("a0", 30)),
        chain.record(0, joined("a3", false)),
        chain.record(0, study("a3", 30)),
    ];
    // Bad records interleaved with good ones: each must leave no trace.
    let bad = [
        chain.record(
            0,
            meeting(
                "mt-1",
                MeetingKind::Group,
                "2025-03-01",
                &[("a0", false)],
                &["d0"],
            ),
        ),
        chain.record(0, correction(Hash([1; 32]), None)),
        chain.record(1, accepted("a0", 0)),
    ];
    let time_ms = chain.next_time_ms();
    let mut executor = BlockExecutor::new(&chain.state, &chain.genesis, 2, time_ms);
    let mut accepted_records = Vec::new();
    for (n, record) in good
        .iter()
        .zip(bad.iter())
        .flat_map(|(g, b)| [g, b])
        .enumerate()
    {
        match executor.apply(record) {
            Ok(index) => {
                assert_eq!(index as usize, accepted_records.len());
                accepted_records.push(record.clone());
            }
            Err(error) => assert_eq!(n % 2, 1, "good record {n} rejected: {error}"),
        }
    }
    assert_eq!(executor.record_count(), 3);
    let proposed = executor.finish(&chain.digest);
    let validated = branchledger_state::apply_block(
        &chain.state,
        &chain.genesis,
        2,
        time_ms,
        &accepted_records,
        &chain.digest,
    )
    .expect("the proposal is valid");
    assert_eq!(proposed, validated);
}

#[test]
fn corrupt_values_give_read_errors_naming_table_and_key() {
    let mut state = MemState::new();
    state.insert_raw(Table::Members, b"a0".to_vec(), vec![1, 2, 3]);
    let error = read::member(&state, &m("a0")).expect_err("corrupt");
    assert!(error.0.contains("state_members"), "{error}");
    assert!(error.0.contains("\"a0\""), "{error}");

    let mut chain = Chain::new();
    chain.state = state;
    let record = chain.record(0, study("a0", 30));
    let error = chain.block(&[record]).expect_err("corrupt member");
    assert!(
        matches!(&error, branchledger_state::BlockError::Read(e) if e.0.contains("state_members")),
        "{error}"
    );

    let mut state = MemState::new();
    state.insert_raw(
        Table::StudyByMember,
        keys::id_period("a0", Period::new(2025, 3)),
        vec![0; 17],
    );
    let error =
        read::study_by_member(&state, &m("a0"), Period::new(2025, 3)).expect_err("trailing");
    assert!(error.0.contains("agg_study_by_member"), "{error}");
    assert!(error.0.contains("a0\\x00\\x07\\xe9\\x03"), "{error}");
}
