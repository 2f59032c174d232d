//! The RocksDB backend: one column family per table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use branchledger_state::{StateDelta, Table};
use branchledger_types::codec::{decode, encode};
use branchledger_types::{CommittedBlock, Hash};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor,
    DBCompressionType, Options, WriteBatch, WriteOptions, DB,
};

use crate::chain::{plan_commit, ChainReader, ChainWriter};
use crate::error::{Result, StorageError};
use crate::filter::RecordIdFilter;
use crate::tables::{ChainTable, Column, Tip, META_SCHEMA_VERSION, META_TIP, SCHEMA_VERSION};

/// The table whose reads the record-id filter answers.
const LOCATIONS: Column = Column::State(Table::RecordLocations);

/// Default size of the block cache shared by all column families, in bytes.
pub const BLOCK_CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Default bound on the files RocksDB keeps open (the rest are reopened on demand).
pub const MAX_OPEN_FILES_DEFAULT: i32 = 512;
/// Default bound on the memory of all memtables together, in bytes.
pub const WRITE_BUFFERS_BYTES_DEFAULT: usize = 128 * 1024 * 1024;
/// One column family's memtable size before it is flushed, in bytes. Small memtables keep
/// the skip lists shallow (cheaper lookups) and the total is bounded by
/// [`RocksOptions::write_buffers_bytes`] anyway.
pub const WRITE_BUFFER_BYTES_PER_TABLE: usize = 8 * 1024 * 1024;
/// Bits per key of the Bloom filters that let a lookup of an absent key (every new record's
/// duplicate check) skip the files that cannot hold it.
pub const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// How often [`RocksStore::settle`] looks whether background work is left.
pub const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Size of one partition of a file's index and filter, bytes: what a point read loads of them.
pub const METADATA_BLOCK_BYTES: usize = 4 * 1024;

/// Default bound on the state entries a node's store keeps decoded in memory (see
/// [`RocksOptions::state_cache_entries`]): about 10 MB of short keys and values.
pub const STATE_CACHE_ENTRIES_DEFAULT: usize = 1 << 16;

/// Whether the state cache holds a table's entries: the ones keyed by member, branch, meeting
/// or issue, which the rules read for record after record. Not those keyed by record id or
/// by a record's position: each of those is read at most a few times.
fn is_cached(table: Table) -> bool {
    !matches!(
        table,
        Table::MemberHistory
            | Table::RecordsByBranchKindPeriod
            | Table::Correctable
            | Table::RecordLocations
    )
}

/// The latest committed value (or absence) of recently read state entries.
///
/// Kept true to the store by its one writer path, [`ChainWriter::commit_block`]: after the
/// synced write, every cached entry the block changed takes its new value. A read that
/// misses goes to RocksDB and fills the entry only if no commit began or ended meanwhile
/// (`commits` and `writing`), so a value read just before a commit is never kept after it.
#[derive(Default)]
struct StateCache {
    tables: [HashMap<Vec<u8>, Option<Vec<u8>>>; Table::ALL.len()],
    entries: usize,
    capacity: usize,
    /// Commits finished since the store was opened.
    commits: u64,
    /// A commit's batch is being written.
    writing: bool,
}

impl StateCache {
    fn with_capacity(capacity: usize) -> StateCache {
        StateCache {
            capacity,
            ..StateCache::default()
        }
    }

    fn slot(table: Table) -> usize {
        Table::ALL
            .iter()
            .position(|t| *t == table)
            .expect("every table is in Table::ALL")
    }

    fn get(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.tables[Self::slot(table)].get(key)
    }

    /// Keeps a value read from RocksDB at `commits`, unless a commit moved on since.
    fn fill(&mut self, table: Table, key: &[u8], value: &Option<Vec<u8>>, commits: u64) {
        if self.writing || self.commits != commits {
            return;
        }
        if self.entries >= self.capacity {
            // Starting again empty keeps the bound without the bookkeeping of an LRU; the
            // entries in use come back within a block or two.
            self.tables.iter_mut().for_each(HashMap::clear);
            self.entries = 0;
        }
        if self.tables[Self::slot(table)]
            .insert(key.to_vec(), value.clone())
            .is_none()
        {
            self.entries += 1;
        }
    }

    /// A commit's writes are now on disk: cached entries take their new values.
    fn committed(&mut self, delta: &StateDelta) {
        for ((table, key), value) in &delta.writes {
            if let Some(cached) = self.tables[Self::slot(*table)].get_mut(key.as_slice()) {
                cached.clone_from(value);
            }
        }
        self.writing = false;
        self.commits += 1;
    }
}

/// How to open a [`RocksStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Size of the block cache shared by all column families, in bytes. Bounds the memory
    /// RocksDB uses for reads.
    pub block_cache_bytes: usize,
    /// Most files RocksDB keeps open at once, so a large store does not exhaust the
    /// process's file descriptors.
    pub max_open_files: i32,
    /// Bound on the memory of all memtables together, bytes.
    pub write_buffers_bytes: usize,
    /// Whether files are LZ4-compressed.
    pub compress: bool,
    /// Whether files are compacted in the background. A scratch store, written once and read
    /// once, skips it: its files stay in level 0 and writes never stall on their number.
    pub compact: bool,
    /// Most state entries (of the tables keyed by member, branch, meeting or issue) kept in
    /// memory in front of RocksDB; 0 keeps none. The state rules read the same few entries
    /// for record after record, at admission and again when a block is built or checked, and
    /// a RocksDB point read costs several times a hash-map lookup.
    pub state_cache_entries: usize,
    /// Whether a Bloom filter of every record id on the chain ([`RecordIdFilter`]) answers the
    /// reads of [`Table::RecordLocations`] for ids that are not there, the usual answer of the
    /// duplicate check that every new record passes at admission, when its block is checked
    /// and when it is stored. It is filled by reading the whole table at open (about 0.5 s per
    /// 2 million records on a 2-core machine) and costs about 1.6 bytes per record of memory.
    /// A node's store has it; a store opened for one command (an audit, an export) need not.
    pub record_id_filter: bool,
    /// Open without the right to write: nothing on disk changes (no compaction, no flush, no
    /// schema version written, the write-ahead log replayed into memory only), and every
    /// write is refused. What an auditor, an export or a proof opens a stopped node's store
    /// with: it never changes what it reads.
    pub read_only: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_bytes: BLOCK_CACHE_BYTES_DEFAULT,
            max_open_files: MAX_OPEN_FILES_DEFAULT,
            write_buffers_bytes: WRITE_BUFFERS_BYTES_DEFAULT,
            compress: true,
            compact: true,
            state_cache_entries: STATE_CACHE_ENTRIES_DEFAULT,
            record_id_filter: false,
            read_only: false,
        }
    }
}

impl RocksOptions {
    /// Options for a scratch store: uncompressed files that are never compacted (it lives
    /// for one audit in a temporary directory). Its memtables are the default size: 32 MiB
    /// ones used 120 MB more for the same audit time.
    pub fn scratch() -> Self {
        RocksOptions {
            compress: false,
            compact: false,
            // The audit keeps its own cache, in front of its pending deltas.
            state_cache_entries: 0,
            ..RocksOptions::default()
        }
    }

    /// Options for reading a stopped node's store without changing it (an audit, an export,
    /// a proof): read-only, and no state cache (each entry is read about once).
    pub fn read_only() -> Self {
        RocksOptions {
            read_only: true,
            compact: false,
            state_cache_entries: 0,
            ..RocksOptions::default()
        }
    }
}

/// The chain and derived state in a RocksDB directory.
pub struct RocksStore {
    /// The database; one column family per [`Column`].
    db: DB,
    /// Held from reading the tip until the block's batch is written, so two writers cannot
    /// both append at the same height.
    write_lock: Mutex<()>,
    /// Where the store lives, for messages.
    path: PathBuf,
    /// State entries kept in memory, if [`RocksOptions::state_cache_entries`] is not 0.
    state_cache: Option<Mutex<StateCache>>,
    /// Every key of [`Table::RecordLocations`] ever written, if
    /// [`RocksOptions::record_id_filter`]. A key is added before the batch that writes it, so
    /// a reader never finds a stored id "absent".
    record_ids: Option<RwLock<RecordIdFilter>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The options of one column family.
fn column_options(options: &RocksOptions, cache: &Cache) -> Options {
    let mut table_options = BlockBasedOptions::default();
    table_options.set_block_cache(cache);
    table_options.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    // Index and filter blocks live in the block cache, so its bound covers them.
    table_options.set_cache_index_and_filter_blocks(true);
    table_options.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned: a lookup loads one small partition of a file's filter and index, not the
    // whole of them. With whole-file filters a large store's filter blocks (megabytes per
    // file) kept falling out of a bounded cache, and every point read fetched and checksummed
    // one again: the write rate of a chain past a million records fell from ~19 000 to
    // ~3 500 records/s.
    table_options.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table_options.set_partition_filters(true);
    table_options.set_metadata_block_size(METADATA_BLOCK_BYTES);
    table_options.set_pin_top_level_index_and_filter(true);
    let mut cf_options = Options::default();
    cf_options.set_block_based_table_factory(&table_options);
    cf_options.set_compression_type(if options.compress {
        DBCompressionType::Lz4
    } else {
        DBCompressionType::None
    });
    cf_options.set_write_buffer_size(WRITE_BUFFER_BYTES_PER_TABLE);
    if !options.compact {
        cf_options.set_disable_auto_compactions(true);
        // Negative: no slowdown; the stop trigger as high as it goes.
        cf_options.set_level_zero_slowdown_writes_trigger(-1);
        cf_options.set_level_zero_stop_writes_trigger(i32::MAX);
    }
    // A Bloom filter over whole keys in the memtable: absent keys skip the skip list.
    cf_options.set_memtable_prefix_bloom_ratio(0.1);
    cf_options.set_memtable_whole_key_filtering(true);
    cf_options
}

impl RocksStore {
    /// Opens (creating if missing) the store in `path` with default options.
    pub fn open(path: &Path) -> Result<RocksStore> {
        RocksStore::open_with(path, &RocksOptions::default())
    }

    /// Opens the store in `path` to read it only ([`RocksOptions::read_only`]): it must exist
    /// with every column family, and nothing in it changes.
    pub fn open_read_only(path: &Path) -> Result<RocksStore> {
        RocksStore::open_with(path, &RocksOptions::read_only())
    }

    /// Opens the store in `path`: for writing, creating it and its missing column families if
    /// needed; read-only ([`RocksOptions::read_only`]), as it is. A store written with another
    /// [`SCHEMA_VERSION`] is refused.
    pub fn open_with(path: &Path, options: &RocksOptions) -> Result<RocksStore> {
        let open_error = |reason: String| StorageError::Open {
            path: path.to_owned(),
            reason,
        };
        if options.read_only && !path.join("CURRENT").is_file() {
            // RocksDB would create the directory (for its log) before finding no store there.
            return Err(open_error(
                "no RocksDB store there (no CURRENT file)".to_owned(),
            ));
        }
        let cache = Cache::new_lru_cache(options.block_cache_bytes)
            .map_err(|e| open_error(format!("block cache: {e}")))?;
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_open_files(options.max_open_files);
        db_options.set_db_write_buffer_size(options.write_buffers_bytes);
        let descriptors: Vec<ColumnFamilyDescriptor> = Column::all()
            .map(|column| {
                ColumnFamilyDescriptor::new(column.name(), column_options(options, &cache))
            })
            .collect();
        let db = if options.read_only {
            // A log left by a node that stopped without flushing is replayed into memory.
            DB::open_cf_descriptors_read_only(&db_options, path, descriptors, false)
        } else {
            DB::open_cf_descriptors(&db_options, path, descriptors)
        }
        .map_err(|e| open_error(e.to_string()))?;
        let mut store = RocksStore {
            db,
            write_lock: Mutex::new(()),
            path: path.to_owned(),
            state_cache: (options.state_cache_entries > 0)
                .then(|| Mutex::new(StateCache::with_capacity(options.state_cache_entries))),
            record_ids: None,
        };
        store.check_schema(options.read_only)?;
        if options.record_id_filter {
            let mut filter = RecordIdFilter::new();
            store.visit_raw(LOCATIONS, &mut |key, _| {
                filter.insert(key);
                true
            })?;
            store.record_ids = Some(RwLock::new(filter));
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until RocksDB has no flush or compaction running or pending in any table, or
    /// until `deadline`; true if it settled. A store just written in bulk (a generated chain)
    /// then has the shape a node's store takes after running a while, so what is measured on
    /// it afterwards is not the cost of a backlog of compactions.
    pub fn settle(&self, deadline: std::time::Instant) -> Result<bool> {
        let backend = |e: rocksdb::Error| StorageError::Backend(e.to_string());
        loop {
            let mut busy = 0;
            for property in [
                rocksdb::properties::NUM_RUNNING_COMPACTIONS,
                rocksdb::properties::NUM_RUNNING_FLUSHES,
            ] {
                busy += self
                    .db
                    .property_int_value(property)
                    .map_err(backend)?
                    .unwrap_or(0);
            }
            for column in Column::all() {
                let cf = self.cf(column)?;
                for property in [
                    rocksdb::properties::COMPACTION_PENDING,
                    rocksdb::properties::MEM_TABLE_FLUSH_PENDING,
                ] {
                    busy += self
                        .db
                        .property_int_value_cf(cf, property)
                        .map_err(backend)?
                        .unwrap_or(0);
                }
            }
            if busy == 0 {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// Checks the schema version, writing it into a new store (unless `read_only`: an empty
    /// store read only stays as it is).
    fn check_schema(&self, read_only: bool) -> Result<()> {
        let meta = Column::Chain(ChainTable::Meta);
        match self.get_raw(meta, META_SCHEMA_VERSION)? {
            Some(bytes) => {
                let found: u32 =
                    decode("schema version", &bytes, 4).map_err(|e| StorageError::Corrupt {
                        table: meta.name(),
                        key: crate::error::hex(META_SCHEMA_VERSION),
                        reason: e.to_string(),
                    })?;
                if found != SCHEMA_VERSION {
                    return Err(StorageError::SchemaMismatch {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
            None if self.get_raw(meta, META_TIP)?.is_some() => Err(StorageError::Corrupt {
                table: meta.name(),
                key: crate::error::hex(META_SCHEMA_VERSION),
                reason: "a store with blocks has no schema version".to_owned(),
            }),
            None if read_only => Ok(()),
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(self.cf(meta)?, META_SCHEMA_VERSION, encode(&SCHEMA_VERSION));
                self.write_synced(batch)
            }
        }
    }

    fn cf(&self, column: Column) -> Result<&ColumnFamily> {
        self.db.cf_handle(column.name()).ok_or_else(|| {
            StorageError::Backend(format!("column family {} is not open", column.name()))
        })
    }

    /// Writes the entries of a state delta that `keep` accepts, unsynced and without
    /// the write-ahead log: for a scratch store whose content is rebuilt if lost (the auditor
    /// replays a chain into one). Never use it on a node's store.
    pub fn write_scratch_state(
        &self,
        delta: &StateDelta,
        keep: impl Fn(Table, &[u8]) -> bool,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.note_record_ids(delta);
        for ((table, key), value) in delta
            .writes
            .iter()
            .filter(|((table, key), _)| keep(*table, key))
        {
            let cf = self.cf(Column::State(*table))?;
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        if let Some(mut cache) = self.lock_state_cache() {
            // A scratch store normally has no cache; if it has one, it starts again.
            cache.writing = true;
        }
        let written = self
            .db
            .write_opt(batch, &write_options)
            .map_err(|e| StorageError::Backend(e.to_string()));
        if let Some(mut cache) = self.lock_state_cache() {
            let commits = cache.commits + 1;
            *cache = StateCache::with_capacity(cache.capacity);
            cache.commits = commits;
        }
        written
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        // sync = true: the write-ahead log is fsynced before the write returns, so a block
        // acknowledged as committed survives a power loss, not only a process crash.
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        self.db
            .write_opt(batch, &write_options)
            .map_err(|e| StorageError::Backend(e.to_string()))
    }
}

impl RocksStore {
    /// Adds the record ids a delta locates to the filter, before they are written.
    fn note_record_ids(&self, delta: &StateDelta) {
        if let Some(filter) = &self.record_ids {
            let mut filter = filter.write().unwrap_or_else(PoisonError::into_inner);
            for ((table, key), value) in &delta.writes {
                if *table == Table::RecordLocations && value.is_some() {
                    filter.insert(key);
                }
            }
        }
    }

    fn lock_state_cache(&self) -> Option<MutexGuard<'_, StateCache>> {
        // Like the write lock, a poisoned cache lock is safe to take: every change to the
        // cache is whole before the lock is released.
        self.state_cache
            .as_ref()
            .map(|cache| cache.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ChainReader for RocksStore {
    fn state_value(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let column = Column::State(table);
        if !is_cached(table) {
            return self.get_raw(column, key);
        }
        let commits = match self.lock_state_cache() {
            None => return self.get_raw(column, key),
            Some(cache) => match cache.get(table, key) {
                Some(value) => return Ok(value.clone()),
                None => cache.commits,
            },
        };
        let value = self.get_raw(column, key)?;
        if let Some(mut cache) = self.lock_state_cache() {
            cache.fill(table, key, &value, commits);
        }
        Ok(value)
    }

    fn get_raw(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if column == LOCATIONS {
            if let Some(filter) = &self.record_ids {
                // A poisoned lock is safe to take: an insert is whole or not made, and a key
                // not yet inserted has not been written either.
                let filter = filter.read().unwrap_or_else(PoisonError::into_inner);
                if !filter.may_contain(key) {
                    return Ok(None);
                }
            }
        }
        self.db
            .get_cf(self.cf(column)?, key)
            .map_err(|e| StorageError::Backend(e.to_string()))
    }

    fn scan_raw(
        &self,
        column: Column,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut iter = self.db.raw_iterator_cf(self.cf(column)?);
        let from = match start_after {
            Some(after) if after > prefix => after,
            _ => prefix,
        };
        iter.seek(from);
        let mut out = Vec::new();
        while out.len() < limit && iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            if !key.starts_with(prefix) {
                break;
            }
            if start_after.is_none_or(|after| key > after) {
                out.push((key.to_vec(), value.to_vec()));
            }
            iter.next();
        }
        iter.status()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        Ok(out)
    }

    fn visit_raw(&self, column: Column, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut iter = self.db.raw_iterator_cf(self.cf(column)?);
        iter.seek_to_first();
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            if !visit(key, value) {
                return Ok(());
            }
            iter.next();
        }
        iter.status()
            .map_err(|e| StorageError::Backend(e.to_string()))
    }
}

impl ChainWriter for RocksStore {
    fn commit_block_with_ids(
        &self,
        block: &CommittedBlock,
        delta: &StateDelta,
        ids: &[Hash],
    ) -> Result<Tip> {
        // The lock guards no data, only the order of writers, so a poisoned lock is safe to
        // take: the store itself only ever changes by whole batches.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (ops, tip) = plan_commit(self, block, delta, ids)?;
        self.note_record_ids(delta);
        let mut batch = WriteBatch::default();
        for op in ops {
            let cf = self.cf(op.column)?;
            match op.value {
                Some(value) => batch.put_cf(cf, op.key, value),
                None => batch.delete_cf(cf, op.key),
            }
        }
        if let Some(mut cache) = self.lock_state_cache() {
            cache.writing = true;
        }
        let written = self.write_synced(batch);
        if let Some(mut cache) = self.lock_state_cache() {
            if written.is_ok() {
                cache.committed(delta);
            } else {
                // Whatever RocksDB kept of a failed write, nothing cached may outlive it.
                let commits = cache.commits + 1;
                *cache = StateCache::with_capacity(cache.capacity);
                cache.commits = commits;
            }
        }
        written?;
        Ok(tip)
    }
}

crate::chain::impl_state_reader!(RocksStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_read_across_a_commit_is_not_kept() {
        let mut cache = StateCache::with_capacity(8);
        let before = cache.commits;
        // Read from RocksDB before a commit, kept after it: stale, so refused.
        cache.writing = true;
        cache.fill(Table::Members, b"m", &Some(vec![1]), before);
        assert_eq!(cache.get(Table::Members, b"m"), None);
        cache.committed(&StateDelta::default());
        cache.fill(Table::Members, b"m", &Some(vec![1]), before);
        assert_eq!(cache.get(Table::Members, b"m"), None);
        // Read and kept between commits: kept, and the next commit's write replaces it.
        cache.fill(Table::Members, b"m", &Some(vec![1]), cache.commits);
        assert_eq!(cache.get(Table::Members, b"m"), Some(&Some(vec![1])));
        let mut delta = StateDelta::default();
        delta.writes.insert((Table::Members, b"m".to_vec()), None);
        delta
            .writes
            .insert((Table::Members, b"n".to_vec()), Some(vec![2]));
        cache.committed(&delta);
        assert_eq!(cache.get(Table::Members, b"m"), Some(&None));
        // An entry never read stays out: the cache holds what was read.
        assert_eq!(cache.get(Table::Members, b"n"), None);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let mut cache = StateCache::with_capacity(3);
        for i in 0..10u8 {
            cache.fill(Table::BranchStats, &[i], &None, cache.commits);
            assert!(cache.entries <= 3);
            assert_eq!(cache.get(Table::BranchStats, &[i]), Some(&None));
        }
    }

    #[test]
    fn tables_keyed_by_record_are_not_cached() {
        assert!(!is_cached(Table::RecordLocations));
        assert!(!is_cached(Table::Correctable));
        assert!(is_cached(Table::Members));
        assert!(is_cached(Table::StudyByMember));
    }
}
