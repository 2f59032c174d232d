//! `verify_store` passes an honest chain and catches each kind of tampering with the RocksDB
//! files of a stopped node, naming the right height.

use std::path::Path;

use branchledger_audit::{verify_store, AuditFailure};
use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_state::{apply_block, keys, MemState, StateReader, Table};
use branchledger_storage::{ChainReader, ChainWriter, Column, RocksStore};
use branchledger_types::codec::{decode, encode};
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
};
use branchledger_types::record::{MemberJoined, MemberStatus, StudyForm, StudySession};
use branchledger_types::{
    merkle, Block, BlockHeader, BranchId, CommitCertificate, CommitSignature, CommittedBlock, Date,
    Genesis, MemberId, Period, Record, RecordBody, SignedRecord, Vote, VoteKind,
};

const T0: u64 = 1_767_225_600_000;
const BLOCKS: u64 = 6;

fn validator(i: usize) -> Keypair {
    Keypair::from_seed([10 + i as u8; 32])
}

fn branch_key() -> Keypair {
    Keypair::from_seed([1; 32])
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: "audit-test".into(),
        genesis_time_ms: T0,
        validators: (0..4)
            .map(|i| Validator {
                name: format!("v{i}"),
                branch_id: BranchId("b0".into()),
                consensus_key: validator(i).public_key(),
                peer_id: peer_id_of(&Keypair::from_seed([40 + i as u8; 32]).public_key()),
            })
            .collect(),
        branches: vec![Branch {
            branch_id: BranchId("b0".into()),
            name: "B0".into(),
            signing_key: branch_key().public_key(),
        }],
        consensus: ConsensusParams::default(),
        rules: Rules {
            meetings: vec![],
            study: StudyRule {
                minutes_per_member_per_month: 60,
            },
            dues_minor_per_month: 0,
        },
    }
}

fn record(nonce: u64, body: RecordBody) -> SignedRecord {
    Record {
        chain_id: "audit-test".into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: T0,
        nonce,
        body,
    }
    .sign(&branch_key())
}

fn records_of(height: u64) -> Vec<SignedRecord> {
    let member = format!("m{height}");
    vec![
        record(
            height * 10,
            RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(member.clone()),
                joined_on: Date::new(2025, 12, 1),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        ),
        record(
            height * 10 + 1,
            RecordBody::StudySession(StudySession {
                member_id: MemberId(member.clone()),
                material: "handbook".into(),
                minutes: 40,
                form: StudyForm::Group,
                occurred_on: Date::new(2025, 12, 2),
            }),
        ),
        record(
            height * 10 + 2,
            RecordBody::StudySession(StudySession {
                member_id: MemberId(member),
                material: "report".into(),
                minutes: 25,
                form: StudyForm::Online,
                occurred_on: Date::new(2025, 12, 3),
            }),
        ),
    ]
}

fn certify(block: &Block, signers: &[usize]) -> CommitCertificate {
    let block_id = block.id();
    let signatures = signers
        .iter()
        .map(|&i| {
            let vote = Vote {
                height: block.header.height,
                round: 0,
                kind: VoteKind::Precommit,
                block_id: Some(block_id),
                validator_index: i as u16,
            };
            CommitSignature {
                validator_index: i as u16,
                signature: validator(i).sign(&vote.signing_message("audit-test")),
            }
        })
        .collect();
    CommitCertificate {
        height: block.header.height,
        round: 0,
        block_id,
        signatures,
    }
}

/// Writes an honest chain of `BLOCKS` blocks into a store at `path`.
fn build_chain(path: &Path) -> Genesis {
    let genesis = genesis();
    let set = genesis.validator_set();
    let store = RocksStore::open(path).expect("open");
    let mut state = MemState::new();
    let mut prev: Option<BlockHeader> = None;
    let mut digest = Hash::ZERO;
    for height in 1..=BLOCKS {
        let records = records_of(height);
        let time_ms = T0 + height * 1_000;
        let (delta, next) = apply_block(&state, &genesis, height, time_ms, &records, &digest)
            .expect("valid records");
        let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
        let header = BlockHeader {
            chain_id: genesis.chain_id.clone(),
            height,
            time_ms,
            prev_block_id: prev.as_ref().map_or(Hash::ZERO, BlockHeader::block_id),
            records_root: merkle::root(&ids),
            record_count: records.len() as u32,
            state_digest: next,
            proposer_index: set.proposer(height, 0),
            validator_set_id: set.id(),
        };
        let block = Block {
            header: header.clone(),
            records,
        };
        let commit = certify(&block, &[0, 1, 2]);
        store
            .commit_block(&CommittedBlock { block, commit }, &delta)
            .expect("commit");
        state.apply_delta(&delta);
        digest = next;
        prev = Some(header);
    }
    genesis
}

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
                let id = records_of(3)[1].id();
                let mut value = db
                    .get_cf(cf(db, "records"), id.0)
                    .expect("get")
                    .expect("present");
                let last = value.len() - 70;
                value[last] ^= 1;
                db.put_cf(cf(db, "records"), id.0, value).expect("put");
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
        db.delete_cf(cf(db, "records"), original.record.id().0)
            .expect("delete");
        db.put_cf(cf(db, "records"), forged.id().0, encode(&stored))
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
