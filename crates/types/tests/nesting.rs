//! Corrections nested in each other's `replacement` are refused at decode time, before they
//! can cost a stack frame per level.
//!
//! `Correction { replacement: Option<Box<RecordBody>> }` is recursive. A derived decoder
//! follows the nesting as deep as the input goes; 5 000 levels (39 bytes each) fit in a
//! signed record under its size limit and would overflow any thread's stack, aborting the
//! process. Every test that decodes such input runs on a thread with a 256 KiB stack, so a
//! decoder that still recursed per level would crash the test rather than pass it.

use branchledger_crypto::Hash;
use branchledger_types::record::*;
use branchledger_types::wire::RecordBatch;
use branchledger_types::{encode, Block, BranchId, Date, DecodeError, MemberId, SignedRecord};

/// Levels of nesting in the hostile inputs.
const DEPTH: usize = 5_000;
/// The stack of the threads that decode them.
const SMALL_STACK: usize = 256 * 1024;
/// The borsh variant index of `RecordBody::Correction`.
const CORRECTION: u8 = 12;

/// Runs `f` on a thread with a [`SMALL_STACK`] and returns its result; a stack overflow
/// aborts the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("the thread finished")
}

fn study() -> RecordBody {
    RecordBody::StudySession(StudySession {
        member_id: MemberId("m-1".into()),
        material: "Constitution".into(),
        minutes: 30,
        form: StudyForm::SelfStudy,
        occurred_on: Date::new(2026, 1, 2),
    })
}

fn correction(replacement: Option<RecordBody>) -> RecordBody {
    RecordBody::Correction(Correction {
        target: Hash([7; 32]),
        reason: "r".into(),
        replacement: replacement.map(Box::new),
    })
}

fn record(body: RecordBody) -> Record {
    Record {
        chain_id: "nesting".into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: 1,
        nonce: 2,
        body,
    }
}

/// The borsh bytes of a body of `depth` corrections, each the replacement of the one
/// before, around a study session. Written by hand: encoding such a value with the derived
/// encoder (or dropping it) would itself recurse per level.
fn nested_body_bytes(depth: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(depth * 39 + 64);
    for _ in 0..depth {
        bytes.push(CORRECTION);
        bytes.extend_from_slice(&[7; 32]); // target
        bytes.extend_from_slice(&1u32.to_le_bytes()); // reason: one byte
        bytes.push(b'r');
        bytes.push(1); // replacement: Some
    }
    bytes.extend_from_slice(&encode(&study()));
    bytes
}

/// A signed record whose body is `depth` nested corrections, as raw bytes.
fn nested_record_bytes(depth: usize) -> Vec<u8> {
    // The envelope of a record with a one-byte placeholder body, split around that byte.
    let marker = RecordBody::MemberLeft(MemberLeft {
        member_id: MemberId("x".into()),
        reason: LeaveReason::Other,
    });
    let unsigned = encode(&record(marker.clone()));
    let prefix = &unsigned[..unsigned.len() - encode(&marker).len()];
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&nested_body_bytes(depth));
    bytes.extend_from_slice(&[0; 64]); // branch signature
    bytes.extend_from_slice(&0u32.to_le_bytes()); // no co-signatures
    bytes
}

fn assert_nested_correction_refused(result: Result<impl std::fmt::Debug, DecodeError>) {
    match result {
        Err(DecodeError::Malformed { reason, .. }) => assert!(
            reason.contains("a correction cannot replace a record with another correction"),
            "{reason}"
        ),
        other => panic!("expected a nested correction to be refused, got {other:?}"),
    }
}

#[test]
fn the_hand_built_bytes_are_the_derived_encoding() {
    // One level: a valid record, so the builder above is checked against the encoder.
    let one = SignedRecord {
        record: record(correction(Some(study()))),
        signature: branchledger_crypto::Signature([0; 64]),
        co_signatures: Vec::new(),
    };
    assert_eq!(nested_record_bytes(1), one.to_bytes());
    assert_eq!(SignedRecord::from_bytes(&one.to_bytes()), Ok(one));
    // No nesting at all is a plain study session.
    assert_eq!(
        SignedRecord::from_bytes(&nested_record_bytes(0)).map(|r| r.record.body),
        Ok(study())
    );
}

#[test]
fn a_correction_replaced_by_a_correction_does_not_decode() {
    assert_nested_correction_refused(SignedRecord::from_bytes(&nested_record_bytes(2)));
    // Also when the inner correction retracts (no replacement of its own).
    let two = encode(&SignedRecord {
        record: record(correction(Some(correction(None)))),
        signature: branchledger_crypto::Signature([0; 64]),
        co_signatures: Vec::new(),
    });
    assert_nested_correction_refused(SignedRecord::from_bytes(&two));
    // A bare body too.
    assert_nested_correction_refused(branchledger_types::decode::<RecordBody>(
        "body",
        &encode(&correction(Some(correction(None)))),
        1 << 20,
    ));
}

#[test]
fn a_record_nested_5000_deep_is_refused_on_a_small_stack() {
    let bytes = nested_record_bytes(DEPTH);
    assert_eq!(bytes.len(), nested_record_bytes(0).len() + DEPTH * 39);
    assert!(bytes.len() < branchledger_types::limits::RECORD_BYTES_MAX);
    on_small_stack(move || assert_nested_correction_refused(SignedRecord::from_bytes(&bytes)));
}

#[test]
fn a_gossiped_batch_holding_it_is_refused_on_a_small_stack() {
    let valid = encode(&SignedRecord {
        record: record(study()),
        signature: branchledger_crypto::Signature([0; 64]),
        co_signatures: Vec::new(),
    });
    let mut bytes = 2u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&valid);
    bytes.extend_from_slice(&nested_record_bytes(DEPTH));
    on_small_stack(move || assert_nested_correction_refused(RecordBatch::from_bytes(&bytes)));
}

#[test]
fn a_block_holding_it_is_refused_on_a_small_stack() {
    let header = Block {
        header: branchledger_types::BlockHeader {
            chain_id: "nesting".into(),
            height: 1,
            time_ms: 1,
            prev_block_id: Hash::ZERO,
            records_root: Hash::ZERO,
            record_count: 1,
            state_digest: Hash::ZERO,
            proposer_index: 0,
            validator_set_id: Hash::ZERO,
        },
        records: Vec::new(),
    };
    // A block is its header, then the records as a vector.
    let mut bytes = encode(&header);
    let records_at = bytes.len() - 4;
    bytes.truncate(records_at);
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&nested_record_bytes(DEPTH));
    on_small_stack(move || assert_nested_correction_refused(Block::from_bytes(&bytes, 1 << 20)));
}

// ---------------------------------------------------------------------------------------
// JSON (inclusion proofs and exports carry records as serde JSON).

/// A signed record as JSON whose body is `depth` nested corrections.
fn nested_record_json(depth: usize) -> String {
    let plain = SignedRecord {
        record: record(study()),
        signature: branchledger_crypto::Signature([0; 64]),
        co_signatures: Vec::new(),
    };
    let plain = serde_json::to_string(&plain).expect("serialise");
    let study = serde_json::to_string(&study()).expect("serialise");
    let open = format!(
        "{{\"kind\":\"correction\",\"target\":\"{}\",\"reason\":\"r\",\"replacement\":",
        Hash([7; 32]).to_hex()
    );
    let body = format!("{}{study}{}", open.repeat(depth), "}".repeat(depth));
    let replaced = plain.replace(&study, &body);
    assert_ne!(replaced, plain, "the body was found in the JSON");
    replaced
}

#[test]
fn json_records_decode_with_one_level_and_refuse_a_nested_correction() {
    let one: SignedRecord = serde_json::from_str(&nested_record_json(1)).expect("one level");
    assert_eq!(one.record.body, correction(Some(study())));
    let error = serde_json::from_str::<SignedRecord>(&nested_record_json(2))
        .expect_err("a correction of a correction");
    assert!(
        error
            .to_string()
            .contains("a correction cannot replace a record with another correction"),
        "{error}"
    );
    // A retraction (replacement null) and an older file without the field both decode.
    let retraction =
        nested_record_json(1).replace(&serde_json::to_string(&study()).expect("json"), "null");
    let retraction: SignedRecord = serde_json::from_str(&retraction).expect("retraction");
    assert_eq!(retraction.record.body, correction(None));
}

/// The deepest nesting of corrections serde_json parses in a signed record: the body is at
/// depth 3 of the document (record, body), and the parser stops at 128.
const JSON_DEPTH_MAX: usize = 124;
/// The stack of the threads that decode JSON: half a tokio worker's default 2 MiB. Parsing a
/// document at the parser's depth limit into a record takes between 512 KiB and 1 MiB of stack
/// in a debug build (serde buffers an internally tagged enum before decoding it).
const JSON_STACK: usize = 1024 * 1024;

#[test]
fn json_nesting_is_bounded_by_the_parser() {
    // serde_json refuses input nested deeper than 128 levels before building anything.
    let deep = nested_record_json(DEPTH);
    let too_deep = nested_record_json(JSON_DEPTH_MAX + 1);
    let at_limit = nested_record_json(JSON_DEPTH_MAX);
    let stack = std::thread::Builder::new().stack_size(JSON_STACK);
    stack
        .spawn(move || {
            for json in [deep, too_deep] {
                let error = serde_json::from_str::<SignedRecord>(&json).expect_err("too deep");
                assert!(error.to_string().contains("recursion limit"), "{error}");
            }
            // At the parser's limit the nesting is parsed, within the bound, and then refused
            // by the correction rule.
            let error = serde_json::from_str::<SignedRecord>(&at_limit).expect_err("nested");
            assert!(error.to_string().contains("another correction"), "{error}");
        })
        .expect("spawn a thread")
        .join()
        .expect("the thread finished");
}
