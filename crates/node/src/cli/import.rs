//! `branchd import FILE.csv`: bulk records from a CSV file, each signed by the node's branch.
//!
//! The header names the columns: `kind` and any of the record fields
//! ([`super::fields::FIELD_NAMES`]); a row fills the columns its kind needs. Rows are
//! submitted in file order, one at a time, so a row may depend on an earlier one (a member's
//! first study session after the member joined). Every row ends up in the summary: accepted
//! (and, unless `--no-wait`, committed), or rejected with the line and the reason. Nothing is
//! lost silently: a full mempool is waited out, and a row admitted but later dropped is
//! reported with the node's reason.
//!
//! A file is imported once, however often it is run: each row's nonce and creation time are
//! written to a journal beside the file (`FILE.journal`, or `--journal PATH`) *before* the row
//! is sent, and a later run of the same rows sends the same records again, which the node
//! answers as already known instead of adding them twice. Rows are recognised by their
//! content (and, for identical rows, by their order among themselves), so rows may be added
//! to or removed from the file between runs, or the columns reordered.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
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
/// Rows journalled between two syncs of the journal to disk. Every row reaches the operating
/// system before it is sent, so a killed import loses nothing; a machine that loses power
/// may lose the last rows' entries, and those rows, if the node had admitted them, are sent
/// again as new records.
const JOURNAL_SYNC_ROWS: usize = 1_000;
/// The first line of a journal.
const JOURNAL_HEADER: &str = "branchledger-import-journal v1";

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
    /// The journal that makes a second run send the same records again [default: FILE.journal].
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
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
    /// Of those, rows an earlier run had sent already: the node knew them.
    pub already: u64,
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

/// What identifies a row across runs: its kind and non-empty fields by column name, and how
/// many identical rows came before it in the file.
fn row_key(
    header: &csv::StringRecord,
    row: &csv::StringRecord,
    seen: &mut HashMap<[u8; 32], u32>,
) -> [u8; 32] {
    let mut cells: Vec<(&str, &str)> = header
        .iter()
        .zip(row.iter())
        .map(|(name, value)| (name, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    cells.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"branchledger/import-row\0");
    for (name, value) in cells {
        for part in [name, value] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    let content = *hasher.finalize().as_bytes();
    let occurrence = seen.entry(content).or_insert(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&content);
    hasher.update(&occurrence.to_le_bytes());
    *occurrence += 1;
    *hasher.finalize().as_bytes()
}

/// The journal of an import: for each row ever sent from the file, the nonce and creation
/// time it was sent with. One line per row, `<row key hex> <nonce> <created_at_ms>`, after a
/// header line; appended to, never rewritten.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
    known: HashMap<[u8; 32], (u64, u64)>,
    unsynced: usize,
}

impl Journal {
    /// Opens the journal at `path`, reading what earlier runs wrote, or creates it.
    fn open(path: &Path) -> Result<Self> {
        let mut known = HashMap::new();
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("reading the journal {}", path.display()))
            }
        };
        if let Some(text) = &existing {
            let mut lines = text.split_inclusive('\n').enumerate();
            match lines.next() {
                Some((_, first)) if first.trim_end() == JOURNAL_HEADER => {}
                // Torn while the first run wrote its header: nothing was sent.
                Some((_, first)) if !first.ends_with('\n') && JOURNAL_HEADER.starts_with(first) => {
                }
                None => {}
                Some(_) => bail!(
                    "{}: not an import journal (its first line is not {JOURNAL_HEADER:?}); give \
                     another path with --journal",
                    path.display()
                ),
            }
            for (index, line) in lines {
                // A last line without its end was being written when a run stopped: the row
                // was not sent yet.
                let Some(line) = line.strip_suffix('\n') else {
                    break;
                };
                let parsed = (|| {
                    let mut parts = line.split(' ');
                    let key: [u8; 32] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
                    let nonce = parts.next()?.parse().ok()?;
                    let created_at_ms = parts.next()?.parse().ok()?;
                    parts
                        .next()
                        .is_none()
                        .then_some((key, (nonce, created_at_ms)))
                })();
                let Some((key, sent)) = parsed else {
                    bail!(
                        "{} line {}: not `<row key hex> <nonce> <created_at_ms>`: {line:?}",
                        path.display(),
                        index + 1
                    );
                };
                known.insert(key, sent);
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| {
                format!(
                    "opening the journal {} (give a writable path with --journal)",
                    path.display()
                )
            })?;
        let text = existing.unwrap_or_default();
        // Cut a torn last line, so the next entry starts a line of its own.
        let whole = text.rfind('\n').map_or(0, |end| end + 1);
        if whole < text.len() {
            file.set_len(whole as u64).with_context(|| {
                format!("cutting a torn line of the journal {}", path.display())
            })?;
        }
        if whole == 0 {
            writeln!(file, "{JOURNAL_HEADER}")
                .with_context(|| format!("writing the journal {}", path.display()))?;
        }
        Ok(Journal {
            path: path.to_owned(),
            file,
            known,
            unsynced: 0,
        })
    }

    /// The nonce and creation time of the row `key`: an earlier run's, or new ones, written
    /// down before the row is sent.
    fn identity(&mut self, key: [u8; 32]) -> Result<(u64, u64, bool)> {
        if let Some(&(nonce, created_at_ms)) = self.known.get(&key) {
            return Ok((nonce, created_at_ms, true));
        }
        let nonce = rand::random::<u64>().max(1);
        let created_at_ms = crate::devnet::now_ms();
        writeln!(self.file, "{} {nonce} {created_at_ms}", hex::encode(key))
            .with_context(|| format!("writing the journal {}", self.path.display()))?;
        self.known.insert(key, (nonce, created_at_ms));
        self.unsynced += 1;
        if self.unsynced >= JOURNAL_SYNC_ROWS {
            self.sync()?;
        }
        Ok((nonce, created_at_ms, false))
    }

    fn sync(&mut self) -> Result<()> {
        self.unsynced = 0;
        self.file
            .sync_data()
            .with_context(|| format!("syncing the journal {}", self.path.display()))
    }
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
    let journal_path = args.journal.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".journal");
        PathBuf::from(name)
    });
    let mut journal = Journal::open(&journal_path)?;
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
    let mut seen = HashMap::new();
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
        // Chosen once per row and journalled before it is sent: every retry, and every later
        // run, sends the same record (same id), so one that got through before its answer was
        // lost, or in an earlier run, is answered ALREADY_EXISTS, never added twice.
        let (nonce, created_at_ms, sent_before) =
            journal.identity(row_key(&header, &row, &mut seen))?;
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
                // Sent again after a lost answer or by an earlier run: the first copy got
                // through.
                Err(status)
                    if status.code() == Code::AlreadyExists && (unavailable > 0 || sent_before) =>
                {
                    match status
                        .metadata()
                        .get(crate::api::submit::RECORD_ID_METADATA)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(id) => {
                            admitted.insert(id.to_owned(), line);
                            if sent_before {
                                summary.already += 1;
                            }
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
    journal.sync()?;
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
    let already = if summary.already > 0 {
        format!(
            " ({} of them already sent by an earlier run)",
            summary.already
        )
    } else {
        String::new()
    };
    println!(
        "{} rows: {} accepted{already}, {} committed, {} rejected",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn a_row_is_known_by_its_content_and_its_place_among_identical_rows() {
        let header = record(&["kind", "member_id", "minutes"]);
        let reordered = record(&["minutes", "kind", "member_id"]);
        let row = record(&["study_session", "m-1", "30"]);
        let mut seen = HashMap::new();
        let first = row_key(&header, &row, &mut seen);
        let second = row_key(&header, &row, &mut seen);
        assert_ne!(first, second, "two identical rows are two rows");
        let other = row_key(&header, &record(&["study_session", "m-1", "31"]), &mut seen);
        assert_ne!(first, other);
        // Another run, columns reordered and padded: the same keys, in the same order.
        let mut seen = HashMap::new();
        let padded = record(&[" 30", "study_session ", "m-1"]);
        assert_eq!(row_key(&reordered, &padded, &mut seen), first);
        assert_eq!(row_key(&reordered, &padded, &mut seen), second);
    }

    #[test]
    fn the_journal_gives_a_row_the_same_identity_in_every_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rows.csv.journal");
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut journal = Journal::open(&path).expect("create");
        let (nonce_a, at_a, before) = journal.identity(a).expect("a");
        assert!(!before);
        journal.sync().expect("sync");
        drop(journal);

        // A run killed while writing b's line: the torn line is not an identity.
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(&hex::encode(b)[..10]);
        std::fs::write(&path, &text).expect("write");
        let mut journal = Journal::open(&path).expect("reopen");
        assert_eq!(journal.identity(a).expect("a"), (nonce_a, at_a, true));
        let (nonce_b, at_b, before) = journal.identity(b).expect("b");
        assert!(!before);
        drop(journal);
        let mut journal = Journal::open(&path).expect("reopen");
        assert_eq!(journal.identity(b).expect("b"), (nonce_b, at_b, true));
        drop(journal);

        // Not a journal: refused by name, never overwritten.
        std::fs::write(&path, "kind,member_id\n").expect("write");
        let error = Journal::open(&path)
            .err()
            .expect("not a journal")
            .to_string();
        assert!(error.contains("not an import journal"), "{error}");
        std::fs::write(&path, format!("{JOURNAL_HEADER}\nzz 1 2\n")).expect("write");
        let error = format!("{:#}", Journal::open(&path).err().expect("bad line"));
        assert!(error.contains("line 2"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{JOURNAL_HEADER}\nzz 1 2\n")
        );
    }
}
