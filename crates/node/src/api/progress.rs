//! `branchledger.v1.Progress`: study, dues, meetings and the issue pool, from the aggregates.

use std::sync::Arc;

use branchledger_api::pb;
use branchledger_state::entries::IssueEntry;
use branchledger_state::{keys, read, Table};
use branchledger_storage::{ChainReader, RocksStore};
use branchledger_types::record::IssueScope;
use branchledger_types::{BranchId, Genesis, MemberId, Period};
use tonic::{Request, Response, Status};

use super::ledger::ident_field;
use super::{blocking, internal, invalid, next_token, page_size, page_token, span, ApiContext};
use crate::progress;

/// The `Progress` service.
pub struct ProgressService(pub Arc<ApiContext>);

/// Most members one branch query lists.
pub const BRANCH_MEMBERS_MAX: usize = 10_000;
/// Issues examined per board page at most, when filtering by status.
pub const ISSUE_SCAN_PER_PAGE_MAX: usize = 10_000;

fn known_branch(genesis: &Genesis, field: &str, branch_id: &str) -> Result<BranchId, Status> {
    ident_field(field, branch_id)?;
    let branch = BranchId(branch_id.to_owned());
    if genesis.branch(&branch).is_none() {
        return Err(Status::not_found(format!(
            "no branch {branch_id} in genesis"
        )));
    }
    Ok(branch)
}

/// The active members of a branch, in id order.
fn branch_members(store: &RocksStore, branch: &BranchId) -> Result<Vec<MemberId>, Status> {
    let prefix = keys::id_prefix(branch.as_str());
    let page = store
        .scan_prefix(Table::BranchMembers, &prefix, None, BRANCH_MEMBERS_MAX)
        .map_err(internal)?;
    page.items
        .into_iter()
        .map(|(key, _)| {
            String::from_utf8(key[prefix.len()..].to_vec())
                .map(MemberId)
                .map_err(|_| internal("a member key is not UTF-8"))
        })
        .collect()
}

fn study_rows(
    store: &RocksStore,
    member: &MemberId,
    periods: &[Period],
) -> Result<Vec<pb::StudyRow>, Status> {
    periods
        .iter()
        .map(|period| {
            let totals = read::study_by_member(store, member, *period).map_err(internal)?;
            Ok(pb::StudyRow {
                period: period.to_string(),
                member_id: String::new(),
                minutes: totals.minutes,
                sessions: totals.sessions,
                hours: totals.minutes as f64 / 60.0,
            })
        })
        .collect()
}

fn issue_view(issue_id: String, entry: IssueEntry) -> pb::Issue {
    pb::Issue {
        issue_id,
        raised_by: entry.raised_by.to_string(),
        scope: match entry.scope {
            IssueScope::Member(_) => "member".into(),
            IssueScope::Branch => "branch".into(),
            IssueScope::Public => "public".into(),
        },
        title: entry.title,
        raised_on: entry.raised_on.to_string(),
        status: entry.status.as_str().into(),
        claimed_by: entry.claimed_by.map(|b| b.to_string()).unwrap_or_default(),
        claimants: entry.claimants.iter().map(ToString::to_string).collect(),
        percent: u32::from(entry.percent),
        rating: entry.rating.map_or(0, u32::from),
    }
}

#[tonic::async_trait]
impl pb::progress_server::Progress for ProgressService {
    async fn study_hours(
        &self,
        request: Request<pb::StudyHoursRequest>,
    ) -> Result<Response<pb::StudyHoursResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        let request = request.into_inner();
        let periods = span("span", request.span.as_ref())?;
        let target_per_month = u64::from(context.genesis.rules.study.minutes_per_member_per_month);
        use pb::study_hours_request::Subject;
        let subject = request.subject.clone().ok_or_else(|| {
            invalid(branchledger_types::ValidationError::new(
                "subject",
                branchledger_types::Rule::Required,
            ))
        })?;
        let branch = match &subject {
            Subject::BranchId(b) => Some(known_branch(&context.genesis, "branch_id", b)?),
            Subject::MemberId(m) => {
                ident_field("member_id", m)?;
                None
            }
        };
        blocking(move || {
            let store = &context.store;
            let months = periods.len() as u64;
            match (subject, branch) {
                (Subject::MemberId(member), _) => {
                    let member = MemberId(member);
                    if read::member(store.as_ref(), &member)
                        .map_err(internal)?
                        .is_none()
                    {
                        return Err(Status::not_found(format!(
                            "no member {member} on this chain"
                        )));
                    }
                    let rows = study_rows(store, &member, &periods)?;
                    Ok(pb::StudyHoursResponse {
                        total_minutes: rows.iter().map(|r| r.minutes).sum(),
                        rows,
                        target_minutes: target_per_month * months,
                    })
                }
                (Subject::BranchId(_), Some(branch)) if request.per_member => {
                    let members = branch_members(store, &branch)?;
                    let mut rows = Vec::with_capacity(members.len());
                    for member in &members {
                        let monthly = study_rows(store, member, &periods)?;
                        let minutes: u64 = monthly.iter().map(|r| r.minutes).sum();
                        rows.push(pb::StudyRow {
                            period: String::new(),
                            member_id: member.to_string(),
                            minutes,
                            sessions: monthly.iter().map(|r| r.sessions).sum(),
                            hours: minutes as f64 / 60.0,
                        });
                    }
                    rows.sort_by(|a, b| {
                        b.minutes
                            .cmp(&a.minutes)
                            .then_with(|| a.member_id.cmp(&b.member_id))
                    });
                    Ok(pb::StudyHoursResponse {
                        total_minutes: rows.iter().map(|r| r.minutes).sum(),
                        target_minutes: target_per_month * months * members.len() as u64,
                        rows,
                    })
                }
                (Subject::BranchId(_), Some(branch)) => {
                    let stats = read::branch_stats(store.as_ref(), &branch).map_err(internal)?;
                    let rows = periods
                        .iter()
                        .map(|period| {
                            let totals = read::study_by_branch(store.as_ref(), &branch, *period)
                                .map_err(internal)?;
                            Ok(pb::StudyRow {
                                period: period.to_string(),
                                member_id: String::new(),
                                minutes: totals.minutes,
                                sessions: totals.sessions,
                                hours: totals.minutes as f64 / 60.0,
                            })
                        })
                        .collect::<Result<Vec<_>, Status>>()?;
                    Ok(pb::StudyHoursResponse {
                        total_minutes: rows.iter().map(|r| r.minutes).sum(),
                        rows,
                        target_minutes: target_per_month * months * stats.active_members,
                    })
                }
                (Subject::BranchId(_), None) => Err(internal("branch checked above")),
            }
            .map(Response::new)
        })
        .await
    }

    async fn leaderboard(
        &self,
        request: Request<pb::LeaderboardRequest>,
    ) -> Result<Response<pb::LeaderboardResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        let periods = span("span", request.get_ref().span.as_ref())?;
        blocking(move || {
            let rows =
                progress::study_leaderboard(context.store.as_ref(), &context.genesis, &periods)
                    .map_err(internal)?;
            Ok(Response::new(pb::LeaderboardResponse {
                rows: rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| pb::LeaderboardRow {
                        rank: i as u32 + 1,
                        branch_name: context
                            .genesis
                            .branch(&row.branch_id)
                            .map(|b| b.name.clone())
                            .unwrap_or_default(),
                        branch_id: row.branch_id.to_string(),
                        active_members: row.active_members,
                        minutes: row.minutes,
                        sessions: row.sessions,
                        hours_per_member: row.hours_per_member,
                        target_ratio: row.target_ratio,
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn dues(
        &self,
        request: Request<pb::DuesRequest>,
    ) -> Result<Response<pb::DuesResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        let request = request.into_inner();
        let periods = span("span", request.span.as_ref())?;
        let branch = if request.branch_id.is_empty() {
            if request.per_member {
                return Err(Status::invalid_argument(
                    "field `per_member`: needs `branch_id`",
                ));
            }
            None
        } else {
            Some(known_branch(
                &context.genesis,
                "branch_id",
                &request.branch_id,
            )?)
        };
        blocking(move || {
            let store = &context.store;
            let rate = context.genesis.rules.dues_minor_per_month;
            let mut rows = Vec::new();
            match branch {
                Some(branch) if request.per_member => {
                    for member in branch_members(store, &branch)? {
                        for period in &periods {
                            let paid = read::dues_by_member(store.as_ref(), &member, *period)
                                .map_err(internal)?;
                            rows.push(pb::DuesRow {
                                branch_id: branch.to_string(),
                                member_id: member.to_string(),
                                period: period.to_string(),
                                paid_minor: paid.amount_minor,
                                payments: paid.payments,
                                expected_minor: rate,
                                outstanding_minor: rate.saturating_sub(paid.amount_minor),
                            });
                        }
                    }
                }
                _ => {
                    for period in &periods {
                        for row in progress::dues(store.as_ref(), &context.genesis, *period)
                            .map_err(internal)?
                        {
                            if branch.as_ref().is_some_and(|b| *b != row.branch_id) {
                                continue;
                            }
                            rows.push(pb::DuesRow {
                                branch_id: row.branch_id.to_string(),
                                member_id: String::new(),
                                period: row.period.to_string(),
                                paid_minor: row.paid_minor,
                                payments: row.payments,
                                expected_minor: row.expected_minor,
                                outstanding_minor: row.outstanding_minor,
                            });
                        }
                    }
                }
            }
            Ok(Response::new(pb::DuesResponse { rows }))
        })
        .await
    }

    async fn meeting_compliance(
        &self,
        request: Request<pb::MeetingComplianceRequest>,
    ) -> Result<Response<pb::MeetingComplianceResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        let request = request.into_inner();
        let periods = span("span", request.span.as_ref())?;
        let branch = if request.branch_id.is_empty() {
            None
        } else {
            Some(known_branch(
                &context.genesis,
                "branch_id",
                &request.branch_id,
            )?)
        };
        blocking(move || {
            let rows: Vec<pb::ComplianceRow> =
                progress::meeting_compliance(context.store.as_ref(), &context.genesis, &periods)
                    .map_err(internal)?
                    .into_iter()
                    .filter(|row| branch.as_ref().is_none_or(|b| *b == row.branch_id))
                    .map(|row| pb::ComplianceRow {
                        met: row.met(),
                        branch_id: row.branch_id.to_string(),
                        kind: row.kind.as_str().into(),
                        span: row.span,
                        required: row.required,
                        held: row.held,
                    })
                    .collect();
            let met = rows.iter().filter(|r| r.met).count();
            Ok(Response::new(pb::MeetingComplianceResponse {
                compliance_ratio: if rows.is_empty() {
                    1.0
                } else {
                    met as f64 / rows.len() as f64
                },
                rows,
            }))
        })
        .await
    }

    async fn issue_board(
        &self,
        request: Request<pb::IssueBoardRequest>,
    ) -> Result<Response<pb::IssueBoardResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        let request = request.into_inner();
        let statuses = ["open", "claimed", "resolved", "reviewed"];
        if !request.status.is_empty() && !statuses.contains(&request.status.as_str()) {
            return Err(invalid(branchledger_types::ValidationError::new(
                "status",
                branchledger_types::Rule::Enum {
                    allowed: &["open", "claimed", "resolved", "reviewed"],
                    actual: request.status.clone(),
                },
            )));
        }
        let limit = page_size("page_size", request.page_size)?;
        let mut after = page_token("page_token", &request.page_token, &[])?;
        blocking(move || {
            let mut issues = Vec::new();
            let mut scanned = 0;
            let next = loop {
                let page = context
                    .store
                    .scan_prefix(Table::Issues, &[], after.as_deref(), limit)
                    .map_err(internal)?;
                let more_pages = page.next_after.is_some();
                let on_page = page.items.len();
                let mut consumed = 0;
                for (key, value) in page.items {
                    consumed += 1;
                    scanned += 1;
                    let entry: IssueEntry =
                        read::decode_value(Table::Issues, &key, &value).map_err(internal)?;
                    if request.status.is_empty() || entry.status.as_str() == request.status {
                        let id = String::from_utf8(key.clone())
                            .map_err(|_| internal("an issue key is not UTF-8"))?;
                        issues.push(issue_view(id, entry));
                    }
                    after = Some(key);
                    if issues.len() >= limit || scanned >= ISSUE_SCAN_PER_PAGE_MAX {
                        break;
                    }
                }
                let more = more_pages || consumed < on_page;
                if !more {
                    break None;
                }
                if issues.len() >= limit || scanned >= ISSUE_SCAN_PER_PAGE_MAX {
                    break after;
                }
            };
            Ok(Response::new(pb::IssueBoardResponse {
                issues,
                next_page_token: next_token(next),
            }))
        })
        .await
    }

    async fn issue_leaderboard(
        &self,
        request: Request<pb::IssueLeaderboardRequest>,
    ) -> Result<Response<pb::IssueLeaderboardResponse>, Status> {
        let context = self.0.clone();
        context.check_read(&request)?;
        blocking(move || {
            let mut rows = Vec::new();
            for branch in &context.genesis.branches {
                let stats = read::branch_stats(context.store.as_ref(), &branch.branch_id)
                    .map_err(internal)?;
                rows.push(pb::IssueLeaderboardRow {
                    rank: 0,
                    branch_id: branch.branch_id.to_string(),
                    raised: stats.issues_raised,
                    claimed: stats.issues_claimed,
                    resolved: stats.issues_resolved,
                });
            }
            rows.sort_by(|a, b| {
                b.resolved
                    .cmp(&a.resolved)
                    .then(b.claimed.cmp(&a.claimed))
                    .then_with(|| a.branch_id.cmp(&b.branch_id))
            });
            for (i, row) in rows.iter_mut().enumerate() {
                row.rank = i as u32 + 1;
            }
            Ok(Response::new(pb::IssueLeaderboardResponse { rows }))
        })
        .await
    }
}
