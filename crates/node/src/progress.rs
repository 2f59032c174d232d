//! Progress queries over the aggregates kept at commit time: the cross-branch study
//! leaderboard, dues paid and outstanding, and meeting compliance against the genesis rules.
//!
//! Every figure is read from an aggregate table: the cost depends on the number of branches,
//! periods and rules asked about, never on the length of the chain.

use branchledger_state::{read, ReadError, StateReader};
use branchledger_types::genesis::RulePeriod;
use branchledger_types::record::MeetingKind;
use branchledger_types::{BranchId, Genesis, Period};

/// One branch's line in the study leaderboard.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyRow {
    /// The branch.
    pub branch_id: BranchId,
    /// Members active now.
    pub active_members: u64,
    /// Minutes studied over the periods.
    pub minutes: u64,
    /// Sessions over the periods.
    pub sessions: u64,
    /// Hours per active member over the periods.
    pub hours_per_member: f64,
    /// Share of the genesis study target met (1.0 = on target).
    pub target_ratio: f64,
}

/// The study leaderboard over `periods`, best hours per member first.
pub fn study_leaderboard(
    reader: &(impl StateReader + ?Sized),
    genesis: &Genesis,
    periods: &[Period],
) -> Result<Vec<StudyRow>, ReadError> {
    let mut rows = Vec::new();
    for branch in &genesis.branches {
        let stats = read::branch_stats(reader, &branch.branch_id)?;
        let mut minutes = 0;
        let mut sessions = 0;
        for period in periods {
            let totals = read::study_by_branch(reader, &branch.branch_id, *period)?;
            minutes += totals.minutes;
            sessions += totals.sessions;
        }
        let members = stats.active_members.max(1) as f64;
        let target = f64::from(genesis.rules.study.minutes_per_member_per_month)
            * periods.len() as f64
            * members;
        rows.push(StudyRow {
            branch_id: branch.branch_id.clone(),
            active_members: stats.active_members,
            minutes,
            sessions,
            hours_per_member: minutes as f64 / 60.0 / members,
            target_ratio: if target > 0.0 {
                minutes as f64 / target
            } else {
                1.0
            },
        });
    }
    rows.sort_by(|a, b| {
        b.hours_per_member
            .total_cmp(&a.hours_per_member)
            .then_with(|| a.branch_id.cmp(&b.branch_id))
    });
    Ok(rows)
}

/// One branch's dues for one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuesRow {
    /// The branch.
    pub branch_id: BranchId,
    /// The month.
    pub period: Period,
    /// Paid, minor units.
    pub paid_minor: u64,
    /// Payments.
    pub payments: u64,
    /// Expected from the active members at the genesis rate, minor units.
    pub expected_minor: u64,
    /// Expected minus paid (never negative).
    pub outstanding_minor: u64,
}

/// Dues paid and outstanding per branch for `period`.
pub fn dues(
    reader: &(impl StateReader + ?Sized),
    genesis: &Genesis,
    period: Period,
) -> Result<Vec<DuesRow>, ReadError> {
    let mut rows = Vec::new();
    for branch in &genesis.branches {
        let stats = read::branch_stats(reader, &branch.branch_id)?;
        let totals = read::dues_by_branch(reader, &branch.branch_id, period)?;
        let expected_minor = stats.active_members * genesis.rules.dues_minor_per_month;
        rows.push(DuesRow {
            branch_id: branch.branch_id.clone(),
            period,
            paid_minor: totals.amount_minor,
            payments: totals.payments,
            expected_minor,
            outstanding_minor: expected_minor.saturating_sub(totals.amount_minor),
        });
    }
    Ok(rows)
}

/// One branch's standing against one meeting rule over one span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComplianceRow {
    /// The branch.
    pub branch_id: BranchId,
    /// The meeting kind of the rule.
    pub kind: MeetingKind,
    /// The span, e.g. `2026-01` or `2026-Q1` or `2026`.
    pub span: String,
    /// Meetings required in the span.
    pub required: u32,
    /// Meetings held in the span.
    pub held: u64,
}

impl ComplianceRow {
    /// True if the rule was met.
    pub fn met(&self) -> bool {
        self.held >= u64::from(self.required)
    }
}

/// Meeting compliance of every branch against every genesis rule, for each span (month,
/// quarter or year, as the rule says) that `periods` touch.
pub fn meeting_compliance(
    reader: &(impl StateReader + ?Sized),
    genesis: &Genesis,
    periods: &[Period],
) -> Result<Vec<ComplianceRow>, ReadError> {
    let mut rows = Vec::new();
    for branch in &genesis.branches {
        for rule in &genesis.rules.meetings {
            let mut spans: Vec<(String, Vec<Period>)> = Vec::new();
            for period in periods {
                let (label, months) = span_of(*period, rule.per);
                if !spans.iter().any(|(l, _)| *l == label) {
                    spans.push((label, months));
                }
            }
            for (span, months) in spans {
                let mut held = 0;
                for month in months {
                    held += read::meetings_by_branch(reader, &branch.branch_id, rule.kind, month)?
                        .count;
                }
                rows.push(ComplianceRow {
                    branch_id: branch.branch_id.clone(),
                    kind: rule.kind,
                    span,
                    required: rule.at_least,
                    held,
                });
            }
        }
    }
    Ok(rows)
}

fn span_of(period: Period, per: RulePeriod) -> (String, Vec<Period>) {
    match per {
        RulePeriod::Month => (period.to_string(), vec![period]),
        RulePeriod::Quarter => {
            let first = (period.quarter() - 1) * 3 + 1;
            (
                format!("{}-Q{}", period.year, period.quarter()),
                (first..first + 3)
                    .map(|m| Period::new(period.year, m))
                    .collect(),
            )
        }
        RulePeriod::Year => (
            period.year.to_string(),
            (1..=12).map(|m| Period::new(period.year, m)).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_right_months() {
        let (label, months) = span_of(Period::new(2026, 5), RulePeriod::Quarter);
        assert_eq!(label, "2026-Q2");
        assert_eq!(
            months,
            vec![
                Period::new(2026, 4),
                Period::new(2026, 5),
                Period::new(2026, 6)
            ]
        );
        assert_eq!(
            span_of(Period::new(2026, 5), RulePeriod::Month).1,
            vec![Period::new(2026, 5)]
        );
        assert_eq!(span_of(Period::new(2026, 5), RulePeriod::Year).1.len(), 12);
    }
}
