//! Every entry of the chain tables must be one the verified chain accounts for.
//!
//! The replay reads the chain by height, from 1 to the stored tip, so on its own it never
//! looks at what lies elsewhere in the chain tables: a header, certificate, record list or
//! record above the tip (which `committed_block` would return as readily as a verified one),
//! a block-id entry that points at no verified header, a key of the wrong shape, an unknown
//! key in the meta table. Any of these is a forgery or damage, and the audit refuses it,
//! naming the table, the key and the rule.
//!
//! What the verified chain of tip `T` accounts for, table by table:
//!
//! - `headers`, `commits`, `block_records`: the keys `height (u64 BE)` for heights `1..=T`.
//! - `block_ids`: for each height `h` in `1..=T`, the key of the id of the verified header at
//!   `h`, with the value `h (u64 BE)`.
//! - `records`: the keys `height (u64 BE) ‖ index (u32 BE)` with the height in `1..=T` and
//!   the index below the record count of the verified header there.
//! - `meta`: `schema_version` (holding this build's schema version) and `tip` (present
//!   exactly when `T ≥ 1`; the tip itself was checked against the header at its height).
//!
//! The values under accounted keys are the verified chain's: the replay read and checked each
//! of them. Each table is walked once, in key order, alongside the replay, but for `records`,
//! the largest: the replay reads every block's records as the whole range of its height
//! prefix and refuses any entry there that is not one of the block's, so only what lies
//! outside those ranges is read here (`visit_records_outside_blocks`).

use std::sync::atomic::{AtomicBool, Ordering};

use branchledger_storage::tables::{META_SCHEMA_VERSION, META_TIP};
use branchledger_storage::{ChainReader, ChainTable, Column, StorageError, Tip, SCHEMA_VERSION};
use branchledger_types::Height;

use crate::{fail, AuditFailure};

/// The order the chain tables are walked in: the tables keyed by height first, so an extra
/// block is named by its header.
const WALK: [ChainTable; 6] = [
    ChainTable::Headers,
    ChainTable::Commits,
    ChainTable::BlockRecords,
    ChainTable::Records,
    ChainTable::BlockIds,
    ChainTable::Meta,
];

/// Bytes of a height key.
const HEIGHT_KEY_BYTES: usize = 8;
/// Bytes of a record key: height and index.
const RECORD_KEY_BYTES: usize = 12;
/// Bytes of a block id.
const BLOCK_ID_BYTES: usize = 32;

/// An entry the verified chain does not account for: the failure names the table, the key
/// and the rule. It is placed at the height the entry claims if that is above the tip, at the
/// tip otherwise (as a state entry written by no block is).
fn unaccounted(
    table: ChainTable,
    key: &[u8],
    tip: Height,
    claimed: Option<Height>,
    why: impl AsRef<str>,
) -> AuditFailure {
    let height = claimed.filter(|h| *h > tip).unwrap_or(tip);
    fail(
        height,
        None,
        format!(
            "table {} key {}: {}; no entry of the verified chain (tip {tip}) accounts for it",
            table.name(),
            key_text(table, key),
            why.as_ref()
        ),
    )
}

/// A key as the failure shows it: text for the meta table's named keys, hex otherwise.
fn key_text(table: ChainTable, key: &[u8]) -> String {
    if table == ChainTable::Meta {
        format!("\"{}\"", branchledger_state::read::display_key(key))
    } else {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn read_failure(table: ChainTable, tip: Height, error: &StorageError) -> AuditFailure {
    fail(
        tip,
        None,
        format!("stored data: walking table {}: {error}", table.name()),
    )
}

/// The big-endian height in `bytes` (a key or a value: `what`), or why it is none.
fn height_of(bytes: &[u8], what: &str) -> Result<Height, String> {
    let height: [u8; HEIGHT_KEY_BYTES] = bytes.try_into().map_err(|_| {
        format!(
            "a {what} of {} bytes is not a height (u64 BE, {HEIGHT_KEY_BYTES} bytes)",
            bytes.len()
        )
    })?;
    Ok(u64::from_be_bytes(height))
}

/// Why `height` is not one of the verified chain's, if it is not: "height H, …".
fn outside(height: Height, tip: Height) -> Option<String> {
    if height == 0 {
        Some("height 0, which holds no block (the first block is at height 1)".to_owned())
    } else if height > tip {
        Some(format!("height {height}, above the verified tip"))
    } else {
        None
    }
}

/// What one entry of a table is, in words.
fn entry_name(table: ChainTable) -> &'static str {
    match table {
        ChainTable::Headers => "a header",
        ChainTable::Commits => "a commit certificate",
        ChainTable::BlockRecords => "a block's record list",
        ChainTable::Records => "a record",
        ChainTable::BlockIds => "a block id",
        ChainTable::Meta => "a store-wide fact",
    }
}

/// Checks that every entry of the chain tables of `store` is accounted for by the chain of
/// tip `tip`, verified (or being verified) by the replay; returns the entries checked. Stops
/// early, with what it has, once `cancel` is set.
pub(crate) fn account(
    store: &(impl ChainReader + ?Sized),
    tip: Option<&Tip>,
    cancel: &AtomicBool,
) -> Result<u64, AuditFailure> {
    let tip_height = tip.map_or(0, |t| t.height);
    let mut entries = 0u64;
    for table in WALK {
        let mut failure: Option<AuditFailure> = None;
        let check = |key: &[u8], value: &[u8]| -> Result<(), AuditFailure> {
            let refuse = |claimed: Option<Height>, why: String| {
                unaccounted(table, key, tip_height, claimed, why)
            };
            match table {
                ChainTable::Headers | ChainTable::Commits | ChainTable::BlockRecords => {
                    let height = height_of(key, "key").map_err(|why| refuse(None, why))?;
                    if let Some(why) = outside(height, tip_height) {
                        return Err(refuse(
                            Some(height),
                            format!("{} at {why}", entry_name(table)),
                        ));
                    }
                }
                // Only entries outside every verified block's key range come here
                // (`visit_records_outside_blocks`): each is refused, with why.
                ChainTable::Records => {
                    if key.len() != RECORD_KEY_BYTES {
                        return Err(refuse(
                            None,
                            format!(
                                "a key of {} bytes is not a record's place (height u64 BE, \
                                 index u32 BE: {RECORD_KEY_BYTES} bytes)",
                                key.len()
                            ),
                        ));
                    }
                    let height = height_of(&key[..HEIGHT_KEY_BYTES], "key")
                        .map_err(|why| refuse(None, why))?;
                    let why = match outside(height, tip_height) {
                        Some(why) => format!("{} at {why}", entry_name(table)),
                        None => format!("a record at height {height}, outside its block's records"),
                    };
                    return Err(refuse(Some(height), why));
                }
                ChainTable::BlockIds => {
                    if key.len() != BLOCK_ID_BYTES {
                        return Err(refuse(
                            None,
                            format!(
                                "a key of {} bytes is not a block id ({BLOCK_ID_BYTES} bytes)",
                                key.len()
                            ),
                        ));
                    }
                    let height = height_of(value, "value").map_err(|why| refuse(None, why))?;
                    if let Some(why) = outside(height, tip_height) {
                        return Err(refuse(Some(height), format!("it maps to {why}")));
                    }
                    let header = store
                        .header(height)
                        .map_err(|e| read_failure(table, tip_height, &e))?
                        .ok_or_else(|| {
                            refuse(
                                None,
                                format!("it maps to height {height}, which has no header"),
                            )
                        })?;
                    let id = header.block_id();
                    if id.0.as_slice() != key {
                        return Err(refuse(
                            None,
                            format!(
                                "it maps to height {height}, whose verified header has id \
                                 {id}: the entry matches no verified header"
                            ),
                        ));
                    }
                }
                ChainTable::Meta => {
                    let why = if key == META_TIP {
                        tip.is_none()
                            .then(|| "a tip in a store read as empty".to_owned())
                    } else if key == META_SCHEMA_VERSION {
                        let version = branchledger_types::codec::encode(&SCHEMA_VERSION);
                        (value != version.as_slice()).then(|| {
                            format!("it is not this build's schema version {SCHEMA_VERSION}")
                        })
                    } else {
                        Some(
                            "an unknown key (the meta table holds only schema_version and tip)"
                                .to_owned(),
                        )
                    };
                    if let Some(why) = why {
                        return Err(refuse(None, why));
                    }
                }
            }
            Ok(())
        };
        let mut visit = |key: &[u8], value: &[u8]| -> bool {
            if let Err(found) = check(key, value) {
                failure = Some(found);
                return false;
            }
            entries += 1;
            !entries.is_multiple_of(4_096) || !cancel.load(Ordering::Relaxed)
        };
        if table == ChainTable::Records {
            visit_records_outside_blocks(store, tip_height, &mut visit)
        } else {
            store.visit_raw(Column::Chain(table), &mut visit)
        }
        .map_err(|e| read_failure(table, tip_height, &e))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        if cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(entries)
}

/// Calls `visit` with every entry of the records table that lies under no height prefix of
/// the verified chain (`height_key(h)` for `h` in `1..=tip`), until it returns `false`.
///
/// The entries under those prefixes are the replay's: it reads each block's records as one
/// range of its height prefix, one entry more than the header lists, and refuses a block
/// whose range holds another count of entries or an entry under another key than its place
/// (`ChainReader::committed_block`). Walking them again here would read the largest table
/// twice. What lies outside the prefixes, in key order, is:
///
/// - before `height_key(1)`: keys of height 0 and short keys (the empty key, or a proper
///   prefix of `height_key(1)`);
/// - after every key of height `tip`: keys of a height above the tip, and short keys that
///   are proper prefixes of `height_key(tip + 1)`;
/// - between the prefixes of `h - 1` and `h`: the proper prefixes of `height_key(h)` that are
///   not prefixes of `height_key(h - 1)` (any other key of fewer than 8 bytes would sort
///   between two consecutive 8-byte keys). They exist only where a carry changes more than
///   the last byte of the height (`h` a multiple of 256), so at most 7 reads per 256 blocks.
///
/// A height key followed by more bytes sorts under its prefix, so every key of 8 bytes or
/// more is either under a verified prefix or before or after all of them.
fn visit_records_outside_blocks(
    store: &(impl ChainReader + ?Sized),
    tip: Height,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StorageError> {
    const RECORDS: Column = Column::Chain(ChainTable::Records);
    // The first entry: if it sorts before height 1, it is outside every prefix.
    let first_block = 1u64.to_be_bytes();
    if let Some((key, value)) = store.scan_raw(RECORDS, &[], None, 1)?.into_iter().next() {
        if (key.as_slice() < first_block.as_slice() || tip == 0) && !visit(&key, &value) {
            return Ok(());
        }
    }
    if tip == 0 {
        return Ok(());
    }
    // Between blocks: the short keys a carry lets in, heights 256, 512, … up to the tip.
    let mut height: Height = 256;
    while height <= tip {
        let key = height.to_be_bytes();
        let before = (height - 1).to_be_bytes();
        let differs_at = key
            .iter()
            .zip(&before)
            .position(|(a, b)| a != b)
            .unwrap_or(HEIGHT_KEY_BYTES);
        for len in differs_at + 1..HEIGHT_KEY_BYTES {
            if let Some(value) = store.get_raw(RECORDS, &key[..len])? {
                if !visit(&key[..len], &value) {
                    return Ok(());
                }
            }
        }
        height = match height.checked_add(256) {
            Some(next) => next,
            None => break,
        };
    }
    // After the tip's records: whatever sorts after the last place a block could hold.
    let last_place = branchledger_storage::record_key(tip, u32::MAX);
    for (key, value) in store.scan_raw(RECORDS, &[], Some(&last_place), 1)? {
        if !visit(&key, &value) {
            return Ok(());
        }
    }
    Ok(())
}
