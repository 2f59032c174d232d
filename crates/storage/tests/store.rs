//! Behaviour of both backends through the traits: writes, reads, refusals, pagination,
//! reopening and corruption detection.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use branchledger_state::{keys, StateReader, Table};
use branchledger_storage::{
    ChainReader, ChainTable, ChainWriter, Column, MemStore, RocksStore, StorageError,
    SCHEMA_VERSION,
};
use branchledger_types::codec::encode;
use branchledger_types::{Hash, RecordKind};

use support::{block_after, check_whole_blocks, commit_blocks, BRANCH, MEMBERS, PERIOD};

fn open(dir: &Path) -> RocksStore {
    RocksStore::open(dir).unwrap()
}

/// Opened as a node opens its store: with the record-id filter.
fn open_filtered(dir: &Path) -> RocksStore {
    RocksStore::open_with(
        dir,
        &branchledger_storage::RocksOptions {
            record_id_filter: true,
            ..branchledger_storage::RocksOptions::default()
        },
    )
    .unwrap()
}

fn reads_back_what_was_committed<S: ChainWriter + StateReader>(store: &S) {
    assert_eq!(store.tip().unwrap(), None);
    assert_eq!(store.header(1).unwrap(), None);
    let blocks = commit_blocks(store, 3, 4);
    let tip = store.tip().unwrap().unwrap();
    assert_eq!(tip.height, 3);
    assert_eq!(tip.block_id, blocks[2].block.id());
    assert_eq!(tip.state_digest, blocks[2].block.header.state_digest);
    for block in &blocks {
        let height = block.block.header.height;
        let id = block.block.id();
        assert_eq!(store.committed_block(height).unwrap().as_ref(), Some(block));
        assert_eq!(
            store.header(height).unwrap().as_ref(),
            Some(&block.block.header)
        );
        assert_eq!(
            store.header_by_id(&id).unwrap().as_ref(),
            Some(&block.block.header)
        );
        assert_eq!(store.block_by_id(&id).unwrap().as_ref(), Some(&block.block));
        assert_eq!(store.block(height).unwrap().as_ref(), Some(&block.block));
        assert_eq!(store.commit(height).unwrap().as_ref(), Some(&block.commit));
        assert_eq!(store.height_of(&id).unwrap(), Some(height));
        for (index, record) in block.block.records.iter().enumerate() {
            let stored = store.record(&record.id()).unwrap().unwrap();
            assert_eq!(&stored.record, record);
            assert_eq!((stored.height, stored.index as usize), (height, index));
        }
    }
    assert_eq!(store.committed_block(4).unwrap(), None);
    assert_eq!(store.commit(4).unwrap(), None);
    assert_eq!(store.block_by_id(&Hash::of(b"nothing")).unwrap(), None);
    assert_eq!(store.record(&Hash::of(b"nothing")).unwrap(), None);
    // Derived state through both read paths, deletes included.
    let stats = StateReader::get(store, Table::BranchStats, BRANCH.as_bytes()).unwrap();
    assert_eq!(stats, Some(encode(&3u64)));
    assert_eq!(
        store
            .state_value(Table::Issues, &support::issue_key(2))
            .unwrap(),
        None,
        "block 3 deleted block 2's key"
    );
    assert!(store
        .state_value(Table::Issues, &support::issue_key(3))
        .unwrap()
        .is_some());
    assert_eq!(check_whole_blocks(store, 4), 3);
}

#[test]
fn rocks_reads_back_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    reads_back_what_was_committed(&open(dir.path()));
    let dir = tempfile::tempdir().unwrap();
    reads_back_what_was_committed(&open_filtered(dir.path()));
}

#[test]
fn mem_reads_back_what_was_committed() {
    reads_back_what_was_committed(&MemStore::new());
}

fn refuses_blocks_that_do_not_fit<S: ChainWriter>(store: &S) {
    commit_blocks(store, 2, 2);
    let tip = store.tip().unwrap().unwrap();
    let (good, delta) = block_after(Some(tip), 2);

    // A block above tip + 1.
    let (mut skip, _) = block_after(Some(tip), 2);
    skip.block.header.height = 4;
    skip.commit.height = 4;
    skip.commit.block_id = skip.block.id();
    assert_eq!(
        store.commit_block(&skip, &delta),
        Err(StorageError::NotNextHeight {
            expected: 3,
            got: 4
        })
    );
    // A block at an already committed height.
    let (old, old_delta) = block_after(None, 2);
    assert!(matches!(
        store.commit_block(&old, &old_delta),
        Err(StorageError::NotNextHeight {
            expected: 3,
            got: 1
        })
    ));
    // A block that links to another parent.
    let mut fork = good.clone();
    fork.block.header.prev_block_id = Hash::of(b"another parent");
    fork.commit.block_id = fork.block.id();
    assert!(matches!(
        store.commit_block(&fork, &delta),
        Err(StorageError::PrevBlockMismatch { height: 3, .. })
    ));
    // A commit for another block or height.
    let mut other_block = good.clone();
    other_block.commit.block_id = Hash::of(b"another block");
    assert!(matches!(
        store.commit_block(&other_block, &delta),
        Err(StorageError::CommitMismatch { height: 3, .. })
    ));
    let mut other_height = good.clone();
    other_height.commit.height = 2;
    assert!(matches!(
        store.commit_block(&other_height, &delta),
        Err(StorageError::CommitMismatch { height: 3, .. })
    ));
    // Records that are not the ones the header commits to.
    let mut dropped = good.clone();
    dropped.block.records.pop();
    assert!(matches!(
        store.commit_block(&dropped, &delta),
        Err(StorageError::RecordsMismatch { height: 3, .. })
    ));
    let mut swapped = good.clone();
    swapped.block.records.swap(0, 1);
    assert!(matches!(
        store.commit_block(&swapped, &delta),
        Err(StorageError::RecordsMismatch { height: 3, .. })
    ));
    // A record already committed at height 1, in a block otherwise well formed.
    let (mut replay, _) = block_after(Some(tip), 2);
    replay.block.records[1] = support::record(1, 0);
    let ids: Vec<Hash> = replay.block.records.iter().map(|r| r.id()).collect();
    replay.block.header.records_root = branchledger_types::merkle::root(&ids);
    replay.commit.block_id = replay.block.id();
    assert_eq!(
        store.commit_block(&replay, &delta),
        Err(StorageError::DuplicateRecord {
            height: 3,
            id: support::record(1, 0).id()
        })
    );

    // Nothing of the refused blocks was written; the good block still goes in.
    assert_eq!(store.tip().unwrap(), Some(tip));
    assert_eq!(check_whole_blocks(store, 2), 2);
    let new_tip = store.commit_block(&good, &delta).unwrap();
    assert_eq!(new_tip.height, 3);
    assert_eq!(store.tip().unwrap(), Some(new_tip));
    assert_eq!(check_whole_blocks(store, 2), 3);
}

#[test]
fn rocks_refuses_blocks_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    refuses_blocks_that_do_not_fit(&open(dir.path()));
    // The filter must not let a stored record in again.
    let dir = tempfile::tempdir().unwrap();
    refuses_blocks_that_do_not_fit(&open_filtered(dir.path()));
}

#[test]
fn the_record_id_filter_is_filled_from_the_store_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = commit_blocks(&open(dir.path()), 3, 4);
    // Written without the filter, reopened with it: every record is still found by id, and a
    // block repeating one is still refused.
    let store = open_filtered(dir.path());
    for block in &blocks {
        for record in &block.block.records {
            assert!(store.record(&record.id()).unwrap().is_some());
            assert!(StateReader::get(
                &store,
                Table::RecordLocations,
                &keys::record_id(&record.id())
            )
            .unwrap()
            .is_some());
        }
    }
    assert_eq!(store.record(&Hash::of(b"nothing")).unwrap(), None);
    assert_eq!(check_whole_blocks(&store, 4), 3);
    // Committed through the filter: found at once, and again after a reopen.
    let more = commit_blocks(&store, 1, 4);
    let found = |store: &RocksStore| {
        more[0]
            .block
            .records
            .iter()
            .all(|record| store.record(&record.id()).unwrap().is_some())
    };
    assert!(found(&store));
    drop(store);
    assert!(found(&open_filtered(dir.path())));
}

#[test]
fn mem_refuses_blocks_that_do_not_fit() {
    refuses_blocks_that_do_not_fit(&MemStore::new());
}

#[test]
fn first_block_must_link_to_zero() {
    let store = MemStore::new();
    let (mut block, delta) = block_after(None, 1);
    block.block.header.prev_block_id = Hash::of(b"x");
    block.commit.block_id = block.block.id();
    assert!(matches!(
        store.commit_block(&block, &delta),
        Err(StorageError::PrevBlockMismatch { height: 1, .. })
    ));
}

fn paginates<S: ChainWriter>(store: &S) {
    // 5 blocks of 3 records: member m-0 has records at index 0 of every block.
    let blocks = commit_blocks(store, 5, 3);
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    let mut pages = 0;
    loop {
        let page = store
            .member_history(MEMBERS[0], after.as_deref(), 2)
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|e| e.record_id));
        pages += 1;
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<Hash> = blocks.iter().map(|b| b.block.records[0].id()).collect();
    assert_eq!(seen, expected, "time-ordered, nothing skipped or repeated");
    assert_eq!(pages, 3);
    // Every entry knows where its record is, and the record read there is the one it names.
    let page = store.member_history(MEMBERS[0], None, 10).unwrap();
    assert_eq!(page.items.len(), blocks.len());
    for (entry, block) in page.items.iter().zip(&blocks) {
        assert_eq!((entry.height, entry.index), (block.block.header.height, 0));
        let stored = store.indexed_record(entry).unwrap();
        assert_eq!(stored.record, block.block.records[0]);
    }

    // The branch index holds all 15 in commit order; a full last page has no cursor.
    let page = store
        .records_by_branch_kind_period(BRANCH, RecordKind::StudySession, PERIOD, None, 15)
        .unwrap();
    let all: Vec<Hash> = blocks
        .iter()
        .flat_map(|b| b.block.records.iter().map(|r| r.id()))
        .collect();
    assert_eq!(
        page.items.iter().map(|e| e.record_id).collect::<Vec<_>>(),
        all
    );
    assert_eq!(page.next_after, None);
    assert_eq!(
        page.items[4].key,
        keys::branch_kind_period(BRANCH, RecordKind::StudySession, PERIOD, 2, 1)
    );
    // Another kind or period is empty.
    let none = store
        .records_by_branch_kind_period(BRANCH, RecordKind::DuesPaid, PERIOD, None, 10)
        .unwrap();
    assert!(none.items.is_empty());

    // A limit of 0 is raised to 1.
    let one = store.member_history(MEMBERS[1], None, 0).unwrap();
    assert_eq!(one.items.len(), 1);
    assert!(one.next_after.is_some());

    // A cursor before the prefix starts at the prefix; one after it gives nothing.
    let prefix = keys::id_prefix(MEMBERS[1]);
    let from_before = store
        .scan_prefix(Table::MemberHistory, &prefix, Some(b"a"), 100)
        .unwrap();
    assert_eq!(from_before.items.len(), 5);
    let from_after = store
        .scan_prefix(Table::MemberHistory, &prefix, Some(b"z"), 100)
        .unwrap();
    assert!(from_after.items.is_empty());
    // A cursor in the middle resumes after it.
    let middle = from_before.items[2].0.clone();
    let rest = store
        .scan_prefix(Table::MemberHistory, &prefix, Some(&middle), 100)
        .unwrap();
    assert_eq!(rest.items, from_before.items[3..].to_vec());
    // The prefix does not leak into a neighbouring id ("m-1" vs "m-10").
    let history = store.member_history("m-", None, 100).unwrap();
    assert!(history.items.is_empty());

    // Visiting a table sees what a scan sees, in key order, and stops when told to.
    let column = Column::State(Table::MemberHistory);
    let scanned = store.scan_raw(column, &[], None, 1_000).unwrap();
    assert_eq!(scanned.len(), 15);
    let mut visited = Vec::new();
    store
        .visit_raw(column, &mut |k, v| {
            visited.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    assert_eq!(visited, scanned);
    let mut first = 0;
    store
        .visit_raw(column, &mut |_, _| {
            first += 1;
            first < 3
        })
        .unwrap();
    assert_eq!(first, 3);
}

#[test]
fn rocks_paginates() {
    let dir = tempfile::tempdir().unwrap();
    paginates(&open(dir.path()));
}

#[test]
fn mem_paginates() {
    paginates(&MemStore::new());
}

#[test]
fn reopening_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (tip, snapshot) = {
        let store = open(dir.path());
        commit_blocks(&store, 6, 3);
        let snapshot: Vec<_> = Column::all()
            .map(|column| support::all_entries(&store, column))
            .collect();
        (store.tip().unwrap(), snapshot)
    };
    let store = open(dir.path());
    assert_eq!(store.tip().unwrap(), tip);
    let reopened: Vec<_> = Column::all()
        .map(|column| support::all_entries(&store, column))
        .collect();
    assert_eq!(reopened, snapshot);
    assert_eq!(check_whole_blocks(&store, 3), 6);
    // And the chain goes on from there.
    commit_blocks(&store, 2, 3);
    assert_eq!(check_whole_blocks(&store, 3), 8);
}

/// Every file under `dir` with its bytes, to show a directory did not change.
fn files_of(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_of(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

/// What an auditor, an export or a proof opens: the whole chain is there, including the blocks
/// only in the write-ahead log of a node that stopped without flushing, and not one byte of
/// the directory changes, however much is read; a write is refused.
#[test]
fn a_store_opened_read_only_reads_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = {
        let store = open(dir.path());
        commit_blocks(&store, 40, 50);
        Column::all()
            .map(|column| support::all_entries(&store, column))
            .collect::<Vec<_>>()
    };
    let before = files_of(dir.path());
    {
        let store = RocksStore::open_read_only(dir.path()).unwrap();
        let read: Vec<_> = Column::all()
            .map(|column| support::all_entries(&store, column))
            .collect();
        assert_eq!(read, snapshot);
        assert_eq!(check_whole_blocks(&store, 50), 40);
        let (block, delta) = support::block_after(store.tip().unwrap(), 1);
        assert!(store.commit_block(&block, &delta).is_err());
    }
    assert_eq!(files_of(dir.path()), before);

    // No store there: refused, and nothing is created.
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("store");
    assert!(RocksStore::open_read_only(&missing).is_err());
    assert!(!missing.exists());
}

/// Overwrites one stored value behind the store's back, as a damaged disk or an editor would.
fn tamper(dir: &Path, column: Column, key: &[u8], value: &[u8]) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, names).unwrap();
    db.put_cf(db.cf_handle(column.name()).unwrap(), key, value)
        .unwrap();
}

fn is_corrupt<T: std::fmt::Debug>(result: Result<T, StorageError>, table: &str) -> bool {
    match result {
        Err(StorageError::Corrupt { table: t, .. }) => t == table,
        other => panic!("expected corruption in {table}, got {other:?}"),
    }
}

#[test]
fn refuses_a_store_of_another_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    tamper(
        dir.path(),
        Column::Chain(ChainTable::Meta),
        b"schema_version",
        &encode(&(SCHEMA_VERSION + 1)),
    );
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert_eq!(
        error,
        StorageError::SchemaMismatch {
            found: SCHEMA_VERSION + 1,
            expected: SCHEMA_VERSION
        }
    );
    assert!(error.to_string().contains("schema version"));
}

#[test]
fn detects_tampered_values_when_reading_back() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = {
        let store = open(dir.path());
        commit_blocks(&store, 4, 2)
    };
    let headers = Column::Chain(ChainTable::Headers);
    let commits = Column::Chain(ChainTable::Commits);
    let records = Column::Chain(ChainTable::Records);
    let block_records = Column::Chain(ChainTable::BlockRecords);

    // A header edited in place: its id no longer matches the index.
    let mut edited = blocks[1].block.header.clone();
    edited.time_ms += 1;
    tamper(dir.path(), headers, &2u64.to_be_bytes(), &encode(&edited));
    {
        let store = open(dir.path());
        assert!(is_corrupt(store.header(2), "headers"));
        assert!(is_corrupt(
            store.header_by_id(&blocks[1].block.id()),
            "headers"
        ));
        assert!(is_corrupt(store.committed_block(2), "headers"));
        // Other heights still read.
        assert_eq!(
            store.header(1).unwrap().as_ref(),
            Some(&blocks[0].block.header)
        );
    }
    // A header moved to another height.
    tamper(
        dir.path(),
        headers,
        &2u64.to_be_bytes(),
        &encode(&blocks[2].block.header),
    );
    assert!(is_corrupt(open(dir.path()).header(2), "headers"));
    // Garbage, and trailing bytes.
    tamper(dir.path(), headers, &2u64.to_be_bytes(), b"garbage");
    assert!(is_corrupt(open(dir.path()).header(2), "headers"));
    let mut trailing = encode(&blocks[1].block.header);
    trailing.push(0);
    tamper(dir.path(), headers, &2u64.to_be_bytes(), &trailing);
    assert!(is_corrupt(open(dir.path()).header(2), "headers"));
    tamper(
        dir.path(),
        headers,
        &2u64.to_be_bytes(),
        &encode(&blocks[1].block.header),
    );
    assert_eq!(
        open(dir.path()).committed_block(2).unwrap().as_ref(),
        Some(&blocks[1])
    );

    // The tip's header damaged: the tip itself is refused.
    tamper(
        dir.path(),
        headers,
        &4u64.to_be_bytes(),
        &encode(&blocks[2].block.header),
    );
    assert!(is_corrupt(open(dir.path()).tip(), "headers"));
    tamper(
        dir.path(),
        headers,
        &4u64.to_be_bytes(),
        &encode(&blocks[3].block.header),
    );

    // A commit certificate of another block.
    tamper(
        dir.path(),
        commits,
        &3u64.to_be_bytes(),
        &encode(&blocks[0].commit),
    );
    assert!(is_corrupt(open(dir.path()).commit(3), "commits"));
    assert!(is_corrupt(open(dir.path()).committed_block(3), "commits"));
    tamper(
        dir.path(),
        commits,
        &3u64.to_be_bytes(),
        &encode(&blocks[2].commit),
    );

    // Another record stored where a record is located.
    let id = blocks[0].block.records[0].id();
    let slot = branchledger_storage::record_key(1, 0);
    let mut other = branchledger_storage::StoredRecord {
        height: 1,
        index: 0,
        record: blocks[0].block.records[1].clone(),
    };
    tamper(dir.path(), records, &slot, &encode(&other));
    assert!(is_corrupt(open(dir.path()).record(&id), "records"));
    assert!(is_corrupt(open(dir.path()).block(1), "records"));
    // The right record claiming another position than the one it is stored at.
    other.record = blocks[0].block.records[0].clone();
    other.index = 1;
    tamper(dir.path(), records, &slot, &encode(&other));
    assert!(is_corrupt(open(dir.path()).record(&id), "records"));
    assert!(is_corrupt(open(dir.path()).block(1), "records"));

    // A record list that is not the header's.
    let reversed: Vec<Hash> = blocks[2]
        .block
        .records
        .iter()
        .rev()
        .map(|r| r.id())
        .collect();
    tamper(
        dir.path(),
        block_records,
        &3u64.to_be_bytes(),
        &encode(&reversed),
    );
    assert!(is_corrupt(open(dir.path()).record_ids(3), "block_records"));

    // A corrupt index entry is an error, not a panic.
    tamper(
        dir.path(),
        Column::State(Table::MemberHistory),
        &keys::member_history(MEMBERS[0], 1, 0),
        b"short",
    );
    assert!(is_corrupt(
        open(dir.path()).member_history(MEMBERS[0], None, 10),
        "index_member_history"
    ));

    // An entry naming another record than the one at its position is corrupt when read (the
    // entry above is put back first; the record at height 1 was tampered with above).
    tamper(
        dir.path(),
        Column::State(Table::MemberHistory),
        &keys::member_history(MEMBERS[0], 1, 0),
        &encode(&blocks[0].block.records[0].id()),
    );
    let other = blocks[3].block.records[0].id();
    tamper(
        dir.path(),
        Column::State(Table::MemberHistory),
        &keys::member_history(MEMBERS[0], 3, 0),
        &encode(&other),
    );
    let store = open(dir.path());
    let page = store.member_history(MEMBERS[0], None, 10).unwrap();
    assert_eq!((page.items[2].height, page.items[2].index), (3, 0));
    assert_eq!(page.items[2].record_id, other);
    assert!(is_corrupt(
        store.indexed_record(&page.items[2]),
        "index_member_history"
    ));
    let fine = store.indexed_record(&page.items[3]).unwrap();
    assert_eq!(fine.record.id(), other);
    drop(store);
    // A key too short to end with a position is corrupt when paged.
    tamper(
        dir.path(),
        Column::State(Table::MemberHistory),
        &keys::id_prefix(MEMBERS[0]),
        &encode(&other),
    );
    assert!(is_corrupt(
        open(dir.path()).member_history(MEMBERS[0], None, 10),
        "index_member_history"
    ));
}

#[test]
fn state_reader_sees_deletes_and_missing_keys() {
    let store = MemStore::new();
    commit_blocks(&store, 2, 1);
    assert_eq!(
        StateReader::get(&store, Table::Issues, &support::issue_key(1)).unwrap(),
        None
    );
    assert_eq!(
        StateReader::get(&store, Table::Issues, &support::issue_key(2)).unwrap(),
        Some(encode(&2u64))
    );
    assert_eq!(
        StateReader::get(&store, Table::Members, b"nobody").unwrap(),
        None
    );
}

/// The node's store keeps hot state entries in memory: every read must still give what the
/// last commit left, including an absence read before the commit that wrote the key and a
/// value read before the commit that deleted it, with a cache big enough for everything and
/// one so small it starts again on nearly every read.
#[test]
fn the_state_cache_gives_what_the_last_commit_left() {
    for capacity in [branchledger_storage::STATE_CACHE_ENTRIES_DEFAULT, 2] {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open_with(
            dir.path(),
            &branchledger_storage::RocksOptions {
                state_cache_entries: capacity,
                ..branchledger_storage::RocksOptions::default()
            },
        )
        .unwrap();
        let read = |table, key: &[u8]| StateReader::get(&store, table, key).unwrap();
        let mut tip = None;
        for height in 1..=6 {
            // Read (and so cache) what this block is about to change.
            let next_issue = support::issue_key(height);
            assert_eq!(
                read(Table::Issues, &next_issue),
                None,
                "capacity {capacity}"
            );
            let (block, delta) = block_after(tip, 2);
            tip = Some(store.commit_block(&block, &delta).unwrap());
            for _ in 0..2 {
                assert_eq!(
                    read(Table::BranchStats, BRANCH.as_bytes()),
                    Some(encode(&height)),
                    "capacity {capacity}, height {height}"
                );
                assert_eq!(read(Table::Issues, &next_issue), Some(encode(&height)));
                if height > 1 {
                    assert_eq!(read(Table::Issues, &support::issue_key(height - 1)), None);
                }
            }
        }
    }
}
