//! One test per predicate: the passing case and each way it can fail, each failure checked
//! for the rule it names and the numbers it reports.

mod fixture;

use branchledger_crypto::{Hash, Signer, VerifyError};
use branchledger_types::record::{branch_signing_message, CoSignature};
use branchledger_types::{
    BlockHeader, BranchId, CommitSignature, RecordBody, SignedRecord, Vote, VoteKind,
};
use branchledger_verifier::*;
use fixture::*;

// ---------------------------------------------------------------------------------------
// Records.

#[test]
fn record_signatures_pass_with_and_without_co_signatures() {
    let genesis = genesis();
    for record in [signed_study(0, 1), co_signed_study(1, 2)] {
        assert_eq!(verify_record_signatures(&genesis, &record), Ok(()));
        assert_eq!(check_record_stateless(&genesis, &record), Ok(()));
    }
}

#[test]
fn record_of_unknown_branch_is_refused() {
    let genesis = genesis();
    let mut record = study_record(0, 1);
    record.branch_id = BranchId("nowhere".into());
    let record = record.sign(&branch_key(0));
    assert_eq!(
        verify_record_signatures(&genesis, &record),
        Err(VerificationError::UnknownBranch {
            record_id: record.id(),
            branch_id: BranchId("nowhere".into()),
        })
    );
}

#[test]
fn tampered_record_fails_its_branch_signature() {
    let genesis = genesis();
    let mut record = signed_study(0, 1);
    if let RecordBody::StudySession(body) = &mut record.record.body {
        body.minutes = 720;
    }
    assert_eq!(
        verify_record_signatures(&genesis, &record),
        Err(VerificationError::BadRecordSignature {
            record_id: record.id(),
            reason: VerifyError::BadSignature,
        })
    );
}

#[test]
fn record_signed_by_another_branch_fails() {
    // Branch 1's key signs a record that names branch 0.
    let genesis = genesis();
    let record = study_record(0, 1).sign(&branch_key(1));
    assert!(matches!(
        verify_record_signatures(&genesis, &record),
        Err(VerificationError::BadRecordSignature { .. })
    ));
}

#[test]
fn bad_co_signature_is_named_by_position() {
    let genesis = genesis();
    // The branch signs a bad co-signature: the branch signature verifies, the co-signature
    // does not.
    let record = study_record(0, 1)
        .co_signed_by(&member_key(0))
        .co_signed_by(&member_key(5));
    let mut co_signatures = record.co_signatures.clone();
    co_signatures[1].signature.0[10] ^= 0x40;
    let record = record
        .record
        .with_co_signatures(co_signatures)
        .sign(&branch_key(0));
    assert_eq!(
        verify_record_signatures(&genesis, &record),
        Err(VerificationError::BadCoSignature {
            record_id: record.id(),
            co_signature_index: 1,
            reason: VerifyError::BadSignature,
        })
    );
}

#[test]
fn co_signature_over_the_branch_message_fails() {
    // A signature over the branch-signing bytes must not pass as a co-signature (domains).
    let genesis = genesis();
    let record = study_record(0, 1);
    let member = member_key(0);
    let co_signature = CoSignature {
        public_key: member.public_key(),
        signature: member.sign(&branch_signing_message(&record, &[])),
    };
    let record = record
        .with_co_signatures(vec![co_signature])
        .sign(&branch_key(0));
    assert!(matches!(
        verify_record_signatures(&genesis, &record),
        Err(VerificationError::BadCoSignature {
            co_signature_index: 0,
            ..
        })
    ));
}

/// The branch signature covers the co-signatures and the record id hashes them, so whoever
/// holds a signed record (a relay, a store, an export) cannot strip, add, swap or reorder a
/// co-signature: the id changes, the branch signature fails, and a block holding the changed
/// record no longer matches its records root.
#[test]
fn changing_the_co_signatures_changes_the_id_and_breaks_the_branch_signature() {
    let genesis = genesis();
    let original = study_record(0, 1)
        .co_signed_by(&member_key(0))
        .co_signed_by(&member_key(2))
        .sign(&branch_key(0));
    assert_eq!(verify_record_signatures(&genesis, &original), Ok(()));
    // A genuine co-signature on the same record by a third key.
    let genuine = study_record(0, 1).co_signature(&member_key(3));

    let mut stripped = original.clone();
    stripped.co_signatures.pop();
    let mut all_stripped = original.clone();
    all_stripped.co_signatures.clear();
    let mut added = original.clone();
    added.co_signatures.push(genuine.clone());
    let mut swapped = original.clone();
    swapped.co_signatures[1] = genuine;
    let mut reordered = original.clone();
    reordered.co_signatures.swap(0, 1);

    let block = committed_block(&genesis, None, vec![original.clone()]).block;
    for (name, changed) in [
        ("stripped", stripped),
        ("all stripped", all_stripped),
        ("added", added),
        ("swapped", swapped),
        ("reordered", reordered),
    ] {
        assert_ne!(changed.id(), original.id(), "{name}");
        // Each co-signature left is genuine: only the branch signature catches the change.
        let co_message = changed.record.co_signing_message();
        for co in &changed.co_signatures {
            assert_eq!(
                branchledger_crypto::verify(&co.public_key, &co_message, &co.signature),
                Ok(()),
                "{name}"
            );
        }
        let expected = VerificationError::BadRecordSignature {
            record_id: changed.id(),
            reason: VerifyError::BadSignature,
        };
        assert_eq!(
            verify_record_signatures(&genesis, &changed),
            Err(expected.clone()),
            "{name}"
        );
        let batch = verify_records_batch(&genesis, std::slice::from_ref(&changed))
            .expect_err("the batch agrees");
        assert_eq!(batch.bad, vec![(0, changed.id(), expected)], "{name}");

        let mut b = block.clone();
        b.records[0] = changed;
        assert!(
            matches!(
                check_records_root(&b),
                Err(VerificationError::RecordsRootMismatch { .. })
            ),
            "{name}"
        );
    }

    // The branch signature's own bytes are outside the id: a replay is a duplicate however
    // they are encoded.
    let mut replay = original.clone();
    replay.signature.0[0] ^= 1;
    assert_eq!(replay.id(), original.id());
}

#[test]
fn a_weak_co_signer_key_is_refused_statelessly() {
    let genesis = genesis();
    // y = 1: the identity point, of order 1. Under ZIP-215 a signature (R = identity,
    // s = 0) verifies for every message, so the co-signature proves nothing.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut r_and_s = [0u8; 64];
    r_and_s[0] = 1;
    let weak = CoSignature {
        public_key: branchledger_crypto::PublicKey(identity),
        signature: branchledger_crypto::Signature(r_and_s),
    };
    let record = study_record(0, 1);
    assert_eq!(
        branchledger_crypto::verify(
            &weak.public_key,
            &record.co_signing_message(),
            &weak.signature
        ),
        Ok(()),
        "the trivial signature verifies under ZIP-215"
    );
    let record = record.with_co_signatures(vec![weak]).sign(&branch_key(0));
    assert_eq!(verify_record_signatures(&genesis, &record), Ok(()));
    match check_record_stateless(&genesis, &record) {
        Err(VerificationError::RecordInvalid { record_id, error }) => {
            assert_eq!(record_id, record.id());
            assert_eq!(error.field, "co_signatures[0].public_key");
            assert!(error.to_string().contains("small-order"), "{error}");
        }
        other => panic!("expected the weak key to be refused, got {other:?}"),
    }
}

#[test]
fn stateless_record_checks_name_chain_and_field() {
    let genesis = genesis();
    let mut record = study_record(0, 1);
    record.chain_id = "other-chain".into();
    let record = record.sign(&branch_key(0));
    assert_eq!(
        check_record_stateless(&genesis, &record),
        Err(VerificationError::RecordWrongChain {
            record_id: record.id(),
            expected: CHAIN_ID.into(),
            actual: "other-chain".into(),
        })
    );

    let mut record = study_record(0, 1);
    if let RecordBody::StudySession(body) = &mut record.body {
        body.minutes = 0;
    }
    let record = record.sign(&branch_key(0));
    match check_record_stateless(&genesis, &record) {
        Err(VerificationError::RecordInvalid { record_id, error }) => {
            assert_eq!(record_id, record.id());
            assert_eq!(error.field, "body.minutes");
        }
        other => panic!("expected an invalid record, got {other:?}"),
    }
}

#[test]
fn record_batch_names_every_bad_record_and_agrees_with_single_checks() {
    // Fewer records than `PARALLEL_RECORDS_MIN`, all checked on the calling thread; and more
    // than one parallel chunk of the batch verifier, so the split paths are used.
    for count in [PARALLEL_RECORDS_MIN - 1, 300] {
        names_every_bad_record(count);
    }
}

fn names_every_bad_record(count: usize) {
    let genesis = genesis();
    let last = count - 18;
    let mut records: Vec<SignedRecord> = (0..count)
        .map(|i| {
            if i % 3 == 0 {
                co_signed_study(i % BRANCHES, i as u64)
            } else {
                signed_study(i % BRANCHES, i as u64)
            }
        })
        .collect();
    assert_eq!(verify_records_batch(&genesis, &records), Ok(()));
    assert_eq!(check_records(&genesis, &records), Ok(()));

    // Tampered content at 4, unknown branch at 7, bad co-signature at 150, bad branch
    // signature and bad co-signature at `last`.
    if let RecordBody::StudySession(body) = &mut records[4].record.body {
        body.material.push('!');
    }
    records[7] = {
        let mut record = study_record(0, 7);
        record.branch_id = BranchId("nowhere".into());
        record.sign(&branch_key(0))
    };
    records[150] = {
        let mut co_signatures = records[150].co_signatures.clone();
        co_signatures[0].signature.0[0] ^= 1;
        re_signed(&records[150], co_signatures, 150 % BRANCHES)
    };
    records[last].signature.0[63] ^= 0x10;
    records[last].co_signatures[0].signature.0[5] ^= 2;

    let error = verify_records_batch(&genesis, &records).expect_err("four bad records");
    assert_eq!(error.indices(), vec![4, 7, 150, last]);
    let reasons: Vec<(usize, &VerificationError)> = error
        .bad
        .iter()
        .map(|(i, _, reason)| (*i, reason))
        .collect();
    assert!(matches!(
        reasons[0],
        (4, VerificationError::BadRecordSignature { .. })
    ));
    assert!(matches!(
        reasons[1],
        (7, VerificationError::UnknownBranch { .. })
    ));
    assert!(matches!(
        reasons[2],
        (
            150,
            VerificationError::BadCoSignature {
                co_signature_index: 0,
                ..
            }
        )
    ));
    assert!(matches!(
        reasons[3],
        (i, VerificationError::BadRecordSignature { .. }) if i == last
    ));
    assert!(matches!(
        reasons[4],
        (i, VerificationError::BadCoSignature { .. }) if i == last
    ));
    assert_eq!(reasons.len(), 5);
    for (index, record_id, _) in &error.bad {
        assert_eq!(*record_id, records[*index].id());
    }

    // The batch verdict is the single verdict, record by record.
    let single: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| verify_record_signatures(&genesis, r).is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(single, error.indices());
}

#[test]
fn check_records_adds_stateless_faults() {
    let genesis = genesis();
    let mut records = vec![signed_study(0, 1), signed_study(1, 2)];
    let mut bad = study_record(1, 3);
    bad.chain_id = "other-chain".into();
    records.push(bad.sign(&branch_key(1)));
    let error = check_records(&genesis, &records).expect_err("wrong chain");
    assert_eq!(error.indices(), vec![2]);
    assert!(matches!(
        error.bad[0].2,
        VerificationError::RecordWrongChain { .. }
    ));
    // The signature is fine: it covers the chain id the record names.
    assert_eq!(verify_records_batch(&genesis, &records), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Header link and proposer.

#[test]
fn header_link_passes_at_genesis_and_after() {
    let genesis = genesis();
    let first = header(&genesis, None, &[], 0);
    assert_eq!(check_header_link(None, &first, &genesis), Ok(()));
    let second = header(&genesis, Some(&first), &[signed_study(0, 1)], 0);
    assert_eq!(check_header_link(Some(&first), &second, &genesis), Ok(()));
}

#[test]
fn header_link_failures_name_rule_and_numbers() {
    let genesis = genesis();
    let first = header(&genesis, None, &[], 0);
    let second = header(&genesis, Some(&first), &[], 0);

    let mut h = second.clone();
    h.chain_id = "other-chain".into();
    assert_eq!(
        check_header_link(Some(&first), &h, &genesis),
        Err(VerificationError::HeaderWrongChain {
            height: 2,
            expected: CHAIN_ID.into(),
            actual: "other-chain".into(),
        })
    );

    let mut h = second.clone();
    h.height = 3;
    assert_eq!(
        check_header_link(Some(&first), &h, &genesis),
        Err(VerificationError::WrongHeight {
            expected: 2,
            actual: 3
        })
    );
    assert_eq!(
        check_header_link(None, &second, &genesis),
        Err(VerificationError::WrongHeight {
            expected: 1,
            actual: 2
        })
    );

    let mut h = second.clone();
    h.prev_block_id = Hash::of(b"another parent");
    assert_eq!(
        check_header_link(Some(&first), &h, &genesis),
        Err(VerificationError::WrongParent {
            height: 2,
            expected: first.block_id(),
            actual: Hash::of(b"another parent"),
        })
    );
    let mut h = first.clone();
    h.prev_block_id = first.block_id();
    assert_eq!(
        check_header_link(None, &h, &genesis),
        Err(VerificationError::WrongParent {
            height: 1,
            expected: Hash::ZERO,
            actual: first.block_id(),
        })
    );

    let mut h = second.clone();
    h.time_ms = first.time_ms;
    assert_eq!(
        check_header_link(Some(&first), &h, &genesis),
        Err(VerificationError::TimeNotIncreasing {
            height: 2,
            previous_ms: first.time_ms,
            actual_ms: first.time_ms,
        })
    );
    let mut h = first.clone();
    h.time_ms = GENESIS_TIME_MS;
    assert_eq!(
        check_header_link(None, &h, &genesis),
        Err(VerificationError::TimeNotIncreasing {
            height: 1,
            previous_ms: GENESIS_TIME_MS,
            actual_ms: GENESIS_TIME_MS,
        })
    );

    let mut h = second.clone();
    h.validator_set_id = Hash::ZERO;
    assert_eq!(
        check_header_link(Some(&first), &h, &genesis),
        Err(VerificationError::WrongValidatorSet {
            height: 2,
            expected: genesis.validator_set().id(),
            actual: Hash::ZERO,
        })
    );
}

#[test]
fn proposer_must_have_had_a_turn_by_the_commit_round() {
    let genesis = genesis();
    let set = genesis.validator_set();
    let mut h = header(&genesis, None, &[], 0);
    // Height 1: round r is proposed by validator (1 + r) mod 4.
    let cases: [(u16, u32, bool); 9] = [
        (1, 0, true),
        (2, 0, false),
        (0, 0, false),
        (2, 1, true), // re-proposed in round 1 of a block built in round 1
        (1, 1, true), // built in round 0, re-proposed and committed in round 1
        (3, 1, false),
        (0, 3, true),
        (3, 7, true),
        (4, 7, false), // outside the set
    ];
    for (proposer, round, ok) in cases {
        h.proposer_index = proposer;
        let result = check_proposer(&set, &h, round);
        if ok {
            assert_eq!(result, Ok(()), "proposer {proposer} round {round}");
        } else {
            assert_eq!(
                result,
                Err(VerificationError::WrongProposer {
                    height: 1,
                    round,
                    expected_round_0: 1,
                    actual: proposer,
                    validator_count: 4,
                }),
                "proposer {proposer} round {round}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Block contents.

#[test]
fn records_root_count_and_duplicates() {
    let genesis = genesis();
    let records = vec![
        signed_study(0, 1),
        co_signed_study(1, 2),
        signed_study(0, 3),
    ];
    let block = committed_block(&genesis, None, records).block;
    assert_eq!(check_records_root(&block), Ok(()));
    // The ids the state rules are then given are the records', in block order.
    let ids: Vec<Hash> = block.records.iter().map(|r| r.id()).collect();
    assert_eq!(checked_record_ids(&block), Ok(ids));

    let mut b = block.clone();
    b.header.record_count = 2;
    assert_eq!(
        check_records_root(&b),
        Err(VerificationError::RecordCountMismatch {
            height: 1,
            header: 2,
            actual: 3
        })
    );

    let mut b = block.clone();
    b.records.swap(0, 2);
    assert_eq!(
        check_records_root(&b),
        Err(VerificationError::RecordsRootMismatch {
            height: 1,
            header: block.header.records_root,
            computed: b.compute_records_root(),
        })
    );

    let mut b = block.clone();
    b.records[2] = b.records[0].clone();
    b.header.records_root = b.compute_records_root();
    assert_eq!(
        check_records_root(&b),
        Err(VerificationError::DuplicateRecord {
            height: 1,
            record_id: block.records[0].id(),
            first_index: 0,
            second_index: 2,
        })
    );

    // A duplicate whose branch signature differs is still the same record.
    let mut b = block.clone();
    b.records[1] = b.records[0].clone();
    b.records[1].signature.0[0] ^= 1;
    b.header.records_root = b.compute_records_root();
    assert!(matches!(
        check_records_root(&b),
        Err(VerificationError::DuplicateRecord { .. })
    ));
}

#[test]
fn block_size_limits_come_from_genesis() {
    let genesis = genesis();
    let records = vec![signed_study(0, 1), signed_study(1, 2), signed_study(0, 3)];
    let block = committed_block(&genesis, None, records).block;
    let mut params = genesis.consensus.clone();
    assert_eq!(check_block_size(&block, &params), Ok(()));

    params.max_block_records = 3;
    assert_eq!(check_block_size(&block, &params), Ok(()));
    params.max_block_records = 2;
    assert_eq!(
        check_block_size(&block, &params),
        Err(VerificationError::TooManyRecords {
            height: 1,
            count: 3,
            limit: 2
        })
    );

    params.max_block_records = 3;
    let bytes = block.to_bytes().len();
    params.max_block_bytes = bytes as u32;
    assert_eq!(check_block_size(&block, &params), Ok(()));
    params.max_block_bytes = bytes as u32 - 1;
    assert_eq!(
        check_block_size(&block, &params),
        Err(VerificationError::BlockTooLarge {
            height: 1,
            bytes,
            limit: bytes - 1
        })
    );
}

#[test]
fn time_not_future_allows_exactly_the_drift() {
    let genesis = genesis();
    let h = header(&genesis, None, &[], 0);
    let drift = genesis.consensus.max_clock_drift_ms;
    let now = h.time_ms - drift;
    assert_eq!(check_time_not_future(&h, now, drift), Ok(()));
    assert_eq!(check_time_not_future(&h, h.time_ms, 0), Ok(()));
    assert_eq!(
        check_time_not_future(&h, now - 1, drift),
        Err(VerificationError::TimeInFuture {
            height: 1,
            time_ms: h.time_ms,
            now_ms: now - 1,
            max_drift_ms: drift,
        })
    );
    // A clock near the top of the range must not overflow into a rejection.
    assert_eq!(check_time_not_future(&h, u64::MAX, drift), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Commit certificates.

#[test]
fn commit_with_a_quorum_or_more_passes() {
    let genesis = genesis();
    let set = genesis.validator_set();
    let h = header(&genesis, None, &[], 0);
    for signers in [&[0u16, 1, 2][..], &[1, 2, 3], &[0, 1, 2, 3], &[0, 2, 3]] {
        let cert = commit(&h, 0, signers);
        assert_eq!(
            verify_commit(&set, CHAIN_ID, &h, &cert),
            Ok(()),
            "{signers:?}"
        );
    }
    // Round 5 certificates are fine too.
    let cert = commit(&h, 5, &[0, 1, 3]);
    assert_eq!(verify_commit(&set, CHAIN_ID, &h, &cert), Ok(()));
}

#[test]
fn commit_failures_name_rule_and_numbers() {
    let genesis = genesis();
    let set = genesis.validator_set();
    let h = header(&genesis, None, &[], 0);
    let verify = |cert| verify_commit(&set, CHAIN_ID, &h, &cert);

    assert_eq!(
        verify(commit(&h, 0, &[0, 2])),
        Err(VerificationError::InsufficientQuorum {
            height: 1,
            signatures: 2,
            quorum: 3,
            validator_count: 4
        })
    );
    // Validator 1's signature twice would make a "quorum" of two validators.
    assert_eq!(
        verify(commit(&h, 0, &[0, 1, 1])),
        Err(VerificationError::CommitSignaturesNotIncreasing {
            height: 1,
            position: 2,
            previous: 1,
            index: 1
        })
    );
    assert_eq!(
        verify(commit(&h, 0, &[1, 0, 2])),
        Err(VerificationError::CommitSignaturesNotIncreasing {
            height: 1,
            position: 1,
            previous: 1,
            index: 0
        })
    );

    // An index outside the set, signed by a key that is no validator's.
    let mut cert = commit(&h, 0, &[0, 1, 2]);
    cert.signatures.push(CommitSignature {
        validator_index: 4,
        signature: cert.vote_of(4).sign(CHAIN_ID, &outsider_key()).signature,
    });
    assert_eq!(
        verify(cert),
        Err(VerificationError::UnknownValidator {
            height: 1,
            index: 4,
            validator_count: 4
        })
    );

    // A non-validator signs in validator 3's place.
    let mut cert = commit(&h, 0, &[0, 1, 2]);
    cert.signatures.push(CommitSignature {
        validator_index: 3,
        signature: cert.vote_of(3).sign(CHAIN_ID, &outsider_key()).signature,
    });
    assert_eq!(
        verify(cert),
        Err(VerificationError::BadCommitSignatures {
            height: 1,
            validators: vec![3]
        })
    );

    // A flipped bit in two signatures: both are named.
    let mut cert = commit(&h, 0, &[0, 1, 2, 3]);
    cert.signatures[1].signature.0[3] ^= 1;
    cert.signatures[3].signature.0[40] ^= 1;
    assert_eq!(
        verify(cert),
        Err(VerificationError::BadCommitSignatures {
            height: 1,
            validators: vec![1, 3]
        })
    );

    // A certificate for another block, and for another height.
    let other = BlockHeader {
        time_ms: h.time_ms + 1,
        ..h.clone()
    };
    assert_eq!(
        verify(commit(&other, 0, &[0, 1, 2])),
        Err(VerificationError::CommitWrongBlock {
            height: 1,
            header: h.block_id(),
            commit: other.block_id()
        })
    );
    let mut cert = commit(&h, 0, &[0, 1, 2]);
    cert.height = 2;
    assert_eq!(
        verify(cert),
        Err(VerificationError::CommitWrongHeight {
            header: 1,
            commit: 2
        })
    );

    // The round changed after signing: the signatures cover another vote.
    let mut cert = commit(&h, 0, &[0, 1, 2]);
    cert.round = 1;
    assert_eq!(
        verify(cert),
        Err(VerificationError::BadCommitSignatures {
            height: 1,
            validators: vec![0, 1, 2]
        })
    );
}

#[test]
fn commit_signatures_for_another_purpose_or_chain_fail() {
    let genesis = genesis();
    let set = genesis.validator_set();
    let h = header(&genesis, None, &[], 0);
    let mut cert = commit(&h, 0, &[0, 1, 2]);
    // Validator 0 signs a prevote for the same block; validator 2 a precommit on another chain.
    let prevote = Vote {
        kind: VoteKind::Prevote,
        ..cert.vote_of(0)
    };
    cert.signatures[0].signature = prevote.sign(CHAIN_ID, &validator_key(0)).signature;
    cert.signatures[2].signature = cert
        .vote_of(2)
        .sign("other-chain", &validator_key(2))
        .signature;
    assert_eq!(
        verify_commit(&set, CHAIN_ID, &h, &cert),
        Err(VerificationError::BadCommitSignatures {
            height: 1,
            validators: vec![0, 2]
        })
    );
}

// ---------------------------------------------------------------------------------------
// The composition.

#[test]
fn a_chain_of_committed_blocks_verifies() {
    let genesis = genesis();
    let mut prev: Option<BlockHeader> = None;
    for height in 1..=3u64 {
        let records = (0..height * 2)
            .map(|i| co_signed_study((i % 2) as usize, height * 100 + i))
            .collect();
        let block = committed_block(&genesis, prev.as_ref(), records);
        assert_eq!(
            verify_committed_block(&genesis, prev.as_ref(), &block),
            Ok(()),
            "height {height}"
        );
        prev = Some(block.block.header.clone());
    }
}

#[test]
fn committed_block_failures_are_found_in_order() {
    let genesis = genesis();
    let first = committed_block(&genesis, None, vec![signed_study(0, 1)]);
    let block = committed_block(
        &genesis,
        Some(&first.block.header),
        vec![signed_study(0, 2), co_signed_study(1, 3)],
    );
    let prev = Some(&first.block.header);
    assert_eq!(verify_committed_block(&genesis, prev, &block), Ok(()));

    // Broken parent link.
    assert!(matches!(
        verify_committed_block(&genesis, None, &block),
        Err(VerificationError::WrongHeight { .. })
    ));
    let mut b = block.clone();
    b.block.header.prev_block_id = Hash::of(b"fork");
    reseal(&mut b);
    assert!(matches!(
        verify_committed_block(&genesis, prev, &b),
        Err(VerificationError::WrongParent { height: 2, .. })
    ));

    // A header changed after the commit.
    let mut b = block.clone();
    b.block.header.state_digest = Hash::ZERO;
    assert!(matches!(
        verify_committed_block(&genesis, prev, &b),
        Err(VerificationError::CommitWrongBlock { height: 2, .. })
    ));

    // Records changed after the header: the root no longer matches.
    let mut b = block.clone();
    b.block.records.pop();
    b.block.records.push(signed_study(1, 99));
    assert!(matches!(
        verify_committed_block(&genesis, prev, &b),
        Err(VerificationError::RecordsRootMismatch { height: 2, .. })
    ));

    // A tampered record under a header and commit re-made to match it: its signature fails.
    let mut b = block.clone();
    if let RecordBody::StudySession(body) = &mut b.block.records[1].record.body {
        body.minutes += 1;
    }
    reseal(&mut b);
    match verify_committed_block(&genesis, prev, &b) {
        Err(VerificationError::BadRecords { height, error }) => {
            assert_eq!(height, 2);
            assert_eq!(error.indices(), vec![1]);
            assert!(matches!(
                error.bad[0].2,
                VerificationError::BadRecordSignature { .. }
            ));
        }
        other => panic!("expected bad records, got {other:?}"),
    }

    // A record breaking a stateless rule, correctly signed.
    let mut b = block.clone();
    let mut record = study_record(0, 5);
    if let RecordBody::StudySession(body) = &mut record.body {
        body.material.clear();
    }
    b.block.records[0] = record.sign(&branch_key(0));
    reseal(&mut b);
    match verify_committed_block(&genesis, prev, &b) {
        Err(VerificationError::BadRecords { error, .. }) => {
            assert!(matches!(
                &error.bad[0],
                (0, _, VerificationError::RecordInvalid { error, .. }) if error.field == "body.material"
            ));
        }
        other => panic!("expected bad records, got {other:?}"),
    }

    // Too few signatures on the commit.
    let mut b = block.clone();
    b.commit.signatures.pop();
    assert!(matches!(
        verify_committed_block(&genesis, prev, &b),
        Err(VerificationError::InsufficientQuorum { .. })
    ));

    // Wrong proposer for a round-0 commit.
    let mut b = block.clone();
    b.block.header.proposer_index = 0;
    reseal(&mut b);
    assert!(matches!(
        verify_committed_block(&genesis, prev, &b),
        Err(VerificationError::WrongProposer { actual: 0, .. })
    ));
}
