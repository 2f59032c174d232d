//! Derived state in memory: tests, the simulator and the offline auditor replay blocks into it.

use std::collections::BTreeMap;

use branchledger_types::{Height, SignedRecord};

use crate::{ReadError, StateDelta, StateReader, Table};

/// Every table in one ordered map, `(table, key) → value`. Applying the blocks of a chain in
/// order gives the state a node's store holds after the last of them.
///
/// It also keeps the committed records of the correctable kinds, the only ones the rules read
/// back ([`StateReader::committed_record`]), by height and index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    entries: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    records: BTreeMap<(Height, u32), SignedRecord>,
}

impl MemState {
    /// An empty state (the state before the first block).
    pub fn new() -> MemState {
        MemState::default()
    }

    /// Applies the block at `height`: its `records`, in block order, and the `delta` their
    /// replay gave (values are set, `None` deletes). The delta is consumed, so its keys and
    /// values move into the state rather than being copied.
    pub fn apply_block(&mut self, height: Height, records: &[SignedRecord], delta: StateDelta) {
        for (index, record) in records.iter().enumerate() {
            if crate::is_correctable(record.record.body.kind()) {
                let index = u32::try_from(index).expect("a block holds fewer than 2^32 records");
                self.records.insert((height, index), record.clone());
            }
        }
        for (key, value) in delta.writes {
            match value {
                Some(value) => {
                    self.entries.insert(key, value);
                }
                None => {
                    self.entries.remove(&key);
                }
            }
        }
    }

    /// Sets one raw value, bypassing the rules (for tests of corrupt or hand-made state).
    pub fn insert_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.entries.insert((table, key), value);
    }

    /// The entries of one table, in key order.
    pub fn iter_table(&self, table: Table) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter_prefix(table, &[])
    }

    /// The entries of one table whose key starts with `prefix`, in key order.
    pub fn iter_prefix<'a>(
        &'a self,
        table: Table,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.entries
            .range((table, prefix.to_vec())..)
            .take_while(move |((t, key), _)| *t == table && key.starts_with(prefix))
            .map(|((_, key), value)| (key.as_slice(), value.as_slice()))
    }

    /// Number of entries in all tables.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no table has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl StateReader for MemState {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        // The tuple key needs an owned Vec; a lookup allocates once, which is cheap next to
        // decoding the value.
        Ok(self.entries.get(&(table, key.to_vec())).cloned())
    }

    fn committed_record(
        &self,
        height: Height,
        index: u32,
    ) -> Result<Option<SignedRecord>, ReadError> {
        Ok(self.records.get(&(height, index)).cloned())
    }
}
