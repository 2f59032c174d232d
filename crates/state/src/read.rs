//! Typed reads over any [`StateReader`]: the node's RocksDB store, [`crate::MemState`], or the
//! executor's overlay. A stored value that does not decode gives a [`ReadError`] naming the
//! table and the key; nothing here panics on bad data.

use borsh::BorshDeserialize;
use branchledger_crypto::Hash;
use branchledger_types::record::MeetingKind;
use branchledger_types::{BranchId, IssueId, MeetingId, MemberId, Period};

use crate::entries::{
    BranchStats, CorrectableEntry, DuesTotals, IssueEntry, MeetingEntry, MeetingTotals,
    MemberEntry, RecordLocation, StudyTotals,
};
use crate::executor::STATE_VALUE_BYTES_MAX;
use crate::{keys, ReadError, StateReader, Table};

/// A key as text for error messages: printable ASCII as is, anything else as `\xNN`.
pub fn display_key(key: &[u8]) -> String {
    let mut text = String::with_capacity(key.len());
    for &byte in key {
        if byte.is_ascii_graphic() && byte != b'\\' {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// A read error about the value under `key` in `table`.
pub fn value_error(table: Table, key: &[u8], what: &str) -> ReadError {
    ReadError(format!(
        "table {} key \"{}\": {what}",
        table.name(),
        display_key(key)
    ))
}

/// Decodes a stored value of `table` (strict borsh, at most [`STATE_VALUE_BYTES_MAX`] bytes).
pub fn decode_value<T: BorshDeserialize>(
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ReadError> {
    branchledger_types::decode(table.name(), bytes, STATE_VALUE_BYTES_MAX)
        .map_err(|e| value_error(table, key, &format!("stored value does not decode: {e}")))
}

/// Reads and decodes the value under `key` in `table`.
pub fn get<T: BorshDeserialize>(
    reader: &(impl StateReader + ?Sized),
    table: Table,
    key: &[u8],
) -> Result<Option<T>, ReadError> {
    match reader.get(table, key)? {
        Some(bytes) => decode_value(table, key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// A member's registry entry.
pub fn member(
    reader: &(impl StateReader + ?Sized),
    member_id: &MemberId,
) -> Result<Option<MemberEntry>, ReadError> {
    get(reader, Table::Members, &keys::id(member_id.as_str()))
}

/// True if the member is active in the branch (from [`Table::BranchMembers`]).
pub fn is_branch_member(
    reader: &(impl StateReader + ?Sized),
    branch_id: &BranchId,
    member_id: &MemberId,
) -> Result<bool, ReadError> {
    let key = keys::branch_member(branch_id.as_str(), member_id.as_str());
    Ok(reader.get(Table::BranchMembers, &key)?.is_some())
}

/// A meeting's entry.
pub fn meeting(
    reader: &(impl StateReader + ?Sized),
    meeting_id: &MeetingId,
) -> Result<Option<MeetingEntry>, ReadError> {
    get(reader, Table::Meetings, &keys::id(meeting_id.as_str()))
}

/// An issue's state.
pub fn issue(
    reader: &(impl StateReader + ?Sized),
    issue_id: &IssueId,
) -> Result<Option<IssueEntry>, ReadError> {
    get(reader, Table::Issues, &keys::id(issue_id.as_str()))
}

/// The effective view of a correctable record.
pub fn correctable(
    reader: &(impl StateReader + ?Sized),
    record_id: &Hash,
) -> Result<Option<CorrectableEntry>, ReadError> {
    get(reader, Table::Correctable, &keys::record_id(record_id))
}

/// Where a committed record is.
pub fn record_location(
    reader: &(impl StateReader + ?Sized),
    record_id: &Hash,
) -> Result<Option<RecordLocation>, ReadError> {
    get(reader, Table::RecordLocations, &keys::record_id(record_id))
}

/// A member's study totals for a month (zero if none).
pub fn study_by_member(
    reader: &(impl StateReader + ?Sized),
    member_id: &MemberId,
    period: Period,
) -> Result<StudyTotals, ReadError> {
    let key = keys::id_period(member_id.as_str(), period);
    Ok(get(reader, Table::StudyByMember, &key)?.unwrap_or_default())
}

/// A branch's study totals for a month (zero if none).
pub fn study_by_branch(
    reader: &(impl StateReader + ?Sized),
    branch_id: &BranchId,
    period: Period,
) -> Result<StudyTotals, ReadError> {
    let key = keys::id_period(branch_id.as_str(), period);
    Ok(get(reader, Table::StudyByBranch, &key)?.unwrap_or_default())
}

/// The dues a member paid for a month (zero if none).
pub fn dues_by_member(
    reader: &(impl StateReader + ?Sized),
    member_id: &MemberId,
    period: Period,
) -> Result<DuesTotals, ReadError> {
    let key = keys::id_period(member_id.as_str(), period);
    Ok(get(reader, Table::DuesByMember, &key)?.unwrap_or_default())
}

/// The dues a branch's members paid for a month (zero if none).
pub fn dues_by_branch(
    reader: &(impl StateReader + ?Sized),
    branch_id: &BranchId,
    period: Period,
) -> Result<DuesTotals, ReadError> {
    let key = keys::id_period(branch_id.as_str(), period);
    Ok(get(reader, Table::DuesByBranch, &key)?.unwrap_or_default())
}

/// A branch's meeting totals for one kind and month (zero if none).
pub fn meetings_by_branch(
    reader: &(impl StateReader + ?Sized),
    branch_id: &BranchId,
    kind: MeetingKind,
    period: Period,
) -> Result<MeetingTotals, ReadError> {
    let key = keys::meetings_by_branch(branch_id.as_str(), kind, period);
    Ok(get(reader, Table::MeetingsByBranch, &key)?.unwrap_or_default())
}

/// A branch's counters (zero if it has no records yet).
pub fn branch_stats(
    reader: &(impl StateReader + ?Sized),
    branch_id: &BranchId,
) -> Result<BranchStats, ReadError> {
    Ok(get(reader, Table::BranchStats, &keys::id(branch_id.as_str()))?.unwrap_or_default())
}

/// Decodes an index value (a record id, 32 bytes) of [`Table::MemberHistory`] or
/// [`Table::RecordsByBranchKindPeriod`].
pub fn decode_record_id(table: Table, key: &[u8], bytes: &[u8]) -> Result<Hash, ReadError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| {
        value_error(
            table,
            key,
            &format!(
                "index value is {} bytes, not a 32-byte record id",
                bytes.len()
            ),
        )
    })?;
    Ok(Hash(array))
}
