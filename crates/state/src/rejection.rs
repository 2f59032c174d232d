//! Why a record or a block is refused by the state rules.

use branchledger_crypto::{Hash, PublicKey};
use branchledger_types::{
    BranchId, Date, IssueId, MeetingId, MemberId, RecordKind, ValidationError,
};

use crate::entries::IssueStatus;
use crate::ReadError;

/// A record breaks a stateful rule (DESIGN.md §2, "stateful rules at commit"). Each variant
/// is one rule; its message names the rule and the ids involved. A rejected record changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The record breaks a stateless rule.
    #[error("stateless rule: {0}")]
    Stateless(ValidationError),
    /// The record is for another chain.
    #[error("record is for chain {actual:?}, this chain is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The record's chain.
        actual: String,
    },
    /// The signing branch (or a branch named in the record) is not in genesis.
    #[error("branch {branch} is not in genesis")]
    UnknownBranch {
        /// The branch.
        branch: BranchId,
    },
    /// The record was created later than the block time allows.
    #[error(
        "record created at {created_at_ms} ms, after the block time plus the allowed clock drift ({limit_ms} ms)"
    )]
    CreatedInFuture {
        /// The record's `created_at_ms`.
        created_at_ms: u64,
        /// The block time plus `max_clock_drift_ms`.
        limit_ms: u64,
    },
    /// A date in the record is after the block's UTC date.
    #[error("`{field}` is {date}, after the block date {block_date}")]
    DateInFuture {
        /// The field.
        field: String,
        /// Its date.
        date: Date,
        /// The block's UTC date.
        block_date: Date,
    },
    /// The same record (same id) is already committed, or earlier in this block.
    #[error("record {record_id} is already committed")]
    DuplicateRecord {
        /// The record id.
        record_id: Hash,
    },
    /// A co-signature by a key that is not the registered member key of an active member the
    /// record concerns.
    #[error(
        "`{field}` {key}: a co-signer must be an active member this record concerns, signing with the member key registered when they joined"
    )]
    CoSignerNotConcerned {
        /// The field, `co_signatures[i].public_key`.
        field: String,
        /// The co-signer's key.
        key: PublicKey,
    },
    /// The block holds more records than genesis allows.
    #[error("a block holds at most {max} records")]
    TooManyRecords {
        /// `max_block_records` of genesis.
        max: u32,
    },
    /// `MemberJoined` names a member id already used on this chain.
    #[error("member id {member} is already used on this chain")]
    MemberIdTaken {
        /// The member.
        member: MemberId,
    },
    /// The record names a member that was never registered.
    #[error("member {member} is not registered")]
    UnknownMember {
        /// The member.
        member: MemberId,
    },
    /// The member belongs to another branch than the signing one.
    #[error(
        "member {member} belongs to branch {member_branch}, not to the signing branch {branch}"
    )]
    MemberNotInBranch {
        /// The member.
        member: MemberId,
        /// The member's branch.
        member_branch: BranchId,
        /// The signing branch.
        branch: BranchId,
    },
    /// The member has left.
    #[error("member {member} has left and is no longer active")]
    MemberNotActive {
        /// The member.
        member: MemberId,
    },
    /// `MemberTransferred` names a receiving branch that is not in genesis.
    #[error("transfer of member {member} to branch {to_branch}, which is not in genesis")]
    TransferTargetUnknown {
        /// The member.
        member: MemberId,
        /// The receiving branch.
        to_branch: BranchId,
    },
    /// `MemberTransferred` names the member's own branch.
    #[error("transfer of member {member} to its own branch {branch}")]
    TransferToSelf {
        /// The member.
        member: MemberId,
        /// The branch.
        branch: BranchId,
    },
    /// `MemberTransferred` for a member whose earlier transfer is not yet accepted.
    #[error("member {member} already has a transfer pending to branch {to_branch}")]
    TransferPending {
        /// The member.
        member: MemberId,
        /// Where the pending transfer goes.
        to_branch: BranchId,
    },
    /// `MemberAccepted` without a matching pending transfer.
    #[error(
        "no transfer of member {member} from branch {from_branch} to branch {to_branch} is pending"
    )]
    NoPendingTransfer {
        /// The member.
        member: MemberId,
        /// The branch named as sender.
        from_branch: BranchId,
        /// The signing (receiving) branch.
        to_branch: BranchId,
    },
    /// `MeetingHeld` names a meeting id already used on this chain.
    #[error("meeting id {meeting} is already used on this chain")]
    MeetingIdTaken {
        /// The meeting.
        meeting: MeetingId,
    },
    /// A non-guest attendee is not an active member of the signing branch.
    #[error(
        "attendee {member} is not an active member of branch {branch} (a mobile member of another branch attends as a guest)"
    )]
    AttendeeNotActive {
        /// The member.
        member: MemberId,
        /// The signing branch.
        branch: BranchId,
    },
    /// An absentee is not an active member of the signing branch.
    #[error("absentee {member} is not an active member of branch {branch}")]
    AbsenteeNotActive {
        /// The member.
        member: MemberId,
        /// The signing branch.
        branch: BranchId,
    },
    /// A guest is not an active mobile member.
    #[error("guest {member} is not a mobile member")]
    GuestNotMobile {
        /// The member.
        member: MemberId,
    },
    /// A guest belongs to the branch holding the meeting.
    #[error("guest {member} belongs to branch {branch}, which held the meeting; list them as an attendee")]
    GuestFromOwnBranch {
        /// The member.
        member: MemberId,
        /// The signing branch.
        branch: BranchId,
    },
    /// `IssueRaised` names an issue id already used on this chain.
    #[error("issue id {issue} is already used on this chain")]
    IssueIdTaken {
        /// The issue.
        issue: IssueId,
    },
    /// The record names an issue that was never raised.
    #[error("issue {issue} was never raised")]
    UnknownIssue {
        /// The issue.
        issue: IssueId,
    },
    /// `IssueClaimed` for an issue that is not open.
    #[error("issue {issue} is {status}, only an open issue can be claimed")]
    IssueNotOpen {
        /// The issue.
        issue: IssueId,
        /// Its status.
        status: IssueStatus,
    },
    /// `IssueProgress` or `IssueResolved` for an issue that is not claimed.
    #[error("issue {issue} is {status}, only a claimed issue can progress or be resolved")]
    IssueNotClaimed {
        /// The issue.
        issue: IssueId,
        /// Its status.
        status: IssueStatus,
    },
    /// `IssueReviewed` for an issue that is not resolved (or already reviewed).
    #[error("issue {issue} is {status}, only a resolved issue can be reviewed")]
    IssueNotResolved {
        /// The issue.
        issue: IssueId,
        /// Its status.
        status: IssueStatus,
    },
    /// Progress or resolution signed by a branch other than the claiming one.
    #[error(
        "issue {issue} was claimed by branch {claimed_by}, not by the signing branch {branch}"
    )]
    IssueClaimedByOther {
        /// The issue.
        issue: IssueId,
        /// The claiming branch.
        claimed_by: BranchId,
        /// The signing branch.
        branch: BranchId,
    },
    /// `IssueProgress` lower than the progress already reported.
    #[error("progress of issue {issue} may not decrease from {from}% to {to}%")]
    ProgressDecreased {
        /// The issue.
        issue: IssueId,
        /// Progress so far.
        from: u8,
        /// Progress reported.
        to: u8,
    },
    /// A claimant is neither an active member of the signing branch nor an active mobile
    /// member of another branch.
    #[error(
        "claimant {member} is neither an active member of branch {branch} nor an active mobile member of another branch"
    )]
    ClaimantNotActive {
        /// The member.
        member: MemberId,
        /// The signing branch.
        branch: BranchId,
    },
    /// A correction names a record that is not committed.
    #[error("correction target {target} is not a committed record")]
    CorrectionTargetUnknown {
        /// The target.
        target: Hash,
    },
    /// A correction of a record signed by another branch.
    #[error("correction target {target} was signed by branch {target_branch}; only it may correct it, not {branch}")]
    CorrectionOtherBranch {
        /// The target.
        target: Hash,
        /// The branch that signed the target.
        target_branch: BranchId,
        /// The signing branch.
        branch: BranchId,
    },
    /// A replacement body of another kind than the target.
    #[error("correction of {target} ({expected}) has a replacement of kind {actual}")]
    CorrectionKindMismatch {
        /// The target.
        target: Hash,
        /// The target's kind.
        expected: RecordKind,
        /// The replacement's kind.
        actual: RecordKind,
    },
    /// A replacement that changes the identity of the corrected thing (a meeting's id).
    #[error("correction of {target} may not change `{field}`")]
    CorrectionChangesIdentity {
        /// The target.
        target: Hash,
        /// The field.
        field: &'static str,
    },
    /// A correction of a kind that is corrected by later records of its own kind instead.
    #[error(
        "records of kind {kind} cannot be corrected (target {target}); member-registry and issue records form state machines whose later records are the correction"
    )]
    NotCorrectable {
        /// The target.
        target: Hash,
        /// Its kind.
        kind: RecordKind,
    },
    /// A correction of a retracted record.
    #[error("record {target} was retracted and cannot be corrected again")]
    AlreadyRetracted {
        /// The target.
        target: Hash,
    },
    /// A record corrected too many times.
    #[error("record {target} already has the maximum of {max} corrections")]
    TooManyCorrections {
        /// The target.
        target: Hash,
        /// [`crate::CORRECTIONS_PER_RECORD_MAX`].
        max: usize,
    },
}

/// Applying a record failed: either it breaks a rule, or state could not be read.
///
/// The two must not be confused: a rejected record is dropped from a proposal (or makes a
/// proposal invalid), while a read failure says nothing about the record and must stop the
/// node from voting on or committing anything until storage is healthy again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The record breaks a stateful rule.
    #[error("record rejected: {0}")]
    Rejected(#[from] Rejection),
    /// State could not be read, or is inconsistent.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The first record of a block that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index} ({record_id}) of the block: {reason}")]
pub struct BlockRejection {
    /// Its position in the block.
    pub index: u32,
    /// Its id.
    pub record_id: Hash,
    /// The rule it breaks.
    pub reason: Rejection,
}

/// Applying a block failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A record breaks a rule: the block is invalid.
    #[error("block rejected: {0}")]
    Rejected(#[from] BlockRejection),
    /// State could not be read, or is inconsistent: nothing is known about the block.
    #[error(transparent)]
    Read(#[from] ReadError),
}
