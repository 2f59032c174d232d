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

/// Values up to this many bytes are encoded into a buffer kept by the thread and copied out at
/// their exact size; a larger one takes the buffer with it. (borsh's own `to_vec` allocates
/// 1 KiB for every value, and most values are a few hundred bytes, many of them kept.)
pub const ENCODE_COPY_BYTES_MAX: usize = 4 * 1024;

thread_local! {
    static ENCODE_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(ENCODE_COPY_BYTES_MAX));
}

/// The canonical bytes of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    let fresh = || borsh::to_vec(value).expect("borsh encoding into a Vec never fails");
    ENCODE_BUFFER
        .try_with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return fresh();
            };
            buffer.clear();
            value
                .serialize(&mut *buffer)
                .expect("borsh encoding into a Vec never fails");
            if buffer.len() <= ENCODE_COPY_BYTES_MAX {
                buffer.to_vec()
            } else {
                std::mem::replace(&mut *buffer, Vec::with_capacity(ENCODE_COPY_BYTES_MAX))
            }
        })
        .unwrap_or_else(|_| fresh())
}

/// The length of [`encode`]`(value)`, counted without writing the bytes anywhere.
pub fn encoded_len<T: BorshSerialize + ?Sized>(value: &T) -> usize {
    borsh::object_length(value).expect("counting borsh bytes never fails")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_gives_borsh_bytes_at_their_size_whatever_came_before() {
        let large: Vec<u8> = (0..3 * ENCODE_COPY_BYTES_MAX).map(|i| i as u8).collect();
        let small = (7u32, String::from("study"));
        for value in [&large[..], &[][..], &large[..10]] {
            let bytes = encode(value);
            assert_eq!(bytes, borsh::to_vec(value).expect("encode"));
        }
        // A small value after a large one: no leftover bytes, an allocation of its own size.
        let _ = encode(&large);
        let bytes = encode(&small);
        assert_eq!(bytes, borsh::to_vec(&small).expect("encode"));
        assert_eq!(bytes.capacity(), bytes.len());
        // Values encoded on another thread are the same bytes.
        let other = std::thread::spawn(move || encode(&small))
            .join()
            .expect("thread");
        assert_eq!(other, bytes);
    }

    #[test]
    fn encoded_len_counts_the_bytes_encode_writes() {
        let large: Vec<u8> = (0..3 * ENCODE_COPY_BYTES_MAX).map(|i| i as u8).collect();
        assert_eq!(encoded_len(&large), encode(&large).len());
        let nested = (7u32, String::from("study"), vec![Some(1u64), None]);
        assert_eq!(encoded_len(&nested), encode(&nested).len());
        assert_eq!(encoded_len(&()), 0);
    }
}
