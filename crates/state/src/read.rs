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

/// The effective view of a committed correctable record: the entry its corrections wrote, or
/// the record itself if none did. `None` if no record has this id or its kind is not
/// correctable.
pub fn correctable(
    reader: &(impl StateReader + ?Sized),
    record_id: &Hash,
) -> Result<Option<CorrectableEntry>, ReadError> {
    let Some(location) = record_location(reader, record_id)? else {
        return Ok(None);
    };
    if !crate::is_correctable(location.kind) {
        return Ok(None);
    }
    correctable_at(reader, record_id, &location).map(Some)
}

/// [`correctable`] of the correctable record at `location` (its entry in
/// [`Table::RecordLocations`]). The record read from the chain must be the one located: its id,
/// branch and kind are checked, so a location or record that does not match is an error
/// naming the table, never another record's view.
pub fn correctable_at(
    reader: &(impl StateReader + ?Sized),
    record_id: &Hash,
    location: &RecordLocation,
) -> Result<CorrectableEntry, ReadError> {
    let key = keys::record_id(record_id);
    if let Some(entry) = get(reader, Table::Correctable, &key)? {
        return Ok(entry);
    }
    let inconsistent = |what: String| value_error(Table::RecordLocations, &key, &what);
    let record = reader
        .committed_record(location.height, location.index)?
        .ok_or_else(|| {
            inconsistent(format!(
                "no record at height {} index {}, where the record is located: derived state is \
                 inconsistent",
                location.height, location.index
            ))
        })?;
    let body = &record.record.body;
    if record.record.branch_id != location.branch_id
        || body.kind() != location.kind
        || record.id() != *record_id
    {
        return Err(inconsistent(format!(
            "the record at height {} index {} is another record: derived state is inconsistent",
            location.height, location.index
        )));
    }
    Ok(CorrectableEntry::original(&record.record.branch_id, body))
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
