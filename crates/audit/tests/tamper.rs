//! `verify_store` passes an honest chain and catches each kind of tampering with the RocksDB
//! files of a stopped node, naming the right height.

use std::path::Path;

use branchledger_audit::{verify_store, AuditFailure};
use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_state::{keys, StateReader, Table};
use branchledger_storage::{ChainReader, Column, RocksStore};
use branchledger_types::codec::{decode, encode};
use branchledger_types::{
    CommitCertificate, CommitSignature, Genesis, Period, RecordBody, SignedRecord,
};

mod support;
use support::*;

fn audit(path: &Path, genesis: &Genesis) -> Result<branchledger_audit::AuditReport, AuditFailure> {
    let store = RocksStore::open(path).expect("reopen");
    verify_store(genesis, &store, |_, _| {})
}

/// Opens the stopped node's RocksDB directly, as someone with disk access would.
fn raw(path: &Path) -> rocksdb::DB {
    let names: Vec<&str> = Column::all().map(|c| c.name()).collect();
    rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).expect("raw open")
}

fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

fn tamper(path: &Path, edit: impl FnOnce(&rocksdb::DB)) {
    let db = raw(path);
    edit(&db);
    db.flush().expect("flush");
}

fn cf<'a>(db: &'a rocksdb::DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family")
}

#[test]
fn an_honest_chain_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let mut seen = Vec::new();
    let store = RocksStore::open(dir.path()).expect("open");
    let report = verify_store(&genesis, &store, |h, r| seen.push((h, r))).expect("honest chain");
    assert_eq!(report.blocks, BLOCKS);
    assert_eq!(report.records, BLOCKS * 3);
    assert!(report.state_entries > 0);
    assert_eq!(seen.last(), Some(&(BLOCKS, BLOCKS * 3)));
    // One pass: the digests of the stored tables matched the fast pass's, so the exact pass
    // (which would report every height again) did not run.
    assert_eq!(seen.len() as u64, BLOCKS, "{seen:?}");
    assert_eq!(
        Some(report.state_digest),
        store.tip().expect("tip").map(|t| t.state_digest.to_hex())
    );
}

/// Each tampering, and the height the audit must name.
#[test]
fn every_tampering_is_caught_at_the_right_height() {
    type Edit = Box<dyn FnOnce(&rocksdb::DB)>;
    let cases: Vec<(&str, u64, Edit)> = vec![
        (
            "flipped byte in a stored record",
            3,
            Box::new(|db| {
                let key = branchledger_storage::record_key(3, 1);
                let mut value = db
                    .get_cf(cf(db, "records"), key)
                    .expect("get")
                    .expect("present");
                let last = value.len() - 70;
                value[last] ^= 1;
                db.put_cf(cf(db, "records"), key, value).expect("put");
            }),
        ),
        (
            "a record removed from a block",
            4,
            Box::new(|db| {
                let key = height_key(4);
                let bytes = db
                    .get_cf(cf(db, "block_records"), key)
                    .expect("get")
                    .expect("present");
                let mut ids: Vec<Hash> = decode("ids", &bytes, 1 << 20).expect("ids");
                ids.pop();
                db.put_cf(cf(db, "block_records"), key, encode(&ids))
                    .expect("put");
            }),
        ),
        (
            "two records swapped",
            2,
            Box::new(|db| {
                let key = height_key(2);
                let bytes = db
                    .get_cf(cf(db, "block_records"), key)
                    .expect("get")
                    .expect("present");
                let mut ids: Vec<Hash> = decode("ids", &bytes, 1 << 20).expect("ids");
                ids.swap(1, 2);
                db.put_cf(cf(db, "block_records"), key, encode(&ids))
                    .expect("put");
            }),
        ),
        (
            "a commit with too few signatures",
            5,
            Box::new(|db| {
                let key = height_key(5);
                let bytes = db
                    .get_cf(cf(db, "commits"), key)
                    .expect("get")
                    .expect("present");
                let mut commit: CommitCertificate =
                    decode("commit", &bytes, 1 << 20).expect("commit");
                commit.signatures.truncate(2);
                db.put_cf(cf(db, "commits"), key, encode(&commit))
                    .expect("put");
            }),
        ),
        (
            "a duplicated signature",
            1,
            Box::new(|db| {
                let key = height_key(1);
                let bytes = db
                    .get_cf(cf(db, "commits"), key)
                    .expect("get")
                    .expect("present");
                let mut commit: CommitCertificate =
                    decode("commit", &bytes, 1 << 20).expect("commit");
                commit.signatures[2] = commit.signatures[1];
                db.put_cf(cf(db, "commits"), key, encode(&commit))
                    .expect("put");
            }),
        ),
        (
            "a signature by a non-validator",
            6,
            Box::new(|db| {
                let key = height_key(6);
                let bytes = db
                    .get_cf(cf(db, "commits"), key)
                    .expect("get")
                    .expect("present");
                let mut commit: CommitCertificate =
                    decode("commit", &bytes, 1 << 20).expect("commit");
                let outsider = Keypair::from_seed([99; 32]);
                let vote = commit.vote_of(3);
                commit.signatures.push(CommitSignature {
                    validator_index: 3,
                    signature: outsider.sign(&vote.signing_message("audit-test")),
                });
                db.put_cf(cf(db, "commits"), key, encode(&commit))
                    .expect("put");
            }),
        ),
        (
            "an aggregate changed on disk",
            4,
            Box::new(|db| {
                // Member m4's study total was written only by block 4.
                let key = keys::id_period("m4", Period::new(2025, 12));
                let table = Table::StudyByMember.name();
                let mut value = db
                    .get_cf(cf(db, table), &key)
                    .expect("get")
                    .expect("present");
                value[0] = value[0].wrapping_add(60);
                db.put_cf(cf(db, table), &key, value).expect("put");
            }),
        ),
        (
            "an index entry deleted on disk",
            2,
            Box::new(|db| {
                let key = keys::member_history("m2", 2, 1);
                db.delete_cf(cf(db, Table::MemberHistory.name()), key)
                    .expect("delete");
            }),
        ),
        (
            "a block deleted below the tip",
            5,
            Box::new(|db| {
                db.delete_cf(cf(db, "headers"), height_key(5))
                    .expect("delete");
            }),
        ),
    ];
    for (name, height, edit) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = build_chain(dir.path());
        tamper(dir.path(), edit);
        let failure = audit(dir.path(), &genesis).expect_err(name);
        println!("{name}: {failure}");
        assert_eq!(failure.height, height, "{name}: {failure}");
        let json = serde_json::to_string(&failure).expect("json");
        assert!(
            json.contains(&format!("\"height\":{height}")),
            "{name}: {json}"
        );
    }
}

#[test]
fn a_record_changed_and_resigned_by_a_key_outside_genesis_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let store = RocksStore::open(dir.path()).expect("open");
    let original = store
        .record(&records_of(2)[1].id())
        .expect("read")
        .expect("present");
    drop(store);
    // Raise the minutes and re-sign with a key that is not the branch's.
    let mut changed = original.record.record.clone();
    if let RecordBody::StudySession(session) = &mut changed.body {
        session.minutes = 700;
    }
    let forged = changed.sign(&Keypair::from_seed([77; 32]));
    tamper(dir.path(), |db| {
        let stored = branchledger_storage::StoredRecord {
            height: original.height,
            index: original.index,
            record: forged.clone(),
        };
        let slot = branchledger_storage::record_key(original.height, original.index);
        db.put_cf(cf(db, "records"), slot, encode(&stored))
            .expect("put");
        let key = height_key(2);
        let bytes = db
            .get_cf(cf(db, "block_records"), key)
            .expect("get")
            .expect("present");
        let mut ids: Vec<Hash> = decode("ids", &bytes, 1 << 20).expect("ids");
        ids[original.index as usize] = forged.id();
        db.put_cf(cf(db, "block_records"), key, encode(&ids))
            .expect("put");
    });
    let failure = audit(dir.path(), &genesis).expect_err("forged record");
    assert_eq!(failure.height, 2, "{failure}");
}

#[test]
fn state_reader_of_the_store_matches_the_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    build_chain(dir.path());
    let store = RocksStore::open(dir.path()).expect("open");
    let key = keys::id_period("m1", Period::new(2025, 12));
    assert!(store
        .get(Table::StudyByMember, &key)
        .expect("read")
        .is_some());
}

/// The height in a key of the indexes that end `height(u64 BE) ‖ index(u32 BE)`.
fn height_in_index_key(key: &[u8]) -> u64 {
    u64::from_be_bytes(
        key[key.len() - 12..key.len() - 4]
            .try_into()
            .expect("8 bytes"),
    )
}

/// Entries of the tables the fast pass keeps only as digests (the by-period index, the
/// member history) and of one it answers from the audited store (record locations) changed on
/// disk: each is found, and named at the height of the block that wrote the entry.
#[test]
fn entries_of_digested_and_kept_tables_changed_on_disk_are_named() {
    for (table, change_value) in [
        (Table::RecordsByBranchKindPeriod, true),
        (Table::MemberHistory, true),
        (Table::RecordsByBranchKindPeriod, false),
        (Table::RecordLocations, true),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = build_chain(dir.path());
        let mut expected = 0;
        tamper(dir.path(), |db| {
            let cf = cf(db, table.name());
            let (key, mut value) = db
                .iterator_cf(cf, rocksdb::IteratorMode::End)
                .next()
                .expect("an entry")
                .expect("read");
            let height = if table == Table::RecordLocations {
                // The value starts with the height of the record.
                u64::from_le_bytes(value[..8].try_into().expect("8 bytes"))
            } else {
                height_in_index_key(&key)
            };
            if change_value {
                let last = value.len() - 1;
                value[last] ^= 1;
                db.put_cf(cf, &key, &value).expect("put");
                expected = height;
            } else {
                // A copy under a key no block wrote: named at the tip.
                let mut forged = key.to_vec();
                forged[0] ^= 0x7f;
                db.put_cf(cf, &forged, &value).expect("put");
                expected = BLOCKS;
            }
        });
        let failure = audit(dir.path(), &genesis).expect_err(table.name());
        assert_eq!(
            failure.height,
            expected,
            "{} ({}): {failure}",
            table.name(),
            if change_value {
                "value changed"
            } else {
                "entry added"
            }
        );
        assert!(failure.rule.contains(table.name()), "{failure}");
    }
}

/// The height of a study session that is corrected, then retracted.
const TARGET_HEIGHT: u64 = 2;
/// The heights of its replacement and its retraction.
const REPLACED_AT: u64 = 4;
const RETRACTED_AT: u64 = 5;
/// The height of a study session replaced in its own block, and the height it is retracted.
const SAME_BLOCK: u64 = 3;
const SAME_BLOCK_RETRACTED_AT: u64 = 6;

fn correction(nonce: u64, target: Hash, replacement: Option<RecordBody>) -> SignedRecord {
    record(
        nonce,
        RecordBody::Correction(branchledger_types::record::Correction {
            target,
            reason: "entered wrongly".into(),
            replacement: replacement.map(Box::new),
        }),
    )
}

/// The honest chain with four corrections: a study session committed at `TARGET_HEIGHT` is
/// replaced at `REPLACED_AT` and retracted at `RETRACTED_AT`; one committed at `SAME_BLOCK`
/// is replaced in that block and retracted at `SAME_BLOCK_RETRACTED_AT`. Returns the first
/// session's id.
fn build_chain_with_corrections(path: &Path) -> (Genesis, Hash) {
    let session = |height: u64| records_of(height)[1].clone();
    let replaced = |height: u64| match session(height).record.body {
        RecordBody::StudySession(mut body) => {
            body.minutes += 5;
            RecordBody::StudySession(body)
        }
        other => panic!("not a study session: {other:?}"),
    };
    let target = session(TARGET_HEIGHT).id();
    let genesis = build_chain_of(path, BLOCKS, |height| {
        let mut records = records_of(height);
        let nonce = height * 10 + 3;
        match height {
            REPLACED_AT => records.push(correction(nonce, target, Some(replaced(TARGET_HEIGHT)))),
            RETRACTED_AT => records.push(correction(nonce, target, None)),
            SAME_BLOCK => {
                let id = session(SAME_BLOCK).id();
                records.push(correction(nonce, id, Some(replaced(SAME_BLOCK))));
            }
            SAME_BLOCK_RETRACTED_AT => {
                records.push(correction(nonce, session(SAME_BLOCK).id(), None));
            }
            _ => {}
        }
        records
    });
    (genesis, target)
}

/// The fast pass does not store record locations: it answers a correction's read of its
/// target's location from the audited store, and the rules read the target itself (a record
/// no correction rewrote yet is its own view) from the verified chain. On an honest chain those
/// answers are the replay's own, and one pass verifies it, whether the target was rewritten in
/// an earlier block, in its own block or not at all. If the stored location is deleted, or
/// claims a later height, a correction would break a rule; the audit does not report that (the
/// chain is sound) but the stored entry, at the height that wrote it. A changed entry of a
/// corrected record is named at the height of its last correction; an entry added for a record
/// never corrected, even the very view the record gives, was written by no block and is named
/// at the tip.
#[test]
fn corrections_read_their_targets_from_the_chain_and_tampered_entries_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (genesis, _) = build_chain_with_corrections(dir.path());
    let mut seen = Vec::new();
    let store = RocksStore::open(dir.path()).expect("open");
    let report = verify_store(&genesis, &store, |h, r| seen.push((h, r))).expect("honest chain");
    assert_eq!(report.records, BLOCKS * 3 + 4);
    assert_eq!(seen.len() as u64, BLOCKS, "one pass: {seen:?}");
    drop(store);

    for (case, table, expected) in [
        ("location deleted", Table::RecordLocations, TARGET_HEIGHT),
        (
            "location moved later",
            Table::RecordLocations,
            TARGET_HEIGHT,
        ),
        ("entry changed", Table::Correctable, RETRACTED_AT),
        ("entry added", Table::Correctable, BLOCKS),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (genesis, target) = build_chain_with_corrections(dir.path());
        tamper(dir.path(), |db| {
            let cf = cf(db, table.name());
            if case == "entry added" {
                // A session of a block no correction touched.
                let untouched = &records_of(1)[1];
                let key = keys::record_id(&untouched.id());
                assert_eq!(db.get_cf(cf, &key).expect("read"), None, "never corrected");
                let view = branchledger_state::entries::CorrectableEntry::original(
                    &untouched.record.branch_id,
                    &untouched.record.body,
                );
                db.put_cf(cf, &key, encode(&view)).expect("put");
                return;
            }
            let key = keys::record_id(&target);
            let mut value = db.get_cf(cf, &key).expect("read").expect("stored");
            match case {
                "location deleted" => db.delete_cf(cf, &key).expect("delete"),
                "location moved later" => {
                    // The value starts with the height of the record.
                    assert_eq!(value[..8], TARGET_HEIGHT.to_le_bytes());
                    value[..8].copy_from_slice(&BLOCKS.to_le_bytes());
                    db.put_cf(cf, &key, &value).expect("put");
                }
                _ => {
                    // The last byte is the retracted flag.
                    let last = value.len() - 1;
                    assert_eq!(value[last], 1, "retracted");
                    value[last] = 0;
                    db.put_cf(cf, &key, &value).expect("put");
                }
            }
        });
        let failure = audit(dir.path(), &genesis).expect_err(case);
        assert_eq!(failure.height, expected, "{case}: {failure}");
        assert!(failure.rule.contains(table.name()), "{case}: {failure}");
        assert_eq!(
            failure.record, None,
            "{case}: no record is to blame: {failure}"
        );
    }
}

/// Blocks of the randomised chain of corrections.
const RANDOM_BLOCKS: u64 = 40;

/// A chain where random study sessions are replaced and retracted, again and again, in later
/// blocks, in their own block, several times in one block, and in the blocks just before the
/// one being replayed: the fast pass verifies it in one pass, so every entry it made again
/// from a record or read from the store was the replay's own. Replay a failure with
/// `AUDIT_SEED=<seed>`.
#[test]
fn random_corrections_are_verified_in_one_pass() {
    use rand::{RngExt, SeedableRng};
    let seed = std::env::var("AUDIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("seed {seed}: replay with AUDIT_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    // Each session that may still be corrected: its id, its current body, corrections so far.
    let mut open: Vec<(Hash, RecordBody, usize)> = Vec::new();
    let mut corrections = 0u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain_of(dir.path(), RANDOM_BLOCKS, |height| {
        let mut records = records_of(height);
        open.extend(
            records[1..]
                .iter()
                .map(|r| (r.id(), r.record.body.clone(), 0)),
        );
        for n in 0..rng.random_range(0..4u64) {
            if open.is_empty() {
                break;
            }
            let pick = rng.random_range(0..open.len());
            let (target, body, done) = &mut open[pick];
            let nonce = height * 10_000 + 100 + n;
            if *done + 1 >= branchledger_state::CORRECTIONS_PER_RECORD_MAX || rng.random_bool(0.3) {
                records.push(correction(nonce, *target, None));
                open.swap_remove(pick);
            } else {
                let RecordBody::StudySession(mut session) = body.clone() else {
                    unreachable!("only study sessions are corrected");
                };
                session.minutes = rng.random_range(1..=180);
                *body = RecordBody::StudySession(session);
                *done += 1;
                records.push(correction(nonce, *target, Some(body.clone())));
            }
            corrections += 1;
        }
        records
    });
    let store = RocksStore::open(dir.path()).expect("open");
    let mut seen = 0u64;
    let report = verify_store(&genesis, &store, |_, _| seen += 1)
        .unwrap_or_else(|e| panic!("seed {seed}: honest chain: {e}"));
    assert_eq!(
        report.records,
        RANDOM_BLOCKS * 3 + corrections,
        "seed {seed}"
    );
    assert_eq!(seen, RANDOM_BLOCKS, "seed {seed}: one pass");
}

/// The entries of the chain tables at `height` of the stopped store at `path` (the block's
/// header, id entry, certificate, record list and records), as `(table, key, value)`.
fn block_entries(path: &Path, height: u64) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let store = RocksStore::open(path).expect("open");
    let id = store
        .header(height)
        .expect("read")
        .expect("a header")
        .block_id();
    drop(store);
    let db = raw(path);
    let mut entries = Vec::new();
    for table in ["headers", "commits", "block_records"] {
        let value = db
            .get_cf(cf(&db, table), height_key(height))
            .expect("get")
            .expect("present");
        entries.push((table, height_key(height).to_vec(), value));
    }
    entries.push(("block_ids", id.0.to_vec(), height_key(height).to_vec()));
    for entry in db.prefix_iterator_cf(cf(&db, "records"), height_key(height)) {
        let (key, value) = entry.expect("read");
        if !key.starts_with(&height_key(height)) {
            break;
        }
        entries.push(("records", key.to_vec(), value.to_vec()));
    }
    entries
}

/// A block written above the tip of a stopped node, into its RocksDB files: a whole block,
/// linked to the tip and certified by a quorum, that a read by height returns as readily as a
/// verified one. The tip does not move, so the replay never reaches it; the audit refuses it
/// all the same, naming the table, the key and the rule, at the block's height.
#[test]
fn a_block_forged_above_the_tip_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    // The same chain one block longer: its last block follows the tip of the first.
    let longer = tempfile::tempdir().expect("temp dir");
    build_chain_of(longer.path(), BLOCKS + 1, records_of);
    let forged = block_entries(longer.path(), BLOCKS + 1);
    assert_eq!(
        forged.len(),
        4 + 3,
        "header, id, certificate, list, 3 records"
    );
    tamper(dir.path(), |db| {
        for (table, key, value) in &forged {
            db.put_cf(cf(db, table), key, value).expect("put");
        }
    });
    let store = RocksStore::open(dir.path()).expect("open");
    assert_eq!(store.tip().expect("tip").expect("a tip").height, BLOCKS);
    let above = store
        .committed_block(BLOCKS + 1)
        .expect("read")
        .expect("the forged block reads back");
    assert_eq!(
        above.block.header.prev_block_id,
        store.tip().expect("tip").expect("tip").block_id
    );
    drop(store);

    let failure = audit(dir.path(), &genesis).expect_err("a block above the tip");
    println!("{failure}");
    assert_eq!(failure.height, BLOCKS + 1, "{failure}");
    assert_eq!(failure.record, None, "{failure}");
    for part in [
        "table headers",
        &format!("key {}", hex(&height_key(BLOCKS + 1))),
        "above the verified tip",
        "accounts for it",
    ] {
        assert!(failure.rule.contains(part), "{part:?} in {failure}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every other kind of entry of the chain tables that no verified block accounts for, each
/// refused with its table, its key and the rule, at the height it claims above the tip (at
/// the tip when it claims none).
#[test]
fn every_entry_of_the_chain_tables_must_be_the_verified_chains() {
    type Edit = Box<dyn FnOnce(&rocksdb::DB)>;
    let copy = |table: &'static str, from: Vec<u8>, to: Vec<u8>| -> Edit {
        Box::new(move |db: &rocksdb::DB| {
            let value = db
                .get_cf(cf(db, table), &from)
                .expect("get")
                .expect("present");
            db.put_cf(cf(db, table), &to, value).expect("put");
        })
    };
    let put = |table: &'static str, key: Vec<u8>, value: Vec<u8>| -> Edit {
        Box::new(move |db: &rocksdb::DB| db.put_cf(cf(db, table), &key, &value).expect("put"))
    };
    let stray_id = vec![0xa5; 32];
    let cases: Vec<(&str, u64, Vec<String>, Edit)> = vec![
        (
            "a certificate above the tip",
            BLOCKS + 2,
            vec!["table commits".into(), hex(&height_key(BLOCKS + 2))],
            copy(
                "commits",
                height_key(BLOCKS).to_vec(),
                height_key(BLOCKS + 2).to_vec(),
            ),
        ),
        (
            "a record list above the tip",
            BLOCKS + 1,
            vec![
                "table block_records".into(),
                "above the verified tip".into(),
            ],
            copy(
                "block_records",
                height_key(BLOCKS).to_vec(),
                height_key(BLOCKS + 1).to_vec(),
            ),
        ),
        (
            "a record above the tip",
            BLOCKS + 3,
            vec![
                "table records".into(),
                hex(&branchledger_storage::record_key(BLOCKS + 3, 0)),
            ],
            copy(
                "records",
                branchledger_storage::record_key(2, 0).to_vec(),
                branchledger_storage::record_key(BLOCKS + 3, 0).to_vec(),
            ),
        ),
        (
            "a record under a key of the wrong length, between blocks",
            BLOCKS,
            vec!["table records".into(), "7 bytes".into()],
            put("records", vec![0, 0, 0, 0, 0, 0, 3], vec![1, 2, 3]),
        ),
        (
            "a header at height 0",
            BLOCKS,
            vec!["table headers".into(), "height 0".into()],
            copy("headers", height_key(1).to_vec(), height_key(0).to_vec()),
        ),
        (
            "a block-id entry that matches no verified header",
            BLOCKS,
            vec![
                "table block_ids".into(),
                hex(&stray_id),
                "matches no verified header".into(),
            ],
            put("block_ids", stray_id.clone(), height_key(3).to_vec()),
        ),
        (
            "a block-id entry above the tip",
            BLOCKS + 5,
            vec!["table block_ids".into(), "above the verified tip".into()],
            put(
                "block_ids",
                stray_id.clone(),
                height_key(BLOCKS + 5).to_vec(),
            ),
        ),
        (
            "a block-id entry whose value is no height",
            BLOCKS,
            vec!["table block_ids".into(), "a value of 3 bytes".into()],
            put("block_ids", stray_id, vec![1, 2, 3]),
        ),
        (
            "an unknown meta key",
            BLOCKS,
            vec![
                "table meta".into(),
                "key \"checkpoint\"".into(),
                "unknown key".into(),
            ],
            put("meta", b"checkpoint".to_vec(), vec![0; 8]),
        ),
    ];
    for (name, height, parts, edit) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = build_chain(dir.path());
        tamper(dir.path(), edit);
        let failure = audit(dir.path(), &genesis).expect_err(name);
        println!("{name}: {failure}");
        assert_eq!(failure.height, height, "{name}: {failure}");
        for part in parts {
            assert!(
                failure.rule.contains(&part),
                "{name}: {part:?} in {failure}"
            );
        }
    }
}

/// The records table is read by the replay block by block, as each height's key range; a key
/// shorter than a height sorts outside every such range: before the first block, after the
/// last, or (where a carry changes more than the height's last byte) between two blocks, here
/// between heights 255 and 256 and between 511 and 512. Each is refused by name.
#[test]
fn short_record_keys_outside_every_block_are_refused() {
    const LONG: u64 = 513;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("the empty key, before every block", vec![], "0 bytes"),
        (
            "a 7-byte prefix of height 256, between blocks 255 and 256",
            256u64.to_be_bytes()[..7].to_vec(),
            "7 bytes",
        ),
        (
            "a 7-byte prefix of height 512, between blocks 511 and 512",
            512u64.to_be_bytes()[..7].to_vec(),
            "7 bytes",
        ),
        (
            "a 7-byte prefix of the height after the tip",
            (LONG + 1).to_be_bytes()[..7].to_vec(),
            "7 bytes",
        ),
    ];
    let pristine = tempfile::tempdir().expect("temp dir");
    // Records in a few blocks only: the rest are empty, which the ranges must handle too.
    let genesis = build_chain_of(pristine.path(), LONG, |height| {
        if [1, 255, 256, 511, 512, LONG].contains(&height) {
            records_of(height)
        } else {
            Vec::new()
        }
    });
    audit(pristine.path(), &genesis).expect("the untouched chain passes");
    for (name, key, length) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(pristine.path(), dir.path());
        tamper(dir.path(), |db| {
            db.put_cf(cf(db, "records"), &key, [1, 2, 3]).expect("put");
        });
        let failure = audit(dir.path(), &genesis).expect_err(name);
        println!("{name}: {failure}");
        assert_eq!(failure.height, LONG, "{name}: {failure}");
        for part in ["table records", &hex(&key), length, "accounts for it"] {
            assert!(failure.rule.contains(part), "{name}: {part:?} in {failure}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The tip deleted from a store that holds blocks: not read as an empty chain that passes,
/// even when an empty store is allowed; the first header is named.
#[test]
fn blocks_without_a_tip_are_not_an_empty_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    tamper(dir.path(), |db| {
        db.delete_cf(cf(db, "meta"), b"tip").expect("delete");
    });
    let store = RocksStore::open(dir.path()).expect("open");
    for allow_empty in [false, true] {
        let options = branchledger_audit::AuditOptions {
            allow_empty,
            ..Default::default()
        };
        let failure = branchledger_audit::verify_store_with(&genesis, &store, &options, |_, _| {})
            .expect_err("blocks without a tip");
        assert_eq!(failure.height, 1, "{failure}");
        assert!(failure.rule.contains("table headers"), "{failure}");
    }
}
