//! Record-level predicates: stateless rules, branch signatures and co-signatures
//! (DESIGN.md §2–§3), one record at a time or batched over many.

use branchledger_crypto::{verify, BatchVerifier, PublicKey, PARALLEL_CHUNK};
use branchledger_types::{Genesis, SignedRecord};
use rayon::prelude::*;

use crate::error::{RecordBatchError, Result, VerificationError};

/// Stateless rules of a signed record (DESIGN.md §2: identifiers, lengths, ranges, dates,
/// co-signature count, distinct and strong co-signer keys) and that it is for this chain.
///
/// Does not check signatures: see [`verify_record_signatures`].
pub fn check_record_stateless(genesis: &Genesis, record: &SignedRecord) -> Result {
    if record.record.chain_id != genesis.chain_id {
        return Err(VerificationError::RecordWrongChain {
            record_id: record.id(),
            expected: genesis.chain_id.clone(),
            actual: record.record.chain_id.clone(),
        });
    }
    record
        .validate()
        .map_err(|error| VerificationError::RecordInvalid {
            record_id: record.id(),
            error,
        })
}

/// The branch key that must have signed `record`, from genesis.
fn branch_key(genesis: &Genesis, record: &SignedRecord) -> Result<PublicKey> {
    genesis
        .branch(&record.record.branch_id)
        .map(|branch| branch.signing_key)
        .ok_or_else(|| VerificationError::UnknownBranch {
            record_id: record.id(),
            branch_id: record.record.branch_id.clone(),
        })
}

/// The branch exists in genesis, its signature over [`SignedRecord::signing_message`] (the
/// record and its co-signatures) verifies under the branch's genesis key, and every
/// co-signature verifies over [`Record::co_signing_message`] under the key it names (all by
/// ZIP-215, DESIGN.md §3).
///
/// Co-signer keys are taken here as the record carries them. That each is the registered key
/// of an active member the record concerns is a stateful rule, checked when the record is
/// applied (`branchledger_state`); that each is a strong key is a stateless one
/// ([`check_record_stateless`]).
///
/// [`Record::co_signing_message`]: branchledger_types::Record::co_signing_message
pub fn verify_record_signatures(genesis: &Genesis, record: &SignedRecord) -> Result {
    let key = branch_key(genesis, record)?;
    verify(&key, &record.signing_message(), &record.signature).map_err(|reason| {
        VerificationError::BadRecordSignature {
            record_id: record.id(),
            reason,
        }
    })?;
    if record.co_signatures.is_empty() {
        return Ok(());
    }
    let co_message = record.record.co_signing_message();
    for (co_signature_index, co) in record.co_signatures.iter().enumerate() {
        verify(&co.public_key, &co_message, &co.signature).map_err(|reason| {
            VerificationError::BadCoSignature {
                record_id: record.id(),
                co_signature_index,
                reason,
            }
        })?;
    }
    Ok(())
}

/// Which signature of which record a batch item is.
#[derive(Clone, Copy)]
enum Slot {
    Branch { record: usize },
    CoSignature { record: usize, co_signature: usize },
}

/// The messages one record contributes to a batch.
struct RecordMessages {
    /// The branch key, or the error if the branch is unknown (nothing is queued then).
    key: Result<PublicKey>,
    /// `tag_record ‖ chain_id ‖ canonical(record) ‖ canonical(co_signatures)`.
    message: Vec<u8>,
    /// `tag_record_cosign ‖ chain_id ‖ canonical(record)`, empty if there are no co-signatures.
    co_message: Vec<u8>,
}

/// [`verify_record_signatures`] for many records at once: every branch signature and every
/// co-signature goes into one [`BatchVerifier::verify_parallel`], spread over all cores.
/// ZIP-215 batch verification accepts exactly what single verification accepts, so the
/// verdict is the same as checking each record alone; on failure every bad record is named
/// with its position, id and reason.
pub fn verify_records_batch(
    genesis: &Genesis,
    records: &[SignedRecord],
) -> Result<(), RecordBatchError> {
    // Building the messages encodes every record; a large batch does it on all cores too.
    let messages: Vec<RecordMessages> = map_records(records, |_, record| RecordMessages {
        key: branch_key(genesis, record),
        message: record.signing_message(),
        co_message: if record.co_signatures.is_empty() {
            Vec::new()
        } else {
            record.record.co_signing_message()
        },
    });

    let mut bad: Vec<(usize, branchledger_crypto::Hash, VerificationError)> = Vec::new();
    let mut slots = Vec::with_capacity(records.len());
    let mut batch = BatchVerifier::with_capacity(records.len());
    for (index, (record, messages)) in records.iter().zip(&messages).enumerate() {
        match &messages.key {
            Ok(key) => {
                batch.queue(*key, &messages.message, record.signature);
                slots.push(Slot::Branch { record: index });
            }
            Err(error) => bad.push((index, record.id(), error.clone())),
        }
        // Co-signatures are checked even when the branch is unknown, so the report is whole.
        for (co_signature, co) in record.co_signatures.iter().enumerate() {
            batch.queue(co.public_key, &messages.co_message, co.signature);
            slots.push(Slot::CoSignature {
                record: index,
                co_signature,
            });
        }
    }

    if let Err(failed) = batch.verify_parallel() {
        for (item, reason) in failed.bad {
            // One slot was pushed per queued item, in queue order, so `item` is in range.
            match slots[item] {
                Slot::Branch { record } => {
                    let record_id = records[record].id();
                    bad.push((
                        record,
                        record_id,
                        VerificationError::BadRecordSignature { record_id, reason },
                    ));
                }
                Slot::CoSignature {
                    record,
                    co_signature,
                } => {
                    let record_id = records[record].id();
                    bad.push((
                        record,
                        record_id,
                        VerificationError::BadCoSignature {
                            record_id,
                            co_signature_index: co_signature,
                            reason,
                        },
                    ));
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        // Stable: a record's faults stay in the order found (branch before co-signatures).
        bad.sort_by_key(|b| b.0);
        Err(RecordBatchError { bad })
    }
}

/// [`check_record_stateless`] over many records, then [`verify_records_batch`]; every bad
/// record is named, stateless faults before signature faults for the same record.
pub fn check_records(genesis: &Genesis, records: &[SignedRecord]) -> Result<(), RecordBatchError> {
    let mut bad: Vec<(usize, branchledger_crypto::Hash, VerificationError)> =
        map_records(records, |index, record| {
            check_record_stateless(genesis, record)
                .err()
                .map(|error| (index, record.id(), error))
        })
        .into_iter()
        .flatten()
        .collect();
    if let Err(error) = verify_records_batch(genesis, records) {
        bad.extend(error.bad);
    }
    if bad.is_empty() {
        Ok(())
    } else {
        bad.sort_by_key(|b| b.0);
        Err(RecordBatchError { bad })
    }
}

/// Batches of fewer records than this are worked through on the calling thread, larger ones
/// on all cores. Handing a few records to rayon's pool costs more than the work: the caller
/// (a node's event loop, outside the pool) waits on a latch while a worker is woken, and the
/// workers spin for a while after each job before they sleep, on cores the node's other
/// threads need. Equal to the signature batches' [`PARALLEL_CHUNK`], the size below which
/// [`BatchVerifier::verify_parallel`] stays on one thread.
pub const PARALLEL_RECORDS_MIN: usize = PARALLEL_CHUNK;

/// `f(index, record)` for every record, in order; on all cores only for a large batch.
pub(crate) fn map_records<'a, T, F>(records: &'a [SignedRecord], f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &'a SignedRecord) -> T + Sync + Send,
{
    if records.len() < PARALLEL_RECORDS_MIN {
        records.iter().enumerate().map(|(i, r)| f(i, r)).collect()
    } else {
        records
            .par_iter()
            .enumerate()
            .map(|(i, r)| f(i, r))
            .collect()
    }
}
