//! Checking a commit certificate against a validator set.

use branchledger_crypto::BatchVerifier;
use branchledger_types::{CommitCertificate, ValidatorIndex, ValidatorSet};

/// Why a commit certificate does not prove its block final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Signatures are not strictly increasing by validator index (a repeat would count one
    /// validator twice).
    #[error("signature of validator {0} is out of order or repeated")]
    NotIncreasing(ValidatorIndex),
    /// A signer outside the validator set.
    #[error("validator {0} is not in the validator set")]
    UnknownValidator(ValidatorIndex),
    /// Fewer distinct signers than a quorum.
    #[error("{found} signatures, a quorum is {quorum}")]
    NoQuorum {
        /// Distinct signers.
        found: usize,
        /// Needed.
        quorum: usize,
    },
    /// At least one signature does not verify.
    #[error("a precommit signature does not verify")]
    BadSignature,
}

/// Checks that `cert` carries precommit signatures of a quorum of distinct validators of
/// `validators` for its block, each verified by the ZIP-215 rule.
pub fn verify_certificate(
    chain_id: &str,
    validators: &ValidatorSet,
    cert: &CommitCertificate,
) -> Result<(), CertificateError> {
    let mut previous: Option<ValidatorIndex> = None;
    for signature in &cert.signatures {
        let index = signature.validator_index;
        if previous.is_some_and(|p| p >= index) {
            return Err(CertificateError::NotIncreasing(index));
        }
        previous = Some(index);
        if validators.get(index).is_none() {
            return Err(CertificateError::UnknownValidator(index));
        }
    }
    if cert.signatures.len() < validators.quorum() {
        return Err(CertificateError::NoQuorum {
            found: cert.signatures.len(),
            quorum: validators.quorum(),
        });
    }
    let messages: Vec<Vec<u8>> = cert
        .signatures
        .iter()
        .map(|s| cert.vote_of(s.validator_index).signing_message(chain_id))
        .collect();
    let mut batch = BatchVerifier::with_capacity(messages.len());
    for (signature, message) in cert.signatures.iter().zip(&messages) {
        let key = match validators.get(signature.validator_index) {
            Some(v) => v.consensus_key,
            None => {
                return Err(CertificateError::UnknownValidator(
                    signature.validator_index,
                ))
            }
        };
        batch.queue(key, message, signature.signature);
    }
    batch.verify().map_err(|_| CertificateError::BadSignature)
}
