//! The storage error type.

use std::path::PathBuf;

use branchledger_types::{Hash, Height};

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened.
    #[error("cannot open store at {path}: {reason}")]
    Open {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store was written with another layout version.
    #[error("store schema version {found} is not the supported version {expected}; migrate or reset the store")]
    SchemaMismatch {
        /// Version found in the store.
        found: u32,
        /// Version this build reads and writes.
        expected: u32,
    },
    /// The backend failed (IO error, closed database).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A value read back does not match its key or its neighbours: the store was damaged or
    /// tampered with.
    #[error("corrupt value in table {table} at key {key}: {reason}")]
    Corrupt {
        /// The table (column family) name.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// What does not match.
        reason: String,
    },
    /// A block was given whose height does not follow the tip.
    #[error("block at height {got} does not follow the tip: expected height {expected}")]
    NotNextHeight {
        /// Tip height + 1.
        expected: Height,
        /// The block's height.
        got: Height,
    },
    /// A block was given whose `prev_block_id` is not the tip's id.
    #[error("block at height {height} links to {got}, but the tip is {expected}")]
    PrevBlockMismatch {
        /// The block's height.
        height: Height,
        /// The tip's block id.
        expected: Hash,
        /// The block's `prev_block_id`.
        got: Hash,
    },
    /// A block was given whose commit certificate is not for it.
    #[error("commit certificate does not match the block at height {height}: {reason}")]
    CommitMismatch {
        /// The block's height.
        height: Height,
        /// What does not match.
        reason: String,
    },
    /// A block was given whose records do not match its header (count or Merkle root).
    #[error("records do not match the header of block {height}: {reason}")]
    RecordsMismatch {
        /// The block's height.
        height: Height,
        /// What does not match.
        reason: String,
    },
    /// A value to be written is larger than its table's read limit, so it could not be read
    /// back.
    #[error("value for table {table} is {actual} bytes, over the limit of {limit}")]
    ValueTooLarge {
        /// The table (column family) name.
        table: &'static str,
        /// Bytes of the value.
        actual: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// A block holds a record that is already stored (in an earlier block or twice in it).
    #[error("record {id} of block {height} is already stored")]
    DuplicateRecord {
        /// The block's height.
        height: Height,
        /// The record id.
        id: Hash,
    },
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Lower-case hex of a key, for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}
