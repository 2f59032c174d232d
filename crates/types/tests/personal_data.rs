//! Personal data never goes on chain (DESIGN.md §2): every identifier and every free-text
//! field of a record refuses a phone number, a resident ID number or an e-mail address,
//! naming the field and the rule.

use branchledger_crypto::Hash;
use branchledger_types::record::*;
use branchledger_types::{BranchId, Date, IssueId, MeetingId, MemberId, Period, Record, Rule};

const PHONE: &str = "138 1234 5678";
const RESIDENT_ID: &str = "11010519491231002X";
const EMAIL: &str = "zhang.san@example.com";

fn record(body: RecordBody) -> Record {
    Record {
        chain_id: "test-chain".into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: 1,
        nonce: 1,
        body,
    }
}

fn member(id: &str) -> MemberId {
    MemberId(id.into())
}

fn study(member_id: &str, material: &str) -> RecordBody {
    RecordBody::StudySession(StudySession {
        member_id: member(member_id),
        material: material.into(),
        minutes: 30,
        form: StudyForm::SelfStudy,
        occurred_on: Date::new(2026, 1, 2),
    })
}

fn meeting(id: &str, topic: &str, attendee: &str, absentee: &str) -> RecordBody {
    RecordBody::MeetingHeld(MeetingHeld {
        meeting_id: MeetingId(id.into()),
        kind: MeetingKind::Lecture,
        topic: topic.into(),
        held_on: Date::new(2026, 1, 2),
        attendees: vec![Attendee {
            member_id: member(attendee),
            guest: false,
        }],
        absentees: vec![Absentee {
            member_id: member(absentee),
            reason: AbsenceReason::Work,
        }],
    })
}

fn raised(issue: &str, scope_member: &str, title: &str) -> RecordBody {
    RecordBody::IssueRaised(IssueRaised {
        issue_id: IssueId(issue.into()),
        scope: IssueScope::Member(member(scope_member)),
        title: title.into(),
        raised_on: Date::new(2026, 1, 2),
    })
}

fn correction(reason: &str, replacement: RecordBody) -> RecordBody {
    RecordBody::Correction(Correction {
        target: Hash::ZERO,
        reason: reason.into(),
        replacement: Some(Box::new(replacement)),
    })
}

/// A record of every kind that names members or carries text, all clean.
fn clean() -> Vec<RecordBody> {
    vec![
        RecordBody::MemberJoined(MemberJoined {
            member_id: member("m01-0001"),
            joined_on: Date::new(2026, 1, 2),
            status: MemberStatus::Full,
            mobile: false,
            member_key: None,
        }),
        RecordBody::MemberTransferred(MemberTransferred {
            member_id: member("m01-0001"),
            to_branch: BranchId("b1".into()),
        }),
        RecordBody::DuesPaid(DuesPaid {
            member_id: member("m01-0001"),
            period: Period::new(2026, 1),
            amount_minor: 5_000,
            reference_commitment: None,
        }),
        study(
            "m01-0001",
            "Constitution, chapter 2 (2026-01-02, 90 minutes)",
        ),
        meeting(
            "mt-2026-q1-01",
            "学习党章 — quarterly assembly",
            "m-1",
            "m-2",
        ),
        raised("issue-0001", "m-1", "Repair the reading room roof"),
        RecordBody::IssueClaimed(IssueClaimed {
            issue_id: IssueId("issue-0001".into()),
            claimants: vec![member("m-1"), member("m-2")],
        }),
        RecordBody::IssueProgress(IssueProgress {
            issue_id: IssueId("issue-0001".into()),
            percent: 50,
            note: "Materials bought at 9:30, 2 of 3 windows done.".into(),
        }),
        RecordBody::IssueResolved(IssueResolved {
            issue_id: IssueId("issue-0001".into()),
            summary: "Roof repaired; invoice 2026-0117 filed.".into(),
        }),
        RecordBody::IssueReviewed(IssueReviewed {
            issue_id: IssueId("issue-0001".into()),
            rating: 5,
            by: Reviewer::Member(member("m-3")),
        }),
        correction("Duration entered wrongly", study("m-1", "chapter 3")),
    ]
}

#[test]
fn clean_records_pass() {
    for body in clean() {
        assert_eq!(record(body.clone()).validate(), Ok(()), "{body:?}");
    }
}

#[test]
fn personal_data_in_any_field_is_refused_by_name() {
    let phone_id = "m-138-1234-5678";
    let id_number = "m-110105194912310021";
    let cases: Vec<(RecordBody, &str, &str)> = vec![
        (study(phone_id, "m"), "body.member_id", "a phone number"),
        (
            study("m-1", &format!("called {PHONE}")),
            "body.material",
            "a phone number",
        ),
        (
            study("m-1", &format!("ID {RESIDENT_ID}")),
            "body.material",
            "a resident ID number",
        ),
        (
            study("m-1", &format!("notes sent to {EMAIL}")),
            "body.material",
            "an e-mail address",
        ),
        (
            meeting("mt-13812345678", "t", "m-1", "m-2"),
            "body.meeting_id",
            "a phone number",
        ),
        (
            meeting("mt-1", EMAIL, "m-1", "m-2"),
            "body.topic",
            "an e-mail address",
        ),
        (
            meeting("mt-1", "t", id_number, "m-2"),
            "body.attendees[0].member_id",
            "a resident ID number",
        ),
        (
            meeting("mt-1", "t", "m-1", phone_id),
            "body.absentees[0].member_id",
            "a phone number",
        ),
        (
            raised("issue-13812345678", "m-1", "t"),
            "body.issue_id",
            "a phone number",
        ),
        (
            raised("i-1", phone_id, "t"),
            "body.scope.member",
            "a phone number",
        ),
        (
            raised("i-1", "m-1", &format!("call {PHONE}")),
            "body.title",
            "a phone number",
        ),
        (
            RecordBody::IssueClaimed(IssueClaimed {
                issue_id: IssueId("i-1".into()),
                claimants: vec![member("m-1"), member(id_number)],
            }),
            "body.claimants[1]",
            "a resident ID number",
        ),
        (
            RecordBody::IssueProgress(IssueProgress {
                issue_id: IssueId("i-1".into()),
                percent: 10,
                note: format!("owner: {EMAIL}"),
            }),
            "body.note",
            "an e-mail address",
        ),
        (
            RecordBody::IssueResolved(IssueResolved {
                issue_id: IssueId("i-1".into()),
                summary: format!("done, ask {PHONE}"),
            }),
            "body.summary",
            "a phone number",
        ),
        (
            RecordBody::IssueReviewed(IssueReviewed {
                issue_id: IssueId("i-1".into()),
                rating: 4,
                by: Reviewer::Member(member(phone_id)),
            }),
            "body.by.member",
            "a phone number",
        ),
        (
            RecordBody::MemberLeft(MemberLeft {
                member_id: member(phone_id),
                reason: LeaveReason::Other,
            }),
            "body.member_id",
            "a phone number",
        ),
        (
            correction(&format!("member's number is {PHONE}"), study("m-1", "m")),
            "body.reason",
            "a phone number",
        ),
        (
            correction("r", study("m-1", EMAIL)),
            "body.replacement.material",
            "an e-mail address",
        ),
    ];
    for (body, field, looks_like) in cases {
        let error = record(body).validate().expect_err(field);
        assert_eq!(error.field, field, "{error}");
        assert_eq!(error.rule, Rule::PersonalData { looks_like }, "{error}");
        assert!(
            error.to_string().ends_with(&format!(
                "looks like {looks_like}: personal data stays off chain"
            )),
            "{error}"
        );
    }
}

#[test]
fn identifiers_parsed_from_text_refuse_personal_data() {
    assert!("m-0001".parse::<MemberId>().is_ok());
    let error = "13812345678"
        .parse::<MemberId>()
        .expect_err("a phone number");
    assert_eq!(
        error.rule,
        Rule::PersonalData {
            looks_like: "a phone number"
        }
    );
    let record = Record {
        branch_id: BranchId("b-13812345678".into()),
        ..record(study("m-1", "m"))
    };
    assert_eq!(record.validate().expect_err("branch").field, "branch_id");
}
