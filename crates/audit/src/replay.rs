//! The replayed state the auditor builds, and what it compares with the stored one.
//!
//! The replay lives in a scratch RocksDB store of its own, in a temporary directory removed
//! afterwards, so memory stays bounded whatever the length of the chain. It keeps either
//! every table (`Keep::All`, the exact pass, which can name the first entry that differs)
//! or only the tables the state rules read (`Keep::Read`, the fast pass). In the fast pass
//! the tables the rules only ever write (the member-history and by-period indexes, two of
//! the three entries every record makes besides its totals) are not stored: each is
//! summarised by a [`SetDigest`], a keyed multiset hash of its entries, and the node's stored
//! tables are summarised the same way by a thread that reads them while the replay runs.
//! Equal digests of every table mean equal tables; any difference sends the audit to the
//! exact pass.
//!
//! The record locations (one entry per record, written once, never changed, each holding the
//! height of the block that wrote it) are not stored by the fast pass either: they are
//! digested, and the few reads the rules make of them (a correction's target; a duplicate
//! check the id filter cannot answer) are answered from the audited store, where an entry
//! counts only if its height is below the block being replayed. Such a *hint* is exactly what
//! the replay itself would have answered whenever the stored table equals the replayed one,
//! which the digests decide at the end. If they differ, or if the fast pass fails after it
//! took a hint, the exact pass (which takes none) decides.
//!
//! A Bloom filter of the record ids replayed answers the duplicate check of (nearly) every
//! new record without a read of the scratch store.
//!
//! The rules read a committed record back when a correction targets one no correction has
//! rewritten yet (its view is the record itself). Both passes read it from the audited chain,
//! at a height the audit has already verified: it is chain data, not derived state, and the
//! rules check that it is the record the replayed location names.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use branchledger_state::entries::RecordLocation;
use branchledger_state::{ReadError, StateDelta, StateReader, Table, STATE_VALUE_BYTES_MAX};
use branchledger_storage::{
    ChainReader, Column, RecordIdFilter, RocksOptions, RocksStore, StorageError,
};
use branchledger_types::{Height, SignedRecord};
use siphasher::sip128::{Hasher128, SipHasher24};

use crate::{fail, AuditFailure};

/// Entries read per page when walking a table (and between checks for a cancelled walk).
pub const SCAN_PAGE: usize = 4_096;

/// Tables the state rules write and never read: the fast pass keeps a digest of their
/// entries instead of the entries.
pub const DIGESTED_TABLES: [Table; 2] = [Table::MemberHistory, Table::RecordsByBranchKindPeriod];

/// Tables written once per key, whose value holds the height that wrote it: the fast pass
/// digests them and answers the rules' reads of them from the audited store.
pub const HINTED_TABLES: [Table; 1] = [Table::RecordLocations];

/// Deltas the replay runs ahead of the writer that stores them.
pub const PENDING_DELTAS: usize = 2;

/// Entries the replay keeps in memory, read or written, of the tables keyed by member, branch,
/// meeting or issue (the ones the rules read again and again); when full it starts again
/// empty.
pub const READ_CACHE_ENTRIES: usize = 1 << 16;

/// Whether the replay caches a table's entries: not those keyed by record id, whose entries
/// are each read at most a few times (nor the digested ones, never read).
fn is_cached(table: Table) -> bool {
    !is_digested(table) && !HINTED_TABLES.contains(&table) && table != Table::Correctable
}

/// The latest value (or absence) of recently read or written entries, per table.
#[derive(Default)]
struct ReadCache {
    tables: [HashMap<Vec<u8>, Option<Vec<u8>>>; Table::ALL.len()],
    entries: usize,
}

impl ReadCache {
    fn get(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.tables[position(table)].get(key)
    }

    fn insert(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        if self.entries >= READ_CACHE_ENTRIES {
            self.tables.iter_mut().for_each(HashMap::clear);
            self.entries = 0;
        }
        if self.tables[position(table)]
            .insert(key.to_vec(), value)
            .is_none()
        {
            self.entries += 1;
        }
    }

    /// Keeps the cached entries of `delta`'s tables up to date (entries not cached stay out).
    fn update(&mut self, delta: &StateDelta) {
        for ((table, key), value) in &delta.writes {
            if let Some(cached) = self.tables[position(*table)].get_mut(key.as_slice()) {
                cached.clone_from(value);
            }
        }
    }
}

/// Which tables a [`Replay`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Every table: the exact pass.
    All,
    /// The tables the state rules read; digests of the rest.
    Read,
}

fn is_digested(table: Table) -> bool {
    DIGESTED_TABLES.contains(&table)
}

/// How a replay holds a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Every entry in the scratch store.
    Stored,
    /// A digest of the entries; the rules never read them ([`DIGESTED_TABLES`]).
    Digested,
    /// A digest; reads answered from the audited store ([`HINTED_TABLES`]).
    Hinted,
}

/// How a replay holds each table, in the order of [`Table::ALL`].
#[derive(Clone, Copy, Debug)]
struct Holds([Hold; Table::ALL.len()]);

impl Holds {
    fn new(keep: Keep, hints: bool) -> Holds {
        let mut holds = [Hold::Stored; Table::ALL.len()];
        if keep == Keep::Read {
            for table in Table::ALL {
                holds[position(*table)] = if is_digested(*table) {
                    Hold::Digested
                } else if hints && HINTED_TABLES.contains(table) {
                    Hold::Hinted
                } else {
                    Hold::Stored
                };
            }
        }
        Holds(holds)
    }

    fn of(&self, table: Table) -> Hold {
        self.0[position(table)]
    }
}

fn position(table: Table) -> usize {
    Table::ALL
        .iter()
        .position(|t| *t == table)
        .expect("every table is in Table::ALL")
}

/// The key of the table digests: 128 bits, drawn at random for each audit.
pub type DigestKey = [u8; 16];

/// A keyed multiset hash of a table's entries: the sum, lane by lane modulo 2^64, of the
/// SipHash-2-4 (128-bit output) of each entry under a secret key, and their number.
/// Order-free, so the entries of a replay (in commit order) and of a stored table (in key
/// order) can be summed as they come. SipHash is a pseudorandom function of its 128-bit key,
/// and the key is drawn at random for each audit, after the data exists: whoever wrote the
/// data cannot choose entries whose hashes cancel. It hashes the short entries of the state
/// tables in about a third of the time keyed BLAKE3 takes (one compression per 64 bytes, none
/// of them batched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetDigest {
    sum: [u64; 2],
    count: u64,
}

impl SetDigest {
    /// Adds one entry of `table`.
    pub fn add(&mut self, secret: &DigestKey, table: Table, key: &[u8], value: &[u8]) {
        let hash = Self::hash(secret, table, key, value);
        for (lane, word) in self.sum.iter_mut().zip(hash) {
            *lane = lane.wrapping_add(word);
        }
        self.count = self.count.wrapping_add(1);
    }

    /// The keyed hash of one entry, as two words: SipHash-2-4-128 of
    /// `table ‖ u64 LE key length ‖ key ‖ value`.
    fn hash(secret: &DigestKey, table: Table, key: &[u8], value: &[u8]) -> [u64; 2] {
        let mut hasher = SipHasher24::new_with_key(secret);
        hasher.write(&[table as u8]);
        hasher.write(&(key.len() as u64).to_le_bytes());
        hasher.write(key);
        hasher.write(value);
        let hash = hasher.finish128();
        [hash.h1, hash.h2]
    }

    /// Entries added.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// One [`SetDigest`] per state table, in the order of [`Table::ALL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableDigests([SetDigest; Table::ALL.len()]);

impl TableDigests {
    fn get_mut(&mut self, table: Table) -> &mut SetDigest {
        &mut self.0[position(table)]
    }

    /// Entries over all tables.
    pub(crate) fn entries(&self) -> u64 {
        self.0.iter().map(SetDigest::count).sum()
    }
}

/// A new random key for the digests of one audit.
pub(crate) fn digest_secret() -> Result<DigestKey, AuditFailure> {
    let mut secret: DigestKey = [0u8; 16];
    getrandom::fill(&mut secret)
        .map_err(|e| fail(0, None, format!("no random key for the table digests: {e}")))?;
    Ok(secret)
}

/// The replayed state: a scratch store in a temporary directory, removed when dropped.
pub(crate) struct Replay<'a> {
    store: Arc<RocksStore>,
    holds: Holds,
    /// The audited store: its verified chain answers reads of committed records, and in the
    /// fast pass it answers reads of the [`HINTED_TABLES`].
    chain: &'a dyn ChainReader,
    /// A read was answered from the audited store: a failure of this pass proves nothing.
    hinted: Cell<bool>,
    /// The height of the block being replayed (the one after the last applied).
    replaying: Height,
    ids: RecordIdFilter,
    /// Digests of the entries of the tables not kept (fast pass), kept by the writer.
    digests: Arc<Mutex<TableDigests>>,
    secret: DigestKey,
    /// A digested table the state rules tried to read: the fast pass cannot go on.
    read_digested: Cell<bool>,
    /// A deletion in a digested table: a digest cannot take an entry back.
    deleted_digested: bool,
    /// Deltas handed to the writer and not yet known written, oldest first: reads look in
    /// them before the store.
    pending: VecDeque<Arc<StateDelta>>,
    /// Recent entries of the tables read again and again, always the latest values.
    cache: RefCell<ReadCache>,
    writer: Option<Writer>,
    _dir: tempfile::TempDir,
}

/// A delta for the writer, with its height.
type Job = (Height, Arc<StateDelta>);

/// The thread that writes deltas into the scratch store while the next block is replayed.
struct Writer {
    deltas: SyncSender<Job>,
    written: Receiver<Result<(), AuditFailure>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(
        store: Arc<RocksStore>,
        holds: Holds,
        secret: DigestKey,
        digests: Arc<Mutex<TableDigests>>,
    ) -> Writer {
        let (deltas, incoming) = sync_channel::<Job>(PENDING_DELTAS);
        let (done, written) = sync_channel(PENDING_DELTAS + 1);
        let thread = std::thread::spawn(move || {
            for (height, delta) in incoming {
                {
                    let mut digests = digests.lock().unwrap_or_else(PoisonError::into_inner);
                    for ((table, key), value) in &delta.writes {
                        if let (false, Some(value)) = (holds.of(*table) == Hold::Stored, value) {
                            digests.get_mut(*table).add(&secret, *table, key, value);
                        }
                    }
                }
                let stores = |table: Table, _: &[u8]| holds.of(table) == Hold::Stored;
                let result = store
                    .write_scratch_state(&delta, stores)
                    .map_err(|e| fail(height, None, format!("scratch store for the replay: {e}")));
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Writer {
            deltas,
            written,
            thread,
        }
    }
}

impl<'a> Replay<'a> {
    /// An empty replay of the chain in `chain`, the audited store, under `parent` (the
    /// system's temporary directory when `None`). With `Keep::Read` and `hints`, the fast pass
    /// answers reads of the [`HINTED_TABLES`] from `chain` instead of storing them.
    pub(crate) fn new(
        parent: Option<&std::path::Path>,
        keep: Keep,
        chain: &'a dyn ChainReader,
        hints: bool,
        secret: DigestKey,
    ) -> Result<Replay<'a>, AuditFailure> {
        let scratch = |e: String| fail(0, None, format!("scratch store for the replay: {e}"));
        let mut builder = tempfile::Builder::new();
        builder.prefix("branchledger-audit-");
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| scratch(e.to_string()))?;
        let store = RocksStore::open_with(&dir.path().join("state"), &RocksOptions::scratch())
            .map_err(|e| scratch(e.to_string()))?;
        let store = Arc::new(store);
        let digests = Arc::new(Mutex::new(TableDigests::default()));
        let holds = Holds::new(keep, hints);
        let writer = Writer::start(store.clone(), holds, secret, digests.clone());
        Ok(Replay {
            store,
            holds,
            chain,
            hinted: Cell::new(false),
            replaying: 1,
            ids: RecordIdFilter::new(),
            digests,
            secret,
            read_digested: Cell::new(false),
            deleted_digested: false,
            pending: VecDeque::new(),
            cache: RefCell::new(ReadCache::default()),
            writer: Some(writer),
            _dir: dir,
        })
    }

    /// Whether the fast pass cannot decide: the state rules read a digested table, or a
    /// block deleted from one (a digest cannot take an entry back).
    pub(crate) fn cannot_decide(&self) -> bool {
        self.read_digested.get() || self.deleted_digested
    }

    /// Whether a read was answered from the audited store: then only equal digests at the
    /// end show the replay right, and a failure must be confirmed by the exact pass.
    pub(crate) fn took_hints(&self) -> bool {
        self.hinted.get()
    }

    /// A read of a hinted table, answered from the audited store: the entry counts only if
    /// the block that wrote it (the height in its value) is below the one being replayed.
    fn hint(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.hinted.set(true);
        let Some(bytes) = self.chain.get_raw(Column::State(table), key).map_err(|e| {
            ReadError(format!(
                "reading {} of the audited store: {e}",
                table.name()
            ))
        })?
        else {
            return Ok(None);
        };
        let location: RecordLocation =
            branchledger_types::codec::decode("record location", &bytes, STATE_VALUE_BYTES_MAX)
                .map_err(|e| ReadError(format!("{} of the audited store: {e}", table.name())))?;
        Ok((location.height < self.replaying).then_some(bytes))
    }

    /// Applies a block's delta: reads see it at once, the writer stores it meanwhile.
    pub(crate) fn apply(&mut self, height: Height, delta: StateDelta) -> Result<(), AuditFailure> {
        for ((table, key), value) in &delta.writes {
            if *table == Table::RecordLocations && value.is_some() {
                self.ids.insert(key);
            }
            if self.holds.of(*table) != Hold::Stored && value.is_none() {
                self.deleted_digested = true;
            }
        }
        self.replaying = height + 1;
        self.cache.get_mut().update(&delta);
        let delta = Arc::new(delta);
        self.pending.push_back(delta.clone());
        let writer = self
            .writer
            .as_ref()
            .expect("the writer runs until the replay is dropped");
        if writer.deltas.send((height, delta)).is_err() {
            // The writer stopped on a failure: it is waiting to be read.
            return self.wait_written(height);
        }
        while let Ok(result) = writer.written.try_recv() {
            result?;
            self.pending.pop_front();
        }
        while self.pending.len() > PENDING_DELTAS {
            self.wait_written(height)?;
        }
        Ok(())
    }

    /// Waits for the writer to store the oldest pending delta.
    fn wait_written(&mut self, height: Height) -> Result<(), AuditFailure> {
        let writer = self
            .writer
            .as_ref()
            .expect("the writer runs until the replay is dropped");
        match writer.written.recv() {
            Ok(result) => {
                result?;
                self.pending.pop_front();
                Ok(())
            }
            Err(_) => Err(fail(
                height,
                None,
                "scratch store for the replay: the writer stopped",
            )),
        }
    }

    /// Waits until every delta is in the scratch store.
    pub(crate) fn finish(&mut self) -> Result<(), AuditFailure> {
        while !self.pending.is_empty() {
            self.wait_written(0)?;
        }
        Ok(())
    }

    /// The scratch store, for the exact comparison (after [`Replay::finish`]).
    pub(crate) fn store(&self) -> &RocksStore {
        &self.store
    }

    /// The digests of the replayed state: the tables kept are read from the scratch store
    /// (after [`Replay::finish`]).
    pub(crate) fn table_digests(&self) -> Result<TableDigests, (Table, StorageError)> {
        let mut digests = self
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let never = AtomicBool::new(false);
        for table in Table::ALL {
            if self.holds.of(*table) == Hold::Stored {
                *digests.get_mut(*table) =
                    digest_table(&*self.store, *table, &self.secret, &never)?;
            }
        }
        Ok(digests)
    }
}

impl StateReader for Replay<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if self.holds.of(table) == Hold::Digested {
            self.read_digested.set(true);
            return Err(ReadError(format!(
                "the fast pass of the audit keeps no entries of {}",
                table.name()
            )));
        }
        if table == Table::RecordLocations && !self.ids.may_contain(key) {
            return Ok(None);
        }
        if is_cached(table) {
            if let Some(value) = self.cache.borrow().get(table, key) {
                return Ok(value.clone());
            }
            let value = self.read(table, key)?;
            self.cache.borrow_mut().insert(table, key, value.clone());
            return Ok(value);
        }
        self.read(table, key)
    }

    /// Only records of the blocks already replayed, which the audit verified before.
    fn committed_record(
        &self,
        height: Height,
        index: u32,
    ) -> Result<Option<SignedRecord>, ReadError> {
        if height >= self.replaying {
            return Ok(None);
        }
        self.chain
            .record_at(height, index)
            .map(|stored| stored.map(|stored| stored.record))
            .map_err(|e| ReadError(format!("a record of the audited chain: {e}")))
    }
}

impl Replay<'_> {
    /// A read past the cache: the pending deltas, then the scratch store (or, for tables the
    /// fast pass does not store, the audited one).
    fn read(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if !self.pending.is_empty() {
            let wanted = (table, key.to_vec());
            if let Some(value) = self
                .pending
                .iter()
                .rev()
                .find_map(|d| d.writes.get(&wanted))
            {
                return Ok(value.clone());
            }
        }
        match self.holds.of(table) {
            Hold::Hinted => self.hint(table, key),
            _ => self.store.get(table, key),
        }
    }
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        // The writer ends when its queue closes; the scratch directory goes after it.
        if let Some(writer) = self.writer.take() {
            drop(writer.deltas);
            drop(writer.written);
            let _ = writer.thread.join();
        }
    }
}

/// A stored key and value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// A table's entries in key order, read a page at a time.
pub(crate) struct Entries<'a, R: ?Sized> {
    reader: &'a R,
    column: Column,
    page: std::vec::IntoIter<Entry>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl<'a, R: ChainReader + ?Sized> Entries<'a, R> {
    pub(crate) fn new(reader: &'a R, table: Table) -> Self {
        Entries {
            reader,
            column: Column::State(table),
            page: Vec::new().into_iter(),
            after: None,
            done: false,
        }
    }

    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>, StorageError> {
        if let Some(entry) = self.page.next() {
            if self.page.len() == 0 {
                self.after = Some(entry.0.clone());
            }
            return Ok(Some(entry));
        }
        if self.done {
            return Ok(None);
        }
        let page = self
            .reader
            .scan_raw(self.column, &[], self.after.as_deref(), SCAN_PAGE)?;
        self.done = page.len() < SCAN_PAGE;
        self.page = page.into_iter();
        match self.page.next() {
            Some(entry) => {
                if self.page.len() == 0 {
                    self.after = Some(entry.0.clone());
                }
                Ok(Some(entry))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// The digest of one table of `reader`; stops early (with what it has) once `cancel` is set.
pub(crate) fn digest_table<R: ChainReader + ?Sized>(
    reader: &R,
    table: Table,
    secret: &DigestKey,
    cancel: &AtomicBool,
) -> Result<SetDigest, (Table, StorageError)> {
    let mut digest = SetDigest::default();
    reader
        .visit_raw(Column::State(table), &mut |key, value| {
            digest.add(secret, table, key, value);
            digest.count % SCAN_PAGE as u64 != 0 || !cancel.load(Ordering::Relaxed)
        })
        .map_err(|e| (table, e))?;
    Ok(digest)
}

/// The digests of every state table of `reader`.
pub(crate) fn digest_tables<R: ChainReader + ?Sized>(
    reader: &R,
    secret: &DigestKey,
    cancel: &AtomicBool,
) -> Result<TableDigests, (Table, StorageError)> {
    let mut digests = TableDigests::default();
    for table in Table::ALL {
        *digests.get_mut(*table) = digest_table(reader, *table, secret, cancel)?;
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_digest_is_order_free_and_sees_every_change() {
        let secret = [7u8; 16];
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0u8..50).map(|i| (vec![i, 1], vec![i; 3])).collect();
        let mut forward = SetDigest::default();
        for (k, v) in &entries {
            forward.add(&secret, Table::MemberHistory, k, v);
        }
        let mut backward = SetDigest::default();
        for (k, v) in entries.iter().rev() {
            backward.add(&secret, Table::MemberHistory, k, v);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.count(), 50);

        let digest_of = |entries: &[(Vec<u8>, Vec<u8>)], table: Table| {
            let mut d = SetDigest::default();
            for (k, v) in entries {
                d.add(&secret, table, k, v);
            }
            d
        };
        let mut changed_value = entries.clone();
        changed_value[10].1[0] ^= 1;
        let mut changed_key = entries.clone();
        changed_key[20].0[1] = 2;
        let mut missing = entries.clone();
        missing.pop();
        let mut doubled = entries.clone();
        doubled.push(entries[0].clone());
        // The boundary between key and value is part of the hash.
        let mut shifted = entries.clone();
        let moved = shifted[5].1.remove(0);
        shifted[5].0.push(moved);
        for other in [changed_value, changed_key, missing, doubled, shifted] {
            assert_ne!(digest_of(&other, Table::MemberHistory), forward);
        }
        assert_ne!(
            digest_of(&entries, Table::RecordsByBranchKindPeriod),
            forward
        );
        let mut other_secret = SetDigest::default();
        for (k, v) in &entries {
            other_secret.add(&[8u8; 16], Table::MemberHistory, k, v);
        }
        assert_ne!(other_secret, forward);
    }

    #[test]
    fn the_read_cache_follows_every_write_and_starts_again_when_full() {
        let mut cache = ReadCache::default();
        cache.insert(Table::Members, b"m1", Some(vec![1]));
        cache.insert(Table::Members, b"m2", None);
        let mut delta = StateDelta::default();
        delta.writes.insert((Table::Members, b"m1".to_vec()), None);
        delta
            .writes
            .insert((Table::Members, b"m2".to_vec()), Some(vec![2]));
        delta
            .writes
            .insert((Table::Members, b"m3".to_vec()), Some(vec![3]));
        cache.update(&delta);
        assert_eq!(cache.get(Table::Members, b"m1"), Some(&None));
        assert_eq!(cache.get(Table::Members, b"m2"), Some(&Some(vec![2])));
        // An entry not cached stays out: the cache holds what was read.
        assert_eq!(cache.get(Table::Members, b"m3"), None);
        // The same key of another table is another entry.
        assert_eq!(cache.get(Table::BranchMembers, b"m2"), None);
        for i in 0..READ_CACHE_ENTRIES as u32 {
            cache.insert(Table::BranchMembers, &i.to_be_bytes(), None);
        }
        assert!(cache.entries <= READ_CACHE_ENTRIES);
        assert_eq!(
            cache.get(Table::Members, b"m2"),
            None,
            "started again when full"
        );
    }
}
