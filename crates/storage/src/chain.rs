//! The reader and writer traits, and the checks every backend shares.
//!
//! A backend implements two primitives — [`ChainReader::get_raw`] and
//! [`ChainReader::scan_raw`] — and [`ChainWriter::commit_block`], which takes its own write
//! lock, prepares the batch with the shared `plan_commit` and writes it atomically. Every
//! typed read is a provided method here, so every backend decodes with the same size limits
//! and checks the same invariants on what it reads back.

use std::borrow::Cow;
use std::collections::BTreeSet;

use borsh::BorshDeserialize;
use branchledger_state::{keys, Table};
use branchledger_types::codec::{decode, encode};
use branchledger_types::{
    merkle, Block, BlockHeader, CommitCertificate, CommittedBlock, Hash, Height, Period, RecordKind,
};

use crate::error::{hex, Result, StorageError};
use crate::tables::{
    height_key, record_key, ChainTable, Column, StoredRecord, StoredRecordRef, Tip,
    BLOCK_RECORDS_BYTES_MAX, COMMIT_BYTES_MAX, HEADER_BYTES_MAX, META_TIP, STORED_RECORD_BYTES_MAX,
    TIP_BYTES,
};
use branchledger_state::entries::RecordLocation;
use branchledger_state::{StateDelta, STATE_VALUE_BYTES_MAX};

/// Most entries one paginated read returns; larger limits are lowered to it.
pub const SCAN_LIMIT_MAX: usize = 10_000;

const META: Column = Column::Chain(ChainTable::Meta);
const HEADERS: Column = Column::Chain(ChainTable::Headers);
const BLOCK_IDS: Column = Column::Chain(ChainTable::BlockIds);
const COMMITS: Column = Column::Chain(ChainTable::Commits);
const BLOCK_RECORDS: Column = Column::Chain(ChainTable::BlockRecords);
const RECORDS: Column = Column::Chain(ChainTable::Records);

/// One page of a paginated read, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The entries of this page.
    pub items: Vec<T>,
    /// The cursor for the next page (the last key of this one) if more entries follow; pass
    /// it as `start_after`.
    pub next_after: Option<Vec<u8>>,
}

/// An entry of a record index ([`Table::MemberHistory`], [`Table::RecordsByBranchKindPeriod`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The index table the entry is from.
    pub table: Table,
    /// The index key (it ends with the height and the index in block).
    pub key: Vec<u8>,
    /// The record id it points to.
    pub record_id: Hash,
    /// The height of the record's block, from the key.
    pub height: Height,
    /// The record's index in its block, from the key.
    pub index: u32,
}

/// Reads the chain and derived state. The node, the API and the auditor code against this
/// trait, so the backend can change.
///
/// Every typed read checks what it reads back and answers [`StorageError::Corrupt`] on a
/// mismatch. Backends implement only the two primitives and must not override the others.
pub trait ChainReader {
    /// Primitive: the stored bytes under `key` in `column`, unchecked.
    fn get_raw(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Primitive: at most `limit` entries of `column` whose key starts with `prefix` and is
    /// greater than `start_after` (if given), in key order, unchecked.
    fn scan_raw(
        &self,
        column: Column,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Calls `visit` with every entry of `column` in key order, unchecked, until it returns
    /// `false`. A backend can walk its entries in place, without a copy of each.
    fn visit_raw(&self, column: Column, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.scan_raw(column, &[], after.as_deref(), SCAN_LIMIT_MAX)?;
            for (key, value) in &page {
                if !visit(key, value) {
                    return Ok(());
                }
            }
            match page.last() {
                Some((key, _)) if page.len() == SCAN_LIMIT_MAX => after = Some(key.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// The highest committed block, or none for an empty store. Checked against its header.
    fn tip(&self) -> Result<Option<Tip>> {
        let Some(bytes) = self.get_raw(META, META_TIP)? else {
            return Ok(None);
        };
        let tip: Tip = decode_value(META, META_TIP, &bytes, TIP_BYTES)?;
        let header = self.header(tip.height)?.ok_or_else(|| {
            corrupt(
                META,
                META_TIP,
                format!("tip height {} has no header", tip.height),
            )
        })?;
        if header.block_id() != tip.block_id {
            return Err(corrupt(
                META,
                META_TIP,
                format!(
                    "tip id {} is not the id of the header at its height",
                    tip.block_id
                ),
            ));
        }
        if header.state_digest != tip.state_digest {
            return Err(corrupt(
                META,
                META_TIP,
                "tip state digest differs from its header's".to_owned(),
            ));
        }
        Ok(Some(tip))
    }

    /// The height of the block with id `block_id`, if stored.
    fn height_of(&self, block_id: &Hash) -> Result<Option<Height>> {
        let Some(bytes) = self.get_raw(BLOCK_IDS, &block_id.0)? else {
            return Ok(None);
        };
        let height: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            corrupt(
                BLOCK_IDS,
                &block_id.0,
                format!("height is {} bytes, not 8", bytes.len()),
            )
        })?;
        Ok(Some(u64::from_be_bytes(height)))
    }

    /// The header at `height`. Checked: its height is the key's, and the `block_ids` index
    /// maps its recomputed id to this height.
    fn header(&self, height: Height) -> Result<Option<BlockHeader>> {
        let key = height_key(height);
        let Some(bytes) = self.get_raw(HEADERS, &key)? else {
            return Ok(None);
        };
        let header: BlockHeader = decode_value(HEADERS, &key, &bytes, HEADER_BYTES_MAX)?;
        if header.height != height {
            return Err(corrupt(
                HEADERS,
                &key,
                format!("header says height {}", header.height),
            ));
        }
        let id = header.block_id();
        match self.height_of(&id)? {
            Some(indexed) if indexed == height => Ok(Some(header)),
            Some(indexed) => Err(corrupt(
                HEADERS,
                &key,
                format!("block_ids maps the header's id {id} to height {indexed}"),
            )),
            None => Err(corrupt(
                HEADERS,
                &key,
                format!("the header's id {id} is not in block_ids"),
            )),
        }
    }

    /// The header of the block with id `block_id`. Checked as [`Self::header`], and its
    /// recomputed id is the one asked for.
    fn header_by_id(&self, block_id: &Hash) -> Result<Option<BlockHeader>> {
        let Some(height) = self.height_of(block_id)? else {
            return Ok(None);
        };
        let header = self.header(height)?.ok_or_else(|| {
            corrupt(
                BLOCK_IDS,
                &block_id.0,
                format!("points to height {height}, which has no header"),
            )
        })?;
        if header.block_id() != *block_id {
            return Err(corrupt(
                BLOCK_IDS,
                &block_id.0,
                format!("points to height {height}, whose header has another id"),
            ));
        }
        Ok(Some(header))
    }

    /// The commit certificate of the block at `height`. Checked: its height and block id are
    /// the stored header's.
    fn commit(&self, height: Height) -> Result<Option<CommitCertificate>> {
        let key = height_key(height);
        if self.get_raw(COMMITS, &key)?.is_none() {
            return Ok(None);
        }
        let header = self
            .header(height)?
            .ok_or_else(|| corrupt(COMMITS, &key, "no header at this height".to_owned()))?;
        commit_for(self, &header).map(Some)
    }

    /// The record ids of the block at `height`, in block order. Checked: their count and
    /// Merkle root are the stored header's.
    fn record_ids(&self, height: Height) -> Result<Option<Vec<Hash>>> {
        let Some(header) = self.header(height)? else {
            return Ok(None);
        };
        record_ids_for(self, &header).map(Some)
    }

    /// The block at `height`: header and records, each checked.
    fn block(&self, height: Height) -> Result<Option<Block>> {
        let Some(header) = self.header(height)? else {
            return Ok(None);
        };
        block_for(self, header).map(Some)
    }

    /// The block with id `block_id`.
    fn block_by_id(&self, block_id: &Hash) -> Result<Option<Block>> {
        let Some(header) = self.header_by_id(block_id)? else {
            return Ok(None);
        };
        block_for(self, header).map(Some)
    }

    /// The block at `height` with its commit certificate, each part checked.
    fn committed_block(&self, height: Height) -> Result<Option<CommittedBlock>> {
        let Some(header) = self.header(height)? else {
            return Ok(None);
        };
        let commit = commit_for(self, &header)?;
        let block = block_for(self, header)?;
        Ok(Some(CommittedBlock { block, commit }))
    }

    /// The record with id `record_id`, with the height and index it was committed at (found
    /// through `RecordLocations`). Checked: its recomputed id is the one asked for, and it is
    /// stored where the location says.
    fn record(&self, record_id: &Hash) -> Result<Option<StoredRecord>> {
        let locations = Column::State(Table::RecordLocations);
        let location_key = keys::record_id(record_id);
        let Some(bytes) = self.get_raw(locations, &location_key)? else {
            return Ok(None);
        };
        let location: RecordLocation =
            decode_value(locations, &location_key, &bytes, STATE_VALUE_BYTES_MAX)?;
        let key = record_key(location.height, location.index);
        let stored = self
            .record_at(location.height, location.index)?
            .ok_or_else(|| {
                corrupt(
                    RECORDS,
                    &key,
                    format!("no record where record {record_id} is located"),
                )
            })?;
        let actual = stored.record.id();
        if actual != *record_id {
            return Err(corrupt(
                RECORDS,
                &key,
                format!("record {record_id} is located here, the stored record's id is {actual}"),
            ));
        }
        Ok(Some(stored))
    }

    /// The record an index entry points at, read at the position its key holds (one point
    /// read, not a lookup of the id first) and checked to be the record the entry names.
    fn indexed_record(&self, entry: &IndexEntry) -> Result<StoredRecord> {
        let column = Column::State(entry.table);
        let stored = self.record_at(entry.height, entry.index)?.ok_or_else(|| {
            corrupt(
                column,
                &entry.key,
                format!(
                    "no record at height {} index {}, where the entry points",
                    entry.height, entry.index
                ),
            )
        })?;
        let actual = stored.record.id();
        if actual != entry.record_id {
            return Err(corrupt(
                column,
                &entry.key,
                format!(
                    "the entry names record {}, the record at height {} index {} is {actual}",
                    entry.record_id, entry.height, entry.index
                ),
            ));
        }
        Ok(stored)
    }

    /// The record at position `index` of the block at `height`, if any. Checked: it is stored
    /// under the key of the height and index it holds.
    fn record_at(&self, height: Height, index: u32) -> Result<Option<StoredRecord>> {
        let key = record_key(height, index);
        let Some(bytes) = self.get_raw(RECORDS, &key)? else {
            return Ok(None);
        };
        let stored: StoredRecord = decode_value(RECORDS, &key, &bytes, STORED_RECORD_BYTES_MAX)?;
        check_position(&stored, &key)?;
        Ok(Some(stored))
    }

    /// A member's records in commit order: a page of [`Table::MemberHistory`] under
    /// `keys::id_prefix(member_id)`, after the cursor `start_after`, at most `limit`
    /// (lowered to [`SCAN_LIMIT_MAX`], raised to 1).
    fn member_history(
        &self,
        member_id: &str,
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<IndexEntry>> {
        index_page(
            self,
            Table::MemberHistory,
            &keys::id_prefix(member_id),
            start_after,
            limit,
        )
    }

    /// A branch's records of one kind in one period, in commit order: a page of
    /// [`Table::RecordsByBranchKindPeriod`], as [`Self::member_history`].
    fn records_by_branch_kind_period(
        &self,
        branch_id: &str,
        kind: RecordKind,
        period: Period,
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<IndexEntry>> {
        index_page(
            self,
            Table::RecordsByBranchKindPeriod,
            &keys::branch_kind_period_prefix(branch_id, kind, period),
            start_after,
            limit,
        )
    }

    /// A page of the entries of a state table whose key starts with `prefix`, after the
    /// cursor `start_after`, at most `limit` (lowered to [`SCAN_LIMIT_MAX`], raised to 1).
    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(Vec<u8>, Vec<u8>)>> {
        let limit = limit.clamp(1, SCAN_LIMIT_MAX);
        let mut items = self.scan_raw(Column::State(table), prefix, start_after, limit + 1)?;
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// The value under `key` in a state table.
    fn state_value(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_raw(Column::State(table), key)
    }
}

/// Writes committed blocks.
pub trait ChainWriter: ChainReader {
    /// Stores `block` (verified by the caller: storage checks no signature, quorum or state
    /// rule) and the derived-state writes of `delta`, and makes it the tip, all in one atomic
    /// write that is synced to disk before this returns.
    ///
    /// Refuses a block whose height is not tip + 1, whose `prev_block_id` is not the tip's id,
    /// whose commit certificate is for another height or block, whose records do not match
    /// its header's count and Merkle root, or that holds a record already stored.
    fn commit_block(&self, block: &CommittedBlock, delta: &StateDelta) -> Result<Tip> {
        let ids: Vec<Hash> = block.block.records.iter().map(|r| r.id()).collect();
        self.commit_block_with_ids(block, delta, &ids)
    }

    /// [`ChainWriter::commit_block`] for a caller that has the block's record ids already
    /// (it computed them when it checked the block): `ids` must be those of the block's
    /// records, in order. They are checked against the header's count and Merkle root, not
    /// hashed again from the records.
    fn commit_block_with_ids(
        &self,
        block: &CommittedBlock,
        delta: &StateDelta,
        ids: &[Hash],
    ) -> Result<Tip>;
}

/// One write of a batch: a put (`Some`) or a delete (`None`). The state delta's keys and
/// values are borrowed, not copied: the batch copies them once more anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Op<'a> {
    pub(crate) column: Column,
    pub(crate) key: Cow<'a, [u8]>,
    pub(crate) value: Option<Cow<'a, [u8]>>,
}

/// Checks `block` against the tip read through `reader` and returns every write that
/// committing it makes, and the new tip. The caller holds its write lock from before this
/// call until the batch is written, so the tip cannot move in between.
pub(crate) fn plan_commit<'a, R: ChainReader + ?Sized>(
    reader: &R,
    committed: &CommittedBlock,
    delta: &'a StateDelta,
    ids: &[Hash],
) -> Result<(Vec<Op<'a>>, Tip)> {
    let header = &committed.block.header;
    let records = &committed.block.records;
    let commit = &committed.commit;
    let height = header.height;

    let tip = reader.tip()?;
    let expected_height = match tip {
        Some(tip) => tip
            .height
            .checked_add(1)
            .ok_or(StorageError::NotNextHeight {
                expected: tip.height,
                got: height,
            })?,
        None => 1,
    };
    if height != expected_height {
        return Err(StorageError::NotNextHeight {
            expected: expected_height,
            got: height,
        });
    }
    let expected_prev = tip.map_or(Hash::ZERO, |tip| tip.block_id);
    if header.prev_block_id != expected_prev {
        return Err(StorageError::PrevBlockMismatch {
            height,
            expected: expected_prev,
            got: header.prev_block_id,
        });
    }
    let block_id = header.block_id();
    if commit.height != height {
        return Err(StorageError::CommitMismatch {
            height,
            reason: format!("certificate is for height {}", commit.height),
        });
    }
    if commit.block_id != block_id {
        return Err(StorageError::CommitMismatch {
            height,
            reason: format!(
                "certificate is for block {}, the block is {block_id}",
                commit.block_id
            ),
        });
    }
    if usize::try_from(header.record_count).ok() != Some(records.len())
        || ids.len() != records.len()
    {
        return Err(StorageError::RecordsMismatch {
            height,
            reason: format!(
                "header counts {} records, the block has {}",
                header.record_count,
                records.len()
            ),
        });
    }
    if merkle::root(ids) != header.records_root {
        return Err(StorageError::RecordsMismatch {
            height,
            reason: "Merkle root of the record ids is not the header's records_root".to_owned(),
        });
    }
    // A record stored twice would move its height and index and break every index that
    // points at the first copy.
    let mut seen = BTreeSet::new();
    let locations = Column::State(Table::RecordLocations);
    for id in ids {
        if !seen.insert(*id) || reader.get_raw(locations, &keys::record_id(id))?.is_some() {
            return Err(StorageError::DuplicateRecord { height, id: *id });
        }
    }

    // Records are found by id through the state's `RecordLocations`: the delta must say where
    // each of this block's records is.
    for (index, id) in ids.iter().enumerate() {
        let located = delta
            .writes
            .get(&(Table::RecordLocations, keys::record_id(id)))
            .and_then(Option::as_ref)
            .and_then(|bytes| RecordLocation::try_from_slice(bytes).ok())
            .is_some_and(|l| l.height == height && usize::try_from(l.index).ok() == Some(index));
        if !located {
            return Err(StorageError::RecordsMismatch {
                height,
                reason: format!("the state delta does not locate record {id} at index {index}"),
            });
        }
    }
    let key = height_key(height).to_vec();
    let mut ops = Vec::with_capacity(5 + records.len() + delta.writes.len());
    ops.push(put(HEADERS, key.clone(), encode(header), HEADER_BYTES_MAX)?);
    ops.push(put(BLOCK_IDS, block_id.0.to_vec(), key.clone(), 8)?);
    ops.push(put(COMMITS, key.clone(), encode(commit), COMMIT_BYTES_MAX)?);
    ops.push(put(
        BLOCK_RECORDS,
        key,
        encode(&ids),
        BLOCK_RECORDS_BYTES_MAX,
    )?);
    for (index, record) in records.iter().enumerate() {
        let stored = StoredRecordRef {
            height,
            index: u32::try_from(index).map_err(|_| StorageError::RecordsMismatch {
                height,
                reason: "more than u32::MAX records".to_owned(),
            })?,
            record,
        };
        ops.push(put(
            RECORDS,
            record_key(height, stored.index).to_vec(),
            encode(&stored),
            STORED_RECORD_BYTES_MAX,
        )?);
    }
    for ((table, key), value) in &delta.writes {
        ops.push(Op {
            column: Column::State(*table),
            key: Cow::Borrowed(key),
            value: value.as_deref().map(Cow::Borrowed),
        });
    }
    let new_tip = Tip {
        height,
        block_id,
        state_digest: header.state_digest,
    };
    ops.push(put(META, META_TIP.to_vec(), encode(&new_tip), TIP_BYTES)?);
    Ok((ops, new_tip))
}

/// A put, refusing a value that could not be read back under the table's size limit.
fn put(column: Column, key: Vec<u8>, value: Vec<u8>, limit: usize) -> Result<Op<'static>> {
    if value.len() > limit {
        return Err(StorageError::ValueTooLarge {
            table: column.name(),
            actual: value.len(),
            limit,
        });
    }
    Ok(Op {
        column,
        key: Cow::Owned(key),
        value: Some(Cow::Owned(value)),
    })
}

fn corrupt(column: Column, key: &[u8], reason: String) -> StorageError {
    StorageError::Corrupt {
        table: column.name(),
        key: hex(key),
        reason,
    }
}

fn decode_value<T: BorshDeserialize>(
    column: Column,
    key: &[u8],
    bytes: &[u8],
    limit: usize,
) -> Result<T> {
    decode(column.name(), bytes, limit).map_err(|e| corrupt(column, key, e.to_string()))
}

fn commit_for<R: ChainReader + ?Sized>(
    reader: &R,
    header: &BlockHeader,
) -> Result<CommitCertificate> {
    let key = height_key(header.height);
    let bytes = reader.get_raw(COMMITS, &key)?.ok_or_else(|| {
        corrupt(
            COMMITS,
            &key,
            "the block has no commit certificate".to_owned(),
        )
    })?;
    let commit: CommitCertificate = decode_value(COMMITS, &key, &bytes, COMMIT_BYTES_MAX)?;
    if commit.height != header.height {
        return Err(corrupt(
            COMMITS,
            &key,
            format!("certificate is for height {}", commit.height),
        ));
    }
    if commit.block_id != header.block_id() {
        return Err(corrupt(
            COMMITS,
            &key,
            format!(
                "certificate is for block {}, not the header's",
                commit.block_id
            ),
        ));
    }
    Ok(commit)
}

fn record_ids_for<R: ChainReader + ?Sized>(reader: &R, header: &BlockHeader) -> Result<Vec<Hash>> {
    let key = height_key(header.height);
    let bytes = reader.get_raw(BLOCK_RECORDS, &key)?.ok_or_else(|| {
        corrupt(
            BLOCK_RECORDS,
            &key,
            "the block has no record list".to_owned(),
        )
    })?;
    let ids: Vec<Hash> = decode_value(BLOCK_RECORDS, &key, &bytes, BLOCK_RECORDS_BYTES_MAX)?;
    if usize::try_from(header.record_count).ok() != Some(ids.len()) {
        return Err(corrupt(
            BLOCK_RECORDS,
            &key,
            format!(
                "{} record ids, the header counts {}",
                ids.len(),
                header.record_count
            ),
        ));
    }
    if merkle::root(&ids) != header.records_root {
        return Err(corrupt(
            BLOCK_RECORDS,
            &key,
            "Merkle root of the record ids is not the header's records_root".to_owned(),
        ));
    }
    Ok(ids)
}

/// The state rules' [`branchledger_state::StateReader`] for a store: state values, and the
/// records at their positions of the chain, storage errors given as read errors.
macro_rules! impl_state_reader {
    ($store:ty) => {
        impl branchledger_state::StateReader for $store {
            fn get(
                &self,
                table: branchledger_state::Table,
                key: &[u8],
            ) -> std::result::Result<Option<Vec<u8>>, branchledger_state::ReadError> {
                crate::chain::ChainReader::state_value(self, table, key)
                    .map_err(|e| branchledger_state::ReadError(e.to_string()))
            }

            fn committed_record(
                &self,
                height: branchledger_types::Height,
                index: u32,
            ) -> std::result::Result<
                Option<branchledger_types::SignedRecord>,
                branchledger_state::ReadError,
            > {
                crate::chain::ChainReader::record_at(self, height, index)
                    .map(|stored| stored.map(|stored| stored.record))
                    .map_err(|e| branchledger_state::ReadError(e.to_string()))
            }
        }
    };
}
pub(crate) use impl_state_reader;

/// A stored record must sit under the key of its own height and index.
fn check_position(stored: &StoredRecord, key: &[u8]) -> Result<()> {
    if record_key(stored.height, stored.index) != key {
        return Err(corrupt(
            RECORDS,
            key,
            format!(
                "the record says height {} index {}, it is stored elsewhere",
                stored.height, stored.index
            ),
        ));
    }
    Ok(())
}

fn block_for<R: ChainReader + ?Sized>(reader: &R, header: BlockHeader) -> Result<Block> {
    let key = height_key(header.height);
    let ids = record_ids_for(reader, &header)?;
    // One range of keys: the block's records in order (one more is read to find extras).
    let stored = reader.scan_raw(RECORDS, &key, None, ids.len() + 1)?;
    if stored.len() != ids.len() {
        return Err(corrupt(
            RECORDS,
            &key,
            format!(
                "{} records stored at this height, the block lists {}",
                stored.len(),
                ids.len()
            ),
        ));
    }
    let mut records = Vec::with_capacity(ids.len());
    for (index, ((stored_key, bytes), id)) in stored.into_iter().zip(&ids).enumerate() {
        let record: StoredRecord =
            decode_value(RECORDS, &stored_key, &bytes, STORED_RECORD_BYTES_MAX)?;
        check_position(&record, &stored_key)?;
        if usize::try_from(record.index).ok() != Some(index) || record.record.id() != *id {
            return Err(corrupt(
                RECORDS,
                &stored_key,
                format!("position {index} holds another record than the block lists ({id})"),
            ));
        }
        records.push(record.record);
    }
    Ok(Block { header, records })
}

/// An index key's last bytes: the record's height (u64) and index in block (u32), big-endian.
const INDEX_POSITION_BYTES: usize = 12;

fn index_page<R: ChainReader + ?Sized>(
    reader: &R,
    table: Table,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: usize,
) -> Result<Page<IndexEntry>> {
    let column = Column::State(table);
    let page = reader.scan_prefix(table, prefix, start_after, limit)?;
    let items = page
        .items
        .into_iter()
        .map(|(key, value)| {
            let record_id: Hash = decode_value(column, &key, &value, 32)?;
            let (height, index) = key
                .len()
                .checked_sub(INDEX_POSITION_BYTES)
                .filter(|at| *at >= prefix.len())
                .map(|at| {
                    let (height, index) = key[at..].split_at(8);
                    (
                        u64::from_be_bytes(height.try_into().expect("8 bytes")),
                        u32::from_be_bytes(index.try_into().expect("4 bytes")),
                    )
                })
                .ok_or_else(|| {
                    corrupt(
                        column,
                        &key,
                        "an index key ends with its record's height and index (12 bytes)"
                            .to_owned(),
                    )
                })?;
            Ok(IndexEntry {
                table,
                key,
                record_id,
                height,
                index,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        next_after: page.next_after,
    })
}
