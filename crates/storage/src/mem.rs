//! An in-memory store, for tests and the simulator only.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError, RwLock};

use branchledger_state::StateDelta;
use branchledger_types::{CommittedBlock, Hash};

use crate::chain::{plan_commit, ChainReader, ChainWriter};
use crate::error::Result;
use crate::tables::{Column, Tip};

type Tables = BTreeMap<Column, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The same tables as [`crate::RocksStore`], in `BTreeMap`s, with the same checks on write
/// and read (they live in the traits). For unit tests of other crates and the simulator
/// only: it keeps nothing across a restart and does not bound its memory.
#[derive(Debug, Default)]
pub struct MemStore {
    /// Every table.
    tables: RwLock<Tables>,
    /// Held from reading the tip until the block's writes are applied.
    write_lock: Mutex<()>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

impl ChainReader for MemStore {
    fn get_raw(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        Ok(tables.get(&column).and_then(|t| t.get(key)).cloned())
    }

    fn scan_raw(
        &self,
        column: Column,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let Some(table) = tables.get(&column) else {
            return Ok(Vec::new());
        };
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(table
            .range((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

impl ChainWriter for MemStore {
    fn commit_block_with_ids(
        &self,
        block: &CommittedBlock,
        delta: &StateDelta,
        ids: &[Hash],
    ) -> Result<Tip> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (ops, tip) = plan_commit(self, block, delta, ids)?;
        // Applied under one write lock, so readers see the whole block or none of it.
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        for op in ops {
            let table = tables.entry(op.column).or_default();
            match op.value {
                Some(value) => table.insert(op.key.into_owned(), value.into_owned()),
                None => table.remove(op.key.as_ref()),
            };
        }
        Ok(tip)
    }
}

crate::chain::impl_state_reader!(MemStore);
