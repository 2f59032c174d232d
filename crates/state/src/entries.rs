//! The value types of the state tables, one per [`Table`](crate::Table), stored as borsh.
//!
//! These are part of the protocol: their encoding is hashed into every block's state digest,
//! so a field may only be added by a deliberate protocol change (the digest test in this
//! crate's tests fails when an encoding changes). Index tables
//! ([`Table::MemberHistory`](crate::Table::MemberHistory),
//! [`Table::RecordsByBranchKindPeriod`](crate::Table::RecordsByBranchKindPeriod)) store the
//! 32 bytes of a record id and [`Table::BranchMembers`](crate::Table::BranchMembers) stores
//! empty bytes; they have no type here.

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{Hash, PublicKey};
use branchledger_types::record::{
    IssueScope, LeaveReason, MeetingKind, MemberStatus, RecordBody, Reviewer,
};
use branchledger_types::{BranchId, Date, Height, MemberId, RecordKind};
use serde::{Deserialize, Serialize};

/// A member's registry entry ([`Table::Members`](crate::Table::Members)).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The branch the member belongs to now (a pending transfer does not change it).
    pub branch_id: BranchId,
    /// Full or probationary, as registered.
    pub status: MemberStatus,
    /// Works away from the home branch: may attend other branches' meetings as a guest and
    /// claim other branches' issues.
    pub mobile: bool,
    /// The member's own key, if registered.
    pub member_key: Option<PublicKey>,
    /// The day they joined.
    pub joined_on: Date,
    /// The `MemberJoined` record that registered them.
    pub joined_record: Hash,
    /// Why they left, once they have; a member who left never becomes active again.
    pub left: Option<LeaveReason>,
    /// The branch a transfer is pending to, until that branch signs `MemberAccepted`.
    pub pending_transfer: Option<BranchId>,
}

impl MemberEntry {
    /// True until the member leaves.
    pub fn is_active(&self) -> bool {
        self.left.is_none()
    }

    /// True if the member is active in `branch`.
    pub fn is_active_in(&self, branch: &BranchId) -> bool {
        self.is_active() && &self.branch_id == branch
    }
}

/// A meeting's entry ([`Table::Meetings`](crate::Table::Meetings)): enough to find it and
/// to count it; the attendee lists are in its [`CorrectableEntry`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MeetingEntry {
    /// The branch that held it.
    pub branch_id: BranchId,
    /// The kind, as last corrected.
    pub kind: MeetingKind,
    /// The day, as last corrected.
    pub held_on: Date,
    /// The `MeetingHeld` record.
    pub record_id: Hash,
    /// Retracted by a correction (the id stays taken).
    pub retracted: bool,
}

/// Where an issue stands. Transitions: `Open → Claimed → Resolved → Reviewed`; progress
/// reports keep it `Claimed` and raise its percent.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = false)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    /// Raised, nobody has claimed it.
    Open,
    /// Claimed by a branch's members; progress may be reported.
    Claimed,
    /// Resolved by the claiming branch, awaiting a review.
    Resolved,
    /// Rated; final.
    Reviewed,
}

impl IssueStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Open => "open",
            IssueStatus::Claimed => "claimed",
            IssueStatus::Resolved => "resolved",
            IssueStatus::Reviewed => "reviewed",
        }
    }
}

impl std::fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An issue's state ([`Table::Issues`](crate::Table::Issues)).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueEntry {
    /// The branch that raised it.
    pub raised_by: BranchId,
    /// Who it concerns.
    pub scope: IssueScope,
    /// Its title (kept here so the issue board needs one read per issue).
    pub title: String,
    /// The day it was raised.
    pub raised_on: Date,
    /// The `IssueRaised` record.
    pub raised_record: Hash,
    /// Where it stands.
    pub status: IssueStatus,
    /// The branch whose members claimed it.
    pub claimed_by: Option<BranchId>,
    /// The claimants.
    pub claimants: Vec<MemberId>,
    /// Percent done, never decreasing; 100 once resolved.
    pub percent: u8,
    /// The rating, once reviewed.
    pub rating: Option<u8>,
    /// Who rated it, once reviewed.
    pub reviewer: Option<Reviewer>,
}

/// Study totals of a member or a branch for a month ([`Table::StudyByMember`](crate::Table::StudyByMember),
/// [`Table::StudyByBranch`](crate::Table::StudyByBranch)).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct StudyTotals {
    /// Minutes studied.
    pub minutes: u64,
    /// Sessions counted.
    pub sessions: u64,
}

/// Dues totals of a member or a branch for a month ([`Table::DuesByMember`](crate::Table::DuesByMember),
/// [`Table::DuesByBranch`](crate::Table::DuesByBranch)).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct DuesTotals {
    /// Amount paid, in minor units.
    pub amount_minor: u64,
    /// Payments counted.
    pub payments: u64,
}

/// Meeting totals of a branch for one meeting kind and month
/// ([`Table::MeetingsByBranch`](crate::Table::MeetingsByBranch)).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct MeetingTotals {
    /// Meetings held (not retracted).
    pub count: u64,
    /// Attendances by the branch's own members.
    pub attendances: u64,
    /// Absences recorded.
    pub absences: u64,
    /// Attendances by mobile members of other branches.
    pub guest_attendances: u64,
}

/// Branch-wide counters ([`Table::BranchStats`](crate::Table::BranchStats)).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct BranchStats {
    /// Members active in the branch now.
    pub active_members: u64,
    /// Records the branch signed that were committed (corrections included).
    pub records_committed: u64,
    /// Issues the branch raised.
    pub issues_raised: u64,
    /// Issues the branch's members claimed.
    pub issues_claimed: u64,
    /// Issues the branch resolved.
    pub issues_resolved: u64,
}

/// The effective view of a correctable record ([`Table::Correctable`](crate::Table::Correctable)).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CorrectableEntry {
    /// The branch that signed the original (and alone may correct it).
    pub branch_id: BranchId,
    /// The original's kind; replacements keep it.
    pub kind: RecordKind,
    /// The body as last corrected (the original's body if never corrected; the last effective
    /// body if retracted).
    pub body: RecordBody,
    /// The corrections, in commit order.
    pub corrections: Vec<Hash>,
    /// Retracted: counts in no aggregate and may not be corrected again.
    pub retracted: bool,
}

impl CorrectableEntry {
    /// The entry a correctable record of `branch` makes when it is committed, before any
    /// correction.
    pub fn original(branch: &BranchId, body: &RecordBody) -> CorrectableEntry {
        CorrectableEntry {
            branch_id: branch.clone(),
            kind: body.kind(),
            body: body.clone(),
            corrections: Vec::new(),
            retracted: false,
        }
    }
}

/// Where a committed record is ([`Table::RecordLocations`](crate::Table::RecordLocations)).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecordLocation {
    /// The block height.
    pub height: Height,
    /// The position in the block.
    pub index: u32,
    /// The branch that signed it.
    pub branch_id: BranchId,
    /// Its kind.
    pub kind: RecordKind,
}
