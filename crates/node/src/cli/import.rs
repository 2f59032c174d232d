//! `branchd import FILE.csv`: bulk records from a CSV file, each signed by the node's branch.
//!
//! The header names the columns: `kind` and any of the record fields
//! ([`super::fields::FIELD_NAMES`]); a row fills the columns its kind needs. Rows are
//! submitted in file order, one at a time, so a row may depend on an earlier one (a member's
//! first study session after the member joined). Every row ends up in the summary: accepted
//! (and, unless `--no-wait`, committed), or rejected with the line and the reason. Nothing is
//! lost silently: a full mempool is waited out, and a row admitted but later dropped is
//! reported with the node's reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use branchledger_api::pb;
use tonic::Code;

use super::fields::{self, RecordFields, RecordKindArg};
use super::{status_error, Api, ApiArgs};

/// Most rows one file may hold.
pub const IMPORT_ROWS_MAX: usize = 1_000_000;
/// How long to wait for the admitted rows to commit.
pub const IMPORT_COMMIT_WAIT: Duration = Duration::from_secs(300);
/// Retries of one row while the node is unavailable.
const UNAVAILABLE_RETRIES: u32 = 20;

/// Arguments of `branchd import`.
#[derive(Clone, Debug, clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Do not wait for the accepted rows to commit.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// One rejected row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What became of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Data rows read.
    pub rows: u64,
    /// Rows the node admitted.
    pub accepted: u64,
    /// Of those, rows seen committed (when waiting).
    pub committed: u64,
    /// Rows refused, with reasons.
    pub rejected: Vec<Rejected>,
}

fn row_fields(
    header: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<(RecordKindArg, RecordFields)> {
    let mut kind = None;
    let mut fields = RecordFields::default();
    for (name, value) in header.iter().zip(row.iter()) {
        let value = value.trim();
        if name == "kind" {
            kind = Some(RecordKindArg::parse(value)?);
        } else {
            fields.set(name, value.to_owned())?;
        }
    }
    let kind = kind.context("the `kind` column is empty")?;
    Ok((kind, fields))
}

/// Imports the file, printing a progress bar and the summary.
pub async fn run(args: &ImportArgs) -> Result<Summary> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let header = reader.headers()?.clone();
    if !header.iter().any(|h| h == "kind") {
        bail!("{}: the header has no `kind` column", args.file.display());
    }
    for name in header.iter().filter(|h| *h != "kind") {
        if !fields::FIELD_NAMES.contains(&name) {
            bail!(
                "{}: unknown column {name:?} (known: kind, {})",
                args.file.display(),
                fields::FIELD_NAMES.join(", ")
            );
        }
    }
    let rows: Vec<(u64, Result<csv::StringRecord, csv::Error>)> = reader
        .records()
        .enumerate()
        .map(|(i, r)| (i as u64 + 2, r))
        .take(IMPORT_ROWS_MAX + 1)
        .collect();
    if rows.len() > IMPORT_ROWS_MAX {
        bail!(
            "{}: more than {IMPORT_ROWS_MAX} rows; split the file",
            args.file.display()
        );
    }
    let api = Api::connect(&args.api).await?;
    let mut submit = api.submit();
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} rows [{bar:40}] {per_sec} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut summary = Summary {
        rows: rows.len() as u64,
        ..Summary::default()
    };
    let mut admitted: BTreeMap<String, u64> = BTreeMap::new();
    for (line, row) in rows {
        bar.inc(1);
        let reject = |reason: String| Rejected { line, reason };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                summary
                    .rejected
                    .push(reject(format!("unreadable CSV: {e}")));
                continue;
            }
        };
        let body = match row_fields(&header, &row).and_then(|(kind, f)| fields::body(kind, &f)) {
            Ok(body) => body,
            Err(e) => {
                summary.rejected.push(reject(e.to_string()));
                continue;
            }
        };
        let mut unavailable = 0;
        // Chosen once per row: every retry sends the same record (same id), so a request that
        // got through before its answer was lost is answered ALREADY_EXISTS, never added twice.
        let nonce = rand::random::<u64>().max(1);
        let created_at_ms = crate::devnet::now_ms();
        loop {
            let request = pb::SubmitRecordRequest {
                body: Some(body.clone()),
                nonce,
                wait: None,
                created_at_ms,
            };
            match submit.submit_record(request).await {
                Ok(response) => {
                    admitted.insert(response.into_inner().record_id, line);
                    break;
                }
                // Sent again after a lost answer: the first copy got through.
                Err(status) if status.code() == Code::AlreadyExists && unavailable > 0 => {
                    match status
                        .metadata()
                        .get(crate::api::submit::RECORD_ID_METADATA)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(id) => {
                            admitted.insert(id.to_owned(), line);
                        }
                        None => summary.rejected.push(reject(format!(
                            "{:?}: {}",
                            status.code(),
                            status.message()
                        ))),
                    }
                    break;
                }
                // A full mempool is back-pressure: wait for room, lose nothing.
                Err(status) if status.code() == Code::ResourceExhausted => {
                    bar.set_message("node busy, waiting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status)
                    if status.code() == Code::Unavailable && unavailable < UNAVAILABLE_RETRIES =>
                {
                    unavailable += 1;
                    bar.set_message("node unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    bar.finish_and_clear();
                    return Err(status_error(status))
                        .context("give the operator's token with --token or BRANCHD_TOKEN");
                }
                Err(status) => {
                    summary.rejected.push(reject(format!(
                        "{:?}: {}",
                        status.code(),
                        status.message()
                    )));
                    break;
                }
            }
        }
        bar.set_message("");
    }
    summary.accepted = admitted.len() as u64;
    if !args.no_wait && !admitted.is_empty() {
        bar.set_message("waiting for commits");
        let deadline = Instant::now() + IMPORT_COMMIT_WAIT;
        let mut ledger = api.ledger();
        let mut waiting: Vec<(String, u64)> = admitted.into_iter().collect();
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for (id, line) in waiting {
                let answer = ledger
                    .get_record(pb::GetRecordRequest {
                        record_id: id.clone(),
                    })
                    .await;
                match answer.map(|a| a.into_inner()) {
                    Ok(a) if a.status == "committed" => summary.committed += 1,
                    Ok(a) if a.status == "dropped" => summary.rejected.push(Rejected {
                        line,
                        reason: format!("admitted, then dropped: {}", a.dropped_reason),
                    }),
                    _ => still.push((id, line)),
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        for (id, line) in waiting {
            summary.rejected.push(Rejected {
                line,
                reason: format!("admitted as {id} but not committed within {IMPORT_COMMIT_WAIT:?}; check it with `branchd query record {id}`"),
            });
        }
    }
    bar.finish_and_clear();
    summary.rejected.sort_by_key(|r| r.line);
    Ok(summary)
}

/// Prints the summary; a non-zero exit follows when any row was rejected.
pub fn print(summary: &Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    println!(
        "{} rows: {} accepted, {} committed, {} rejected",
        summary.rows,
        summary.accepted,
        summary.committed,
        summary.rejected.len()
    );
    if !summary.rejected.is_empty() {
        super::print_table(
            &["line", "reason"],
            &summary
                .rejected
                .iter()
                .map(|r| vec![r.line.to_string(), r.reason.clone()])
                .collect::<Vec<_>>(),
        );
    }
    Ok(())
}
