//! Exports and inclusion proofs, checked with the genesis file alone.

use branchledger_audit::export::{verify_export, write_export};
use branchledger_audit::proof::{check, prove, CheckError};
use branchledger_storage::RocksStore;
use branchledger_types::Hash;

mod support;
use support::*;

fn export_bytes(from: u64, to: u64) -> (tempfile::TempDir, branchledger_types::Genesis, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let store = RocksStore::open(dir.path()).expect("open");
    let mut bytes = Vec::new();
    write_export(&genesis, &store, from, to, &mut bytes).expect("export");
    (dir, genesis, bytes)
}

#[test]
fn a_full_export_verifies_with_state_replay() {
    let (_dir, genesis, bytes) = export_bytes(1, BLOCKS);
    let report = verify_export(&genesis, &mut bytes.as_slice()).expect("valid export");
    assert_eq!(
        (report.from, report.to, report.records),
        (1, BLOCKS, BLOCKS * 3)
    );
    assert!(report.state_replayed);
}

#[test]
fn a_partial_export_verifies_without_replay() {
    let (_dir, genesis, bytes) = export_bytes(3, 5);
    let report = verify_export(&genesis, &mut bytes.as_slice()).expect("valid export");
    assert_eq!((report.from, report.to), (3, 5));
    assert!(!report.state_replayed);
}

#[test]
fn truncated_or_altered_exports_fail() {
    let (_dir, genesis, bytes) = export_bytes(1, BLOCKS);
    // Cut anywhere after the header: reported as truncated, never as a pass.
    for cut in [bytes.len() - 1, bytes.len() - 40, bytes.len() / 2] {
        let failure = verify_export(&genesis, &mut &bytes[..cut]).expect_err("truncated");
        assert!(failure.rule.contains("truncated"), "cut {cut}: {failure}");
    }
    // A flipped byte in the middle of a block is caught at some height.
    let mut altered = bytes.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x40;
    assert!(verify_export(&genesis, &mut altered.as_slice()).is_err());
    // Trailing bytes.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(verify_export(&genesis, &mut longer.as_slice()).is_err());
    // Another genesis.
    let mut other = genesis.clone();
    other.chain_id = "another-chain".into();
    let failure = verify_export(&other, &mut bytes.as_slice()).expect_err("other genesis");
    assert!(failure.rule.contains("another genesis"), "{failure}");
    let failure = verify_export(&genesis, &mut &b"NOTANEXPORT..."[..]).expect_err("magic");
    assert!(failure.rule.contains("magic"), "{failure}");
}

#[test]
fn inclusion_proofs_verify_and_tampered_ones_fail_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let store = RocksStore::open(dir.path()).expect("open");
    for height in 1..=BLOCKS {
        for record in records_of(height) {
            let proof = prove(&store, &record.id()).expect("proof");
            check(&genesis, &proof).expect("valid proof");
            // Through JSON, as the file an auditor receives.
            let text = serde_json::to_string(&proof).expect("json");
            let read: branchledger_audit::proof::RecordProof =
                serde_json::from_str(&text).expect("parse");
            check(&genesis, &read).expect("valid after JSON");
        }
    }
    let proof = prove(&store, &records_of(4)[2].id()).expect("proof");
    let mut bad = proof.clone();
    bad.proof.path[0].0[0] ^= 1;
    assert!(matches!(
        check(&genesis, &bad),
        Err(CheckError::NotIncluded(_))
    ));
    let mut bad = proof.clone();
    bad.commit.signatures.truncate(2);
    assert!(matches!(
        check(&genesis, &bad),
        Err(CheckError::NoValidCommit(_))
    ));
    let mut bad = proof.clone();
    if let branchledger_types::RecordBody::StudySession(s) = &mut bad.record.record.body {
        s.minutes += 1;
    }
    assert!(matches!(
        check(&genesis, &bad),
        Err(CheckError::NotIncluded(_))
    ));
    let mut bad = proof.clone();
    bad.record.signature.0[5] ^= 1;
    assert!(matches!(
        check(&genesis, &bad),
        Err(CheckError::BadRecord(_))
    ));
    let mut other = genesis.clone();
    other.chain_id = "another-chain".into();
    assert!(matches!(
        check(&other, &proof),
        Err(CheckError::WrongChain(_))
    ));
    assert!(prove(&store, &Hash::ZERO).is_err());
}
