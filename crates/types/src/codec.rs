//! The canonical encoding: borsh, bounded and strict.
//!
//! Every byte that is hashed, signed or stored is `borsh` of a type from this crate. Borsh is
//! deterministic by specification (fixed-width little-endian integers, length-prefixed
//! sequences, no maps here), and [`decode`] refuses input longer than the caller's limit and
//! any trailing bytes, so one value has exactly one encoding.

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than the limit for this type.
    #[error("{what}: {actual} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Bytes given.
        actual: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// The bytes are not a valid encoding (bad tag, truncated, trailing bytes, bad UTF-8).
    #[error("{what}: malformed encoding: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// The canonical bytes of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    borsh::to_vec(value).expect("borsh encoding into a Vec never fails")
}

/// Decodes `bytes` as `T`, refusing more than `limit` bytes and any trailing bytes.
pub fn decode<T: BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            actual: bytes.len(),
            limit,
        });
    }
    // `from_slice` fails on trailing bytes, unlike `deserialize(&mut slice)`.
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        what,
        reason: e.to_string(),
    })
}
