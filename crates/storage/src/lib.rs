//! The on-disk layout of the chain and its derived state, and the traits the rest of the node
//! reads and writes it through.
//!
//! This crate owns the tables ([`tables`]: one RocksDB column family each, with its key and
//! value layout), the [`ChainReader`] and [`ChainWriter`] traits, their RocksDB backend
//! [`RocksStore`], and an in-memory [`MemStore`] for tests and the simulator. A committed
//! block, its commit certificate, its records and every derived-state write of its
//! [`branchledger_state::StateDelta`] are written with the new tip in one atomic, synced
//! batch, so a process killed at any instant reopens with whole blocks only and nothing it
//! acknowledged lost.
//!
//! It must never decide validity: it stores what the caller has verified (signatures, the
//! commit quorum, the records' rules and the state transition are the verifier's and the state
//! crate's). It does check the integrity of what it reads back — a header's recomputed id
//! against its index and key, a record's id against its key, a commit certificate against its
//! header — and answers [`StorageError::Corrupt`], never a panic, when the disk disagrees.

pub mod chain;
pub mod error;
pub mod filter;
pub mod mem;
pub mod rocks;
pub mod tables;

pub use chain::{ChainReader, ChainWriter, IndexEntry, Page, SCAN_LIMIT_MAX};
pub use error::{Result, StorageError};
pub use filter::{RecordIdFilter, ID_FILTER_FALSE_POSITIVE, ID_FILTER_FIRST_CAPACITY};
pub use mem::MemStore;
pub use rocks::{
    RocksOptions, RocksStore, BLOCK_CACHE_BYTES_DEFAULT, MAX_OPEN_FILES_DEFAULT,
    STATE_CACHE_ENTRIES_DEFAULT,
};
pub use tables::{record_key, ChainTable, Column, StoredRecord, Tip, SCHEMA_VERSION};
