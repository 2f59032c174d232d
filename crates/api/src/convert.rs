//! Checking conversions between the API messages and the canonical domain types.
//!
//! Incoming: [`record_body`] turns a `pb::RecordBody` into a [`RecordBody`] and then applies
//! the record kind's stateless rules, so the first error names the field by its API path
//! (`body.study_session.minutes`) and the rule it breaks. Outgoing: `From` conversions.

use branchledger_crypto::{Hash, PublicKey};
use branchledger_types::record::{
    AbsenceReason, Absentee, Attendee, CoSignature, Correction, DuesPaid, IssueClaimed,
    IssueProgress, IssueRaised, IssueResolved, IssueReviewed, IssueScope, LeaveReason, MeetingHeld,
    MeetingKind, MemberAccepted, MemberJoined, MemberLeft, MemberStatus, MemberTransferred,
    Reviewer, StudyForm, StudySession,
};
use branchledger_types::{
    BlockHeader, BranchId, CommitCertificate, Date, IssueId, MeetingId, MemberId, Period, Record,
    RecordBody, Rule, SignedRecord, SignedVote, ValidationError, Validator, VoteKind,
};

use crate::pb;

type Result<T> = std::result::Result<T, ValidationError>;

fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn shorten(text: &str) -> String {
    const KEEP: usize = 80;
    if text.chars().count() > KEEP {
        format!("{}…", text.chars().take(KEEP).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// A date `YYYY-MM-DD`.
pub fn date(field: &str, text: &str) -> Result<Date> {
    text.parse::<Date>()
        .map_err(|e| ValidationError::new(field, e.rule))
}

/// A month `YYYY-MM`.
pub fn period(field: &str, text: &str) -> Result<Period> {
    text.parse::<Period>()
        .map_err(|e| ValidationError::new(field, e.rule))
}

/// A hash in hex (64 characters).
pub fn hash(field: &str, text: &str) -> Result<Hash> {
    Hash::from_hex(text).map_err(|_| {
        ValidationError::new(
            field,
            Rule::Format {
                expected: "64 lower-case hex characters",
                actual: shorten(text),
            },
        )
    })
}

/// A public key in hex (64 characters).
pub fn public_key(field: &str, text: &str) -> Result<PublicKey> {
    PublicKey::from_hex(text).map_err(|_| {
        ValidationError::new(
            field,
            Rule::Format {
                expected: "64 lower-case hex characters",
                actual: shorten(text),
            },
        )
    })
}

fn optional<T>(text: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some)
    }
}

/// A number that must fit a narrower type; out of range it is refused with the rule's own
/// bounds, naming the value given.
fn narrow<T: TryFrom<u32>>(field: &str, value: u32, min: u64, max: u64) -> Result<T> {
    T::try_from(value).map_err(|_| {
        ValidationError::new(
            field,
            Rule::Range {
                min,
                max,
                actual: u64::from(value),
            },
        )
    })
}

fn member_scope(
    field: &str,
    scope: &str,
    member: &str,
    allowed: &'static [&'static str],
) -> Result<Option<MemberId>> {
    match scope {
        "member" => {
            if member.is_empty() {
                return Err(ValidationError::new(
                    format!("{field}_member_id"),
                    Rule::Required,
                ));
            }
            Ok(Some(MemberId(member.to_owned())))
        }
        other if allowed.contains(&other) => {
            if !member.is_empty() {
                return Err(ValidationError::new(
                    format!("{field}_member_id"),
                    Rule::NotAllowed {
                        reason: "only with the \"member\" kind",
                    },
                ));
            }
            Ok(None)
        }
        other => Err(ValidationError::new(
            field,
            Rule::Enum {
                allowed,
                actual: other.to_owned(),
            },
        )),
    }
}

/// Converts and checks a record body; `path` is the API path of the body (e.g. `body`).
pub fn record_body(path: &str, body: &pb::RecordBody) -> Result<RecordBody> {
    use pb::record_body::Kind;
    let Some(kind) = &body.kind else {
        return Err(ValidationError::new(path, Rule::Required));
    };
    let (name, converted) = match kind {
        Kind::MemberJoined(b) => {
            let p = at(path, "member_joined");
            (
                p.clone(),
                RecordBody::MemberJoined(MemberJoined {
                    member_id: MemberId(b.member_id.clone()),
                    joined_on: date(&at(&p, "joined_on"), &b.joined_on)?,
                    status: MemberStatus::parse_field(&at(&p, "status"), &b.status)?,
                    mobile: b.mobile,
                    member_key: optional(&b.member_key, |t| public_key(&at(&p, "member_key"), t))?,
                }),
            )
        }
        Kind::MemberTransferred(b) => (
            at(path, "member_transferred"),
            RecordBody::MemberTransferred(MemberTransferred {
                member_id: MemberId(b.member_id.clone()),
                to_branch: BranchId(b.to_branch.clone()),
            }),
        ),
        Kind::MemberAccepted(b) => (
            at(path, "member_accepted"),
            RecordBody::MemberAccepted(MemberAccepted {
                member_id: MemberId(b.member_id.clone()),
                from_branch: BranchId(b.from_branch.clone()),
            }),
        ),
        Kind::MemberLeft(b) => {
            let p = at(path, "member_left");
            (
                p.clone(),
                RecordBody::MemberLeft(MemberLeft {
                    member_id: MemberId(b.member_id.clone()),
                    reason: LeaveReason::parse_field(&at(&p, "reason"), &b.reason)?,
                }),
            )
        }
        Kind::StudySession(b) => {
            let p = at(path, "study_session");
            (
                p.clone(),
                RecordBody::StudySession(StudySession {
                    member_id: MemberId(b.member_id.clone()),
                    material: b.material.clone(),
                    minutes: narrow(
                        &at(&p, "minutes"),
                        b.minutes,
                        1,
                        u64::from(branchledger_types::limits::STUDY_MINUTES_MAX),
                    )?,
                    form: StudyForm::parse_field(&at(&p, "form"), &b.form)?,
                    occurred_on: date(&at(&p, "occurred_on"), &b.occurred_on)?,
                }),
            )
        }
        Kind::DuesPaid(b) => {
            let p = at(path, "dues_paid");
            (
                p.clone(),
                RecordBody::DuesPaid(DuesPaid {
                    member_id: MemberId(b.member_id.clone()),
                    period: period(&at(&p, "period"), &b.period)?,
                    amount_minor: b.amount_minor,
                    reference_commitment: optional(&b.reference_commitment, |t| {
                        hash(&at(&p, "reference_commitment"), t)
                    })?,
                }),
            )
        }
        Kind::MeetingHeld(b) => {
            let p = at(path, "meeting_held");
            let attendees = b
                .attendees
                .iter()
                .map(|a| Attendee {
                    member_id: MemberId(a.member_id.clone()),
                    guest: a.guest,
                })
                .collect();
            let absentees = b
                .absentees
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    Ok(Absentee {
                        member_id: MemberId(a.member_id.clone()),
                        reason: AbsenceReason::parse_field(
                            &at(&p, &format!("absentees[{i}].reason")),
                            &a.reason,
                        )?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (
                p.clone(),
                RecordBody::MeetingHeld(MeetingHeld {
                    meeting_id: MeetingId(b.meeting_id.clone()),
                    kind: MeetingKind::parse_field(&at(&p, "kind"), &b.kind)?,
                    topic: b.topic.clone(),
                    held_on: date(&at(&p, "held_on"), &b.held_on)?,
                    attendees,
                    absentees,
                }),
            )
        }
        Kind::IssueRaised(b) => {
            let p = at(path, "issue_raised");
            let scope = match member_scope(
                &at(&p, "scope"),
                &b.scope,
                &b.scope_member_id,
                &["member", "branch", "public"],
            )? {
                Some(member) => IssueScope::Member(member),
                None if b.scope == "branch" => IssueScope::Branch,
                None => IssueScope::Public,
            };
            (
                p.clone(),
                RecordBody::IssueRaised(IssueRaised {
                    issue_id: IssueId(b.issue_id.clone()),
                    scope,
                    title: b.title.clone(),
                    raised_on: date(&at(&p, "raised_on"), &b.raised_on)?,
                }),
            )
        }
        Kind::IssueClaimed(b) => (
            at(path, "issue_claimed"),
            RecordBody::IssueClaimed(IssueClaimed {
                issue_id: IssueId(b.issue_id.clone()),
                claimants: b.claimants.iter().cloned().map(MemberId).collect(),
            }),
        ),
        Kind::IssueProgress(b) => {
            let p = at(path, "issue_progress");
            (
                p.clone(),
                RecordBody::IssueProgress(IssueProgress {
                    issue_id: IssueId(b.issue_id.clone()),
                    percent: narrow(&at(&p, "percent"), b.percent, 0, 100)?,
                    note: b.note.clone(),
                }),
            )
        }
        Kind::IssueResolved(b) => (
            at(path, "issue_resolved"),
            RecordBody::IssueResolved(IssueResolved {
                issue_id: IssueId(b.issue_id.clone()),
                summary: b.summary.clone(),
            }),
        ),
        Kind::IssueReviewed(b) => {
            let p = at(path, "issue_reviewed");
            let by =
                match member_scope(&at(&p, "by"), &b.by, &b.by_member_id, &["member", "public"])? {
                    Some(member) => Reviewer::Member(member),
                    None => Reviewer::Public,
                };
            (
                p.clone(),
                RecordBody::IssueReviewed(IssueReviewed {
                    issue_id: IssueId(b.issue_id.clone()),
                    rating: narrow(&at(&p, "rating"), b.rating, 1, 5)?,
                    by,
                }),
            )
        }
        Kind::Correction(b) => {
            let p = at(path, "correction");
            let replacement = match &b.replacement {
                Some(r) => Some(Box::new(record_body(&at(&p, "replacement"), r)?)),
                None => None,
            };
            (
                p.clone(),
                RecordBody::Correction(Correction {
                    target: hash(&at(&p, "target"), &b.target)?,
                    reason: b.reason.clone(),
                    replacement,
                }),
            )
        }
    };
    converted.validate().map_err(|e| e.within(&name))?;
    Ok(converted)
}

impl From<&RecordBody> for pb::RecordBody {
    fn from(body: &RecordBody) -> Self {
        use pb::record_body::Kind;
        let kind = match body {
            RecordBody::MemberJoined(b) => Kind::MemberJoined(pb::MemberJoined {
                member_id: b.member_id.to_string(),
                joined_on: b.joined_on.to_string(),
                status: b.status.as_str().into(),
                mobile: b.mobile,
                member_key: b.member_key.map(|k| k.to_hex()).unwrap_or_default(),
            }),
            RecordBody::MemberTransferred(b) => Kind::MemberTransferred(pb::MemberTransferred {
                member_id: b.member_id.to_string(),
                to_branch: b.to_branch.to_string(),
            }),
            RecordBody::MemberAccepted(b) => Kind::MemberAccepted(pb::MemberAccepted {
                member_id: b.member_id.to_string(),
                from_branch: b.from_branch.to_string(),
            }),
            RecordBody::MemberLeft(b) => Kind::MemberLeft(pb::MemberLeft {
                member_id: b.member_id.to_string(),
                reason: b.reason.as_str().into(),
            }),
            RecordBody::StudySession(b) => Kind::StudySession(pb::StudySession {
                member_id: b.member_id.to_string(),
                material: b.material.clone(),
                minutes: u32::from(b.minutes),
                form: b.form.as_str().into(),
                occurred_on: b.occurred_on.to_string(),
            }),
            RecordBody::DuesPaid(b) => Kind::DuesPaid(pb::DuesPaid {
                member_id: b.member_id.to_string(),
                period: b.period.to_string(),
                amount_minor: b.amount_minor,
                reference_commitment: b
                    .reference_commitment
                    .map(|h| h.to_hex())
                    .unwrap_or_default(),
            }),
            RecordBody::MeetingHeld(b) => Kind::MeetingHeld(pb::MeetingHeld {
                meeting_id: b.meeting_id.to_string(),
                kind: b.kind.as_str().into(),
                topic: b.topic.clone(),
                held_on: b.held_on.to_string(),
                attendees: b
                    .attendees
                    .iter()
                    .map(|a| pb::Attendee {
                        member_id: a.member_id.to_string(),
                        guest: a.guest,
                    })
                    .collect(),
                absentees: b
                    .absentees
                    .iter()
                    .map(|a| pb::Absentee {
                        member_id: a.member_id.to_string(),
                        reason: a.reason.as_str().into(),
                    })
                    .collect(),
            }),
            RecordBody::IssueRaised(b) => {
                let (scope, member) = match &b.scope {
                    IssueScope::Member(m) => ("member", m.to_string()),
                    IssueScope::Branch => ("branch", String::new()),
                    IssueScope::Public => ("public", String::new()),
                };
                Kind::IssueRaised(pb::IssueRaised {
                    issue_id: b.issue_id.to_string(),
                    scope: scope.into(),
                    scope_member_id: member,
                    title: b.title.clone(),
                    raised_on: b.raised_on.to_string(),
                })
            }
            RecordBody::IssueClaimed(b) => Kind::IssueClaimed(pb::IssueClaimed {
                issue_id: b.issue_id.to_string(),
                claimants: b.claimants.iter().map(ToString::to_string).collect(),
            }),
            RecordBody::IssueProgress(b) => Kind::IssueProgress(pb::IssueProgress {
                issue_id: b.issue_id.to_string(),
                percent: u32::from(b.percent),
                note: b.note.clone(),
            }),
            RecordBody::IssueResolved(b) => Kind::IssueResolved(pb::IssueResolved {
                issue_id: b.issue_id.to_string(),
                summary: b.summary.clone(),
            }),
            RecordBody::IssueReviewed(b) => {
                let (by, member) = match &b.by {
                    Reviewer::Member(m) => ("member", m.to_string()),
                    Reviewer::Public => ("public", String::new()),
                };
                Kind::IssueReviewed(pb::IssueReviewed {
                    issue_id: b.issue_id.to_string(),
                    rating: u32::from(b.rating),
                    by: by.into(),
                    by_member_id: member,
                })
            }
            RecordBody::Correction(b) => Kind::Correction(Box::new(pb::Correction {
                target: b.target.to_hex(),
                reason: b.reason.clone(),
                replacement: b
                    .replacement
                    .as_ref()
                    .map(|r| Box::new(pb::RecordBody::from(r.as_ref()))),
            })),
        };
        pb::RecordBody { kind: Some(kind) }
    }
}

impl From<&Record> for pb::Record {
    fn from(record: &Record) -> Self {
        pb::Record {
            chain_id: record.chain_id.clone(),
            branch_id: record.branch_id.to_string(),
            created_at_ms: record.created_at_ms,
            nonce: record.nonce,
            body: Some(pb::RecordBody::from(&record.body)),
        }
    }
}

impl From<&CoSignature> for pb::CoSignature {
    fn from(co: &CoSignature) -> Self {
        pb::CoSignature {
            public_key: co.public_key.to_hex(),
            signature: co.signature.to_hex(),
        }
    }
}

impl From<&SignedRecord> for pb::SignedRecord {
    fn from(signed: &SignedRecord) -> Self {
        pb::SignedRecord {
            id: signed.id().to_hex(),
            record: Some(pb::Record::from(&signed.record)),
            signature: signed.signature.to_hex(),
            co_signatures: signed.co_signatures.iter().map(Into::into).collect(),
            canonical: signed.to_bytes(),
        }
    }
}

impl From<&BlockHeader> for pb::BlockHeader {
    fn from(header: &BlockHeader) -> Self {
        pb::BlockHeader {
            block_id: header.block_id().to_hex(),
            chain_id: header.chain_id.clone(),
            height: header.height,
            time_ms: header.time_ms,
            prev_block_id: header.prev_block_id.to_hex(),
            records_root: header.records_root.to_hex(),
            record_count: header.record_count,
            state_digest: header.state_digest.to_hex(),
            proposer_index: u32::from(header.proposer_index),
            validator_set_id: header.validator_set_id.to_hex(),
            canonical: branchledger_types::encode(header),
        }
    }
}

impl From<&CommitCertificate> for pb::CommitCertificate {
    fn from(commit: &CommitCertificate) -> Self {
        pb::CommitCertificate {
            height: commit.height,
            round: commit.round,
            block_id: commit.block_id.to_hex(),
            signatures: commit
                .signatures
                .iter()
                .map(|s| pb::CommitSignature {
                    validator_index: u32::from(s.validator_index),
                    signature: s.signature.to_hex(),
                })
                .collect(),
            canonical: commit.to_bytes(),
        }
    }
}

impl From<&SignedVote> for pb::SignedVote {
    fn from(vote: &SignedVote) -> Self {
        pb::SignedVote {
            height: vote.vote.height,
            round: vote.vote.round,
            kind: match vote.vote.kind {
                VoteKind::Prevote => "prevote".into(),
                VoteKind::Precommit => "precommit".into(),
            },
            block_id: vote.vote.block_id.map(|h| h.to_hex()).unwrap_or_default(),
            validator_index: u32::from(vote.vote.validator_index),
            signature: vote.signature.to_hex(),
        }
    }
}

/// The API view of validator `index` of genesis.
pub fn validator_info(index: usize, validator: &Validator) -> pb::ValidatorInfo {
    pb::ValidatorInfo {
        index: index as u32,
        name: validator.name.clone(),
        branch_id: validator.branch_id.to_string(),
        consensus_key: validator.consensus_key.to_hex(),
        peer_id: validator.peer_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::record_body::Kind;

    fn study(minutes: u32, form: &str, on: &str) -> pb::RecordBody {
        pb::RecordBody {
            kind: Some(Kind::StudySession(pb::StudySession {
                member_id: "m-1".into(),
                material: "Handbook".into(),
                minutes,
                form: form.into(),
                occurred_on: on.into(),
            })),
        }
    }

    fn error(body: &pb::RecordBody) -> String {
        record_body("body", body).expect_err("refused").to_string()
    }

    #[test]
    fn a_valid_body_converts_and_round_trips() {
        let body = study(45, "group", "2026-03-01");
        let domain = record_body("body", &body).expect("valid");
        assert_eq!(pb::RecordBody::from(&domain), body);
    }

    #[test]
    fn errors_name_the_api_field_and_the_rule() {
        let cases = [
            (
                study(0, "group", "2026-03-01"),
                "body.study_session.minutes",
                "1..=720",
            ),
            (
                study(70_000, "group", "2026-03-01"),
                "body.study_session.minutes",
                "70000",
            ),
            (
                study(30, "nap", "2026-03-01"),
                "body.study_session.form",
                "self, group",
            ),
            (
                study(30, "self", "2026-02-30"),
                "body.study_session.occurred_on",
                "date",
            ),
            (
                study(30, "self", "yesterday"),
                "body.study_session.occurred_on",
                "YYYY-MM-DD",
            ),
            (pb::RecordBody { kind: None }, "body", "required"),
        ];
        for (body, field, rule) in cases {
            let text = error(&body);
            assert!(text.contains(&format!("`{field}`")), "{text}");
            assert!(text.contains(rule), "{text}");
        }
    }

    #[test]
    fn nested_and_scoped_fields_are_named() {
        let correction = pb::RecordBody {
            kind: Some(Kind::Correction(Box::new(pb::Correction {
                target: "zz".into(),
                reason: "typo".into(),
                replacement: None,
            }))),
        };
        assert!(error(&correction).contains("`body.correction.target`"));
        let nested = pb::RecordBody {
            kind: Some(Kind::Correction(Box::new(pb::Correction {
                target: Hash::of(b"x").to_hex(),
                reason: "typo".into(),
                replacement: Some(Box::new(study(0, "self", "2026-03-01"))),
            }))),
        };
        assert!(
            error(&nested).contains("`body.correction.replacement.study_session.minutes`"),
            "{}",
            error(&nested)
        );
        let raised = pb::RecordBody {
            kind: Some(Kind::IssueRaised(pb::IssueRaised {
                issue_id: "i-1".into(),
                scope: "member".into(),
                scope_member_id: String::new(),
                title: "Lights".into(),
                raised_on: "2026-03-01".into(),
            })),
        };
        assert!(error(&raised).contains("`body.issue_raised.scope_member_id`"));
        let meeting = pb::RecordBody {
            kind: Some(Kind::MeetingHeld(pb::MeetingHeld {
                meeting_id: "mt-1".into(),
                kind: "assembly".into(),
                topic: "Plan".into(),
                held_on: "2026-03-01".into(),
                attendees: vec![],
                absentees: vec![],
            })),
        };
        assert!(error(&meeting).contains("`body.meeting_held.kind`"));
    }
}
