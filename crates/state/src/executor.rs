//! Applying records to derived state: the stateful rules of DESIGN.md §2.
//!
//! A [`BlockExecutor`] applies a block's records in order on an in-memory overlay over a
//! [`StateReader`]. Reads see the earlier records of the same block; a rejected record leaves
//! the overlay as it was. [`BlockExecutor::finish`] turns the overlay into the block's
//! [`StateDelta`] and chains its digest.
//!
//! # Rules, in the order they are checked
//!
//! Every record: the block holds at most `max_block_records` records; the stateless rules
//! pass ([`Rejection::Stateless`]); `chain_id` is this chain's; the signing branch is in
//! genesis; `created_at_ms` is at most the block time plus `max_clock_drift_ms`; the record's
//! own date (`joined_on`, `occurred_on`, `held_on`, `raised_on`) is not after the block's UTC
//! date; the same record (same id) is not already committed; every co-signature is by the
//! member key of an active member the record concerns ([`Rejection::CoSignerNotConcerned`]):
//! a member the record's history is indexed under (see *Indices* below; for a correction,
//! those of its replacement only, and a retraction concerns no one), whose key was
//! registered by their `MemberJoined` (where [`RecordBody::validate`] refuses weak keys). A
//! `MemberJoined` may be co-signed by the key it registers. The co-signature itself is
//! checked by the verifier; that the co-signer is a strong key, by
//! [`SignedRecord::validate`].
//!
//! * `MemberJoined`: the member id is unused chain-wide; the member joins the signing branch.
//! * `MemberTransferred`: the member is active in the signing branch; `to_branch` is in
//!   genesis and is not the signing branch; no transfer of the member is pending. The member
//!   stays in the old branch (and may study, pay and attend there) until the receiving branch
//!   accepts.
//! * `MemberAccepted`: a transfer of the member from `from_branch` to the signing branch is
//!   pending; the member then moves.
//! * `MemberLeft`: the member is active in the signing branch. Leaving cancels a pending
//!   transfer; a member who left never becomes active again (their id stays taken).
//! * `StudySession`, `DuesPaid`: the member is active in the signing branch. Totals are kept
//!   per member and per signing branch for the month of `occurred_on` / the dues period.
//! * `MeetingHeld`: the meeting id is unused; every non-guest attendee and every absentee is
//!   active in the signing branch; every guest is an active mobile member of another branch.
//!   Totals per branch, meeting kind and month of `held_on`.
//! * `IssueRaised`: the issue id is unused; a member the issue concerns is registered.
//! * `IssueClaimed`: the issue is open. The signing branch becomes the claiming branch; each
//!   claimant is an active member of it, or an active mobile member of another branch (the
//!   same people who may attend its meetings as guests). Any branch may claim any open issue:
//!   the issue pool is shared, which is what the cross-branch issue leaderboard compares.
//! * `IssueProgress`: the issue is claimed, by the signing branch; the percent does not
//!   decrease (an equal percent with a new note is allowed).
//! * `IssueResolved`: the issue is claimed, by the signing branch; its percent becomes 100.
//! * `IssueReviewed`: the issue is resolved (a second review is refused); a member reviewer
//!   is registered. Any branch may sign the review: the public's ratings are collected by
//!   whichever branch receives them.
//! * `Correction`: the target is a committed record signed by the same branch, of a
//!   correctable kind, not retracted, corrected fewer than [`CORRECTIONS_PER_RECORD_MAX`]
//!   times; a replacement has the target's kind and keeps a meeting's id; its own date is not
//!   in the future; a member, attendee or absentee it adds passes the rule a new record would
//!   (those already in the corrected body are not checked again, so a figure can be fixed
//!   after its member moved or left). The original stays; the aggregates move from the old
//!   effective body to the new one, or lose the old one on retraction.
//!
//! Only `StudySession`, `DuesPaid` and `MeetingHeld` are correctable: they are facts that
//! only add to totals. Member-registry and issue records form state machines in which a
//! later record of the machine is the correction (a member who left by mistake rejoins
//! under a new id; an issue resolved too early is raised again), and rewriting an earlier
//! step would invalidate every later one.
//!
//! # Indices
//!
//! Every applied record is written to [`Table::RecordLocations`], to
//! [`Table::RecordsByBranchKindPeriod`] under the signing branch, its kind and its period
//! (the month of its own date, the dues period, else the month of the block time), counted in
//! the signing branch's [`Table::BranchStats`], and written to [`Table::MemberHistory`] of
//! every member it concerns: the member of a registry, study or dues record; the attendees
//! and absentees of a meeting; the member an issue concerns; the claimants; a member
//! reviewer; for a correction, the members of the old and of the new body. The index of
//! records by period lists records as committed; the corrected view is in the aggregates and,
//! for a record a correction targeted, in [`Table::Correctable`]. A correctable record never
//! corrected has no entry there: its view is the record itself, read from the chain through
//! [`StateReader::committed_record`] (one write fewer per record, and the largest).

use std::collections::{BTreeSet, HashMap};

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{Hash, PublicKey};
use branchledger_types::limits::RECORD_BYTES_MAX;
use branchledger_types::record::{
    Absentee, Attendee, Correction, IssueClaimed, IssueProgress, IssueRaised, IssueResolved,
    IssueReviewed, IssueScope, MeetingHeld, MemberAccepted, MemberJoined, MemberLeft,
    MemberTransferred, RecordBody, Reviewer,
};
use branchledger_types::{
    encode, BranchId, Date, Genesis, Height, MemberId, Period, RecordKind, SignedRecord,
};

use crate::entries::{
    BranchStats, DuesTotals, IssueEntry, IssueStatus, MeetingEntry, MeetingTotals, MemberEntry,
    RecordLocation, StudyTotals,
};
use crate::read::{self, decode_value, value_error};
use crate::{keys, ApplyError, BlockError, BlockRejection, ReadError, Rejection};
use crate::{StateDelta, StateReader, Table};

/// Largest stored state value, in bytes. The largest is a
/// [`CorrectableEntry`](crate::entries::CorrectableEntry) of a meeting
/// at its limits: a record body plus the list of corrections.
pub const STATE_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most corrections one record may receive, so a correctable entry stays bounded.
pub const CORRECTIONS_PER_RECORD_MAX: usize = 64;

const _: () = assert!(
    RECORD_BYTES_MAX + CORRECTIONS_PER_RECORD_MAX * 32 + 4096 < STATE_VALUE_BYTES_MAX,
    "a correctable entry must fit a state value"
);

type Key = (Table, Vec<u8>);
/// Writes by key. A hash map: reads of the overlay are the executor's most frequent operation,
/// and the delta is put in key order once, by [`BlockExecutor::finish`].
type Writes = HashMap<Key, Option<Vec<u8>>, foldhash::fast::RandomState>;

/// Which way an aggregate moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sign {
    Add,
    Remove,
}

/// `value ± amount`, `None` if it would leave the range of `u64` (only corrupt state can make
/// a removal go below zero, and no real total reaches `u64::MAX`).
fn shift(value: &mut u64, amount: u64, sign: Sign) -> Option<()> {
    *value = match sign {
        Sign::Add => value.checked_add(amount)?,
        Sign::Remove => value.checked_sub(amount)?,
    };
    Some(())
}

/// The record being applied.
struct Context<'r> {
    id: Hash,
    index: u32,
    branch: &'r BranchId,
}

/// Applies the records of one block on top of the state a [`StateReader`] holds.
pub struct BlockExecutor<'a> {
    /// State as of the end of the previous block.
    reader: &'a dyn StateReader,
    /// This chain's id.
    chain_id: &'a str,
    /// The branches of genesis, for lookups in `O(log n)`.
    branches: BTreeSet<&'a BranchId>,
    /// `max_block_records` of genesis.
    records_max: u32,
    /// The block's height.
    height: Height,
    /// The block's UTC date: no record's own date may be later.
    block_date: Date,
    /// The block time plus the allowed clock drift: no record may be created later.
    created_at_limit_ms: u64,
    /// The writes of the records applied so far.
    overlay: Writes,
    /// The writes of the record being applied; merged into `overlay` only if it is accepted.
    staged: Writes,
    /// Records applied so far, which is also the index of the next one.
    applied: u32,
    /// The records applied so far, by index: a correction may target one of them.
    records: Vec<&'a SignedRecord>,
}

impl<'a> BlockExecutor<'a> {
    /// An executor for the block at `height` with time `block_time_ms`, over `reader` (the
    /// state after block `height - 1`).
    pub fn new(
        reader: &'a dyn StateReader,
        genesis: &'a Genesis,
        height: Height,
        block_time_ms: u64,
    ) -> BlockExecutor<'a> {
        BlockExecutor {
            reader,
            chain_id: &genesis.chain_id,
            branches: genesis.branches.iter().map(|b| &b.branch_id).collect(),
            records_max: genesis.consensus.max_block_records,
            height,
            block_date: Date::from_unix_ms(block_time_ms),
            created_at_limit_ms: block_time_ms.saturating_add(genesis.consensus.max_clock_drift_ms),
            overlay: Writes::default(),
            staged: Writes::default(),
            applied: 0,
            records: Vec::new(),
        }
    }

    /// The block's height.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Records applied so far.
    pub fn record_count(&self) -> u32 {
        self.applied
    }

    /// Applies one record as the next of the block. On success returns its index in the
    /// block; on failure nothing changes, and the next record takes the same index (so a
    /// proposer can filter candidates with this and the block it builds holds exactly the
    /// accepted records, in order).
    pub fn apply(&mut self, record: &'a SignedRecord) -> Result<u32, ApplyError> {
        self.apply_with_id(record, record.id())
    }

    /// [`Self::apply`] for a caller that already computed `record.id()` (the verifier does),
    /// which saves encoding the record again. `record_id` must be `record.id()`.
    pub fn apply_with_id(
        &mut self,
        record: &'a SignedRecord,
        record_id: Hash,
    ) -> Result<u32, ApplyError> {
        debug_assert_eq!(
            record.id(),
            record_id,
            "the caller passed another record's id"
        );
        self.staged.clear();
        match self.stage(record, record_id) {
            Ok(()) => {
                let index = self.applied;
                self.overlay.extend(self.staged.drain());
                self.records.push(record);
                self.applied += 1;
                Ok(index)
            }
            Err(error) => {
                self.staged.clear();
                Err(error)
            }
        }
    }

    /// The block's delta and the digest after it: `H(tag ‖ previous ‖ canonical(delta))`.
    pub fn finish(self, previous_digest: &Hash) -> (StateDelta, Hash) {
        let delta = StateDelta {
            writes: self.overlay.into_iter().collect(),
        };
        let digest = delta.chain_digest(previous_digest);
        (delta, digest)
    }

    // ---------------------------------------------------------------------------------------
    // Reads and writes through the overlay.

    fn get_bytes(&self, key: &Key) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(value) = self.staged.get(key).or_else(|| self.overlay.get(key)) {
            return Ok(value.clone());
        }
        self.reader.get(key.0, &key.1)
    }

    fn exists(&self, key: &Key) -> Result<bool, ReadError> {
        if let Some(value) = self.staged.get(key).or_else(|| self.overlay.get(key)) {
            return Ok(value.is_some());
        }
        Ok(self.reader.get(key.0, &key.1)?.is_some())
    }

    fn get<T: BorshDeserialize>(&self, key: &Key) -> Result<Option<T>, ReadError> {
        if let Some(value) = self.staged.get(key).or_else(|| self.overlay.get(key)) {
            return value
                .as_deref()
                .map(|bytes| decode_value(key.0, &key.1, bytes))
                .transpose();
        }
        match self.reader.get(key.0, &key.1)? {
            Some(bytes) => decode_value(key.0, &key.1, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put<T: BorshSerialize>(&mut self, key: Key, value: &T) {
        self.staged.insert(key, Some(encode(value)));
    }

    fn put_bytes(&mut self, key: Key, value: Vec<u8>) {
        self.staged.insert(key, Some(value));
    }

    fn delete(&mut self, key: Key) {
        self.staged.insert(key, None);
    }

    /// Read-modify-write of a total; an all-zero total is deleted, so a retracted record
    /// leaves no trace in the aggregates.
    fn update<T>(
        &mut self,
        key: Key,
        change: impl FnOnce(&mut T) -> Option<()>,
    ) -> Result<(), ReadError>
    where
        T: BorshSerialize + BorshDeserialize + Default + PartialEq,
    {
        let mut value: T = self.get(&key)?.unwrap_or_default();
        if change(&mut value).is_none() {
            return Err(value_error(
                key.0,
                &key.1,
                "a total would leave the range of u64: derived state is inconsistent",
            ));
        }
        if value == T::default() {
            self.delete(key);
        } else {
            self.put(key, &value);
        }
        Ok(())
    }

    fn update_stats(
        &mut self,
        branch: &BranchId,
        change: impl FnOnce(&mut BranchStats) -> Option<()>,
    ) -> Result<(), ReadError> {
        self.update((Table::BranchStats, keys::id(branch.as_str())), change)
    }

    // ---------------------------------------------------------------------------------------
    // The rules.

    fn stage(&mut self, signed: &SignedRecord, id: Hash) -> Result<(), ApplyError> {
        if self.applied >= self.records_max {
            return Err(Rejection::TooManyRecords {
                max: self.records_max,
            }
            .into());
        }
        signed.validate().map_err(Rejection::Stateless)?;
        let record = &signed.record;
        if record.chain_id != self.chain_id {
            return Err(Rejection::WrongChain {
                expected: self.chain_id.to_owned(),
                actual: record.chain_id.clone(),
            }
            .into());
        }
        self.require_branch(&record.branch_id)?;
        if record.created_at_ms > self.created_at_limit_ms {
            return Err(Rejection::CreatedInFuture {
                created_at_ms: record.created_at_ms,
                limit_ms: self.created_at_limit_ms,
            }
            .into());
        }
        self.check_own_date(&record.body, "body")?;
        let location_key = (Table::RecordLocations, keys::record_id(&id));
        if self.exists(&location_key)? {
            return Err(Rejection::DuplicateRecord { record_id: id }.into());
        }
        if !signed.co_signatures.is_empty() {
            self.check_co_signers(signed)?;
        }

        let context = Context {
            id,
            index: self.applied,
            branch: &record.branch_id,
        };
        match &record.body {
            RecordBody::MemberJoined(body) => self.member_joined(&context, body)?,
            RecordBody::MemberTransferred(body) => self.member_transferred(&context, body)?,
            RecordBody::MemberAccepted(body) => self.member_accepted(&context, body)?,
            RecordBody::MemberLeft(body) => self.member_left(&context, body)?,
            RecordBody::StudySession(body) => {
                self.require_active_in(&body.member_id, context.branch)?;
                self.add_correctable(&context, &record.body)?;
            }
            RecordBody::DuesPaid(body) => {
                self.require_active_in(&body.member_id, context.branch)?;
                self.add_correctable(&context, &record.body)?;
            }
            RecordBody::MeetingHeld(body) => {
                self.meeting_held(&context, body)?;
                self.add_correctable(&context, &record.body)?;
            }
            RecordBody::IssueRaised(body) => self.issue_raised(&context, body)?,
            RecordBody::IssueClaimed(body) => self.issue_claimed(&context, body)?,
            RecordBody::IssueProgress(body) => self.issue_progress(&context, body)?,
            RecordBody::IssueResolved(body) => self.issue_resolved(&context, body)?,
            RecordBody::IssueReviewed(body) => self.issue_reviewed(&context, body)?,
            RecordBody::Correction(body) => self.correction(&context, body)?,
        }

        // Indices and counters common to every record.
        let kind = record.body.kind();
        self.put(
            location_key,
            &RecordLocation {
                height: self.height,
                index: context.index,
                branch_id: record.branch_id.clone(),
                kind,
            },
        );
        let period = own_period(&record.body).unwrap_or_else(|| self.block_date.period());
        let index_key = keys::branch_kind_period(
            record.branch_id.as_str(),
            kind,
            period,
            self.height,
            context.index,
        );
        self.put_bytes((Table::RecordsByBranchKindPeriod, index_key), id.0.to_vec());
        for member in members_of(&record.body) {
            self.history(&context, member);
        }
        self.update_stats(&record.branch_id, |s| {
            shift(&mut s.records_committed, 1, Sign::Add)
        })?;
        Ok(())
    }

    /// Every co-signature is by the registered member key of an active member the record
    /// concerns (see the module documentation). Checked against the state before the record,
    /// so a member may co-sign the record that says they left; a `MemberJoined` is co-signed
    /// by the key it registers. Reads each concerned member's entry at most once and stops
    /// once every co-signer is matched (co-signer keys are distinct: a stateless rule).
    fn check_co_signers(&self, signed: &SignedRecord) -> Result<(), ApplyError> {
        let co_signatures = &signed.co_signatures;
        // `matched[i]`: co-signature `i` is by a key the record allows. `allow` says whether
        // it matched a co-signature not matched before (two members may share a key).
        let mut matched = vec![false; co_signatures.len()];
        let mut unmatched = co_signatures.len();
        let mut allow =
            |key: &PublicKey| match co_signatures.iter().position(|co| co.public_key == *key) {
                Some(i) if !matched[i] => {
                    matched[i] = true;
                    true
                }
                _ => false,
            };
        let concerned = match &signed.record.body {
            RecordBody::Correction(correction) => correction.replacement.as_deref(),
            body => Some(body),
        };
        match concerned {
            Some(RecordBody::MemberJoined(joined)) => {
                if let Some(key) = &joined.member_key {
                    allow(key);
                }
            }
            Some(body) => {
                let mut members = members_of(body).into_iter();
                while unmatched > 0 {
                    let Some(member) = members.next() else { break };
                    let entry: Option<MemberEntry> =
                        self.get(&(Table::Members, keys::id(member.as_str())))?;
                    // An unknown member has no key; the body's own rules name them.
                    if let Some(key) = entry
                        .filter(MemberEntry::is_active)
                        .and_then(|entry| entry.member_key)
                    {
                        if allow(&key) {
                            unmatched -= 1;
                        }
                    }
                }
            }
            None => {}
        }
        match matched.iter().position(|m| !m) {
            Some(i) => Err(Rejection::CoSignerNotConcerned {
                field: format!("co_signatures[{i}].public_key"),
                key: co_signatures[i].public_key,
            }
            .into()),
            None => Ok(()),
        }
    }

    fn require_branch(&self, branch: &BranchId) -> Result<(), Rejection> {
        if self.branches.contains(branch) {
            Ok(())
        } else {
            Err(Rejection::UnknownBranch {
                branch: branch.clone(),
            })
        }
    }

    fn check_own_date(&self, body: &RecordBody, prefix: &str) -> Result<(), Rejection> {
        match own_date(body) {
            Some((field, date)) if date > self.block_date => Err(Rejection::DateInFuture {
                field: format!("{prefix}.{field}"),
                date,
                block_date: self.block_date,
            }),
            _ => Ok(()),
        }
    }

    fn history(&mut self, context: &Context<'_>, member: &MemberId) {
        let key = keys::member_history(member.as_str(), self.height, context.index);
        self.put_bytes((Table::MemberHistory, key), context.id.0.to_vec());
    }

    fn member_entry(&self, member: &MemberId) -> Result<MemberEntry, ApplyError> {
        self.get(&(Table::Members, keys::id(member.as_str())))?
            .ok_or_else(|| {
                Rejection::UnknownMember {
                    member: member.clone(),
                }
                .into()
            })
    }

    /// The member, who must be active in `branch`.
    fn active_member_of(
        &self,
        member: &MemberId,
        branch: &BranchId,
    ) -> Result<MemberEntry, ApplyError> {
        let entry = self.member_entry(member)?;
        if &entry.branch_id != branch {
            return Err(Rejection::MemberNotInBranch {
                member: member.clone(),
                member_branch: entry.branch_id,
                branch: branch.clone(),
            }
            .into());
        }
        if !entry.is_active() {
            return Err(Rejection::MemberNotActive {
                member: member.clone(),
            }
            .into());
        }
        Ok(entry)
    }

    /// True if the member is active in `branch`: one key lookup in
    /// [`Table::BranchMembers`], no decoding.
    fn is_active_in(&self, member: &MemberId, branch: &BranchId) -> Result<bool, ReadError> {
        self.exists(&(
            Table::BranchMembers,
            keys::branch_member(branch.as_str(), member.as_str()),
        ))
    }

    /// Like [`Self::active_member_of`] without the entry: the common case costs one lookup,
    /// and only a refusal reads the entry to say why.
    fn require_active_in(&self, member: &MemberId, branch: &BranchId) -> Result<(), ApplyError> {
        if self.is_active_in(member, branch)? {
            return Ok(());
        }
        self.active_member_of(member, branch).map(|_| ())
    }

    fn member_joined(
        &mut self,
        context: &Context<'_>,
        body: &MemberJoined,
    ) -> Result<(), ApplyError> {
        let key = (Table::Members, keys::id(body.member_id.as_str()));
        if self.exists(&key)? {
            return Err(Rejection::MemberIdTaken {
                member: body.member_id.clone(),
            }
            .into());
        }
        self.put(
            key,
            &MemberEntry {
                branch_id: context.branch.clone(),
                status: body.status,
                mobile: body.mobile,
                member_key: body.member_key,
                joined_on: body.joined_on,
                joined_record: context.id,
                left: None,
                pending_transfer: None,
            },
        );
        self.put_bytes(
            (
                Table::BranchMembers,
                keys::branch_member(context.branch.as_str(), body.member_id.as_str()),
            ),
            Vec::new(),
        );
        self.update_stats(context.branch, |s| {
            shift(&mut s.active_members, 1, Sign::Add)
        })?;
        Ok(())
    }

    fn member_transferred(
        &mut self,
        context: &Context<'_>,
        body: &MemberTransferred,
    ) -> Result<(), ApplyError> {
        let mut entry = self.active_member_of(&body.member_id, context.branch)?;
        if !self.branches.contains(&body.to_branch) {
            return Err(Rejection::TransferTargetUnknown {
                member: body.member_id.clone(),
                to_branch: body.to_branch.clone(),
            }
            .into());
        }
        if &body.to_branch == context.branch {
            return Err(Rejection::TransferToSelf {
                member: body.member_id.clone(),
                branch: body.to_branch.clone(),
            }
            .into());
        }
        if let Some(pending) = entry.pending_transfer {
            return Err(Rejection::TransferPending {
                member: body.member_id.clone(),
                to_branch: pending,
            }
            .into());
        }
        entry.pending_transfer = Some(body.to_branch.clone());
        self.put((Table::Members, keys::id(body.member_id.as_str())), &entry);
        Ok(())
    }

    fn member_accepted(
        &mut self,
        context: &Context<'_>,
        body: &MemberAccepted,
    ) -> Result<(), ApplyError> {
        let mut entry = self.member_entry(&body.member_id)?;
        let pending = entry.is_active()
            && entry.branch_id == body.from_branch
            && entry.pending_transfer.as_ref() == Some(context.branch);
        if !pending {
            return Err(Rejection::NoPendingTransfer {
                member: body.member_id.clone(),
                from_branch: body.from_branch.clone(),
                to_branch: context.branch.clone(),
            }
            .into());
        }
        let member = body.member_id.as_str();
        self.delete((
            Table::BranchMembers,
            keys::branch_member(body.from_branch.as_str(), member),
        ));
        self.put_bytes(
            (
                Table::BranchMembers,
                keys::branch_member(context.branch.as_str(), member),
            ),
            Vec::new(),
        );
        self.update_stats(&body.from_branch, |s| {
            shift(&mut s.active_members, 1, Sign::Remove)
        })?;
        self.update_stats(context.branch, |s| {
            shift(&mut s.active_members, 1, Sign::Add)
        })?;
        entry.branch_id = context.branch.clone();
        entry.pending_transfer = None;
        self.put((Table::Members, keys::id(member)), &entry);
        Ok(())
    }

    fn member_left(&mut self, context: &Context<'_>, body: &MemberLeft) -> Result<(), ApplyError> {
        let mut entry = self.active_member_of(&body.member_id, context.branch)?;
        entry.left = Some(body.reason);
        entry.pending_transfer = None;
        let member = body.member_id.as_str();
        self.delete((
            Table::BranchMembers,
            keys::branch_member(context.branch.as_str(), member),
        ));
        self.update_stats(context.branch, |s| {
            shift(&mut s.active_members, 1, Sign::Remove)
        })?;
        self.put((Table::Members, keys::id(member)), &entry);
        Ok(())
    }

    fn check_attendee(&self, attendee: &Attendee, branch: &BranchId) -> Result<(), ApplyError> {
        let member = &attendee.member_id;
        if !attendee.guest {
            if self.is_active_in(member, branch)? {
                return Ok(());
            }
            // Unknown members get their own message; known ones are not active here.
            self.member_entry(member)?;
            return Err(Rejection::AttendeeNotActive {
                member: member.clone(),
                branch: branch.clone(),
            }
            .into());
        }
        let entry = self.member_entry(member)?;
        if !entry.is_active() {
            return Err(Rejection::MemberNotActive {
                member: member.clone(),
            }
            .into());
        }
        if &entry.branch_id == branch {
            return Err(Rejection::GuestFromOwnBranch {
                member: member.clone(),
                branch: branch.clone(),
            }
            .into());
        }
        if !entry.mobile {
            return Err(Rejection::GuestNotMobile {
                member: member.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn check_absentee(&self, absentee: &Absentee, branch: &BranchId) -> Result<(), ApplyError> {
        let member = &absentee.member_id;
        if self.is_active_in(member, branch)? {
            return Ok(());
        }
        self.member_entry(member)?;
        Err(Rejection::AbsenteeNotActive {
            member: member.clone(),
            branch: branch.clone(),
        }
        .into())
    }

    fn meeting_held(
        &mut self,
        context: &Context<'_>,
        body: &MeetingHeld,
    ) -> Result<(), ApplyError> {
        let key = (Table::Meetings, keys::id(body.meeting_id.as_str()));
        if self.exists(&key)? {
            return Err(Rejection::MeetingIdTaken {
                meeting: body.meeting_id.clone(),
            }
            .into());
        }
        for attendee in &body.attendees {
            self.check_attendee(attendee, context.branch)?;
        }
        for absentee in &body.absentees {
            self.check_absentee(absentee, context.branch)?;
        }
        self.put(
            key,
            &MeetingEntry {
                branch_id: context.branch.clone(),
                kind: body.kind,
                held_on: body.held_on,
                record_id: context.id,
                retracted: false,
            },
        );
        Ok(())
    }

    /// Counts a new correctable record in the aggregates. Its effective view is the record
    /// itself until a correction writes one to [`Table::Correctable`].
    fn add_correctable(
        &mut self,
        context: &Context<'_>,
        body: &RecordBody,
    ) -> Result<(), ApplyError> {
        self.aggregate(context.branch, body, Sign::Add)?;
        Ok(())
    }

    /// Adds a correctable body to (or removes it from) the totals of `branch`, the branch
    /// that signed it.
    fn aggregate(
        &mut self,
        branch: &BranchId,
        body: &RecordBody,
        sign: Sign,
    ) -> Result<(), ReadError> {
        match body {
            RecordBody::StudySession(study) => {
                let period = study.occurred_on.period();
                let minutes = u64::from(study.minutes);
                let change = move |totals: &mut StudyTotals| {
                    shift(&mut totals.minutes, minutes, sign)?;
                    shift(&mut totals.sessions, 1, sign)
                };
                let member_key = keys::id_period(study.member_id.as_str(), period);
                self.update((Table::StudyByMember, member_key), change)?;
                self.update(
                    (
                        Table::StudyByBranch,
                        keys::id_period(branch.as_str(), period),
                    ),
                    change,
                )
            }
            RecordBody::DuesPaid(dues) => {
                let amount = dues.amount_minor;
                let change = move |totals: &mut DuesTotals| {
                    shift(&mut totals.amount_minor, amount, sign)?;
                    shift(&mut totals.payments, 1, sign)
                };
                let member_key = keys::id_period(dues.member_id.as_str(), dues.period);
                self.update((Table::DuesByMember, member_key), change)?;
                self.update(
                    (
                        Table::DuesByBranch,
                        keys::id_period(branch.as_str(), dues.period),
                    ),
                    change,
                )
            }
            RecordBody::MeetingHeld(meeting) => {
                let guests = meeting.attendees.iter().filter(|a| a.guest).count() as u64;
                let own = meeting.attendees.len() as u64 - guests;
                let absences = meeting.absentees.len() as u64;
                let key = keys::meetings_by_branch(
                    branch.as_str(),
                    meeting.kind,
                    meeting.held_on.period(),
                );
                self.update(
                    (Table::MeetingsByBranch, key),
                    |totals: &mut MeetingTotals| {
                        shift(&mut totals.count, 1, sign)?;
                        shift(&mut totals.attendances, own, sign)?;
                        shift(&mut totals.absences, absences, sign)?;
                        shift(&mut totals.guest_attendances, guests, sign)
                    },
                )
            }
            // Only correctable kinds have aggregates that a correction moves.
            _ => Ok(()),
        }
    }

    fn issue_entry(&self, issue: &branchledger_types::IssueId) -> Result<IssueEntry, ApplyError> {
        self.get(&(Table::Issues, keys::id(issue.as_str())))?
            .ok_or_else(|| {
                Rejection::UnknownIssue {
                    issue: issue.clone(),
                }
                .into()
            })
    }

    fn issue_raised(
        &mut self,
        context: &Context<'_>,
        body: &IssueRaised,
    ) -> Result<(), ApplyError> {
        let key = (Table::Issues, keys::id(body.issue_id.as_str()));
        if self.exists(&key)? {
            return Err(Rejection::IssueIdTaken {
                issue: body.issue_id.clone(),
            }
            .into());
        }
        if let IssueScope::Member(member) = &body.scope {
            self.member_entry(member)?;
        }
        self.put(
            key,
            &IssueEntry {
                raised_by: context.branch.clone(),
                scope: body.scope.clone(),
                title: body.title.clone(),
                raised_on: body.raised_on,
                raised_record: context.id,
                status: IssueStatus::Open,
                claimed_by: None,
                claimants: Vec::new(),
                percent: 0,
                rating: None,
                reviewer: None,
            },
        );
        self.update_stats(context.branch, |s| {
            shift(&mut s.issues_raised, 1, Sign::Add)
        })?;
        Ok(())
    }

    fn issue_claimed(
        &mut self,
        context: &Context<'_>,
        body: &IssueClaimed,
    ) -> Result<(), ApplyError> {
        let mut entry = self.issue_entry(&body.issue_id)?;
        if entry.status != IssueStatus::Open {
            return Err(Rejection::IssueNotOpen {
                issue: body.issue_id.clone(),
                status: entry.status,
            }
            .into());
        }
        for claimant in &body.claimants {
            if self.is_active_in(claimant, context.branch)? {
                continue;
            }
            let member = self.member_entry(claimant)?;
            if !member.is_active() || !member.mobile {
                return Err(Rejection::ClaimantNotActive {
                    member: claimant.clone(),
                    branch: context.branch.clone(),
                }
                .into());
            }
        }
        entry.status = IssueStatus::Claimed;
        entry.claimed_by = Some(context.branch.clone());
        entry.claimants = body.claimants.clone();
        self.put((Table::Issues, keys::id(body.issue_id.as_str())), &entry);
        self.update_stats(context.branch, |s| {
            shift(&mut s.issues_claimed, 1, Sign::Add)
        })?;
        Ok(())
    }

    /// The issue, which must be claimed by the signing branch.
    fn claimed_issue(
        &self,
        issue: &branchledger_types::IssueId,
        branch: &BranchId,
    ) -> Result<IssueEntry, ApplyError> {
        let entry = self.issue_entry(issue)?;
        if entry.status != IssueStatus::Claimed {
            return Err(Rejection::IssueNotClaimed {
                issue: issue.clone(),
                status: entry.status,
            }
            .into());
        }
        match &entry.claimed_by {
            Some(claimed_by) if claimed_by == branch => Ok(entry),
            Some(claimed_by) => Err(Rejection::IssueClaimedByOther {
                issue: issue.clone(),
                claimed_by: claimed_by.clone(),
                branch: branch.clone(),
            }
            .into()),
            None => Err(value_error(
                Table::Issues,
                issue.as_str().as_bytes(),
                "a claimed issue has no claiming branch: derived state is inconsistent",
            )
            .into()),
        }
    }

    fn issue_progress(
        &mut self,
        context: &Context<'_>,
        body: &IssueProgress,
    ) -> Result<(), ApplyError> {
        let mut entry = self.claimed_issue(&body.issue_id, context.branch)?;
        if body.percent < entry.percent {
            return Err(Rejection::ProgressDecreased {
                issue: body.issue_id.clone(),
                from: entry.percent,
                to: body.percent,
            }
            .into());
        }
        entry.percent = body.percent;
        self.put((Table::Issues, keys::id(body.issue_id.as_str())), &entry);
        Ok(())
    }

    fn issue_resolved(
        &mut self,
        context: &Context<'_>,
        body: &IssueResolved,
    ) -> Result<(), ApplyError> {
        let mut entry = self.claimed_issue(&body.issue_id, context.branch)?;
        entry.status = IssueStatus::Resolved;
        entry.percent = 100;
        self.put((Table::Issues, keys::id(body.issue_id.as_str())), &entry);
        self.update_stats(context.branch, |s| {
            shift(&mut s.issues_resolved, 1, Sign::Add)
        })?;
        Ok(())
    }

    fn issue_reviewed(
        &mut self,
        _context: &Context<'_>,
        body: &IssueReviewed,
    ) -> Result<(), ApplyError> {
        let mut entry = self.issue_entry(&body.issue_id)?;
        if entry.status != IssueStatus::Resolved {
            return Err(Rejection::IssueNotResolved {
                issue: body.issue_id.clone(),
                status: entry.status,
            }
            .into());
        }
        if let Reviewer::Member(member) = &body.by {
            self.member_entry(member)?;
        }
        entry.status = IssueStatus::Reviewed;
        entry.rating = Some(body.rating);
        entry.reviewer = Some(body.by.clone());
        self.put((Table::Issues, keys::id(body.issue_id.as_str())), &entry);
        Ok(())
    }

    fn correction(&mut self, context: &Context<'_>, body: &Correction) -> Result<(), ApplyError> {
        let target = body.target;
        let location: RecordLocation = self
            .get(&(Table::RecordLocations, keys::record_id(&target)))?
            .ok_or(Rejection::CorrectionTargetUnknown { target })?;
        if &location.branch_id != context.branch {
            return Err(Rejection::CorrectionOtherBranch {
                target,
                target_branch: location.branch_id,
                branch: context.branch.clone(),
            }
            .into());
        }
        if !is_correctable(location.kind) {
            return Err(Rejection::NotCorrectable {
                target,
                kind: location.kind,
            }
            .into());
        }
        // The view as last corrected, or the record itself if never corrected (it may be
        // one of this block's).
        let mut entry = read::correctable_at(self, &target, &location)?;
        if entry.retracted {
            return Err(Rejection::AlreadyRetracted { target }.into());
        }
        if entry.corrections.len() >= CORRECTIONS_PER_RECORD_MAX {
            return Err(Rejection::TooManyCorrections {
                target,
                max: CORRECTIONS_PER_RECORD_MAX,
            }
            .into());
        }
        if let Some(replacement) = &body.replacement {
            if replacement.kind() != entry.kind {
                return Err(Rejection::CorrectionKindMismatch {
                    target,
                    expected: entry.kind,
                    actual: replacement.kind(),
                }
                .into());
            }
            self.check_own_date(replacement, "body.replacement")?;
            self.check_replacement(context.branch, &target, &entry.body, replacement)?;
        }

        // The history of every member of the old and the new body shows the correction.
        for member in members_of(&entry.body) {
            self.history(context, member);
        }
        if let Some(replacement) = &body.replacement {
            for member in members_of(replacement) {
                self.history(context, member);
            }
        }

        self.aggregate(context.branch, &entry.body, Sign::Remove)?;
        match &body.replacement {
            Some(replacement) => {
                self.aggregate(context.branch, replacement, Sign::Add)?;
                entry.body = (**replacement).clone();
            }
            None => entry.retracted = true,
        }
        if let RecordBody::MeetingHeld(meeting) = &entry.body {
            let meeting_key = (Table::Meetings, keys::id(meeting.meeting_id.as_str()));
            let mut meeting_entry: MeetingEntry = self.get(&meeting_key)?.ok_or_else(|| {
                value_error(
                    Table::Meetings,
                    &meeting_key.1,
                    "no entry for a committed meeting: derived state is inconsistent",
                )
            })?;
            meeting_entry.kind = meeting.kind;
            meeting_entry.held_on = meeting.held_on;
            meeting_entry.retracted = entry.retracted;
            self.put(meeting_key, &meeting_entry);
        }
        entry.corrections.push(context.id);
        self.put((Table::Correctable, keys::record_id(&target)), &entry);
        Ok(())
    }

    /// The rules a replacement must pass beyond those of a correction: whatever it adds must
    /// pass the rule a new record would; what it keeps is not checked again.
    fn check_replacement(
        &self,
        branch: &BranchId,
        target: &Hash,
        old: &RecordBody,
        new: &RecordBody,
    ) -> Result<(), ApplyError> {
        match (old, new) {
            // A session or payment moved to another member: that member must qualify.
            (RecordBody::StudySession(old), RecordBody::StudySession(new))
                if new.member_id != old.member_id =>
            {
                self.require_active_in(&new.member_id, branch)?;
            }
            (RecordBody::DuesPaid(old), RecordBody::DuesPaid(new))
                if new.member_id != old.member_id =>
            {
                self.require_active_in(&new.member_id, branch)?;
            }
            (RecordBody::MeetingHeld(old), RecordBody::MeetingHeld(new)) => {
                if new.meeting_id != old.meeting_id {
                    return Err(Rejection::CorrectionChangesIdentity {
                        target: *target,
                        field: "meeting_id",
                    }
                    .into());
                }
                let old_attendees: BTreeSet<(&MemberId, bool)> = old
                    .attendees
                    .iter()
                    .map(|a| (&a.member_id, a.guest))
                    .collect();
                // Members of the branch (non-guest attendees and absentees) may move
                // between the two lists without being checked again.
                let old_own: BTreeSet<&MemberId> = old
                    .attendees
                    .iter()
                    .filter(|a| !a.guest)
                    .map(|a| &a.member_id)
                    .chain(old.absentees.iter().map(|a| &a.member_id))
                    .collect();
                for attendee in &new.attendees {
                    let kept = old_attendees.contains(&(&attendee.member_id, attendee.guest))
                        || (!attendee.guest && old_own.contains(&attendee.member_id));
                    if !kept {
                        self.check_attendee(attendee, branch)?;
                    }
                }
                for absentee in &new.absentees {
                    if !old_own.contains(&absentee.member_id) {
                        self.check_absentee(absentee, branch)?;
                    }
                }
            }
            // The same member, or kinds without members to check (kinds were checked equal
            // and correctable before this is called).
            _ => {}
        }
        Ok(())
    }
}

impl StateReader for BlockExecutor<'_> {
    /// State as of the last accepted record of this block.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.get_bytes(&(table, key.to_vec()))
    }

    /// The records of earlier blocks, and those accepted so far in this one.
    fn committed_record(
        &self,
        height: Height,
        index: u32,
    ) -> Result<Option<SignedRecord>, ReadError> {
        if height == self.height {
            return Ok(self.records.get(index as usize).map(|r| (*r).clone()));
        }
        self.reader.committed_record(height, index)
    }
}

/// Applies a whole block's records in order, failing on the first that breaks a rule.
/// Returns the block's delta and the state digest after it. Validators check a proposal with
/// this; the auditor replays the chain with it.
pub fn apply_block(
    reader: &dyn StateReader,
    genesis: &Genesis,
    height: Height,
    block_time_ms: u64,
    records: &[SignedRecord],
    previous_digest: &Hash,
) -> Result<(StateDelta, Hash), BlockError> {
    let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
    apply_block_with_ids(
        reader,
        genesis,
        height,
        block_time_ms,
        records,
        &ids,
        previous_digest,
    )
}

/// [`apply_block`] for a caller that already computed the record ids (checking the records
/// root does): `ids[i]` must be `records[i].id()`.
///
/// # Panics
///
/// If `ids` and `records` differ in length (a caller's bug).
pub fn apply_block_with_ids(
    reader: &dyn StateReader,
    genesis: &Genesis,
    height: Height,
    block_time_ms: u64,
    records: &[SignedRecord],
    ids: &[Hash],
    previous_digest: &Hash,
) -> Result<(StateDelta, Hash), BlockError> {
    assert_eq!(records.len(), ids.len(), "one id per record");
    let mut executor = BlockExecutor::new(reader, genesis, height, block_time_ms);
    for (index, (record, record_id)) in records.iter().zip(ids).enumerate() {
        match executor.apply_with_id(record, *record_id) {
            Ok(_) => {}
            Err(ApplyError::Rejected(reason)) => {
                return Err(BlockRejection {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    record_id: *record_id,
                    reason,
                }
                .into())
            }
            Err(ApplyError::Read(error)) => return Err(error.into()),
        }
    }
    Ok(executor.finish(previous_digest))
}

/// True for the kinds a `Correction` may target (see the module documentation for why).
pub fn is_correctable(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::StudySession | RecordKind::DuesPaid | RecordKind::MeetingHeld
    )
}

/// Whether committing a record of this kind can make a record still waiting in a mempool
/// invalid. Study sessions and dues payments cannot: they only add to totals, and no rule
/// refuses a record because of a total. Every other kind changes something a later record is
/// checked against (the member registry, a meeting or issue id or its state, a correctable
/// record's corrections), so a mempool re-checks what waits after a block that holds one.
pub fn may_invalidate_pending(kind: RecordKind) -> bool {
    !matches!(kind, RecordKind::StudySession | RecordKind::DuesPaid)
}

/// The record's own date, if it has one, with its field name.
fn own_date(body: &RecordBody) -> Option<(&'static str, Date)> {
    match body {
        RecordBody::MemberJoined(b) => Some(("joined_on", b.joined_on)),
        RecordBody::StudySession(b) => Some(("occurred_on", b.occurred_on)),
        RecordBody::MeetingHeld(b) => Some(("held_on", b.held_on)),
        RecordBody::IssueRaised(b) => Some(("raised_on", b.raised_on)),
        _ => None,
    }
}

/// The period a record is indexed under, if it names one (else the block's month).
fn own_period(body: &RecordBody) -> Option<Period> {
    match body {
        RecordBody::DuesPaid(b) => Some(b.period),
        _ => own_date(body).map(|(_, date)| date.period()),
    }
}

/// The members a record concerns, for [`Table::MemberHistory`] and for who may co-sign it. A
/// correction's are those of its target's old and new body, found in state, so none here
/// (its co-signers are checked against its replacement's).
fn members_of(body: &RecordBody) -> Vec<&MemberId> {
    match body {
        RecordBody::MemberJoined(b) => vec![&b.member_id],
        RecordBody::MemberTransferred(b) => vec![&b.member_id],
        RecordBody::MemberAccepted(b) => vec![&b.member_id],
        RecordBody::MemberLeft(b) => vec![&b.member_id],
        RecordBody::StudySession(b) => vec![&b.member_id],
        RecordBody::DuesPaid(b) => vec![&b.member_id],
        RecordBody::MeetingHeld(b) => b
            .attendees
            .iter()
            .map(|a| &a.member_id)
            .chain(b.absentees.iter().map(|a| &a.member_id))
            .collect(),
        RecordBody::IssueRaised(b) => match &b.scope {
            IssueScope::Member(member) => vec![member],
            _ => Vec::new(),
        },
        RecordBody::IssueClaimed(b) => b.claimants.iter().collect(),
        RecordBody::IssueReviewed(b) => match &b.by {
            Reviewer::Member(member) => vec![member],
            Reviewer::Public => Vec::new(),
        },
        RecordBody::IssueProgress(_) | RecordBody::IssueResolved(_) | RecordBody::Correction(_) => {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_refuses_to_leave_u64() {
        let mut value = 1;
        assert_eq!(shift(&mut value, 1, Sign::Remove), Some(()));
        assert_eq!(value, 0);
        assert_eq!(shift(&mut value, 1, Sign::Remove), None);
        let mut value = u64::MAX;
        assert_eq!(shift(&mut value, 1, Sign::Add), None);
    }

    #[test]
    fn correctable_kinds() {
        let correctable: Vec<RecordKind> = RecordKind::ALL
            .iter()
            .copied()
            .filter(|k| is_correctable(*k))
            .collect();
        assert_eq!(
            correctable,
            vec![
                RecordKind::StudySession,
                RecordKind::DuesPaid,
                RecordKind::MeetingHeld
            ]
        );
    }
}
