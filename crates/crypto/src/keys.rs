//! Public keys, signatures, key pairs and the check applied when a key is registered.

use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::edwards::CompressedEdwardsY;
use serde::{Deserialize, Serialize};

use crate::{decode_hex_array, HexError};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key as its 32 encoded bytes.
///
/// Holding the bytes (not a decompressed point) keeps the type cheap to copy, encode and
/// compare; decompression happens in verification. Keys that enter the system by registration
/// (genesis, a member's key) pass [`check_registered_key`] first.
#[derive(
    Clone,
    Copy,
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
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (no key check: see [`check_registered_key`]).
    pub fn from_hex(text: &str) -> Result<PublicKey, HexError> {
        decode_hex_array(text).map(PublicKey)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = HexError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PublicKey::from_hex(&value)
    }
}

impl From<PublicKey> for String {
    fn from(value: PublicKey) -> Self {
        value.to_hex()
    }
}

/// An Ed25519 signature as its 64 encoded bytes (`R ‖ s`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl Signature {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 128 hex characters.
    pub fn from_hex(text: &str) -> Result<Signature, HexError> {
        decode_hex_array(text).map(Signature)
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        Signature::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Something that signs: a key held in memory today, a remote signer later.
pub trait Signer {
    /// The public key whose signatures this signer makes.
    fn public_key(&self) -> PublicKey;
    /// Signs `message` (already domain-separated by the caller).
    fn sign(&self, message: &[u8]) -> Signature;
}

/// An Ed25519 key pair held in memory.
#[derive(Clone)]
pub struct Keypair {
    signing_key: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// The key pair whose secret is `seed` (RFC 8032 private key bytes).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing_key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A new key pair from a cryptographically secure random source.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Keypair {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Keypair::from_seed(seed)
    }

    /// The secret seed, for writing a key file. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing_key.to_bytes()
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({})", self.public_key())
    }
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        PublicKey(self.signing_key.verifying_key().to_bytes())
    }

    fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature(self.signing_key.sign(message).to_bytes())
    }
}

/// Why a key was refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not the encoding of a point on the curve.
    #[error("not a valid Ed25519 point encoding")]
    NotOnCurve,
    /// The point is valid but the encoding is not the canonical one.
    #[error("non-canonical Ed25519 point encoding")]
    NonCanonical,
    /// The point has small order, so signatures under it prove nothing.
    #[error("small-order Ed25519 point (weak key)")]
    SmallOrder,
    /// The point has a small-order (torsion) component beside its prime-order part, so
    /// whether its signatures verify can depend on the verification equation used.
    #[error("mixed-order Ed25519 point (key has a torsion component)")]
    MixedOrder,
}

/// Checks a key when it is registered (genesis, member keys): refuses encodings that are not
/// points, non-canonical encodings, small-order points and points with a torsion component.
///
/// Verification itself follows ZIP-215, which accepts such keys; refusing them here means no
/// registered identity can be one whose signatures are forgeable or ambiguous. A key made by
/// the standard key generation is always torsion-free (it is a multiple of the prime-order
/// base point), so only a key built on purpose is refused as mixed-order.
pub fn check_registered_key(key: &PublicKey) -> Result<(), KeyError> {
    let compressed = CompressedEdwardsY(key.0);
    let point = compressed.decompress().ok_or(KeyError::NotOnCurve)?;
    if point.compress().to_bytes() != key.0 {
        return Err(KeyError::NonCanonical);
    }
    if point.is_small_order() {
        return Err(KeyError::SmallOrder);
    }
    // A torsion component does not change cofactored (ZIP-215) verification, but it does
    // change cofactorless verification, as RFC 8032 and other libraries may apply it; a
    // registered identity must mean the same thing to every verifier.
    if !point.is_torsion_free() {
        return Err(KeyError::MixedOrder);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_pass_the_registration_check() {
        for i in 0..32u8 {
            let keypair = Keypair::from_seed([i; 32]);
            assert_eq!(check_registered_key(&keypair.public_key()), Ok(()));
        }
    }

    #[test]
    fn identity_point_is_small_order() {
        // y = 1 encodes the identity point, of order 1.
        let mut bytes = [0u8; 32];
        bytes[0] = 1;
        assert_eq!(
            check_registered_key(&PublicKey(bytes)),
            Err(KeyError::SmallOrder)
        );
    }

    #[test]
    fn non_canonical_encoding_is_refused() {
        // y = p + 1 (p = 2^255 - 19) encodes the identity non-canonically.
        let mut bytes = [0xff; 32];
        bytes[0] = 0xee;
        bytes[31] = 0x7f;
        assert_eq!(
            check_registered_key(&PublicKey(bytes)),
            Err(KeyError::NonCanonical)
        );
    }

    #[test]
    fn mixed_order_key_is_refused() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        // A prime-order point plus a point of order 8: neither small-order nor torsion-free.
        let prime_order = ED25519_BASEPOINT_POINT * Scalar::from(12_345u64);
        let good = PublicKey(prime_order.compress().to_bytes());
        assert_eq!(check_registered_key(&good), Ok(()));
        let mixed = prime_order + EIGHT_TORSION[1];
        assert!(!mixed.is_small_order());
        assert_eq!(
            check_registered_key(&PublicKey(mixed.compress().to_bytes())),
            Err(KeyError::MixedOrder)
        );
    }

    #[test]
    fn point_off_the_curve_is_refused() {
        // y = 2 has no matching x on edwards25519.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert_eq!(
            check_registered_key(&PublicKey(bytes)),
            Err(KeyError::NotOnCurve)
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let keypair = Keypair::from_seed([7; 32]);
        let text = format!("{keypair:?}");
        assert!(!text.contains(&hex::encode([7u8; 32])));
    }
}
