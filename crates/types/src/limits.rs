//! Every limit on data that comes from outside, in one place.
//!
//! Each constant bounds something a peer, a client or a file can make us hold. The relations
//! between them are asserted at compile time at the bottom of this file.

/// Longest identifier (`member_id`, `branch_id`, `meeting_id`, `issue_id`, chain id).
pub const IDENT_LEN_MAX: usize = 64;
/// Longest study material description, in characters.
pub const MATERIAL_CHARS_MAX: usize = 200;
/// Longest meeting topic, in characters.
pub const TOPIC_CHARS_MAX: usize = 200;
/// Longest issue title, in characters.
pub const TITLE_CHARS_MAX: usize = 200;
/// Longest progress note, in characters.
pub const NOTE_CHARS_MAX: usize = 500;
/// Longest resolution summary, in characters.
pub const SUMMARY_CHARS_MAX: usize = 1000;
/// Longest free-text reason (absence, correction), in characters.
pub const REASON_CHARS_MAX: usize = 500;
/// Longest study session, in minutes (12 hours).
pub const STUDY_MINUTES_MAX: u16 = 720;
/// Most attendees one meeting record may list.
pub const MEETING_ATTENDEES_MAX: usize = 200;
/// Most absentees one meeting record may list.
pub const MEETING_ABSENTEES_MAX: usize = 200;
/// Most members that may claim one issue together.
pub const ISSUE_CLAIMANTS_MAX: usize = 8;
/// Most co-signatures one record may carry.
pub const CO_SIGNATURES_MAX: usize = 4;
/// Largest dues payment, in minor units (one million major units).
pub const DUES_AMOUNT_MINOR_MAX: u64 = 100_000_000;
/// Earliest year a date may name.
pub const YEAR_MIN: u16 = 1900;
/// Latest year a date may name.
pub const YEAR_MAX: u16 = 2200;

/// Largest encoded signed record, in bytes. A meeting with the maximum attendees and
/// absentees, each with a long reason, stays under it.
pub const RECORD_BYTES_MAX: usize = 256 * 1024;
/// Most records a block may hold, whatever genesis says.
pub const BLOCK_RECORDS_MAX: usize = 100_000;
/// Largest encoded block, in bytes, whatever genesis says.
pub const BLOCK_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Most validators a chain may have.
pub const VALIDATORS_MAX: usize = 256;
/// Most branches a genesis may list.
pub const BRANCHES_MAX: usize = 1024;
/// Largest encoded vote, proposal header or commit certificate.
pub const CONSENSUS_MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Largest genesis file, in bytes.
pub const GENESIS_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most leaves an inclusion proof may have on its path (a tree of 2^64 leaves).
pub const MERKLE_PATH_MAX: usize = 64;

// A meeting at its limits (each listed member: length prefix, id, one flag byte) fits a record.
const _: () = assert!(
    (MEETING_ATTENDEES_MAX + MEETING_ABSENTEES_MAX) * (4 + IDENT_LEN_MAX + 1)
        + TOPIC_CHARS_MAX * 4
        + 4096
        < RECORD_BYTES_MAX
);
const _: () = assert!(RECORD_BYTES_MAX < BLOCK_BYTES_MAX);
const _: () = assert!(VALIDATORS_MAX <= u16::MAX as usize);
const _: () = assert!(VALIDATORS_MAX * 80 < CONSENSUS_MESSAGE_BYTES_MAX);
