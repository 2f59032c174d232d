//! Consensus-critical signature verification by the ZIP-215 rule.
//!
//! Every path — single, batched, parallel batched — goes through `ed25519-zebra`, whose single
//! and batch verification accept exactly the same set of signatures. A batch that fails is
//! re-checked one item at a time so the caller learns which items are bad.

use std::convert::Infallible;

use rayon::prelude::*;

use crate::{PublicKey, Signature};

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The public key bytes are not a curve point.
    #[error("public key is not a valid Ed25519 point")]
    BadKey,
    /// The signature does not verify under the key for the message.
    #[error("signature does not verify")]
    BadSignature,
}

/// Verifies one signature by the ZIP-215 rule.
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
    let key = ed25519_zebra::VerificationKey::try_from(key.0).map_err(|_| VerifyError::BadKey)?;
    let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
    key.verify(&signature, message)
        .map_err(|_| VerifyError::BadSignature)
}

/// The items of a batch that failed, by their position in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of the batch's signatures failed, first at item {}", bad.len(), bad.first().map(|b| b.0).unwrap_or_default())]
pub struct BatchError {
    /// Each bad item's index (in the order queued) and why it failed; sorted by index.
    pub bad: Vec<(usize, VerifyError)>,
}

/// Batches up to this count are verified on one thread; larger ones are split across rayon's
/// threads in chunks of at least this size. Batch verification gets cheaper per signature as
/// the batch grows, so each thread takes one large chunk rather than many small ones.
pub const PARALLEL_CHUNK: usize = 256;

/// A batch of signatures to verify together.
///
/// Batch verification draws random coefficients; here they come from a BLAKE3 stream keyed
/// by the whole batch's contents (keys, signatures, messages), so verification is a pure
/// function of its input yet an adversary cannot choose signatures that cancel out — the
/// coefficients change with any change to the batch.
#[derive(Default)]
pub struct BatchVerifier<'msg> {
    items: Vec<(PublicKey, Signature, &'msg [u8])>,
}

impl<'msg> BatchVerifier<'msg> {
    /// An empty batch.
    pub fn new() -> Self {
        BatchVerifier { items: Vec::new() }
    }

    /// An empty batch with room for `capacity` items.
    pub fn with_capacity(capacity: usize) -> Self {
        BatchVerifier {
            items: Vec::with_capacity(capacity),
        }
    }

    /// Adds an item; its index is the number of items queued before it.
    pub fn queue(&mut self, key: PublicKey, message: &'msg [u8], signature: Signature) {
        self.items.push((key, signature, message));
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Verifies every item on the current thread. On failure, names every bad item.
    pub fn verify(self) -> Result<(), BatchError> {
        verify_chunk(&self.items, 0)
    }

    /// Verifies every item, splitting the batch across rayon's thread pool. Gives exactly the
    /// same verdict as [`BatchVerifier::verify`].
    pub fn verify_parallel(self) -> Result<(), BatchError> {
        if self.items.len() <= PARALLEL_CHUNK {
            return self.verify();
        }
        let threads = rayon::current_num_threads().max(1);
        let chunk_len = PARALLEL_CHUNK.max(self.items.len().div_ceil(threads));
        let mut bad: Vec<(usize, VerifyError)> = self
            .items
            .par_chunks(chunk_len)
            .enumerate()
            .filter_map(|(i, chunk)| verify_chunk(chunk, i * chunk_len).err())
            .flat_map(|e| e.bad)
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            bad.sort_by_key(|b| b.0);
            Err(BatchError { bad })
        }
    }
}

fn verify_chunk(items: &[(PublicKey, Signature, &[u8])], offset: usize) -> Result<(), BatchError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut seed =
        blake3::Hasher::new_derive_key("branchledger/v1 batch-verification coefficients");
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut bad = Vec::new();
    for (index, (key, signature, message)) in items.iter().enumerate() {
        seed.update(&key.0);
        seed.update(&signature.0);
        seed.update(&(message.len() as u64).to_le_bytes());
        seed.update(message);
        match ed25519_zebra::VerificationKeyBytes::try_from(key.0.as_slice()) {
            Ok(key_bytes) => batch.queue((
                key_bytes,
                ed25519_zebra::Signature::from_bytes(&signature.0),
                message,
            )),
            // Unreachable for 32 bytes, kept as a named failure rather than a panic.
            Err(_) => bad.push((offset + index, VerifyError::BadKey)),
        }
    }
    let rng = Blake3Rng(seed.finalize_xof());
    if bad.is_empty() && batch.verify(rng).is_ok() {
        return Ok(());
    }
    // Fallback: the batch failed, so find every bad item one by one.
    let bad: Vec<(usize, VerifyError)> = items
        .iter()
        .enumerate()
        .filter_map(|(index, (key, signature, message))| {
            verify(key, message, signature)
                .err()
                .map(|e| (offset + index, e))
        })
        .collect();
    if bad.is_empty() {
        // ZIP-215 batch and single verification agree, so this cannot happen; if it did,
        // single verification is the reference and the batch is accepted.
        return Ok(());
    }
    Err(BatchError { bad })
}

/// A deterministic stream of bytes from BLAKE3's extendable output.
struct Blake3Rng(blake3::OutputReader);

impl rand_core::TryRng for Blake3Rng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Blake3Rng {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Keypair, Signer};

    fn signed(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let keypair = Keypair::from_seed([(i % 251) as u8; 32]);
                let message = format!("message {i}").into_bytes();
                let signature = keypair.sign(&message);
                (keypair.public_key(), message, signature)
            })
            .collect()
    }

    #[test]
    fn good_batch_verifies_serial_and_parallel() {
        let items = signed(PARALLEL_CHUNK * 2 + 3);
        let mut serial = BatchVerifier::new();
        let mut parallel = BatchVerifier::new();
        for (key, message, signature) in &items {
            serial.queue(*key, message, *signature);
            parallel.queue(*key, message, *signature);
        }
        assert_eq!(serial.verify(), Ok(()));
        assert_eq!(parallel.verify_parallel(), Ok(()));
    }

    #[test]
    fn bad_items_are_named_by_index() {
        let mut items = signed(PARALLEL_CHUNK + 10);
        items[3].2 .0[0] ^= 1;
        items[PARALLEL_CHUNK + 5].1.push(b'!');
        for parallel in [false, true] {
            let mut batch = BatchVerifier::new();
            for (key, message, signature) in &items {
                batch.queue(*key, message, *signature);
            }
            let result = if parallel {
                batch.verify_parallel()
            } else {
                batch.verify()
            };
            let error = result.expect_err("two items are bad");
            let indices: Vec<usize> = error.bad.iter().map(|b| b.0).collect();
            assert_eq!(indices, vec![3, PARALLEL_CHUNK + 5], "parallel={parallel}");
        }
    }

    #[test]
    fn empty_batch_verifies() {
        assert_eq!(BatchVerifier::new().verify(), Ok(()));
    }
}
