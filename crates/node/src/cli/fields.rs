//! Records from flat fields: the options of `branchd submit <kind>` and the columns of a CSV
//! file for `branchd import` are the same names, turned into an API record body here. The node
//! checks every rule; this only shapes the fields and names a missing or unreadable one.
//!
//! Lists are `;`-separated: `claimants = "m-1;m-2"`, `attendees = "m-1;guest:m-9"` (a guest is
//! a mobile member of another branch), `absentees = "m-3:illness;m-4:work"`.

use anyhow::{anyhow, bail, Context, Result};
use branchledger_api::pb;
use branchledger_api::pb::record_body::Kind;

/// The record kinds, by their API names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RecordKindArg {
    /// A member joined (member_id, joined_on, status; optional mobile, member_key).
    MemberJoined,
    /// A member moves to another branch (member_id, to_branch).
    MemberTransferred,
    /// The receiving branch accepts a transfer (member_id, from_branch).
    MemberAccepted,
    /// A member left (member_id, reason).
    MemberLeft,
    /// A study session (member_id, material, minutes, form, occurred_on).
    StudySession,
    /// Dues paid (member_id, period, amount_minor; optional reference_commitment).
    DuesPaid,
    /// A meeting (meeting_id, meeting_kind, topic, held_on, attendees; optional absentees).
    MeetingHeld,
    /// An issue raised (issue_id, scope, title, raised_on; optional scope_member_id).
    IssueRaised,
    /// An issue claimed (issue_id, claimants).
    IssueClaimed,
    /// Progress on an issue (issue_id, percent; optional note).
    IssueProgress,
    /// An issue resolved (issue_id, summary).
    IssueResolved,
    /// An issue rated (issue_id, rating, by; optional by_member_id).
    IssueReviewed,
    /// A correction (target, reason; optional replacement_kind and its fields).
    Correction,
}

impl RecordKindArg {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            RecordKindArg::MemberJoined => "member_joined",
            RecordKindArg::MemberTransferred => "member_transferred",
            RecordKindArg::MemberAccepted => "member_accepted",
            RecordKindArg::MemberLeft => "member_left",
            RecordKindArg::StudySession => "study_session",
            RecordKindArg::DuesPaid => "dues_paid",
            RecordKindArg::MeetingHeld => "meeting_held",
            RecordKindArg::IssueRaised => "issue_raised",
            RecordKindArg::IssueClaimed => "issue_claimed",
            RecordKindArg::IssueProgress => "issue_progress",
            RecordKindArg::IssueResolved => "issue_resolved",
            RecordKindArg::IssueReviewed => "issue_reviewed",
            RecordKindArg::Correction => "correction",
        }
    }

    /// Parses an API name (a CSV `kind` column).
    pub fn parse(text: &str) -> Result<RecordKindArg> {
        <RecordKindArg as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                anyhow!(
                    "kind {text:?} is not one of {}",
                    <RecordKindArg as clap::ValueEnum>::value_variants()
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// Every field any record kind has, by name; `None` when not given.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RecordFields {
    /// The member.
    #[arg(long)]
    pub member_id: Option<String>,
    /// MemberJoined: the day they joined (YYYY-MM-DD).
    #[arg(long)]
    pub joined_on: Option<String>,
    /// MemberJoined: full or probationary.
    #[arg(long)]
    pub status: Option<String>,
    /// MemberJoined: works away from the home branch (true or false).
    #[arg(long)]
    pub mobile: Option<String>,
    /// MemberJoined: the member's own public key (hex).
    #[arg(long)]
    pub member_key: Option<String>,
    /// MemberTransferred: the receiving branch.
    #[arg(long)]
    pub to_branch: Option<String>,
    /// MemberAccepted: the branch that transferred the member.
    #[arg(long)]
    pub from_branch: Option<String>,
    /// MemberLeft: resigned, removed, deceased, other; Correction: why.
    #[arg(long)]
    pub reason: Option<String>,
    /// StudySession: what was studied.
    #[arg(long)]
    pub material: Option<String>,
    /// StudySession: minutes (1..=720).
    #[arg(long)]
    pub minutes: Option<String>,
    /// StudySession: self, group, lecture, online.
    #[arg(long)]
    pub form: Option<String>,
    /// StudySession: the day (YYYY-MM-DD).
    #[arg(long)]
    pub occurred_on: Option<String>,
    /// DuesPaid: the month paid for (YYYY-MM).
    #[arg(long)]
    pub period: Option<String>,
    /// DuesPaid: amount in minor units.
    #[arg(long)]
    pub amount_minor: Option<String>,
    /// DuesPaid: salted commitment to the payment reference (hex).
    #[arg(long)]
    pub reference_commitment: Option<String>,
    /// MeetingHeld: the meeting's id.
    #[arg(long)]
    pub meeting_id: Option<String>,
    /// MeetingHeld: branch_assembly, committee, group, lecture, organisational_life, themed_day.
    #[arg(long)]
    pub meeting_kind: Option<String>,
    /// MeetingHeld: the topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// MeetingHeld: the day (YYYY-MM-DD).
    #[arg(long)]
    pub held_on: Option<String>,
    /// MeetingHeld: `m-1;m-2;guest:m-9`.
    #[arg(long)]
    pub attendees: Option<String>,
    /// MeetingHeld: `m-3:illness;m-4:work`.
    #[arg(long)]
    pub absentees: Option<String>,
    /// The issue.
    #[arg(long)]
    pub issue_id: Option<String>,
    /// IssueRaised: member, branch, public.
    #[arg(long)]
    pub scope: Option<String>,
    /// IssueRaised: the member, when the scope is member.
    #[arg(long)]
    pub scope_member_id: Option<String>,
    /// IssueRaised: the title.
    #[arg(long)]
    pub title: Option<String>,
    /// IssueRaised: the day (YYYY-MM-DD).
    #[arg(long)]
    pub raised_on: Option<String>,
    /// IssueClaimed: `m-1;m-2`.
    #[arg(long)]
    pub claimants: Option<String>,
    /// IssueProgress: percent done.
    #[arg(long)]
    pub percent: Option<String>,
    /// IssueProgress: a note.
    #[arg(long)]
    pub note: Option<String>,
    /// IssueResolved: what was done.
    #[arg(long)]
    pub summary: Option<String>,
    /// IssueReviewed: 1..=5.
    #[arg(long)]
    pub rating: Option<String>,
    /// IssueReviewed: member or public.
    #[arg(long)]
    pub by: Option<String>,
    /// IssueReviewed: the reviewing member, when by is member.
    #[arg(long)]
    pub by_member_id: Option<String>,
    /// Correction: the id of the record corrected (hex).
    #[arg(long)]
    pub target: Option<String>,
    /// Correction: the kind of the replacement body (its fields as above); none retracts.
    #[arg(long)]
    pub replacement_kind: Option<String>,
}

/// The field names, in the order a CSV header may list them (after `kind`).
pub const FIELD_NAMES: &[&str] = &[
    "member_id",
    "joined_on",
    "status",
    "mobile",
    "member_key",
    "to_branch",
    "from_branch",
    "reason",
    "material",
    "minutes",
    "form",
    "occurred_on",
    "period",
    "amount_minor",
    "reference_commitment",
    "meeting_id",
    "meeting_kind",
    "topic",
    "held_on",
    "attendees",
    "absentees",
    "issue_id",
    "scope",
    "scope_member_id",
    "title",
    "raised_on",
    "claimants",
    "percent",
    "note",
    "summary",
    "rating",
    "by",
    "by_member_id",
    "target",
    "replacement_kind",
];

impl RecordFields {
    /// Sets the field `name` (a CSV column); an unknown name is an error naming it.
    pub fn set(&mut self, name: &str, value: String) -> Result<()> {
        let slot = match name {
            "member_id" => &mut self.member_id,
            "joined_on" => &mut self.joined_on,
            "status" => &mut self.status,
            "mobile" => &mut self.mobile,
            "member_key" => &mut self.member_key,
            "to_branch" => &mut self.to_branch,
            "from_branch" => &mut self.from_branch,
            "reason" => &mut self.reason,
            "material" => &mut self.material,
            "minutes" => &mut self.minutes,
            "form" => &mut self.form,
            "occurred_on" => &mut self.occurred_on,
            "period" => &mut self.period,
            "amount_minor" => &mut self.amount_minor,
            "reference_commitment" => &mut self.reference_commitment,
            "meeting_id" => &mut self.meeting_id,
            "meeting_kind" => &mut self.meeting_kind,
            "topic" => &mut self.topic,
            "held_on" => &mut self.held_on,
            "attendees" => &mut self.attendees,
            "absentees" => &mut self.absentees,
            "issue_id" => &mut self.issue_id,
            "scope" => &mut self.scope,
            "scope_member_id" => &mut self.scope_member_id,
            "title" => &mut self.title,
            "raised_on" => &mut self.raised_on,
            "claimants" => &mut self.claimants,
            "percent" => &mut self.percent,
            "note" => &mut self.note,
            "summary" => &mut self.summary,
            "rating" => &mut self.rating,
            "by" => &mut self.by,
            "by_member_id" => &mut self.by_member_id,
            "target" => &mut self.target,
            "replacement_kind" => &mut self.replacement_kind,
            other => bail!(
                "unknown field {other:?} (known: kind, {})",
                FIELD_NAMES.join(", ")
            ),
        };
        *slot = (!value.is_empty()).then_some(value);
        Ok(())
    }
}

fn required(name: &str, value: &Option<String>) -> Result<String> {
    value
        .clone()
        .ok_or_else(|| anyhow!("field `{name}` is required for this kind"))
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn number<T: std::str::FromStr>(name: &str, value: &Option<String>) -> Result<T> {
    let text = required(name, value)?;
    text.parse()
        .map_err(|_| anyhow!("field `{name}`: {text:?} is not a whole number in range"))
}

fn boolean(name: &str, value: &Option<String>) -> Result<bool> {
    match value.as_deref() {
        None | Some("false") | Some("no") | Some("0") => Ok(false),
        Some("true") | Some("yes") | Some("1") => Ok(true),
        Some(other) => bail!("field `{name}`: {other:?} is not true or false"),
    }
}

fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The API body of a record of `kind` from `fields`.
pub fn body(kind: RecordKindArg, f: &RecordFields) -> Result<pb::RecordBody> {
    let kind = match kind {
        RecordKindArg::MemberJoined => Kind::MemberJoined(pb::MemberJoined {
            member_id: required("member_id", &f.member_id)?,
            joined_on: required("joined_on", &f.joined_on)?,
            status: required("status", &f.status)?,
            mobile: boolean("mobile", &f.mobile)?,
            member_key: text(&f.member_key),
        }),
        RecordKindArg::MemberTransferred => Kind::MemberTransferred(pb::MemberTransferred {
            member_id: required("member_id", &f.member_id)?,
            to_branch: required("to_branch", &f.to_branch)?,
        }),
        RecordKindArg::MemberAccepted => Kind::MemberAccepted(pb::MemberAccepted {
            member_id: required("member_id", &f.member_id)?,
            from_branch: required("from_branch", &f.from_branch)?,
        }),
        RecordKindArg::MemberLeft => Kind::MemberLeft(pb::MemberLeft {
            member_id: required("member_id", &f.member_id)?,
            reason: required("reason", &f.reason)?,
        }),
        RecordKindArg::StudySession => Kind::StudySession(pb::StudySession {
            member_id: required("member_id", &f.member_id)?,
            material: required("material", &f.material)?,
            minutes: number("minutes", &f.minutes)?,
            form: required("form", &f.form)?,
            occurred_on: required("occurred_on", &f.occurred_on)?,
        }),
        RecordKindArg::DuesPaid => Kind::DuesPaid(pb::DuesPaid {
            member_id: required("member_id", &f.member_id)?,
            period: required("period", &f.period)?,
            amount_minor: number("amount_minor", &f.amount_minor)?,
            reference_commitment: text(&f.reference_commitment),
        }),
        RecordKindArg::MeetingHeld => Kind::MeetingHeld(pb::MeetingHeld {
            meeting_id: required("meeting_id", &f.meeting_id)?,
            kind: required("meeting_kind", &f.meeting_kind)?,
            topic: required("topic", &f.topic)?,
            held_on: required("held_on", &f.held_on)?,
            attendees: list(&f.attendees)
                .into_iter()
                .map(|a| match a.strip_prefix("guest:") {
                    Some(member) => pb::Attendee {
                        member_id: member.to_owned(),
                        guest: true,
                    },
                    None => pb::Attendee {
                        member_id: a,
                        guest: false,
                    },
                })
                .collect(),
            absentees: list(&f.absentees)
                .into_iter()
                .map(|a| {
                    let (member, reason) = a.split_once(':').with_context(|| {
                        format!("field `absentees`: {a:?} is not member:reason")
                    })?;
                    Ok(pb::Absentee {
                        member_id: member.to_owned(),
                        reason: reason.to_owned(),
                    })
                })
                .collect::<Result<_>>()?,
        }),
        RecordKindArg::IssueRaised => Kind::IssueRaised(pb::IssueRaised {
            issue_id: required("issue_id", &f.issue_id)?,
            scope: required("scope", &f.scope)?,
            scope_member_id: text(&f.scope_member_id),
            title: required("title", &f.title)?,
            raised_on: required("raised_on", &f.raised_on)?,
        }),
        RecordKindArg::IssueClaimed => Kind::IssueClaimed(pb::IssueClaimed {
            issue_id: required("issue_id", &f.issue_id)?,
            claimants: list(&f.claimants),
        }),
        RecordKindArg::IssueProgress => Kind::IssueProgress(pb::IssueProgress {
            issue_id: required("issue_id", &f.issue_id)?,
            percent: number("percent", &f.percent)?,
            note: text(&f.note),
        }),
        RecordKindArg::IssueResolved => Kind::IssueResolved(pb::IssueResolved {
            issue_id: required("issue_id", &f.issue_id)?,
            summary: required("summary", &f.summary)?,
        }),
        RecordKindArg::IssueReviewed => Kind::IssueReviewed(pb::IssueReviewed {
            issue_id: required("issue_id", &f.issue_id)?,
            rating: number("rating", &f.rating)?,
            by: required("by", &f.by)?,
            by_member_id: text(&f.by_member_id),
        }),
        RecordKindArg::Correction => {
            let replacement = match &f.replacement_kind {
                Some(kind) => {
                    let kind = RecordKindArg::parse(kind).context("field `replacement_kind`")?;
                    if kind == RecordKindArg::Correction {
                        bail!("field `replacement_kind`: a correction cannot replace with a correction");
                    }
                    Some(Box::new(body(kind, f)?))
                }
                None => None,
            };
            Kind::Correction(Box::new(pb::Correction {
                target: required("target", &f.target)?,
                reason: required("reason", &f.reason)?,
                replacement,
            }))
        }
    };
    Ok(pb::RecordBody { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_make_bodies_and_name_what_is_missing() {
        let mut fields = RecordFields::default();
        for (name, value) in [
            ("member_id", "m-1"),
            ("material", "Handbook"),
            ("minutes", "45"),
            ("form", "group"),
            ("occurred_on", "2026-03-02"),
        ] {
            fields.set(name, value.into()).expect("known field");
        }
        let body = body(RecordKindArg::StudySession, &fields).expect("body");
        let domain = branchledger_api::convert::record_body("body", &body).expect("valid");
        assert_eq!(domain.kind().as_str(), "study_session");
        let error = super::body(RecordKindArg::DuesPaid, &fields).expect_err("no period");
        assert!(error.to_string().contains("`period`"), "{error}");
        assert!(fields.set("colour", "red".into()).is_err());
        fields.set("minutes", "many".into()).expect("set");
        let error = super::body(RecordKindArg::StudySession, &fields).expect_err("not a number");
        assert!(error.to_string().contains("`minutes`"), "{error}");
    }

    #[test]
    fn meeting_lists_and_corrections_are_shaped() {
        let mut fields = RecordFields::default();
        for (name, value) in [
            ("meeting_id", "mt-1"),
            ("meeting_kind", "committee"),
            ("topic", "Plan"),
            ("held_on", "2026-03-02"),
            ("attendees", "m-1; guest:m-9"),
            ("absentees", "m-3:illness"),
        ] {
            fields.set(name, value.into()).expect("known field");
        }
        let body = body(RecordKindArg::MeetingHeld, &fields).expect("body");
        let Some(Kind::MeetingHeld(meeting)) = &body.kind else {
            panic!("not a meeting")
        };
        assert_eq!(meeting.attendees.len(), 2);
        assert!(meeting.attendees[1].guest);
        assert_eq!(meeting.absentees[0].reason, "illness");
        assert_eq!(
            RecordKindArg::parse("meeting_held").expect("kind"),
            RecordKindArg::MeetingHeld
        );
        assert!(RecordKindArg::parse("party").is_err());
        assert_eq!(FIELD_NAMES.len(), 35);
    }
}
