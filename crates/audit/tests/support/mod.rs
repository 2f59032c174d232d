//! A small honest chain written to RocksDB, for the audit tests.

#![allow(dead_code)]

use std::path::Path;

use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_state::{apply_block, MemState};
use branchledger_storage::{ChainWriter, RocksStore};
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
};
use branchledger_types::record::{MemberJoined, MemberStatus, StudyForm, StudySession};
use branchledger_types::{
    merkle, Block, BlockHeader, BranchId, CommitCertificate, CommitSignature, CommittedBlock, Date,
    Genesis, MemberId, Record, RecordBody, SignedRecord, Vote, VoteKind,
};

pub const T0: u64 = 1_767_225_600_000;
pub const BLOCKS: u64 = 6;

pub fn validator(i: usize) -> Keypair {
    Keypair::from_seed([10 + i as u8; 32])
}

pub fn branch_key() -> Keypair {
    Keypair::from_seed([1; 32])
}

pub fn genesis() -> Genesis {
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

pub fn record(nonce: u64, body: RecordBody) -> SignedRecord {
    Record {
        chain_id: "audit-test".into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: T0,
        nonce,
        body,
    }
    .sign(&branch_key())
}

pub fn records_of(height: u64) -> Vec<SignedRecord> {
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

pub fn certify(block: &Block, signers: &[usize]) -> CommitCertificate {
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
pub fn build_chain(path: &Path) -> Genesis {
    build_chain_of(path, BLOCKS, records_of)
}

/// Writes an honest chain of `blocks` blocks, with the records `records(height)` in each.
pub fn build_chain_of(
    path: &Path,
    blocks: u64,
    mut records: impl FnMut(u64) -> Vec<SignedRecord>,
) -> Genesis {
    let genesis = genesis();
    let set = genesis.validator_set();
    let store = RocksStore::open(path).expect("open");
    let mut state = MemState::new();
    let mut prev: Option<BlockHeader> = None;
    let mut digest = Hash::ZERO;
    for height in 1..=blocks {
        let records = records(height);
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
        let committed = CommittedBlock { block, commit };
        store.commit_block(&committed, &delta).expect("commit");
        state.apply_block(height, &committed.block.records, delta);
        digest = next;
        prev = Some(header);
    }
    genesis
}
