//! Pure verification of what the chain holds: records, header links, records roots, commit
//! certificates, and a committed block as a whole.
//!
//! Each rule of DESIGN.md §2–§4 is a small named predicate returning
//! `Result<(), VerificationError>`, in the manner of tendermint-rs's light-client verifier;
//! [`verify_committed_block`] composes them. The same predicates serve a validator checking a
//! proposal, a node syncing blocks and the offline auditor, so all three reach the same
//! verdict. Signatures are checked by the ZIP-215 rule through `branchledger-crypto`, batched
//! and spread over all cores where there are many.
//!
//! This crate must never depend on an async runtime, a database, a network stack or a clock:
//! the current time is an argument ([`check_time_not_future`]), never read here. Stateful
//! record rules and the derived-state digest belong to the state machine, not to this crate.

mod block;
mod error;
mod record;

pub use block::{
    check_block_size, check_header_link, check_proposer, check_records_root, check_time_not_future,
    checked_record_ids, verify_commit, verify_committed_block, verify_committed_block_ids,
};
pub use error::{RecordBatchError, Result, VerificationError};
pub use record::{
    check_record_stateless, check_records, verify_record_signatures, verify_records_batch,
    PARALLEL_RECORDS_MIN,
};
