//! Every table of the store, declared once, with its key and value layout.
//!
//! A table is a RocksDB column family (a `BTreeMap` in [`crate::MemStore`]). The chain tables
//! below belong to this crate; the derived-state tables are [`branchledger_state::Table`],
//! whose key layouts the state crate documents and builds with `branchledger_state::keys`.
//! Integers in keys are big-endian so that byte order is numeric order; values are borsh
//! (the canonical codec of `branchledger_types`) unless a layout says otherwise.

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_state::Table;
use branchledger_types::limits::{
    BLOCK_RECORDS_MAX, CONSENSUS_MESSAGE_BYTES_MAX, IDENT_LEN_MAX, RECORD_BYTES_MAX,
};
use branchledger_types::{Hash, Height, SignedRecord};

/// The on-disk layout version. Bump it whenever a key or value layout below changes; a store
/// written with another version is refused at open rather than misread.
pub const SCHEMA_VERSION: u32 = 4;

/// The tables that hold the chain itself (as opposed to derived state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainTable {
    /// Store-wide facts, under fixed keys:
    /// - [`META_SCHEMA_VERSION`] → `u32` (borsh): the [`SCHEMA_VERSION`] the store was
    ///   written with.
    /// - [`META_TIP`] → [`Tip`] (borsh): height, block id and state digest of the highest
    ///   committed block. Absent in an empty store.
    Meta,
    /// `height (u64 BE)` → `BlockHeader` (borsh).
    Headers,
    /// `block id (32 bytes)` → `height (u64 BE)`: finds a block by its id.
    BlockIds,
    /// `height (u64 BE)` → `CommitCertificate` (borsh) of the block at that height.
    Commits,
    /// `height (u64 BE)` → `Vec<Hash>` (borsh): the block's record ids in block order.
    BlockRecords,
    /// `height (u64 BE) ‖ index (u32 BE)` → [`StoredRecord`] (borsh): the records in chain
    /// order, so a block's records are one range of keys (a block is read with one scan, not a
    /// lookup per record). A record is found by its id through the derived-state table
    /// `RecordLocations` (id → height and index).
    Records,
}

impl ChainTable {
    /// Every chain table.
    pub const ALL: &'static [ChainTable] = &[
        ChainTable::Meta,
        ChainTable::Headers,
        ChainTable::BlockIds,
        ChainTable::Commits,
        ChainTable::BlockRecords,
        ChainTable::Records,
    ];

    /// The table's name (its column family).
    pub fn name(self) -> &'static str {
        match self {
            ChainTable::Meta => "meta",
            ChainTable::Headers => "headers",
            ChainTable::BlockIds => "block_ids",
            ChainTable::Commits => "commits",
            ChainTable::BlockRecords => "block_records",
            ChainTable::Records => "records",
        }
    }
}

/// Any table of the store: a chain table or a derived-state table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    /// A table of the chain itself.
    Chain(ChainTable),
    /// A derived-state table.
    State(Table),
}

impl Column {
    /// The column family's name.
    pub fn name(self) -> &'static str {
        match self {
            Column::Chain(table) => table.name(),
            Column::State(table) => table.name(),
        }
    }

    /// Every column of the store: the chain tables, then one per state table.
    pub fn all() -> impl Iterator<Item = Column> {
        ChainTable::ALL
            .iter()
            .map(|t| Column::Chain(*t))
            .chain(Table::ALL.iter().map(|t| Column::State(*t)))
    }
}

/// Key in [`ChainTable::Meta`] of the schema version.
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// Key in [`ChainTable::Meta`] of the [`Tip`].
pub const META_TIP: &[u8] = b"tip";

/// The highest committed block, as kept in [`ChainTable::Meta`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tip {
    /// Its height.
    pub height: Height,
    /// Its block id.
    pub block_id: Hash,
    /// The derived-state digest after it (its header's `state_digest`).
    pub state_digest: Hash,
}

/// A record as kept in [`ChainTable::Records`]: where it was committed, and the record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StoredRecord {
    /// Height of the block that holds it.
    pub height: Height,
    /// Its position in that block.
    pub index: u32,
    /// The record, as signed.
    pub record: SignedRecord,
}

/// A [`StoredRecord`]'s encoding written from a borrowed record: the same bytes, without a
/// copy of the record.
#[derive(BorshSerialize)]
pub(crate) struct StoredRecordRef<'a> {
    /// Height of the block that holds it.
    pub height: Height,
    /// Its position in that block.
    pub index: u32,
    /// The record, as signed.
    pub record: &'a SignedRecord,
}

/// Largest stored header: fixed-width fields (under 200 bytes) and a chain id of at most
/// [`IDENT_LEN_MAX`] bytes, with room to spare.
pub const HEADER_BYTES_MAX: usize = 1024;
/// Largest stored commit certificate.
pub const COMMIT_BYTES_MAX: usize = CONSENSUS_MESSAGE_BYTES_MAX;
/// Largest stored list of a block's record ids: a length prefix and 32 bytes per record.
pub const BLOCK_RECORDS_BYTES_MAX: usize = 4 + 32 * BLOCK_RECORDS_MAX;
/// Largest stored record: the signed record and its height and index.
pub const STORED_RECORD_BYTES_MAX: usize = RECORD_BYTES_MAX + 8 + 4;
/// Largest stored [`Tip`] (three fixed-width fields).
pub const TIP_BYTES: usize = 8 + 32 + 32;

const _: () = assert!(4 + IDENT_LEN_MAX + 8 * 3 + 32 * 4 + 4 + 2 < HEADER_BYTES_MAX);

/// The key of a height in the height-keyed tables.
pub fn height_key(height: Height) -> [u8; 8] {
    height.to_be_bytes()
}

/// The key of the record at `index` of the block at `height` in [`ChainTable::Records`].
pub fn record_key(height: Height, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_column_has_its_own_name() {
        let names: BTreeSet<&str> = Column::all().map(Column::name).collect();
        assert_eq!(names.len(), ChainTable::ALL.len() + Table::ALL.len());
        assert_eq!(names.len(), Column::all().count());
    }

    #[test]
    fn a_stored_record_encodes_the_same_from_a_borrowed_record() {
        use branchledger_types::record::{MemberJoined, MemberStatus};
        use branchledger_types::{BranchId, Date, MemberId, Record, RecordBody};
        let record = Record {
            chain_id: "chain".to_owned(),
            branch_id: BranchId("branch-a".to_owned()),
            created_at_ms: 1_700_000_000_000,
            nonce: 3,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId("m-1".to_owned()),
                joined_on: Date {
                    year: 2026,
                    month: 1,
                    day: 5,
                },
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(&branchledger_crypto::Keypair::from_seed([5; 32]));
        let owned = StoredRecord {
            height: 0x0102_0304_0506_0708,
            index: 0x0a0b_0c0d,
            record: record.clone(),
        };
        let borrowed = StoredRecordRef {
            height: owned.height,
            index: owned.index,
            record: &record,
        };
        assert_eq!(
            borsh::to_vec(&borrowed).expect("encode"),
            borsh::to_vec(&owned).expect("encode")
        );
    }

    #[test]
    fn height_keys_sort_numerically() {
        let heights = [0u64, 1, 255, 256, 65_536, u64::MAX];
        let keys: Vec<[u8; 8]> = heights.iter().map(|h| height_key(*h)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn tip_encodes_to_its_fixed_size() {
        let tip = Tip {
            height: u64::MAX,
            block_id: Hash([1; 32]),
            state_digest: Hash([2; 32]),
        };
        assert_eq!(branchledger_types::codec::encode(&tip).len(), TIP_BYTES);
    }
}
