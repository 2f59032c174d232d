//! The state rules: how a block's records change derived state.
//!
//! Derived state lives in named [`Table`]s of key → value bytes (borsh). Applying a block
//! reads through a [`StateReader`] (RocksDB in the node, a `BTreeMap` in tests, the simulator
//! and the auditor) and produces a [`StateDelta`]: the ordered set of writes. The storage
//! crate writes the delta in the block's atomic batch; the block's `state_digest` chains the
//! hash of the delta onto the previous digest, so two nodes whose derived state diverges
//! disagree at the first divergent block.
//!
//! This crate is pure: no IO, no clock (the block time is an argument), no randomness, no
//! `HashMap` in anything that is hashed. It never checks signatures (the verifier crate does,
//! batched) and never writes anywhere but into the delta it returns.
//!
//! * [`BlockExecutor`] applies records one by one on an in-memory overlay (the proposer uses
//!   it to filter), and [`apply_block`] applies a whole block, failing on the first bad record
//!   (validators and the auditor use it);
//! * [`Rejection`] names the stateful rule a record breaks;
//! * [`entries`] holds the value types of every table and [`read`] the typed read helpers any
//!   [`StateReader`] can use;
//! * [`MemState`] is the in-memory state of tests, the simulator and the offline auditor.
//!
//! The rules themselves, and the decisions where DESIGN.md §2 is silent, are documented on
//! [`executor`].

pub mod entries;
pub mod executor;
mod mem;
pub mod read;
mod rejection;

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{Domain, Hash, TaggedHasher};
use branchledger_types::{Height, SignedRecord};

/// A table of derived state. Each is a column family in storage. Keys are built by the
/// functions in [`keys`]; values are borsh of the types in this crate. Identifiers never
/// contain a zero byte, so `id ‖ 0x00 ‖ …` keys sort and prefix-scan unambiguously; integers
/// in keys are big-endian so byte order is numeric order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Table {
    /// `member_id` → the member's registry entry (branch, status, active, pending transfer).
    Members = 1,
    /// `branch_id ‖ 0 ‖ member_id` → empty: the members currently active in a branch.
    BranchMembers = 2,
    /// `member_id ‖ 0 ‖ height(u64 BE) ‖ index(u32 BE)` → record id: a member's records in
    /// commit order.
    MemberHistory = 3,
    /// `branch_id ‖ 0 ‖ kind(u8) ‖ year(u16 BE) ‖ month(u8) ‖ height(u64 BE) ‖ index(u32 BE)`
    /// → record id: records by branch, kind and period, in commit order.
    RecordsByBranchKindPeriod = 4,
    /// `member_id ‖ 0 ‖ year(u16 BE) ‖ month(u8)` → study totals of a member for a month.
    StudyByMember = 5,
    /// `branch_id ‖ 0 ‖ year(u16 BE) ‖ month(u8)` → study totals of a branch for a month.
    StudyByBranch = 6,
    /// `member_id ‖ 0 ‖ year(u16 BE) ‖ month(u8)` → dues a member paid for a month.
    DuesByMember = 7,
    /// `branch_id ‖ 0 ‖ year(u16 BE) ‖ month(u8)` → dues a branch's members paid for a month.
    DuesByBranch = 8,
    /// `meeting_id` → the meeting's entry (branch, kind, date).
    Meetings = 9,
    /// `branch_id ‖ 0 ‖ kind(u8) ‖ year(u16 BE) ‖ month(u8)` → meeting totals of a branch.
    MeetingsByBranch = 10,
    /// `issue_id` → the issue's state (open, claimed, progress, resolved, rating).
    Issues = 11,
    /// `record_id` → the effective body of a correctable record and the corrections made to
    /// it, written by its first correction. A correctable record never corrected has no entry:
    /// its view is [`entries::CorrectableEntry::original`] of the record itself
    /// ([`read::correctable`] makes it).
    Correctable = 12,
    /// `branch_id` → branch-wide counters (active members, records, issues resolved).
    BranchStats = 13,
    /// `record_id` (32 bytes) → where a committed record is (height, index) and its branch and
    /// kind. Refuses an identical replay chain-wide and lets a correction find its target.
    RecordLocations = 14,
}

impl Table {
    /// Every state table.
    pub const ALL: &'static [Table] = &[
        Table::Members,
        Table::BranchMembers,
        Table::MemberHistory,
        Table::RecordsByBranchKindPeriod,
        Table::StudyByMember,
        Table::StudyByBranch,
        Table::DuesByMember,
        Table::DuesByBranch,
        Table::Meetings,
        Table::MeetingsByBranch,
        Table::Issues,
        Table::Correctable,
        Table::BranchStats,
        Table::RecordLocations,
    ];

    /// The table's name (its column family).
    pub fn name(self) -> &'static str {
        match self {
            Table::Members => "state_members",
            Table::BranchMembers => "state_branch_members",
            Table::MemberHistory => "index_member_history",
            Table::RecordsByBranchKindPeriod => "index_branch_kind_period",
            Table::StudyByMember => "agg_study_by_member",
            Table::StudyByBranch => "agg_study_by_branch",
            Table::DuesByMember => "agg_dues_by_member",
            Table::DuesByBranch => "agg_dues_by_branch",
            Table::Meetings => "state_meetings",
            Table::MeetingsByBranch => "agg_meetings_by_branch",
            Table::Issues => "state_issues",
            Table::Correctable => "state_correctable",
            Table::BranchStats => "agg_branch_stats",
            Table::RecordLocations => "index_record_location",
        }
    }
}

/// Key layouts of the state tables (see [`Table`]). Storage and queries use these to build
/// keys and prefixes; nothing else may.
pub mod keys {
    use branchledger_crypto::Hash;
    use branchledger_types::record::MeetingKind;
    use branchledger_types::{Period, RecordKind};

    /// `id` alone: the key of [`super::Table::Members`], [`super::Table::Meetings`],
    /// [`super::Table::Issues`] and [`super::Table::BranchStats`].
    pub fn id(id: &str) -> Vec<u8> {
        id.as_bytes().to_vec()
    }

    /// The 32 bytes of a record id: the key of [`super::Table::Correctable`] and
    /// [`super::Table::RecordLocations`].
    pub fn record_id(record_id: &Hash) -> Vec<u8> {
        record_id.0.to_vec()
    }

    /// `branch_id ‖ 0 ‖ member_id` for [`super::Table::BranchMembers`].
    pub fn branch_member(branch_id: &str, member_id: &str) -> Vec<u8> {
        let mut key = id_prefix(branch_id);
        key.extend_from_slice(member_id.as_bytes());
        key
    }

    /// `id ‖ 0`.
    pub fn id_prefix(id: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(id.len() + 16);
        key.extend_from_slice(id.as_bytes());
        key.push(0);
        key
    }

    /// `id ‖ 0 ‖ year ‖ month`.
    pub fn id_period(id: &str, period: Period) -> Vec<u8> {
        let mut key = id_prefix(id);
        key.extend_from_slice(&period.year.to_be_bytes());
        key.push(period.month);
        key
    }

    /// `member_id ‖ 0 ‖ height ‖ index` for [`super::Table::MemberHistory`].
    pub fn member_history(member_id: &str, height: u64, index: u32) -> Vec<u8> {
        let mut key = id_prefix(member_id);
        key.extend_from_slice(&height.to_be_bytes());
        key.extend_from_slice(&index.to_be_bytes());
        key
    }

    /// The kind's byte in keys: its position in [`RecordKind::ALL`].
    pub fn kind_byte(kind: RecordKind) -> u8 {
        RecordKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(u8::MAX, |i| i as u8)
    }

    /// `branch_id ‖ 0 ‖ kind` — prefix of every key of one branch and kind.
    pub fn branch_kind_prefix(branch_id: &str, kind: RecordKind) -> Vec<u8> {
        let mut key = id_prefix(branch_id);
        key.push(kind_byte(kind));
        key
    }

    /// `branch_id ‖ 0 ‖ kind ‖ year ‖ month` — prefix of one branch, kind and period.
    pub fn branch_kind_period_prefix(branch_id: &str, kind: RecordKind, period: Period) -> Vec<u8> {
        let mut key = branch_kind_prefix(branch_id, kind);
        key.extend_from_slice(&period.year.to_be_bytes());
        key.push(period.month);
        key
    }

    /// The meeting kind's byte in keys: its position in [`MeetingKind::ALL`].
    pub fn meeting_kind_byte(kind: MeetingKind) -> u8 {
        MeetingKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(u8::MAX, |i| i as u8)
    }

    /// `branch_id ‖ 0 ‖ meeting kind` — prefix of one branch's totals of one meeting kind.
    pub fn branch_meeting_kind_prefix(branch_id: &str, kind: MeetingKind) -> Vec<u8> {
        let mut key = id_prefix(branch_id);
        key.push(meeting_kind_byte(kind));
        key
    }

    /// `branch_id ‖ 0 ‖ meeting kind ‖ year ‖ month` for [`super::Table::MeetingsByBranch`].
    pub fn meetings_by_branch(branch_id: &str, kind: MeetingKind, period: Period) -> Vec<u8> {
        let mut key = branch_meeting_kind_prefix(branch_id, kind);
        key.extend_from_slice(&period.year.to_be_bytes());
        key.push(period.month);
        key
    }

    /// Full key for [`super::Table::RecordsByBranchKindPeriod`].
    pub fn branch_kind_period(
        branch_id: &str,
        kind: RecordKind,
        period: Period,
        height: u64,
        index: u32,
    ) -> Vec<u8> {
        let mut key = branch_kind_period_prefix(branch_id, kind, period);
        key.extend_from_slice(&height.to_be_bytes());
        key.extend_from_slice(&index.to_be_bytes());
        key
    }
}

pub use executor::{
    apply_block, apply_block_with_ids, is_correctable, may_invalidate_pending, BlockExecutor,
    CORRECTIONS_PER_RECORD_MAX, STATE_VALUE_BYTES_MAX,
};
pub use mem::MemState;
pub use rejection::{ApplyError, BlockError, BlockRejection, Rejection};

/// The buffer between a delta's encoding and its digest's hasher.
const DIGEST_BUFFER_BYTES: usize = 8 * 1024;

/// Reads current derived state (as of the end of the previous block), and the committed
/// records it derives from.
pub trait StateReader {
    /// The value under `key` in `table`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;

    /// The record committed at position `index` of the block at `height`, if there is one.
    /// The rules read one only through its [`entries::RecordLocation`], to make the view of
    /// a correctable record no correction has rewritten (see [`Table::Correctable`]); the
    /// caller checks that it is the record it expects.
    fn committed_record(
        &self,
        height: Height,
        index: u32,
    ) -> Result<Option<SignedRecord>, ReadError>;
}

/// A state read that failed (storage error or corrupt value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct ReadError(pub String);

/// The writes a block makes to derived state, ordered by table and key. `None` deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateDelta {
    /// Table and key → new value (or deletion).
    pub writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl StateDelta {
    /// The digest after this delta: `H(tag ‖ previous ‖ canonical(delta))`.
    ///
    /// The canonical bytes are streamed into the hasher through a small buffer, never built
    /// whole: a block's delta runs to megabytes.
    pub fn chain_digest(&self, previous: &Hash) -> Hash {
        let mut hasher = TaggedHasher::new(Domain::StateDigest);
        hasher.update(&previous.0);
        let mut buffered = std::io::BufWriter::with_capacity(DIGEST_BUFFER_BYTES, hasher);
        borsh::to_writer(&mut buffered, self).expect("a hasher cannot fail");
        buffered
            .into_inner()
            .expect("a hasher cannot fail")
            .finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_digest_is_that_of_the_whole_canonical_delta() {
        let mut delta = StateDelta::default();
        // Larger than the digest's buffer, with values of every size around its edge.
        for i in 0..400u32 {
            let value = (i % 3 != 0).then(|| vec![i as u8; (i as usize * 37) % 300]);
            delta
                .writes
                .insert((Table::Members, i.to_be_bytes().to_vec()), value);
        }
        let previous = Hash([7; 32]);
        let whole = borsh::to_vec(&delta).expect("encode");
        assert!(whole.len() > 2 * DIGEST_BUFFER_BYTES, "{}", whole.len());
        assert_eq!(
            delta.chain_digest(&previous),
            branchledger_crypto::hash_tagged(Domain::StateDigest, &[&previous.0, &whole])
        );
        assert_ne!(
            delta.chain_digest(&previous),
            delta.chain_digest(&Hash::ZERO)
        );
    }
}
