//! Test chains for the storage tests: deterministic blocks built on a store's tip, and a
//! whole-store consistency check.
//!
//! Records are really signed and commits carry a real precommit signature, but nothing here
//! is verified: storage stores what the caller verified.

#![allow(dead_code, clippy::unwrap_used)]

use branchledger_crypto::Keypair;
use branchledger_state::{keys, StateDelta, Table};
use branchledger_storage::{ChainReader, ChainTable, Column, Tip};
use branchledger_types::codec::{decode, encode};
use branchledger_types::record::{StudyForm, StudySession};
use branchledger_types::{
    merkle, Block, BlockHeader, BranchId, CommitCertificate, CommitSignature, CommittedBlock, Date,
    Hash, Height, MemberId, Period, Record, RecordBody, RecordKind, SignedRecord,
};

pub const CHAIN_ID: &str = "test-chain";
pub const BRANCH: &str = "branch-a";
pub const MEMBERS: [&str; 3] = ["m-0", "m-1", "m-2"];
/// Every record is in this period, so one index prefix holds them all.
pub const PERIOD: Period = Period::new(2024, 3);

pub fn branch_key() -> Keypair {
    Keypair::from_seed([7; 32])
}

pub fn validator_key() -> Keypair {
    Keypair::from_seed([9; 32])
}

/// The member of the record at `index` of a block.
pub fn member_of(index: u32) -> &'static str {
    MEMBERS[index as usize % MEMBERS.len()]
}

/// The `index`-th record of the block at `height` (its nonce makes it unique chain-wide).
pub fn record(height: Height, index: u32) -> SignedRecord {
    Record {
        chain_id: CHAIN_ID.to_owned(),
        branch_id: BranchId(BRANCH.to_owned()),
        created_at_ms: 1_700_000_000_000 + height * 1_000 + u64::from(index),
        nonce: height * 1_000 + u64::from(index),
        body: RecordBody::StudySession(StudySession {
            member_id: MemberId(member_of(index).to_owned()),
            material: format!("chapter {height}.{index}"),
            minutes: 30,
            form: StudyForm::Group,
            occurred_on: Date {
                year: PERIOD.year,
                month: PERIOD.month,
                day: 1,
            },
        }),
    }
    .sign(&branch_key())
}

/// The key in [`Table::Issues`] that the block at `height` writes (and the next one deletes).
pub fn issue_key(height: Height) -> Vec<u8> {
    format!("issue-{height}").into_bytes()
}

/// The delta of the block at `height` with `records`: index entries for each record, a
/// counter overwritten by every block, and a key written here and deleted by the next block.
pub fn delta_for(height: Height, records: &[SignedRecord]) -> StateDelta {
    let mut delta = StateDelta::default();
    for (index, record) in records.iter().enumerate() {
        let index = index as u32;
        let id = encode(&record.id());
        delta.writes.insert(
            (
                Table::MemberHistory,
                keys::member_history(member_of(index), height, index),
            ),
            Some(id.clone()),
        );
        delta.writes.insert(
            (
                Table::RecordsByBranchKindPeriod,
                keys::branch_kind_period(BRANCH, RecordKind::StudySession, PERIOD, height, index),
            ),
            Some(id),
        );
        // Where the record is: the store finds records by id through this table.
        delta.writes.insert(
            (Table::RecordLocations, keys::record_id(&record.id())),
            Some(encode(&branchledger_state::entries::RecordLocation {
                height,
                index,
                branch_id: record.record.branch_id.clone(),
                kind: record.record.body.kind(),
            })),
        );
    }
    delta.writes.insert(
        (Table::BranchStats, BRANCH.as_bytes().to_vec()),
        Some(encode(&height)),
    );
    delta
        .writes
        .insert((Table::Issues, issue_key(height)), Some(encode(&height)));
    if height > 1 {
        delta
            .writes
            .insert((Table::Issues, issue_key(height - 1)), None);
    }
    delta
}

/// The block that follows `tip` (`None`: the first block), with `record_count` records.
pub fn block_after(tip: Option<Tip>, record_count: u32) -> (CommittedBlock, StateDelta) {
    let height = tip.map_or(1, |t| t.height + 1);
    let records: Vec<SignedRecord> = (0..record_count).map(|i| record(height, i)).collect();
    let delta = delta_for(height, &records);
    let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
    let header = BlockHeader {
        chain_id: CHAIN_ID.to_owned(),
        height,
        time_ms: 1_700_000_000_000 + height * 1_000,
        prev_block_id: tip.map_or(Hash::ZERO, |t| t.block_id),
        records_root: merkle::root(&ids),
        record_count,
        state_digest: delta.chain_digest(&tip.map_or(Hash::ZERO, |t| t.state_digest)),
        proposer_index: 0,
        validator_set_id: Hash::of(b"validator set"),
    };
    let block_id = header.block_id();
    let mut commit = CommitCertificate {
        height,
        round: 0,
        block_id,
        signatures: Vec::new(),
    };
    let signed = commit.vote_of(0).sign(CHAIN_ID, &validator_key());
    commit.signatures.push(CommitSignature {
        validator_index: 0,
        signature: signed.signature,
    });
    (
        CommittedBlock {
            block: Block { header, records },
            commit,
        },
        delta,
    )
}

/// Builds and commits `count` blocks on the store's tip; returns the committed blocks.
pub fn commit_blocks<S: branchledger_storage::ChainWriter>(
    store: &S,
    count: usize,
    records_per_block: u32,
) -> Vec<CommittedBlock> {
    let mut blocks = Vec::new();
    for _ in 0..count {
        let (block, delta) = block_after(store.tip().unwrap(), records_per_block);
        store.commit_block(&block, &delta).unwrap();
        blocks.push(block);
    }
    blocks
}

/// Every entry of a column, in key order.
pub fn all_entries<R: ChainReader>(store: &R, column: Column) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan_raw(column, &[], after.as_deref(), 1_000)
            .unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
    }
}

/// Checks that the store holds whole blocks 1..=tip built by [`block_after`] with
/// `records_per_block` records each, linked by `prev_block_id`, and nothing above the tip.
/// Returns the tip height (0 when empty).
pub fn check_whole_blocks<R: ChainReader>(store: &R, records_per_block: u32) -> Height {
    let tip = store.tip().unwrap();
    let tip_height = tip.map_or(0, |t| t.height);
    let mut prev = Hash::ZERO;
    for height in 1..=tip_height {
        let committed = store
            .committed_block(height)
            .unwrap()
            .unwrap_or_else(|| panic!("height {height} <= tip {tip_height} is missing"));
        let header = &committed.block.header;
        assert_eq!(
            header.prev_block_id, prev,
            "chain broken at height {height}"
        );
        assert_eq!(committed.block.records.len(), records_per_block as usize);
        for (index, record) in committed.block.records.iter().enumerate() {
            let index = index as u32;
            assert_eq!(record, &crate::support::record(height, index));
            let stored = store.record(&record.id()).unwrap().unwrap();
            assert_eq!((stored.height, stored.index), (height, index));
            let history = store
                .state_value(
                    Table::MemberHistory,
                    &keys::member_history(member_of(index), height, index),
                )
                .unwrap()
                .unwrap_or_else(|| panic!("state write of height {height} missing"));
            assert_eq!(decode::<Hash>("id", &history, 32).unwrap(), record.id());
        }
        prev = header.block_id();
    }
    if let Some(tip) = tip {
        assert_eq!(tip.block_id, prev);
    }
    // Nothing above the tip, in any table keyed by height or filled per block.
    let height_tables = [
        ChainTable::Headers,
        ChainTable::Commits,
        ChainTable::BlockRecords,
    ];
    for table in height_tables {
        let entries = all_entries(store, Column::Chain(table));
        assert_eq!(
            entries.len() as u64,
            tip_height,
            "{} holds other heights than 1..={tip_height}",
            table.name()
        );
        if let Some((last, _)) = entries.last() {
            assert_eq!(last.as_slice(), tip_height.to_be_bytes().as_slice());
        }
    }
    let expected_records = tip_height * u64::from(records_per_block);
    for column in [
        Column::Chain(ChainTable::Records),
        Column::Chain(ChainTable::BlockIds),
        Column::State(Table::MemberHistory),
        Column::State(Table::RecordsByBranchKindPeriod),
    ] {
        let expected = match column {
            Column::Chain(ChainTable::BlockIds) => tip_height,
            _ => expected_records,
        };
        assert_eq!(
            all_entries(store, column).len() as u64,
            expected,
            "{} has entries of blocks above the tip",
            column.name()
        );
    }
    // The key the tip wrote is there, the one its parent wrote was deleted in the same batch.
    let issues = all_entries(store, Column::State(Table::Issues));
    if tip_height == 0 {
        assert!(issues.is_empty());
    } else {
        assert_eq!(issues.len(), 1, "issues: {issues:?}");
        assert_eq!(issues[0].0, issue_key(tip_height));
        let stats = store
            .state_value(Table::BranchStats, BRANCH.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(decode::<u64>("stats", &stats, 8).unwrap(), tip_height);
    }
    tip_height
}
