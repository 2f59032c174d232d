//! Records: the facts a branch signs (DESIGN.md §2).
//!
//! A [`Record`] is the unsigned content; a [`SignedRecord`] adds optional co-signatures (e.g.
//! by a member's own key, over the record alone) and the branch's signature over the record
//! and its co-signatures. The record's id ([`record_id`]) hashes the record and its
//! co-signatures but not the branch signature, so an identical replay has the same id and is
//! refused as a duplicate, re-encoding the branch signature cannot make a "new" record, and
//! changing the co-signature set changes the id and breaks the branch signature.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{
    check_registered_key, hash_tagged, signing_bytes, Domain, Hash, PublicKey, Signature, Signer,
};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, DecodeError};
use crate::ids::{check_ident, BranchId, Date, IssueId, MeetingId, MemberId, Period};
use crate::limits::*;
use crate::validation::{check_count, check_range, check_text, Rule, Validation, ValidationError};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            BorshSerialize, BorshDeserialize, Serialize, Deserialize,
        )]
        #[borsh(use_discriminant = false)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration (and encoding) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value's name.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The value's name, as used by the API, the CLI and CSV files.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a name, naming `field` and the allowed names on failure.
            pub fn parse_field(field: &str, text: &str) -> Result<Self, ValidationError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::new(field, Rule::Enum {
                        allowed: Self::NAMES,
                        actual: text.to_owned(),
                    })),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse_field(stringify!($name), text)
            }
        }
    };
}

named_enum!(
    /// A member's standing.
    MemberStatus {
        /// A full member.
        Full => "full",
        /// A probationary member.
        Probationary => "probationary",
    }
);

named_enum!(
    /// Why a member left.
    LeaveReason {
        /// Left of their own will.
        Resigned => "resigned",
        /// Removed by the organisation.
        Removed => "removed",
        /// Died.
        Deceased => "deceased",
        /// Anything else.
        Other => "other",
    }
);

named_enum!(
    /// How a study session was held.
    StudyForm {
        /// Alone.
        SelfStudy => "self",
        /// In a group.
        Group => "group",
        /// At a lecture.
        Lecture => "lecture",
        /// Online.
        Online => "online",
    }
);

named_enum!(
    /// The kinds of meeting of DESIGN.md §2 ("three meetings and one lecture" and more).
    MeetingKind {
        /// Branch assembly (支部党员大会).
        BranchAssembly => "branch_assembly",
        /// Branch committee (支委会).
        Committee => "committee",
        /// Group meeting (党小组会).
        Group => "group",
        /// Lecture (党课).
        Lecture => "lecture",
        /// Organisational life meeting (组织生活会).
        OrganisationalLife => "organisational_life",
        /// Themed day (主题党日).
        ThemedDay => "themed_day",
    }
);

named_enum!(
    /// Why a member missed a meeting.
    AbsenceReason {
        /// Illness.
        Illness => "illness",
        /// Work duties.
        Work => "work",
        /// Travelling or posted elsewhere.
        Travel => "travel",
        /// Family matters.
        Family => "family",
        /// Anything else.
        Other => "other",
    }
);

/// A member joined the signing branch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberJoined {
    /// The new member's id, unused chain-wide.
    pub member_id: MemberId,
    /// The day they joined.
    pub joined_on: Date,
    /// Full or probationary.
    pub status: MemberStatus,
    /// Works away from the home branch (may attend other branches' meetings as a guest).
    pub mobile: bool,
    /// The member's own key, if they co-sign their records.
    pub member_key: Option<PublicKey>,
}

/// The signing branch hands a member to another branch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberTransferred {
    /// The member.
    pub member_id: MemberId,
    /// The receiving branch.
    pub to_branch: BranchId,
}

/// The signing branch accepts a member transferred to it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberAccepted {
    /// The member.
    pub member_id: MemberId,
    /// The branch that transferred them.
    pub from_branch: BranchId,
}

/// A member left the signing branch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberLeft {
    /// The member.
    pub member_id: MemberId,
    /// Why.
    pub reason: LeaveReason,
}

/// A member studied.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct StudySession {
    /// The member.
    pub member_id: MemberId,
    /// What was studied, at most [`MATERIAL_CHARS_MAX`] characters.
    pub material: String,
    /// How long, 1..=[`STUDY_MINUTES_MAX`] minutes.
    pub minutes: u16,
    /// How.
    pub form: StudyForm,
    /// When.
    pub occurred_on: Date,
}

/// A member paid dues for a month.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DuesPaid {
    /// The member.
    pub member_id: MemberId,
    /// The month paid for.
    pub period: Period,
    /// Amount in minor units (e.g. fen), 1..=[`DUES_AMOUNT_MINOR_MAX`].
    pub amount_minor: u64,
    /// Salted commitment to the payment reference; the salt stays off chain.
    pub reference_commitment: Option<Hash>,
}

/// Someone attended a meeting.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Attendee {
    /// The member.
    pub member_id: MemberId,
    /// A mobile member of another branch attending as a guest.
    pub guest: bool,
}

/// Someone missed a meeting.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Absentee {
    /// The member.
    pub member_id: MemberId,
    /// Why.
    pub reason: AbsenceReason,
}

/// A meeting was held.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MeetingHeld {
    /// The meeting's id, unused chain-wide.
    pub meeting_id: MeetingId,
    /// Which kind.
    pub kind: MeetingKind,
    /// The topic, at most [`TOPIC_CHARS_MAX`] characters.
    pub topic: String,
    /// When.
    pub held_on: Date,
    /// Who attended, 1..=[`MEETING_ATTENDEES_MAX`].
    pub attendees: Vec<Attendee>,
    /// Who was absent, with reasons, at most [`MEETING_ABSENTEES_MAX`].
    pub absentees: Vec<Absentee>,
}

/// Who an issue concerns.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueScope {
    /// One member.
    Member(MemberId),
    /// The branch as a whole.
    Branch,
    /// A request from the public.
    Public,
}

/// A problem was raised into the issue pool.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueRaised {
    /// The issue's id, unused chain-wide.
    pub issue_id: IssueId,
    /// Who it concerns.
    pub scope: IssueScope,
    /// A title, at most [`TITLE_CHARS_MAX`] characters.
    pub title: String,
    /// When.
    pub raised_on: Date,
}

/// Members claimed an open issue (one, or a pair or group working together).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueClaimed {
    /// The issue.
    pub issue_id: IssueId,
    /// The claimants, 1..=[`ISSUE_CLAIMANTS_MAX`], distinct.
    pub claimants: Vec<MemberId>,
}

/// Work on a claimed issue progressed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueProgress {
    /// The issue.
    pub issue_id: IssueId,
    /// Percent done, 0..=100, never lower than before.
    pub percent: u8,
    /// A note, at most [`NOTE_CHARS_MAX`] characters.
    pub note: String,
}

/// A claimed issue was resolved (published).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueResolved {
    /// The issue.
    pub issue_id: IssueId,
    /// What was done, at most [`SUMMARY_CHARS_MAX`] characters.
    pub summary: String,
}

/// Who reviewed a resolved issue.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reviewer {
    /// A member.
    Member(MemberId),
    /// The public.
    Public,
}

/// A resolved issue was rated.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IssueReviewed {
    /// The issue.
    pub issue_id: IssueId,
    /// Rating, 1..=5.
    pub rating: u8,
    /// Who rated it.
    pub by: Reviewer,
}

/// A correction of an earlier record by the same branch. The original stays on chain;
/// queries show the corrected view and the history.
///
/// `RecordBody` holds a `Correction` and a `Correction` holds a `RecordBody`, so the type is
/// recursive, and a derived decoder would follow a chain of corrections nested in each
/// other's `replacement` as deep as the input goes, one stack frame per level: 4 000 levels
/// fit in a 156 KB record and overflow a 2 MiB thread stack. Both decoders here (borsh and
/// serde) refuse a replacement that is itself a correction, so a decoded body nests at most
/// one level. Encoding is derived and unchanged: every valid record has the bytes it had.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, Serialize, Deserialize)]
pub struct Correction {
    /// The id of the record corrected.
    pub target: Hash,
    /// Why, at most [`REASON_CHARS_MAX`] characters.
    pub reason: String,
    /// The body that replaces the original's, of the same kind; none retracts the original.
    /// Never a correction: decoding refuses one.
    #[serde(default, deserialize_with = "deserialize_replacement")]
    pub replacement: Option<Box<RecordBody>>,
}

/// The borsh variant index of [`RecordBody::Correction`] (its position in declaration order).
/// A unit test checks it against the derived encoding.
const CORRECTION_VARIANT: u8 = 12;

/// Why a replacement that is a correction is refused, by both decoders.
const NESTED_CORRECTION: &str =
    "correction.replacement: a correction cannot replace a record with another correction";

/// The derived decoding of `Correction` (`target`, `reason`, then `replacement` as a borsh
/// `Option`), except that the replacement's variant index is read first and a correction is
/// refused before anything of its body is decoded. Decoding a correction therefore recurses
/// once, into a body that cannot recurse again.
impl BorshDeserialize for Correction {
    fn deserialize_reader<R: borsh::io::Read>(reader: &mut R) -> borsh::io::Result<Self> {
        use borsh::de::EnumExt as _;
        use borsh::io::{Error, ErrorKind};

        let target = Hash::deserialize_reader(reader)?;
        let reason = String::deserialize_reader(reader)?;
        let replacement = match u8::deserialize_reader(reader)? {
            0 => None,
            1 => {
                let variant = u8::deserialize_reader(reader)?;
                if variant == CORRECTION_VARIANT {
                    return Err(Error::new(ErrorKind::InvalidData, NESTED_CORRECTION));
                }
                Some(Box::new(RecordBody::deserialize_variant(reader, variant)?))
            }
            flag => {
                // The message borsh gives for any `Option`.
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("Invalid Option representation: {flag}. The first byte must be 0 or 1"),
                ));
            }
        };
        Ok(Correction {
            target,
            reason,
            replacement,
        })
    }
}

/// Serde's decoding of [`Correction::replacement`]: refuses a correction. Text formats are
/// already bounded in depth by their parser (serde_json stops at 128 levels); this keeps the
/// two decoders' verdicts the same.
fn deserialize_replacement<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RecordBody>>, D::Error> {
    let replacement = <Option<Box<RecordBody>> as Deserialize>::deserialize(deserializer)?;
    if replacement
        .as_deref()
        .is_some_and(|body| body.kind() == RecordKind::Correction)
    {
        return Err(serde::de::Error::custom(NESTED_CORRECTION));
    }
    Ok(replacement)
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    /// See [`MemberJoined`].
    MemberJoined(MemberJoined),
    /// See [`MemberTransferred`].
    MemberTransferred(MemberTransferred),
    /// See [`MemberAccepted`].
    MemberAccepted(MemberAccepted),
    /// See [`MemberLeft`].
    MemberLeft(MemberLeft),
    /// See [`StudySession`].
    StudySession(StudySession),
    /// See [`DuesPaid`].
    DuesPaid(DuesPaid),
    /// See [`MeetingHeld`].
    MeetingHeld(MeetingHeld),
    /// See [`IssueRaised`].
    IssueRaised(IssueRaised),
    /// See [`IssueClaimed`].
    IssueClaimed(IssueClaimed),
    /// See [`IssueProgress`].
    IssueProgress(IssueProgress),
    /// See [`IssueResolved`].
    IssueResolved(IssueResolved),
    /// See [`IssueReviewed`].
    IssueReviewed(IssueReviewed),
    /// See [`Correction`].
    Correction(Correction),
}

named_enum!(
    /// The kind of a record, for indices and queries.
    RecordKind {
        /// [`MemberJoined`].
        MemberJoined => "member_joined",
        /// [`MemberTransferred`].
        MemberTransferred => "member_transferred",
        /// [`MemberAccepted`].
        MemberAccepted => "member_accepted",
        /// [`MemberLeft`].
        MemberLeft => "member_left",
        /// [`StudySession`].
        StudySession => "study_session",
        /// [`DuesPaid`].
        DuesPaid => "dues_paid",
        /// [`MeetingHeld`].
        MeetingHeld => "meeting_held",
        /// [`IssueRaised`].
        IssueRaised => "issue_raised",
        /// [`IssueClaimed`].
        IssueClaimed => "issue_claimed",
        /// [`IssueProgress`].
        IssueProgress => "issue_progress",
        /// [`IssueResolved`].
        IssueResolved => "issue_resolved",
        /// [`IssueReviewed`].
        IssueReviewed => "issue_reviewed",
        /// [`Correction`].
        Correction => "correction",
    }
);

impl RecordBody {
    /// The kind of this body.
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordBody::MemberJoined(_) => RecordKind::MemberJoined,
            RecordBody::MemberTransferred(_) => RecordKind::MemberTransferred,
            RecordBody::MemberAccepted(_) => RecordKind::MemberAccepted,
            RecordBody::MemberLeft(_) => RecordKind::MemberLeft,
            RecordBody::StudySession(_) => RecordKind::StudySession,
            RecordBody::DuesPaid(_) => RecordKind::DuesPaid,
            RecordBody::MeetingHeld(_) => RecordKind::MeetingHeld,
            RecordBody::IssueRaised(_) => RecordKind::IssueRaised,
            RecordBody::IssueClaimed(_) => RecordKind::IssueClaimed,
            RecordBody::IssueProgress(_) => RecordKind::IssueProgress,
            RecordBody::IssueResolved(_) => RecordKind::IssueResolved,
            RecordBody::IssueReviewed(_) => RecordKind::IssueReviewed,
            RecordBody::Correction(_) => RecordKind::Correction,
        }
    }

    /// The member a record is about, if it is about one member.
    pub fn member_id(&self) -> Option<&MemberId> {
        match self {
            RecordBody::MemberJoined(b) => Some(&b.member_id),
            RecordBody::MemberTransferred(b) => Some(&b.member_id),
            RecordBody::MemberAccepted(b) => Some(&b.member_id),
            RecordBody::MemberLeft(b) => Some(&b.member_id),
            RecordBody::StudySession(b) => Some(&b.member_id),
            RecordBody::DuesPaid(b) => Some(&b.member_id),
            _ => None,
        }
    }

    /// Stateless rules: lengths, ranges, charsets, dates, distinctness. Field paths start at
    /// the body (`minutes`, `attendees[2].member_id`).
    pub fn validate(&self) -> Validation {
        match self {
            RecordBody::MemberJoined(b) => {
                b.member_id.validate("member_id")?;
                if let Some(key) = &b.member_key {
                    // A member key is registered here: refuse weak or ambiguous keys (DESIGN.md §3).
                    check_registered_key(key).map_err(|e| {
                        ValidationError::new(
                            "member_key",
                            Rule::Key {
                                reason: e.to_string(),
                            },
                        )
                    })?;
                }
                b.joined_on.validate("joined_on")
            }
            RecordBody::MemberTransferred(b) => {
                b.member_id.validate("member_id")?;
                b.to_branch.validate("to_branch")
            }
            RecordBody::MemberAccepted(b) => {
                b.member_id.validate("member_id")?;
                b.from_branch.validate("from_branch")
            }
            RecordBody::MemberLeft(b) => b.member_id.validate("member_id"),
            RecordBody::StudySession(b) => {
                b.member_id.validate("member_id")?;
                check_text("material", &b.material, MATERIAL_CHARS_MAX, false)?;
                check_range(
                    "minutes",
                    u64::from(b.minutes),
                    1,
                    u64::from(STUDY_MINUTES_MAX),
                )?;
                b.occurred_on.validate("occurred_on")
            }
            RecordBody::DuesPaid(b) => {
                b.member_id.validate("member_id")?;
                b.period.validate("period")?;
                check_range("amount_minor", b.amount_minor, 1, DUES_AMOUNT_MINOR_MAX)
            }
            RecordBody::MeetingHeld(b) => validate_meeting(b),
            RecordBody::IssueRaised(b) => {
                b.issue_id.validate("issue_id")?;
                if let IssueScope::Member(member) = &b.scope {
                    member.validate("scope.member")?;
                }
                check_text("title", &b.title, TITLE_CHARS_MAX, false)?;
                b.raised_on.validate("raised_on")
            }
            RecordBody::IssueClaimed(b) => {
                b.issue_id.validate("issue_id")?;
                check_count("claimants", b.claimants.len(), 1, ISSUE_CLAIMANTS_MAX)?;
                let mut seen = BTreeSet::new();
                for (i, member) in b.claimants.iter().enumerate() {
                    // Field paths are formatted only on error: this runs for every record.
                    check_member_in_list(&mut seen, member, || format!("claimants[{i}]"))?;
                }
                Ok(())
            }
            RecordBody::IssueProgress(b) => {
                b.issue_id.validate("issue_id")?;
                check_range("percent", u64::from(b.percent), 0, 100)?;
                check_text("note", &b.note, NOTE_CHARS_MAX, true)
            }
            RecordBody::IssueResolved(b) => {
                b.issue_id.validate("issue_id")?;
                check_text("summary", &b.summary, SUMMARY_CHARS_MAX, false)
            }
            RecordBody::IssueReviewed(b) => {
                b.issue_id.validate("issue_id")?;
                check_range("rating", u64::from(b.rating), 1, 5)?;
                if let Reviewer::Member(member) = &b.by {
                    member.validate("by.member")?;
                }
                Ok(())
            }
            RecordBody::Correction(b) => {
                check_text("reason", &b.reason, REASON_CHARS_MAX, false)?;
                if let Some(replacement) = &b.replacement {
                    if replacement.kind() == RecordKind::Correction {
                        return Err(ValidationError::new(
                            "replacement",
                            Rule::NotAllowed {
                                reason:
                                    "a correction cannot replace a record with another correction",
                            },
                        ));
                    }
                    replacement
                        .validate()
                        .map_err(|e| e.within("replacement"))?;
                }
                Ok(())
            }
        }
    }
}

fn validate_meeting(b: &MeetingHeld) -> Validation {
    b.meeting_id.validate("meeting_id")?;
    check_text("topic", &b.topic, TOPIC_CHARS_MAX, false)?;
    b.held_on.validate("held_on")?;
    check_count("attendees", b.attendees.len(), 1, MEETING_ATTENDEES_MAX)?;
    check_count("absentees", b.absentees.len(), 0, MEETING_ABSENTEES_MAX)?;
    let mut seen = BTreeSet::new();
    for (i, attendee) in b.attendees.iter().enumerate() {
        check_member_in_list(&mut seen, &attendee.member_id, || {
            format!("attendees[{i}].member_id")
        })?;
    }
    for (i, absentee) in b.absentees.iter().enumerate() {
        check_member_in_list(&mut seen, &absentee.member_id, || {
            format!("absentees[{i}].member_id")
        })?;
    }
    Ok(())
}

/// Checks one member id of a list: the identifier pattern, and not seen before in the list.
/// `field` builds the field path, only when there is an error to report.
fn check_member_in_list<'a>(
    seen: &mut BTreeSet<&'a MemberId>,
    member: &'a MemberId,
    field: impl Fn() -> String,
) -> Validation {
    check_ident("member_id", member.as_str()).map_err(|e| ValidationError::new(field(), e.rule))?;
    if !seen.insert(member) {
        return Err(ValidationError::new(
            field(),
            Rule::Duplicate {
                value: member.to_string(),
            },
        ));
    }
    Ok(())
}

/// The unsigned content of a record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Record {
    /// The chain this record is for (also inside the signed bytes).
    pub chain_id: String,
    /// The branch that signs it.
    pub branch_id: BranchId,
    /// When the branch created it, Unix milliseconds.
    pub created_at_ms: u64,
    /// A client nonce, so two otherwise equal records can both be submitted.
    pub nonce: u64,
    /// What it says.
    pub body: RecordBody,
}

/// The borsh encoding of an empty list of co-signatures (a zero `u32` count).
const NO_CO_SIGNATURES: [u8; 4] = [0; 4];

/// The canonical bytes of a list of co-signatures, as [`SignedRecord`] encodes them.
fn co_signature_bytes(co_signatures: &[CoSignature]) -> Vec<u8> {
    encode(co_signatures)
}

/// The id of `record` carrying `co_signatures`:
/// `H(tag_record_id ‖ borsh(record) ‖ borsh(co_signatures))`, the same definition for every
/// record (without co-signatures, `borsh` of the empty list is four zero bytes).
///
/// The co-signatures are inside the id, so the Merkle leaf that commits a record in a block
/// commits its co-signature set too. The branch signature is not: an identical replay is a
/// duplicate however its signature bytes are encoded.
pub fn record_id(record: &Record, co_signatures: &[CoSignature]) -> Hash {
    let record_bytes = encode(record);
    if co_signatures.is_empty() {
        hash_tagged(Domain::RecordId, &[&record_bytes, &NO_CO_SIGNATURES])
    } else {
        hash_tagged(
            Domain::RecordId,
            &[&record_bytes, &co_signature_bytes(co_signatures)],
        )
    }
}

/// The bytes the branch signs for `record` carrying `co_signatures`:
/// `tag_record ‖ u32_le(len(chain_id)) ‖ chain_id ‖ borsh(record) ‖ borsh(co_signatures)`.
///
/// The same bytes as the id, so whoever holds a signed record (a relay, a store, an export)
/// cannot add, remove, swap or re-encode a co-signature without breaking the branch
/// signature.
pub fn branch_signing_message(record: &Record, co_signatures: &[CoSignature]) -> Vec<u8> {
    let mut body = encode(record);
    if co_signatures.is_empty() {
        body.extend_from_slice(&NO_CO_SIGNATURES);
    } else {
        body.extend_from_slice(&co_signature_bytes(co_signatures));
    }
    signing_bytes(Domain::Record, &record.chain_id, &body)
}

impl Record {
    /// The canonical bytes of this record (what a co-signature covers).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// The bytes a co-signer signs: `tag_record_cosign ‖ u32_le(len(chain_id)) ‖ chain_id ‖
    /// borsh(record)`, the record alone (co-signers sign before the branch does).
    pub fn co_signing_message(&self) -> Vec<u8> {
        signing_bytes(
            Domain::RecordCoSignature,
            &self.chain_id,
            &self.canonical_bytes(),
        )
    }

    /// Stateless rules for the whole record. Field paths start at the record
    /// (`chain_id`, `branch_id`, `body.minutes`).
    pub fn validate(&self) -> Validation {
        check_ident("chain_id", &self.chain_id)?;
        self.branch_id.validate("branch_id")?;
        self.body.validate().map_err(|e| e.within("body"))
    }

    /// A co-signature on this record by `signer` (e.g. a member's own key), over
    /// [`Record::co_signing_message`].
    pub fn co_signature(&self, signer: &dyn Signer) -> CoSignature {
        CoSignature {
            public_key: signer.public_key(),
            signature: signer.sign(&self.co_signing_message()),
        }
    }

    /// This record with a first co-signature by `signer`; more may follow, then the branch
    /// signs with [`CoSignedRecord::sign`].
    pub fn co_signed_by(self, signer: &dyn Signer) -> CoSignedRecord {
        self.with_co_signatures(Vec::new()).co_signed_by(signer)
    }

    /// This record with co-signatures made elsewhere (each by [`Record::co_signature`]),
    /// for the branch to sign with [`CoSignedRecord::sign`].
    pub fn with_co_signatures(self, co_signatures: Vec<CoSignature>) -> CoSignedRecord {
        CoSignedRecord {
            record: self,
            co_signatures,
        }
    }

    /// Signs with the branch key, with no co-signatures.
    pub fn sign(self, branch_key: &dyn Signer) -> SignedRecord {
        self.with_co_signatures(Vec::new()).sign(branch_key)
    }
}

/// A co-signature on a record, e.g. by the member's own key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CoSignature {
    /// The co-signer's key.
    pub public_key: PublicKey,
    /// Signature over [`Record::co_signing_message`].
    pub signature: Signature,
}

/// A record and its co-signatures, waiting for the branch signature. The order is fixed by
/// what each signs: co-signers sign the record alone, then the branch signs the record with
/// the co-signatures ([`branch_signing_message`]).
///
/// ```
/// # use branchledger_crypto::Keypair;
/// # use branchledger_types::record::*;
/// # use branchledger_types::{BranchId, Date, MemberId};
/// # let (branch_key, member_key) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
/// # let record = Record {
/// #     chain_id: "c".into(), branch_id: BranchId("b".into()), created_at_ms: 1, nonce: 1,
/// #     body: RecordBody::MemberLeft(MemberLeft {
/// #         member_id: MemberId("m-1".into()), reason: LeaveReason::Resigned,
/// #     }),
/// # };
/// let signed = record.co_signed_by(&member_key).sign(&branch_key);
/// assert_eq!(signed.co_signatures.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoSignedRecord {
    /// The content.
    pub record: Record,
    /// The co-signatures so far.
    pub co_signatures: Vec<CoSignature>,
}

impl CoSignedRecord {
    /// Adds a co-signature by `signer`.
    pub fn co_signed_by(mut self, signer: &dyn Signer) -> CoSignedRecord {
        self.co_signatures.push(self.record.co_signature(signer));
        self
    }

    /// The id the record will have once signed (see [`record_id`]).
    pub fn id(&self) -> Hash {
        record_id(&self.record, &self.co_signatures)
    }

    /// The bytes the branch signs (see [`branch_signing_message`]).
    pub fn signing_message(&self) -> Vec<u8> {
        branch_signing_message(&self.record, &self.co_signatures)
    }

    /// Signs the record and its co-signatures with the branch key.
    pub fn sign(self, branch_key: &dyn Signer) -> SignedRecord {
        let signature = branch_key.sign(&self.signing_message());
        SignedRecord {
            record: self.record,
            signature,
            co_signatures: self.co_signatures,
        }
    }
}

/// A record with its branch signature and co-signatures: what travels and is stored.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The content.
    pub record: Record,
    /// The branch's signature over [`SignedRecord::signing_message`]: the record and its
    /// co-signatures.
    pub signature: Signature,
    /// Co-signatures, at most [`CO_SIGNATURES_MAX`], distinct keys, each over
    /// [`Record::co_signing_message`].
    pub co_signatures: Vec<CoSignature>,
}

impl SignedRecord {
    /// The record id: of the record and its co-signatures, not of the branch signature (see
    /// [`record_id`]).
    pub fn id(&self) -> Hash {
        record_id(&self.record, &self.co_signatures)
    }

    /// The bytes the branch signature covers (see [`branch_signing_message`]).
    pub fn signing_message(&self) -> Vec<u8> {
        branch_signing_message(&self.record, &self.co_signatures)
    }

    /// Canonical bytes of the whole envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an envelope, at most [`RECORD_BYTES_MAX`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedRecord, DecodeError> {
        decode("signed record", bytes, RECORD_BYTES_MAX)
    }

    /// Stateless rules for the record and the envelope: co-signature count, distinct
    /// co-signer keys, and each co-signer key a strong one (a point, canonically encoded, of
    /// prime order: [`check_registered_key`]), since a co-signature by a small-order key
    /// proves nothing. Signatures are checked by the verifier, which knows the keys; whose
    /// keys may co-sign is a stateful rule.
    pub fn validate(&self) -> Validation {
        self.record.validate()?;
        check_count(
            "co_signatures",
            self.co_signatures.len(),
            0,
            CO_SIGNATURES_MAX,
        )?;
        let mut seen = BTreeSet::new();
        for (i, co) in self.co_signatures.iter().enumerate() {
            let field = || format!("co_signatures[{i}].public_key");
            check_registered_key(&co.public_key).map_err(|e| {
                ValidationError::new(
                    field(),
                    Rule::Key {
                        reason: e.to_string(),
                    },
                )
            })?;
            if !seen.insert(co.public_key) {
                return Err(ValidationError::new(
                    field(),
                    Rule::Duplicate {
                        value: co.public_key.to_hex(),
                    },
                ));
            }
        }
        Ok(())
    }
}

/// A salted commitment to a value that could be guessed (e.g. a payment reference):
/// `H(tag_commitment ‖ u32_le(len(salt)) ‖ salt ‖ value)`. The salt stays off chain.
pub fn commitment(salt: &[u8], value: &[u8]) -> Hash {
    hash_tagged(
        Domain::Commitment,
        &[&(salt.len() as u32).to_le_bytes(), salt, value],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(minutes: u16, material: &str) -> RecordBody {
        RecordBody::StudySession(StudySession {
            member_id: MemberId("m-1".into()),
            material: material.into(),
            minutes,
            form: StudyForm::Group,
            occurred_on: Date::new(2025, 3, 1),
        })
    }

    fn record(body: RecordBody) -> Record {
        Record {
            chain_id: "test-chain".into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: 1,
            nonce: 0,
            body,
        }
    }

    fn meeting(attendees: Vec<&str>, absentees: Vec<&str>) -> RecordBody {
        RecordBody::MeetingHeld(MeetingHeld {
            meeting_id: MeetingId("mt-1".into()),
            kind: MeetingKind::Lecture,
            topic: "topic".into(),
            held_on: Date::new(2025, 3, 1),
            attendees: attendees
                .into_iter()
                .map(|m| Attendee {
                    member_id: MemberId(m.into()),
                    guest: false,
                })
                .collect(),
            absentees: absentees
                .into_iter()
                .map(|m| Absentee {
                    member_id: MemberId(m.into()),
                    reason: AbsenceReason::Work,
                })
                .collect(),
        })
    }

    /// Each case breaks one stateless rule; the error must name the field and the rule.
    #[test]
    fn stateless_rules_name_field_and_rule() {
        let long = "x".repeat(MATERIAL_CHARS_MAX + 1);
        let cases: Vec<(&str, Record, &str, &str)> = vec![
            (
                "zero minutes",
                record(study(0, "m")),
                "body.minutes",
                "must be in 1..=720, got 0",
            ),
            (
                "too many minutes",
                record(study(721, "m")),
                "body.minutes",
                "got 721",
            ),
            (
                "empty material",
                record(study(5, "")),
                "body.material",
                "length must be 1..=200, got 0",
            ),
            (
                "long material",
                record(study(5, &long)),
                "body.material",
                "got 201",
            ),
            (
                "control char",
                record(study(5, "a\u{7}")),
                "body.material",
                "printable",
            ),
            (
                "bad chain id",
                Record {
                    chain_id: "Bad Chain".into(),
                    ..record(study(5, "m"))
                },
                "chain_id",
                "must match",
            ),
            (
                "bad branch",
                Record {
                    branch_id: BranchId("B!".into()),
                    ..record(study(5, "m"))
                },
                "branch_id",
                "must match",
            ),
            (
                "bad date",
                record(RecordBody::MemberJoined(MemberJoined {
                    member_id: MemberId("m-2".into()),
                    joined_on: Date::new(2025, 2, 30),
                    status: MemberStatus::Full,
                    mobile: false,
                    member_key: None,
                })),
                "body.joined_on",
                "day 30 outside 1..=28",
            ),
            (
                "zero dues",
                record(RecordBody::DuesPaid(DuesPaid {
                    member_id: MemberId("m-1".into()),
                    period: Period::new(2025, 1),
                    amount_minor: 0,
                    reference_commitment: None,
                })),
                "body.amount_minor",
                "got 0",
            ),
            (
                "bad period",
                record(RecordBody::DuesPaid(DuesPaid {
                    member_id: MemberId("m-1".into()),
                    period: Period::new(2025, 13),
                    amount_minor: 5,
                    reference_commitment: None,
                })),
                "body.period",
                "month 13",
            ),
            (
                "no attendees",
                record(meeting(vec![], vec![])),
                "body.attendees",
                "length must be 1..=200, got 0",
            ),
            (
                "duplicate attendee",
                record(meeting(vec!["a", "a"], vec![])),
                "body.attendees[1].member_id",
                "duplicate",
            ),
            (
                "attendee also absent",
                record(meeting(vec!["a"], vec!["a"])),
                "body.absentees[0].member_id",
                "duplicate",
            ),
            (
                "rating 6",
                record(RecordBody::IssueReviewed(IssueReviewed {
                    issue_id: IssueId("i".into()),
                    rating: 6,
                    by: Reviewer::Public,
                })),
                "body.rating",
                "must be in 1..=5",
            ),
            (
                "percent 101",
                record(RecordBody::IssueProgress(IssueProgress {
                    issue_id: IssueId("i".into()),
                    percent: 101,
                    note: String::new(),
                })),
                "body.percent",
                "must be in 0..=100",
            ),
            (
                "no claimants",
                record(RecordBody::IssueClaimed(IssueClaimed {
                    issue_id: IssueId("i".into()),
                    claimants: vec![],
                })),
                "body.claimants",
                "length must be 1..=8",
            ),
            (
                "correction of correction",
                record(RecordBody::Correction(Correction {
                    target: Hash::ZERO,
                    reason: "r".into(),
                    replacement: Some(Box::new(RecordBody::Correction(Correction {
                        target: Hash::ZERO,
                        reason: "r".into(),
                        replacement: None,
                    }))),
                })),
                "body.replacement",
                "not allowed",
            ),
            (
                "bad replacement",
                record(RecordBody::Correction(Correction {
                    target: Hash::ZERO,
                    reason: "r".into(),
                    replacement: Some(Box::new(study(0, "m"))),
                })),
                "body.replacement.minutes",
                "got 0",
            ),
        ];
        for (name, record, field, rule) in cases {
            let error = record.validate().expect_err(name);
            assert_eq!(error.field, field, "{name}: {error}");
            assert!(error.to_string().contains(rule), "{name}: {error}");
        }
    }

    #[test]
    fn valid_records_pass_and_enums_parse_by_name() {
        assert_eq!(
            record(study(60, "Constitution, chapter 2")).validate(),
            Ok(())
        );
        assert_eq!(
            record(meeting(vec!["a", "b"], vec!["c"])).validate(),
            Ok(())
        );
        assert_eq!(
            "themed_day".parse::<MeetingKind>(),
            Ok(MeetingKind::ThemedDay)
        );
        let error = MeetingKind::parse_field("kind", "party").expect_err("unknown kind");
        assert_eq!(error.field, "kind");
        assert!(error.to_string().contains("branch_assembly"), "{error}");
    }

    #[test]
    fn record_id_ignores_signatures_and_changes_with_content() {
        let signer = branchledger_crypto::Keypair::from_seed([1; 32]);
        let a = record(study(60, "m")).sign(&signer);
        let mut b = a.clone();
        b.signature.0[0] ^= 1;
        assert_eq!(a.id(), b.id());
        let c = Record {
            nonce: 1,
            ..record(study(60, "m"))
        }
        .sign(&signer);
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn correction_variant_index_is_the_derived_one() {
        let body = RecordBody::Correction(Correction {
            target: Hash::ZERO,
            reason: "r".into(),
            replacement: None,
        });
        assert_eq!(encode(&body)[0], CORRECTION_VARIANT);
        assert_eq!(
            RecordKind::ALL
                .iter()
                .position(|k| *k == RecordKind::Correction),
            Some(usize::from(CORRECTION_VARIANT))
        );
    }

    #[test]
    fn co_signatures_are_in_the_id_and_the_branch_message() {
        let branch = branchledger_crypto::Keypair::from_seed([1; 32]);
        let member = branchledger_crypto::Keypair::from_seed([2; 32]);
        let co_signed = record(study(60, "m")).co_signed_by(&member);
        let id = co_signed.id();
        let message = co_signed.signing_message();
        let signed = co_signed.sign(&branch);
        assert_eq!(signed.id(), id);
        assert_eq!(signed.signing_message(), message);
        let bare = record(study(60, "m")).sign(&branch);
        assert_ne!(bare.id(), signed.id());
        // Without co-signatures: the record, then an empty list.
        let mut bytes = encode(&bare.record);
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(
            bare.id(),
            hash_tagged(Domain::RecordId, &[&bytes]),
            "one definition for every record"
        );
        assert_eq!(
            bare.signing_message(),
            signing_bytes(Domain::Record, "test-chain", &bytes)
        );
    }

    #[test]
    fn weak_co_signer_keys_are_refused() {
        let branch = branchledger_crypto::Keypair::from_seed([1; 32]);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let signed = record(study(60, "m"))
            .with_co_signatures(vec![CoSignature {
                public_key: PublicKey(identity),
                signature: Signature([0; 64]),
            }])
            .sign(&branch);
        let error = signed.validate().expect_err("small-order co-signer");
        assert_eq!(error.field, "co_signatures[0].public_key");
        assert!(error.to_string().contains("small-order"), "{error}");
    }

    #[test]
    fn duplicate_co_signers_are_refused() {
        let branch = branchledger_crypto::Keypair::from_seed([1; 32]);
        let member = branchledger_crypto::Keypair::from_seed([2; 32]);
        let signed = record(study(60, "m"))
            .co_signed_by(&member)
            .co_signed_by(&member)
            .sign(&branch);
        let error = signed.validate().expect_err("same co-signer twice");
        assert_eq!(error.field, "co_signatures[1].public_key");
    }
}
