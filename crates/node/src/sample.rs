//! Realistic sample activity for the demo network: branches, members, three months of study
//! sessions, dues, meetings, and issues raised, claimed, worked on in pairs, resolved and
//! reviewed — generated deterministically from a seed.
//!
//! The records come out unsigned and in an order that passes the state rules when applied one
//! after another; the caller signs each with its branch's key.

use branchledger_types::record::{
    AbsenceReason, Absentee, Attendee, Correction, DuesPaid, IssueClaimed, IssueProgress,
    IssueRaised, IssueResolved, IssueReviewed, IssueScope, LeaveReason, MeetingHeld, MeetingKind,
    MemberAccepted, MemberJoined, MemberLeft, MemberStatus, MemberTransferred, Reviewer, StudyForm,
    StudySession,
};
use branchledger_types::{
    BranchId, Date, IssueId, MeetingId, MemberId, Period, Record, RecordBody,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How much sample activity to make.
#[derive(Clone, Debug)]
pub struct SampleSpec {
    /// Members per branch.
    pub members_per_branch: usize,
    /// Months of activity, ending with the month of `today`.
    pub months: u8,
    /// The last day activity may fall on.
    pub today: Date,
    /// Seed of the generator.
    pub seed: u64,
}

/// Study materials for the sample sessions.
const MATERIALS: &[&str] = &[
    "Branch work handbook, chapter 1",
    "Branch work handbook, chapter 2",
    "Organisation charter, articles 1-10",
    "Annual work report",
    "Rules on branch meetings",
    "Case studies in community service",
    "Guide to members' dues",
    "History of the organisation, part 1",
    "History of the organisation, part 2",
    "Online course: serving the public",
];

const ISSUE_TITLES: &[&str] = &[
    "Street lights out on the east lane",
    "Help an elderly resident with paperwork",
    "Organise a reading corner in the community centre",
    "Repair the notice board by the market",
    "Volunteer rota for the weekend clinic",
    "Translate the service guide for new residents",
];

fn date_days_before(today: Date, days: i64) -> Date {
    let day = today.days_since_epoch() - days;
    Date::from_unix_ms((day.max(0) as u64) * 86_400_000)
}

/// The first day of the month `months_back` months before `today`'s month.
fn month_start(today: Date, months_back: u8) -> Date {
    let mut year = today.year;
    let mut month = today.month as i32 - i32::from(months_back);
    while month < 1 {
        month += 12;
        year -= 1;
    }
    Date::new(year, month as u8, 1)
}

/// A random day within the month starting at `start`, not after `today`.
fn day_in_month(rng: &mut ChaCha8Rng, start: Date, today: Date) -> Date {
    let last = branchledger_types::ids::days_in_month(start.year, start.month);
    let last = if start.period() == today.period() {
        today.day
    } else {
        last
    };
    Date::new(start.year, start.month, rng.random_range(1..=last))
}

/// Generates the sample records for `branches`, in an order that passes the state rules.
pub fn generate(chain_id: &str, branches: &[BranchId], spec: &SampleSpec) -> Vec<Record> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let mut nonce = 0u64;
    let mut push = |out: &mut Vec<Record>, branch: &BranchId, body: RecordBody| {
        nonce += 1;
        out.push(Record {
            chain_id: chain_id.to_owned(),
            branch_id: branch.clone(),
            created_at_ms: 0,
            nonce,
            body,
        });
    };
    let first_month = month_start(spec.today, spec.months.saturating_sub(1));
    let joined_on = date_days_before(first_month, 30);

    // Members: ids are opaque (branch index and a counter), never names.
    let mut members: Vec<Vec<(MemberId, bool)>> = Vec::new();
    for (b, branch) in branches.iter().enumerate() {
        let mut list = Vec::new();
        for m in 0..spec.members_per_branch {
            let member_id = MemberId(format!("m{b:02}-{m:04}"));
            let mobile = rng.random_bool(0.1);
            let status = if rng.random_bool(0.15) {
                MemberStatus::Probationary
            } else {
                MemberStatus::Full
            };
            push(
                &mut out,
                branch,
                RecordBody::MemberJoined(MemberJoined {
                    member_id: member_id.clone(),
                    joined_on,
                    status,
                    mobile,
                    member_key: None,
                }),
            );
            list.push((member_id, mobile));
        }
        members.push(list);
    }

    // Branches differ in diligence, so the leaderboard has something to show.
    let diligence: Vec<f64> = (0..branches.len())
        .map(|b| 0.55 + 0.12 * (b % 4) as f64)
        .collect();

    for month_index in (0..spec.months).rev() {
        let start = month_start(spec.today, month_index);
        let period = start.period();
        for (b, branch) in branches.iter().enumerate() {
            let keen = diligence[b];
            // Study sessions.
            for (member_id, _) in &members[b] {
                let sessions = rng.random_range(0..=((10.0 * keen) as u32));
                for _ in 0..sessions {
                    let form = [
                        StudyForm::SelfStudy,
                        StudyForm::Group,
                        StudyForm::Lecture,
                        StudyForm::Online,
                    ][rng.random_range(0..4)];
                    push(
                        &mut out,
                        branch,
                        RecordBody::StudySession(StudySession {
                            member_id: member_id.clone(),
                            material: MATERIALS[rng.random_range(0..MATERIALS.len())].to_owned(),
                            minutes: rng.random_range(20..=150),
                            form,
                            occurred_on: day_in_month(&mut rng, start, spec.today),
                        }),
                    );
                }
                // Dues: most members pay, the less diligent branches miss more.
                if rng.random_bool(keen.min(0.98)) {
                    push(
                        &mut out,
                        branch,
                        RecordBody::DuesPaid(DuesPaid {
                            member_id: member_id.clone(),
                            period,
                            amount_minor: 2_000,
                            reference_commitment: None,
                        }),
                    );
                }
            }
            // Meetings: committee and group monthly, assembly and lecture once a quarter.
            let mut kinds = vec![MeetingKind::Committee, MeetingKind::Group];
            if period.month.is_multiple_of(3) || month_index == 0 {
                kinds.push(MeetingKind::BranchAssembly);
                kinds.push(MeetingKind::Lecture);
            }
            if rng.random_bool(0.5) {
                kinds.push(MeetingKind::ThemedDay);
            }
            for kind in kinds {
                // The least diligent branch sometimes skips a meeting.
                if !rng.random_bool((keen + 0.3).min(1.0)) {
                    continue;
                }
                let mut attendees = Vec::new();
                let mut absentees = Vec::new();
                // A meeting record lists at most a few hundred people (the protocol limit is
                // 200 attendees and 200 absentees); larger sample branches meet in parts.
                for (member_id, _) in members[b].iter().take(180) {
                    if rng.random_bool(0.85) {
                        attendees.push(Attendee {
                            member_id: member_id.clone(),
                            guest: false,
                        });
                    } else {
                        let reason = [
                            AbsenceReason::Illness,
                            AbsenceReason::Work,
                            AbsenceReason::Travel,
                            AbsenceReason::Family,
                        ][rng.random_range(0..4)];
                        absentees.push(Absentee {
                            member_id: member_id.clone(),
                            reason,
                        });
                    }
                }
                if attendees.is_empty() {
                    continue;
                }
                // A mobile member of the next branch attends as a guest.
                let next = (b + 1) % branches.len();
                if next != b {
                    if let Some((guest, true)) = members[next].first() {
                        attendees.push(Attendee {
                            member_id: guest.clone(),
                            guest: true,
                        });
                    }
                }
                push(
                    &mut out,
                    branch,
                    RecordBody::MeetingHeld(MeetingHeld {
                        meeting_id: MeetingId(format!(
                            "{}-{}-{period}",
                            branch,
                            kind.as_str().replace('_', "-")
                        )),
                        kind,
                        topic: format!("{} of {period}", kind.as_str().replace('_', " ")),
                        held_on: day_in_month(&mut rng, start, spec.today),
                        attendees,
                        absentees,
                    }),
                );
            }
        }
    }

    // The issue pool: raised, claimed by pairs, progressed, resolved, reviewed.
    for (b, branch) in branches.iter().enumerate() {
        let count = 2 + b % 3;
        for i in 0..count {
            let issue_id = IssueId(format!("{branch}-issue-{i}"));
            let title = ISSUE_TITLES[(b + i) % ISSUE_TITLES.len()].to_owned();
            let scope = if i % 2 == 0 {
                IssueScope::Public
            } else {
                IssueScope::Branch
            };
            push(
                &mut out,
                branch,
                RecordBody::IssueRaised(IssueRaised {
                    issue_id: issue_id.clone(),
                    scope,
                    title,
                    raised_on: date_days_before(spec.today, 40 - i as i64),
                }),
            );
            if i + 1 == count && b % 2 == 1 {
                continue; // left open
            }
            let pair: Vec<MemberId> = members[b]
                .iter()
                .skip(2 * i + 1)
                .take(2)
                .map(|(id, _)| id.clone())
                .collect();
            if pair.is_empty() {
                continue;
            }
            push(
                &mut out,
                branch,
                RecordBody::IssueClaimed(IssueClaimed {
                    issue_id: issue_id.clone(),
                    claimants: pair.clone(),
                }),
            );
            push(
                &mut out,
                branch,
                RecordBody::IssueProgress(IssueProgress {
                    issue_id: issue_id.clone(),
                    percent: 50,
                    note: "halfway".into(),
                }),
            );
            if i % 3 == 2 {
                continue; // still in progress
            }
            push(
                &mut out,
                branch,
                RecordBody::IssueResolved(IssueResolved {
                    issue_id: issue_id.clone(),
                    summary: "done and published".into(),
                }),
            );
            push(
                &mut out,
                branch,
                RecordBody::IssueReviewed(IssueReviewed {
                    issue_id,
                    rating: rng.random_range(3..=5),
                    by: if i % 2 == 0 {
                        Reviewer::Public
                    } else {
                        Reviewer::Member(members[b][0].0.clone())
                    },
                }),
            );
        }
    }

    // Membership changes: a transfer accepted by the next branch, and a member leaving.
    if branches.len() >= 2 && spec.members_per_branch >= 3 {
        let (moving, _) = members[0][spec.members_per_branch - 1].clone();
        push(
            &mut out,
            &branches[0],
            RecordBody::MemberTransferred(MemberTransferred {
                member_id: moving.clone(),
                to_branch: branches[1].clone(),
            }),
        );
        push(
            &mut out,
            &branches[1],
            RecordBody::MemberAccepted(MemberAccepted {
                member_id: moving,
                from_branch: branches[0].clone(),
            }),
        );
        let (leaving, _) = members[1][spec.members_per_branch - 2].clone();
        push(
            &mut out,
            &branches[1],
            RecordBody::MemberLeft(MemberLeft {
                member_id: leaving,
                reason: LeaveReason::Resigned,
            }),
        );
    }
    out
}

/// A correction of `target` (a study session of `branch`): the minutes were recorded wrong.
pub fn correction(
    chain_id: &str,
    branch: &BranchId,
    target: &Record,
    nonce: u64,
) -> Option<Record> {
    let RecordBody::StudySession(session) = &target.body else {
        return None;
    };
    let mut fixed = session.clone();
    fixed.minutes = (fixed.minutes / 2).max(1);
    Some(Record {
        chain_id: chain_id.to_owned(),
        branch_id: branch.clone(),
        created_at_ms: 0,
        nonce,
        body: RecordBody::Correction(Correction {
            target: branchledger_types::record::record_id(target, &[]),
            reason: "minutes recorded twice as long as the session".into(),
            replacement: Some(Box::new(RecordBody::StudySession(fixed))),
        }),
    })
}

/// The periods covered by a spec, oldest first.
pub fn periods(spec: &SampleSpec) -> Vec<Period> {
    (0..spec.months)
        .rev()
        .map(|m| month_start(spec.today, m).period())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SampleSpec {
        SampleSpec {
            members_per_branch: 30,
            months: 3,
            today: Date::new(2026, 2, 10),
            seed: 7,
        }
    }

    #[test]
    fn sample_is_deterministic_and_valid() {
        let branches: Vec<BranchId> = (0..4).map(|i| BranchId(format!("b{i}"))).collect();
        let a = generate("chain", &branches, &spec());
        let b = generate("chain", &branches, &spec());
        assert_eq!(a, b);
        assert!(a.len() > 1000, "{} records", a.len());
        for record in &a {
            assert_eq!(record.validate(), Ok(()), "{record:?}");
            let date = match &record.body {
                RecordBody::StudySession(s) => s.occurred_on,
                RecordBody::MeetingHeld(m) => m.held_on,
                RecordBody::IssueRaised(i) => i.raised_on,
                RecordBody::MemberJoined(j) => j.joined_on,
                _ => continue,
            };
            assert!(date <= spec().today, "{date} after today");
        }
        assert_eq!(
            periods(&spec()),
            vec![
                Period::new(2025, 12),
                Period::new(2026, 1),
                Period::new(2026, 2)
            ]
        );
    }
}
