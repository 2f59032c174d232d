//! Keys, signatures, hashes and domain separation.
//!
//! This crate owns every cryptographic primitive branchledger uses:
//!
//! * [`Hash`](struct@Hash) — a 32-byte BLAKE3 digest, and [`hash_tagged`] for
//!   domain-separated hashing;
//! * [`PublicKey`], [`Signature`] and [`Keypair`] — Ed25519 keys and signatures
//!   (signing with `ed25519-dalek`);
//! * [`verify`] and [`BatchVerifier`] — consensus-critical verification by the **ZIP-215**
//!   rule through `ed25519-zebra`, so single and batch verification accept exactly the same
//!   signatures (DESIGN.md §3);
//! * [`Domain`] — the tag that separates signed bytes by purpose, and [`signing_bytes`], which
//!   builds `tag ‖ chain_id ‖ body`.
//!
//! It must never depend on an async runtime, a database, a network stack or a clock: it is
//! pure computation, used by the consensus core and the offline verifier alike.

mod keys;
mod verify;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

pub use keys::{check_registered_key, KeyError, Keypair, PublicKey, Signature, Signer};
pub use verify::{verify, BatchError, BatchVerifier, VerifyError, PARALLEL_CHUNK};

/// Length of a [`Hash`](struct@Hash) in bytes.
pub const HASH_LEN: usize = 32;

/// A BLAKE3 digest.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The all-zero hash, used as the parent of the first block.
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// BLAKE3 of `bytes`, with no domain tag. Prefer [`hash_tagged`] for anything that is
    /// compared across purposes.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Hash, HexError> {
        decode_hex_array(text).map(Hash)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl TryFrom<String> for Hash {
    type Error = HexError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Hash::from_hex(&value)
    }
}

impl From<Hash> for String {
    fn from(value: Hash) -> Self {
        value.to_hex()
    }
}

/// A hex string that does not decode to the expected number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not hexadecimal.
    #[error("not hexadecimal: {0}")]
    NotHex(String),
    /// Wrong number of bytes.
    #[error("expected {expected} bytes ({} hex characters), got {actual} bytes", expected * 2)]
    WrongLength {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
}

pub(crate) fn decode_hex_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let bytes = hex::decode(text.trim()).map_err(|e| HexError::NotHex(e.to_string()))?;
    let actual = bytes.len();
    bytes.try_into().map_err(|_| HexError::WrongLength {
        expected: N,
        actual,
    })
}

/// The purpose of a signed or hashed byte string. Every purpose has its own tag, so bytes
/// produced for one purpose can never be taken for another (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A record signed by its branch.
    Record,
    /// A co-signature on a record (e.g. by the member's own key).
    RecordCoSignature,
    /// The identifier of a record: hash of its canonical unsigned bytes.
    RecordId,
    /// A block proposal signed by the proposer.
    Proposal,
    /// A prevote or precommit.
    Vote,
    /// A checkpoint (reserved for state snapshots).
    Checkpoint,
    /// The identifier of a block: hash of its canonical header.
    BlockId,
    /// The chained digest of derived state.
    StateDigest,
    /// The identifier of a validator set.
    ValidatorSet,
    /// The hash of a genesis document.
    Genesis,
    /// The commitment to a payment reference.
    Commitment,
}

impl Domain {
    /// The tag bytes for this purpose. Tags are distinct and none is a prefix of another, so
    /// `tag ‖ rest` is unambiguous.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Record => b"branchledger/v1/record\0",
            Domain::RecordCoSignature => b"branchledger/v1/record-cosign\0",
            Domain::RecordId => b"branchledger/v1/record-id\0",
            Domain::Proposal => b"branchledger/v1/proposal\0",
            Domain::Vote => b"branchledger/v1/vote\0",
            Domain::Checkpoint => b"branchledger/v1/checkpoint\0",
            Domain::BlockId => b"branchledger/v1/block-id\0",
            Domain::StateDigest => b"branchledger/v1/state-digest\0",
            Domain::ValidatorSet => b"branchledger/v1/validator-set\0",
            Domain::Genesis => b"branchledger/v1/genesis\0",
            Domain::Commitment => b"branchledger/v1/commitment\0",
        }
    }

    /// Every domain, for tests that check the tags are distinct.
    pub const ALL: [Domain; 11] = [
        Domain::Record,
        Domain::RecordCoSignature,
        Domain::RecordId,
        Domain::Proposal,
        Domain::Vote,
        Domain::Checkpoint,
        Domain::BlockId,
        Domain::StateDigest,
        Domain::ValidatorSet,
        Domain::Genesis,
        Domain::Commitment,
    ];
}

/// The bytes that are signed for `domain` on chain `chain_id`:
/// `tag ‖ u32_le(len(chain_id)) ‖ chain_id ‖ body`.
///
/// The chain id is length-prefixed so that no chain id can be extended into the body.
pub fn signing_bytes(domain: Domain, chain_id: &str, body: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let mut out = Vec::with_capacity(tag.len() + 4 + chain_id.len() + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(body);
    out
}

/// BLAKE3 over `tag ‖ part₀ ‖ part₁ ‖ …`. Callers pass canonical (self-delimiting) parts.
pub fn hash_tagged(domain: Domain, parts: &[&[u8]]) -> Hash {
    let mut hasher = TaggedHasher::new(domain);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// BLAKE3 over `tag ‖ everything written`: [`hash_tagged`] for an encoding streamed in (e.g.
/// `borsh::to_writer`) rather than built in memory first. Equal bytes give equal digests.
#[derive(Clone, Debug)]
pub struct TaggedHasher(blake3::Hasher);

impl TaggedHasher {
    /// A hasher that has taken `domain`'s tag.
    pub fn new(domain: Domain) -> TaggedHasher {
        let mut hasher = blake3::Hasher::new();
        hasher.update(domain.tag());
        TaggedHasher(hasher)
    }

    /// Takes `bytes`.
    pub fn update(&mut self, bytes: &[u8]) -> &mut TaggedHasher {
        self.0.update(bytes);
        self
    }

    /// The digest of everything taken so far.
    pub fn finalize(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

impl std::io::Write for TaggedHasher {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_tags_are_distinct_and_prefix_free() {
        for a in Domain::ALL {
            for b in Domain::ALL {
                if a != b {
                    assert!(!b.tag().starts_with(a.tag()), "{a:?} is a prefix of {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_streamed_hash_equals_the_hash_of_the_parts() {
        use std::io::Write;
        let mut hasher = TaggedHasher::new(Domain::StateDigest);
        hasher.update(b"previous");
        hasher.write_all(b"body, ").expect("write");
        hasher.write_all(b"in two writes").expect("write");
        assert_eq!(
            hasher.finalize(),
            hash_tagged(Domain::StateDigest, &[b"previous", b"body, in two writes"])
        );
        assert_ne!(
            hasher.finalize(),
            hash_tagged(Domain::RecordId, &[b"previous", b"body, in two writes"])
        );
    }

    #[test]
    fn signing_bytes_separate_chain_ids() {
        // "ab" + body "c…" must differ from "a" + body "bc…".
        let x = signing_bytes(Domain::Record, "ab", b"c");
        let y = signing_bytes(Domain::Record, "a", b"bc");
        assert_ne!(x, y);
    }

    #[test]
    fn hash_hex_round_trip_and_errors() {
        let h = Hash::of(b"branch");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert!(matches!(
            Hash::from_hex("abcd"),
            Err(HexError::WrongLength {
                expected: 32,
                actual: 2
            })
        ));
        assert!(matches!(Hash::from_hex("zz"), Err(HexError::NotHex(_))));
    }
}
