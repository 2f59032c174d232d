//! `branchd bench query`: a closed-loop query load against one node's API.
//!
//! Each query kind runs for its share of the time with `--concurrency` clients in flight; the
//! report gives, per kind, queries per second and the latency percentiles. The kinds are the
//! ones a peer branch asks all day: the cross-branch leaderboard, a member's history (one page),
//! a member's study hours, the dues table, and a record by id.

use std::time::{Duration, Instant};

use anyhow::Result;
use branchledger_api::pb;

use super::Latency;
use crate::cli::{status_error, Api, ApiArgs};

/// Arguments of `branchd bench query`.
#[derive(Clone, Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Seconds per query kind.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The member whose history and hours are asked.
    #[arg(long)]
    pub member: String,
    /// A committed record id to read.
    #[arg(long)]
    pub record: String,
    /// First month of the spans asked (YYYY-MM).
    #[arg(long)]
    pub from: String,
    /// Last month of the spans asked (YYYY-MM).
    #[arg(long)]
    pub to: String,
    /// Start only once the node has committed this height (so the load runs while another
    /// load commits blocks); 0: at once.
    #[arg(long, default_value_t = 0)]
    pub after_height: u64,
}

/// One query kind's figures.
#[derive(Debug, serde::Serialize)]
pub struct QueryReport {
    /// The query.
    pub query: &'static str,
    /// Completed per second.
    pub queries_per_second: f64,
    /// Failed calls.
    pub errors: u64,
    /// Latency.
    pub latency: Latency,
}

/// Longest wait for `--after-height`.
const AFTER_HEIGHT_WAIT: Duration = Duration::from_secs(120);

/// The query kinds, in the order they run.
pub const KINDS: &[&str] = &[
    "leaderboard",
    "member_history",
    "study_hours",
    "dues",
    "get_record",
];

async fn one(api: &Api, kind: &str, args: &QueryArgs) -> Result<(), tonic::Status> {
    let span = Some(pb::Span {
        from_period: args.from.clone(),
        to_period: args.to.clone(),
    });
    match kind {
        "leaderboard" => {
            api.progress()
                .leaderboard(pb::LeaderboardRequest { span })
                .await?;
        }
        "member_history" => {
            api.ledger()
                .member_history(pb::MemberHistoryRequest {
                    member_id: args.member.clone(),
                    page_size: 10,
                    page_token: String::new(),
                })
                .await?;
        }
        "study_hours" => {
            api.progress()
                .study_hours(pb::StudyHoursRequest {
                    subject: Some(pb::study_hours_request::Subject::MemberId(
                        args.member.clone(),
                    )),
                    span,
                    per_member: false,
                })
                .await?;
        }
        "dues" => {
            api.progress()
                .dues(pb::DuesRequest {
                    span,
                    branch_id: String::new(),
                    per_member: false,
                })
                .await?;
        }
        _ => {
            api.ledger()
                .get_record(pb::GetRecordRequest {
                    record_id: args.record.clone(),
                })
                .await?;
        }
    }
    Ok(())
}

/// Runs every query kind and prints the report as JSON.
pub async fn run(args: &QueryArgs) -> Result<()> {
    let api = std::sync::Arc::new(Api::connect(&args.api).await?);
    if args.after_height > 0 {
        let deadline = Instant::now() + AFTER_HEIGHT_WAIT;
        loop {
            if api.status().await?.height >= args.after_height {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the node did not reach height {} within {} s",
                    args.after_height,
                    AFTER_HEIGHT_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every kind must work before it is timed.
    for kind in KINDS {
        one(&api, kind, args).await.map_err(status_error)?;
    }
    let mut reports = Vec::new();
    for kind in KINDS {
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let api = api.clone();
            let args = args.clone();
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let at = Instant::now();
                    match one(&api, kind, &args).await {
                        Ok(()) => samples.push(at.elapsed().as_secs_f64()),
                        Err(_) => errors += 1,
                    }
                }
                (samples, errors)
            }));
        }
        let mut samples = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (s, e) = task.await?;
            samples.extend(s);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        reports.push(QueryReport {
            query: kind,
            queries_per_second: samples.len() as f64 / elapsed.max(1e-9),
            errors,
            latency: Latency::of(&mut samples),
        });
    }
    println!("{}", serde_json::to_string(&reports)?);
    Ok(())
}
