//! `branchd query …`: every progress and read query, as a table or as JSON.

use anyhow::Result;
use branchledger_api::pb;
use serde_json::json;

use super::{print_table, short, status_error, Api, ApiArgs};

/// A span of months.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SpanArgs {
    /// First month (YYYY-MM); default: the current month.
    #[arg(long)]
    pub from: Option<String>,
    /// Last month (YYYY-MM); default: `--from`.
    #[arg(long)]
    pub to: Option<String>,
}

impl SpanArgs {
    fn span(&self) -> Option<pb::Span> {
        Some(pb::Span {
            from_period: self.from.clone().unwrap_or_default(),
            to_period: self.to.clone().unwrap_or_default(),
        })
    }
}

/// What to ask.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Query {
    /// The cross-branch study leaderboard.
    Leaderboard {
        #[command(flatten)]
        span: SpanArgs,
    },
    /// Study hours of a member, or of a branch (per month, or per member).
    Study {
        /// The member.
        #[arg(long, conflicts_with = "branch")]
        member: Option<String>,
        /// The branch.
        #[arg(long, required_unless_present = "member")]
        branch: Option<String>,
        /// For a branch: one row per member.
        #[arg(long)]
        per_member: bool,
        #[command(flatten)]
        span: SpanArgs,
    },
    /// Dues paid and outstanding.
    Dues {
        /// Only this branch.
        #[arg(long)]
        branch: Option<String>,
        /// With --branch: one row per member.
        #[arg(long)]
        per_member: bool,
        #[command(flatten)]
        span: SpanArgs,
    },
    /// Meeting compliance against the genesis rules.
    Compliance {
        /// Only this branch.
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        span: SpanArgs,
    },
    /// The issue board.
    Issues {
        /// Only issues in this status (open, claimed, resolved, reviewed).
        #[arg(long)]
        status: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A page token from a previous answer.
        #[arg(long, default_value = "")]
        page: String,
    },
    /// Branches ranked by issues resolved.
    IssueLeaderboard,
    /// A member's records in time order.
    History {
        /// The member.
        member: String,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A page token from a previous answer.
        #[arg(long, default_value = "")]
        page: String,
    },
    /// A branch's records of one kind in one month.
    Records {
        /// The branch.
        #[arg(long)]
        branch: String,
        /// The kind, e.g. study_session.
        #[arg(long)]
        kind: String,
        /// The month (YYYY-MM).
        #[arg(long)]
        period: String,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A page token from a previous answer.
        #[arg(long, default_value = "")]
        page: String,
    },
    /// One record by id: committed, pending or dropped.
    Record {
        /// The record id (hex).
        id: String,
    },
    /// One block by height.
    Block {
        /// The height.
        height: u64,
        /// Also list its records.
        #[arg(long)]
        records: bool,
    },
    /// The validator set.
    Validators,
    /// Conflicting votes seen by the node.
    Evidence,
}

fn record_row(r: &pb::CommittedRecord) -> Vec<String> {
    let record = r.record.as_ref();
    let kind = record
        .and_then(|r| r.record.as_ref())
        .and_then(|r| r.body.as_ref())
        .and_then(|b| b.kind.as_ref())
        .map(kind_name)
        .unwrap_or("?");
    let location = r.location.clone().unwrap_or_default();
    vec![
        location.height.to_string(),
        location.index.to_string(),
        kind.to_owned(),
        record
            .and_then(|r| r.record.as_ref())
            .map(|r| r.branch_id.clone())
            .unwrap_or_default(),
        short(&record.map(|r| r.id.clone()).unwrap_or_default()),
    ]
}

/// The API name of a body's kind.
pub fn kind_name(kind: &pb::record_body::Kind) -> &'static str {
    use pb::record_body::Kind;
    match kind {
        Kind::MemberJoined(_) => "member_joined",
        Kind::MemberTransferred(_) => "member_transferred",
        Kind::MemberAccepted(_) => "member_accepted",
        Kind::MemberLeft(_) => "member_left",
        Kind::StudySession(_) => "study_session",
        Kind::DuesPaid(_) => "dues_paid",
        Kind::MeetingHeld(_) => "meeting_held",
        Kind::IssueRaised(_) => "issue_raised",
        Kind::IssueClaimed(_) => "issue_claimed",
        Kind::IssueProgress(_) => "issue_progress",
        Kind::IssueResolved(_) => "issue_resolved",
        Kind::IssueReviewed(_) => "issue_reviewed",
        Kind::Correction(_) => "correction",
    }
}

fn page_json(page: &pb::RecordPage) -> serde_json::Value {
    json!({
        "records": page.records.iter().map(|r| {
            let location = r.location.clone().unwrap_or_default();
            json!({
                "record_id": r.record.as_ref().map(|r| r.id.clone()),
                "height": location.height,
                "index": location.index,
                "block_id": location.block_id,
                "time_ms": location.time_ms,
                "canonical_hex": r.record.as_ref().map(|r| hex::encode(&r.canonical)),
            })
        }).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })
}

fn print_page(page: &pb::RecordPage) {
    print_table(
        &["height", "#", "kind", "branch", "record"],
        &page.records.iter().map(record_row).collect::<Vec<_>>(),
    );
    if !page.next_page_token.is_empty() {
        println!("more: --page {}", page.next_page_token);
    }
}

/// Runs a query and prints the answer.
pub async fn run(args: &ApiArgs, query: &Query, json_out: bool) -> Result<()> {
    let api = Api::connect(args).await?;
    let emit = |value: serde_json::Value| -> Result<()> {
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    };
    match query {
        Query::Leaderboard { span } => {
            let rows = api
                .progress()
                .leaderboard(pb::LeaderboardRequest { span: span.span() })
                .await
                .map_err(status_error)?
                .into_inner()
                .rows;
            if json_out {
                return emit(json!(rows
                    .iter()
                    .map(|r| json!({
                        "rank": r.rank, "branch_id": r.branch_id, "branch_name": r.branch_name,
                        "active_members": r.active_members, "minutes": r.minutes,
                        "sessions": r.sessions, "hours_per_member": r.hours_per_member,
                        "target_ratio": r.target_ratio,
                    }))
                    .collect::<Vec<_>>()));
            }
            print_table(
                &[
                    "#",
                    "branch",
                    "members",
                    "hours",
                    "sessions",
                    "h/member",
                    "of target",
                ],
                &rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.rank.to_string(),
                            r.branch_id.clone(),
                            r.active_members.to_string(),
                            format!("{:.1}", r.minutes as f64 / 60.0),
                            r.sessions.to_string(),
                            format!("{:.1}", r.hours_per_member),
                            format!("{:.0}%", r.target_ratio * 100.0),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
        Query::Study {
            member,
            branch,
            per_member,
            span,
        } => {
            use pb::study_hours_request::Subject;
            let subject = match (member, branch) {
                (Some(m), _) => Subject::MemberId(m.clone()),
                (None, Some(b)) => Subject::BranchId(b.clone()),
                (None, None) => anyhow::bail!("give --member or --branch"),
            };
            let answer = api
                .progress()
                .study_hours(pb::StudyHoursRequest {
                    subject: Some(subject),
                    span: span.span(),
                    per_member: *per_member,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(json!({
                    "rows": answer.rows.iter().map(|r| json!({
                        "period": r.period, "member_id": r.member_id, "minutes": r.minutes,
                        "sessions": r.sessions, "hours": r.hours,
                    })).collect::<Vec<_>>(),
                    "total_minutes": answer.total_minutes,
                    "target_minutes": answer.target_minutes,
                }));
            }
            print_table(
                &["month / member", "hours", "sessions"],
                &answer
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            if r.member_id.is_empty() {
                                r.period.clone()
                            } else {
                                r.member_id.clone()
                            },
                            format!("{:.1}", r.hours),
                            r.sessions.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!(
                "total {:.1} h, target {:.1} h",
                answer.total_minutes as f64 / 60.0,
                answer.target_minutes as f64 / 60.0
            );
        }
        Query::Dues {
            branch,
            per_member,
            span,
        } => {
            let rows = api
                .progress()
                .dues(pb::DuesRequest {
                    span: span.span(),
                    branch_id: branch.clone().unwrap_or_default(),
                    per_member: *per_member,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .rows;
            if json_out {
                return emit(json!(rows.iter().map(|r| json!({
                    "branch_id": r.branch_id, "member_id": r.member_id, "period": r.period,
                    "paid_minor": r.paid_minor, "payments": r.payments,
                    "expected_minor": r.expected_minor, "outstanding_minor": r.outstanding_minor,
                })).collect::<Vec<_>>()));
            }
            print_table(
                &[
                    "month",
                    "branch",
                    "member",
                    "paid",
                    "payments",
                    "expected",
                    "outstanding",
                ],
                &rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.period.clone(),
                            r.branch_id.clone(),
                            r.member_id.clone(),
                            money(r.paid_minor),
                            r.payments.to_string(),
                            money(r.expected_minor),
                            money(r.outstanding_minor),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
        Query::Compliance { branch, span } => {
            let answer = api
                .progress()
                .meeting_compliance(pb::MeetingComplianceRequest {
                    span: span.span(),
                    branch_id: branch.clone().unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(json!({
                    "rows": answer.rows.iter().map(|r| json!({
                        "branch_id": r.branch_id, "kind": r.kind, "span": r.span,
                        "required": r.required, "held": r.held, "met": r.met,
                    })).collect::<Vec<_>>(),
                    "compliance_ratio": answer.compliance_ratio,
                }));
            }
            print_table(
                &["branch", "meeting", "span", "held", "required", "met"],
                &answer
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.branch_id.clone(),
                            r.kind.clone(),
                            r.span.clone(),
                            r.held.to_string(),
                            r.required.to_string(),
                            if r.met { "yes" } else { "NO" }.into(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!("compliance {:.0}%", answer.compliance_ratio * 100.0);
        }
        Query::Issues {
            status,
            limit,
            page,
        } => {
            let answer = api
                .progress()
                .issue_board(pb::IssueBoardRequest {
                    status: status.clone().unwrap_or_default(),
                    page_size: *limit,
                    page_token: page.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(json!({
                    "issues": answer.issues.iter().map(|i| json!({
                        "issue_id": i.issue_id, "raised_by": i.raised_by, "scope": i.scope,
                        "title": i.title, "raised_on": i.raised_on, "status": i.status,
                        "claimed_by": i.claimed_by, "claimants": i.claimants,
                        "percent": i.percent, "rating": i.rating,
                    })).collect::<Vec<_>>(),
                    "next_page_token": answer.next_page_token,
                }));
            }
            print_table(
                &[
                    "issue",
                    "status",
                    "raised by",
                    "claimed by",
                    "done",
                    "rating",
                    "title",
                ],
                &answer
                    .issues
                    .iter()
                    .map(|i| {
                        vec![
                            i.issue_id.clone(),
                            i.status.clone(),
                            i.raised_by.clone(),
                            i.claimed_by.clone(),
                            format!("{}%", i.percent),
                            if i.rating == 0 {
                                String::new()
                            } else {
                                i.rating.to_string()
                            },
                            i.title.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            if !answer.next_page_token.is_empty() {
                println!("more: --page {}", answer.next_page_token);
            }
        }
        Query::IssueLeaderboard => {
            let rows = api
                .progress()
                .issue_leaderboard(pb::IssueLeaderboardRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .rows;
            if json_out {
                return emit(json!(rows
                    .iter()
                    .map(|r| json!({
                        "rank": r.rank, "branch_id": r.branch_id, "raised": r.raised,
                        "claimed": r.claimed, "resolved": r.resolved,
                    }))
                    .collect::<Vec<_>>()));
            }
            print_table(
                &["#", "branch", "resolved", "claimed", "raised"],
                &rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.rank.to_string(),
                            r.branch_id.clone(),
                            r.resolved.to_string(),
                            r.claimed.to_string(),
                            r.raised.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
        Query::History {
            member,
            limit,
            page,
        } => {
            let answer = api
                .ledger()
                .member_history(pb::MemberHistoryRequest {
                    member_id: member.clone(),
                    page_size: *limit,
                    page_token: page.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(page_json(&answer));
            }
            print_page(&answer);
        }
        Query::Records {
            branch,
            kind,
            period,
            limit,
            page,
        } => {
            let answer = api
                .ledger()
                .list_records(pb::ListRecordsRequest {
                    branch_id: branch.clone(),
                    kind: kind.clone(),
                    period: period.clone(),
                    page_size: *limit,
                    page_token: page.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(page_json(&answer));
            }
            print_page(&answer);
        }
        Query::Record { id } => {
            let answer = api
                .ledger()
                .get_record(pb::GetRecordRequest {
                    record_id: id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let location = answer.location.clone().unwrap_or_default();
            let value = json!({
                "status": answer.status,
                "record_id": answer.record.as_ref().map(|r| r.id.clone()),
                "height": location.height,
                "index": location.index,
                "block_id": location.block_id,
                "dropped_reason": answer.dropped_reason,
                "corrections": answer.corrections,
                "retracted": answer.retracted,
                "canonical_hex": answer.record.as_ref().map(|r| hex::encode(&r.canonical)),
            });
            if json_out {
                return emit(value);
            }
            println!("status   {}", answer.status);
            if answer.status == "committed" {
                println!(
                    "where    height {} position {} (block {})",
                    location.height,
                    location.index,
                    short(&location.block_id)
                );
            }
            if !answer.dropped_reason.is_empty() {
                println!("dropped  {}", answer.dropped_reason);
            }
            if !answer.corrections.is_empty() {
                println!(
                    "corrected by {}{}",
                    answer.corrections.join(", "),
                    if answer.retracted { " (retracted)" } else { "" }
                );
            }
        }
        Query::Block { height, records } => {
            let mut ledger = api.ledger();
            let mut answer = ledger
                .get_block(pb::GetBlockRequest {
                    at: Some(pb::get_block_request::At::Height(*height)),
                    include_records: *records,
                    records_from: 0,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            // A large block's records come in pages.
            while answer.next_records_from != 0 {
                let page = ledger
                    .get_block(pb::GetBlockRequest {
                        at: Some(pb::get_block_request::At::Height(*height)),
                        include_records: true,
                        records_from: answer.next_records_from,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                answer.records.extend(page.records);
                answer.next_records_from = page.next_records_from;
            }
            let header = answer.header.clone().unwrap_or_default();
            let commit = answer.commit.clone().unwrap_or_default();
            if json_out {
                return emit(json!({
                    "block_id": header.block_id, "height": header.height,
                    "time_ms": header.time_ms, "prev_block_id": header.prev_block_id,
                    "records_root": header.records_root, "record_count": header.record_count,
                    "state_digest": header.state_digest, "proposer_index": header.proposer_index,
                    "commit_round": commit.round, "signatures": commit.signatures.len(),
                    "records": answer.records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
                }));
            }
            println!("block    {} at height {}", header.block_id, header.height);
            println!("time     {} ms", header.time_ms);
            println!("parent   {}", header.prev_block_id);
            println!(
                "records  {} (root {})",
                header.record_count,
                short(&header.records_root)
            );
            println!("state    {}", header.state_digest);
            println!(
                "commit   round {}, {} signatures, proposer {}",
                commit.round,
                commit.signatures.len(),
                header.proposer_index
            );
            for record in &answer.records {
                println!("  {}", record.id);
            }
        }
        Query::Validators => {
            let answer = api
                .audit()
                .validators(pb::ValidatorsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                return emit(json!({
                    "validators": answer.validators.iter().map(|v| json!({
                        "index": v.index, "name": v.name, "branch_id": v.branch_id,
                        "consensus_key": v.consensus_key, "peer_id": v.peer_id,
                    })).collect::<Vec<_>>(),
                    "quorum": answer.quorum,
                    "validator_set_id": answer.validator_set_id,
                }));
            }
            super::print_validators(&answer.validators);
            println!("quorum {}", answer.quorum);
        }
        Query::Evidence => {
            let answer = api
                .audit()
                .evidence(pb::EvidenceRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let rows: Vec<Vec<String>> = answer
                .duplicate_votes
                .iter()
                .map(|d| {
                    let first = d.first.clone().unwrap_or_default();
                    let second = d.second.clone().unwrap_or_default();
                    vec![
                        first.validator_index.to_string(),
                        first.height.to_string(),
                        first.round.to_string(),
                        first.kind.clone(),
                        short(&first.block_id),
                        short(&second.block_id),
                    ]
                })
                .collect();
            if json_out {
                return emit(json!(rows));
            }
            if rows.is_empty() {
                println!("no evidence of misbehaviour");
            } else {
                print_table(
                    &[
                        "validator",
                        "height",
                        "round",
                        "vote",
                        "one block",
                        "other block",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(())
}

/// Minor units as major.minor.
pub fn money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}
