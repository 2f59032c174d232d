//! A chain that verifies is a finalised prefix; only an expected tip shows it is the whole
//! chain. A store rolled back (or truncated), an export cut short with its header and trailer
//! written again, and an empty store are each caught, naming the tip expected and the tip
//! found.

use std::path::Path;

use branchledger_audit::export::{
    verify_export, verify_export_expecting, ExportHeader, ExportTrailer, EXPORT_MAGIC,
    EXPORT_VERSION,
};
use branchledger_audit::{verify_store, verify_store_with, AuditOptions, ExpectedTip};
use branchledger_storage::{ChainReader, MemStore, RocksStore};
use branchledger_types::codec::{decode, encode};
use branchledger_types::{Genesis, Hash};

mod support;
use support::*;

/// The tip of the stopped store at `path` and the block at `height` as expected tips.
fn tips(path: &Path, heights: &[u64]) -> Vec<ExpectedTip> {
    let store = RocksStore::open(path).expect("open");
    heights
        .iter()
        .map(|&height| ExpectedTip {
            height,
            block_id: store
                .header(height)
                .expect("read")
                .expect("a header")
                .block_id(),
        })
        .collect()
}

fn audit_expecting(
    path: &Path,
    genesis: &Genesis,
    expect_tip: Option<ExpectedTip>,
) -> Result<branchledger_audit::AuditReport, branchledger_audit::AuditFailure> {
    let store = RocksStore::open(path).expect("open");
    let options = AuditOptions {
        expect_tip,
        ..AuditOptions::default()
    };
    verify_store_with(genesis, &store, &options, |_, _| {})
}

#[test]
fn the_report_names_the_tip_and_an_expected_tip_is_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let [at_4, tip] = tips(dir.path(), &[4, BLOCKS])[..] else {
        unreachable!("two tips asked")
    };
    let report = audit_expecting(dir.path(), &genesis, None).expect("honest chain");
    assert_eq!(report.tip_height, BLOCKS);
    assert_eq!(report.tip_block_id, Some(tip.block_id.to_hex()));
    assert!(!report.tip_expected);
    // Headers, ids, certificates, record lists (one each per block), records, and the
    // meta table's schema version and tip.
    assert_eq!(report.chain_entries, 4 * BLOCKS + 3 * BLOCKS + 2);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["tip_height"], BLOCKS);
    assert_eq!(json["tip_block_id"], tip.block_id.to_hex());

    let report = audit_expecting(dir.path(), &genesis, Some(tip)).expect("the expected tip");
    assert!(report.tip_expected);

    let other = ExpectedTip {
        height: BLOCKS,
        block_id: Hash([7; 32]),
    };
    let above = ExpectedTip {
        height: BLOCKS + 2,
        block_id: Hash([8; 32]),
    };
    for (expected, height, says) in [
        (other, BLOCKS, "another block at the expected height"),
        (
            above,
            BLOCKS + 1,
            "below the expected tip (truncated or rolled back)",
        ),
        (
            at_4,
            5,
            "above the expected tip; the block at height 4 is the expected one",
        ),
    ] {
        let failure = audit_expecting(dir.path(), &genesis, Some(expected)).expect_err(says);
        println!("{failure}");
        assert_eq!(failure.height, height, "{failure}");
        assert!(failure.rule.contains(says), "{failure}");
        assert!(
            failure.rule.contains(&format!(
                "expected tip {expected}, found {}",
                ExpectedTip {
                    height: BLOCKS,
                    block_id: tip.block_id
                }
            )),
            "both tips named: {failure}"
        );
    }
}

/// A store rolled back to height 4 — here, the same chain written only that far, every block
/// identical — verifies on its own: it is a finalised prefix. Against the tip of the longer
/// chain it fails, at the first height it lacks.
#[test]
fn a_rolled_back_store_passes_as_a_prefix_and_fails_against_the_expected_tip() {
    let whole = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(whole.path());
    let [tip] = tips(whole.path(), &[BLOCKS])[..] else {
        unreachable!("one tip asked")
    };
    let rolled_back = tempfile::tempdir().expect("temp dir");
    build_chain_of(rolled_back.path(), 4, records_of);
    let [short_tip] = tips(rolled_back.path(), &[4])[..] else {
        unreachable!("one tip asked")
    };
    assert_eq!(tips(whole.path(), &[4])[0], short_tip, "the same blocks");

    let report = audit_expecting(rolled_back.path(), &genesis, None).expect("a prefix passes");
    assert_eq!(report.tip_height, 4);
    let failure =
        audit_expecting(rolled_back.path(), &genesis, Some(tip)).expect_err("rolled back");
    println!("{failure}");
    assert_eq!(failure.height, 5, "{failure}");
    assert!(
        failure
            .rule
            .contains(&format!("expected tip {tip}, found {short_tip}")),
        "{failure}"
    );
}

#[test]
fn an_empty_store_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = genesis();
    let store = RocksStore::open(dir.path()).expect("a new, empty store");
    let failure = verify_store(&genesis, &store, |_, _| {}).expect_err("empty");
    assert_eq!(failure.height, 1, "{failure}");
    assert!(
        failure.rule.contains("the store holds no block") && failure.rule.contains("--allow-empty"),
        "{failure}"
    );
    let failure = verify_store(&genesis, &MemStore::new(), |_, _| {}).expect_err("empty");
    assert!(failure.rule.contains("no block"), "{failure}");

    let allowed = AuditOptions {
        allow_empty: true,
        ..AuditOptions::default()
    };
    let report = verify_store_with(&genesis, &store, &allowed, |_, _| {}).expect("allowed");
    assert_eq!((report.blocks, report.tip_height), (0, 0));
    assert_eq!(report.tip_block_id, None);
    assert_eq!(report.chain_entries, 1, "the schema version");

    let expecting = AuditOptions {
        expect_tip: Some(ExpectedTip {
            height: 3,
            block_id: Hash([3; 32]),
        }),
        allow_empty: true,
        ..AuditOptions::default()
    };
    let failure =
        verify_store_with(&genesis, &store, &expecting, |_, _| {}).expect_err("a tip expected");
    assert!(failure.rule.contains("found no block"), "{failure}");
}

/// One entry of an export: `u32 LE length ‖ bytes`.
fn entry(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `bytes`, an export, cut after the block at `to`, with its header and trailer written again
/// for the shorter range: what anyone can do, since neither is signed.
fn cut_short(bytes: &[u8], to: u64) -> Vec<u8> {
    let mut at = EXPORT_MAGIC.len() + 4;
    let next = |at: &mut usize| {
        let length = u32::from_le_bytes(bytes[*at..*at + 4].try_into().expect("4 bytes")) as usize;
        let entry = &bytes[*at + 4..*at + 4 + length];
        *at += 4 + length;
        entry
    };
    let mut header: ExportHeader = decode("header", next(&mut at), 1 << 16).expect("header");
    let mut blocks = Vec::new();
    let mut last_block_id = Hash::ZERO;
    for _ in header.from..=to {
        let block = next(&mut at);
        let committed: branchledger_types::CommittedBlock =
            decode("block", block, 1 << 24).expect("block");
        last_block_id = committed.block.id();
        blocks.extend(entry(block));
    }
    let trailer = ExportTrailer {
        blocks: to - header.from + 1,
        last_block_id,
    };
    header.to = to;
    let mut out = EXPORT_MAGIC.to_vec();
    out.extend(EXPORT_VERSION.to_le_bytes());
    out.extend(entry(&encode(&header)));
    out.extend(blocks);
    out.extend(entry(&encode(&trailer)));
    out
}

#[test]
fn an_export_cut_short_passes_as_a_prefix_and_fails_against_the_expected_tip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = build_chain(dir.path());
    let [at_3, at_4, tip] = tips(dir.path(), &[3, 4, BLOCKS])[..] else {
        unreachable!("three tips asked")
    };
    let store = RocksStore::open(dir.path()).expect("open");
    let mut whole = Vec::new();
    branchledger_audit::export::write_export(&genesis, &store, 1, BLOCKS, &mut whole)
        .expect("export");
    let report = verify_export_expecting(&genesis, &mut whole.as_slice(), Some(&tip))
        .expect("the whole export ends at the tip");
    assert_eq!((report.to, report.last_block_id), (BLOCKS, tip.block_id));
    assert!(report.tip_expected);

    // Cut after block 4, header and trailer written again: it passes on its own, as the
    // prefix it is, and says where it ends.
    let short = cut_short(&whole, 4);
    let mut written = Vec::new();
    branchledger_audit::export::write_export(&genesis, &store, 1, 4, &mut written).expect("export");
    assert_eq!(short, written, "the same bytes as an export of 1..=4");
    let report = verify_export(&genesis, &mut short.as_slice()).expect("a prefix");
    assert_eq!((report.to, report.last_block_id), (4, at_4.block_id));
    assert!(!report.tip_expected);
    let failure = verify_export_expecting(&genesis, &mut short.as_slice(), Some(&tip))
        .expect_err("cut short");
    println!("{failure}");
    assert_eq!(failure.height, 5, "{failure}");
    assert!(
        failure
            .rule
            .contains(&format!("expected tip {tip}, found {at_4}"))
            && failure.rule.contains("the export's last block is below"),
        "{failure}"
    );

    // Longer than expected, and a partial export that holds the expected height.
    let failure = verify_export_expecting(&genesis, &mut whole.as_slice(), Some(&at_4))
        .expect_err("goes past the expected tip");
    assert_eq!(failure.height, 5, "{failure}");
    assert!(failure.rule.contains("is the expected one"), "{failure}");
    let mut partial = Vec::new();
    branchledger_audit::export::write_export(&genesis, &store, 3, 4, &mut partial).expect("export");
    verify_export_expecting(&genesis, &mut partial.as_slice(), Some(&at_4))
        .expect("a partial export ending at the expected tip");
    let failure = verify_export_expecting(&genesis, &mut partial.as_slice(), Some(&at_3))
        .expect_err("goes past");
    assert_eq!(failure.height, 4, "{failure}");
    let wrong = ExpectedTip {
        height: 4,
        block_id: Hash([1; 32]),
    };
    let failure = verify_export_expecting(&genesis, &mut partial.as_slice(), Some(&wrong))
        .expect_err("another block");
    assert_eq!(failure.height, 4, "{failure}");
    assert!(failure.rule.contains(&format!("found {at_4}")), "{failure}");
}
