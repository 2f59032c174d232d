//! Properties of the canonical encoding and of signing, over generated values of every
//! record kind, header, vote, proposal, commit and block:
//!
//! * `decode(encode(x)) == x`, and equal values give equal bytes;
//! * decoding refuses a trailing byte and any input over its limit;
//! * flipping any bit of a signed record never yields a different record whose signatures
//!   all verify;
//! * a signature made for one purpose or chain never verifies for another.
//!
//! Each test prints its seed; replay a failure with `PROPTEST_RNG_SEED=<seed>` (and
//! `PROPTEST_CASES=<n>` for more cases) — proptest's own variables.

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{
    signing_bytes, verify, Domain, Hash, Keypair, PublicKey, Signature, Signer,
};
use branchledger_types::limits::{CONSENSUS_MESSAGE_BYTES_MAX, RECORD_BYTES_MAX};
use branchledger_types::record::*;
use branchledger_types::{
    decode, encode, Block, BlockHeader, BranchId, CommitCertificate, CommitSignature, Date,
    DecodeError, IssueId, MeetingId, MemberId, Period, Proposal, SignedProposal, SignedVote, Vote,
    VoteKind,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Cases per property unless `PROPTEST_CASES` says otherwise; the file stays well under 30 s
/// in a debug build.
const CASES: u32 = 256;
/// Bits flipped per generated signed record.
const FLIPS_PER_RECORD: usize = 16;

/// proptest's configuration from its environment variables, with a seed that is printed
/// (and chosen here when `PROPTEST_RNG_SEED` is not set) so any failure can be replayed.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            config.rng_seed = RngSeed::Fixed(nanos);
            nanos
        }
    };
    println!("proptest seed {seed}: replay with PROPTEST_RNG_SEED={seed}");
    config
}

// ---------------------------------------------------------------------------------------
// Strategies.

fn ident() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,12}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn member() -> impl Strategy<Value = MemberId> {
    ident().prop_map(MemberId)
}

fn branch() -> impl Strategy<Value = BranchId> {
    ident().prop_map(BranchId)
}

fn issue() -> impl Strategy<Value = IssueId> {
    ident().prop_map(IssueId)
}

/// Any bytes, including dates that do not exist: the codec must carry them all.
fn date() -> impl Strategy<Value = Date> {
    (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(y, m, d)| Date::new(y, m, d))
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r);
        bytes[32..].copy_from_slice(&s);
        Signature(bytes)
    })
}

fn one_of<T: Clone + std::fmt::Debug + 'static>(values: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(values)
}

/// Every kind but `Correction`.
fn plain_body() -> impl Strategy<Value = RecordBody> {
    prop_oneof![
        (
            member(),
            date(),
            one_of(MemberStatus::ALL),
            any::<bool>(),
            prop::option::of(public_key())
        )
            .prop_map(|(member_id, joined_on, status, mobile, member_key)| {
                RecordBody::MemberJoined(MemberJoined {
                    member_id,
                    joined_on,
                    status,
                    mobile,
                    member_key,
                })
            }),
        (member(), branch()).prop_map(|(member_id, to_branch)| {
            RecordBody::MemberTransferred(MemberTransferred {
                member_id,
                to_branch,
            })
        }),
        (member(), branch()).prop_map(|(member_id, from_branch)| {
            RecordBody::MemberAccepted(MemberAccepted {
                member_id,
                from_branch,
            })
        }),
        (member(), one_of(LeaveReason::ALL)).prop_map(
            |(member_id, reason)| RecordBody::MemberLeft(MemberLeft { member_id, reason })
        ),
        (
            member(),
            text(),
            any::<u16>(),
            one_of(StudyForm::ALL),
            date()
        )
            .prop_map(|(member_id, material, minutes, form, occurred_on)| {
                RecordBody::StudySession(StudySession {
                    member_id,
                    material,
                    minutes,
                    form,
                    occurred_on,
                })
            }),
        (
            member(),
            any::<(u16, u8)>(),
            any::<u64>(),
            prop::option::of(hash())
        )
            .prop_map(
                |(member_id, (year, month), amount_minor, reference_commitment)| {
                    RecordBody::DuesPaid(DuesPaid {
                        member_id,
                        period: Period::new(year, month),
                        amount_minor,
                        reference_commitment,
                    })
                }
            ),
        (
            ident(),
            one_of(MeetingKind::ALL),
            text(),
            date(),
            prop::collection::vec((member(), any::<bool>()), 0..4),
            prop::collection::vec((member(), one_of(AbsenceReason::ALL)), 0..3),
        )
            .prop_map(|(meeting_id, kind, topic, held_on, attendees, absentees)| {
                RecordBody::MeetingHeld(MeetingHeld {
                    meeting_id: MeetingId(meeting_id),
                    kind,
                    topic,
                    held_on,
                    attendees: attendees
                        .into_iter()
                        .map(|(member_id, guest)| Attendee { member_id, guest })
                        .collect(),
                    absentees: absentees
                        .into_iter()
                        .map(|(member_id, reason)| Absentee { member_id, reason })
                        .collect(),
                })
            }),
        (
            issue(),
            prop_oneof![
                member().prop_map(IssueScope::Member),
                Just(IssueScope::Branch),
                Just(IssueScope::Public)
            ],
            text(),
            date()
        )
            .prop_map(|(issue_id, scope, title, raised_on)| {
                RecordBody::IssueRaised(IssueRaised {
                    issue_id,
                    scope,
                    title,
                    raised_on,
                })
            }),
        (issue(), prop::collection::vec(member(), 0..4)).prop_map(|(issue_id, claimants)| {
            RecordBody::IssueClaimed(IssueClaimed {
                issue_id,
                claimants,
            })
        }),
        (issue(), any::<u8>(), text()).prop_map(|(issue_id, percent, note)| {
            RecordBody::IssueProgress(IssueProgress {
                issue_id,
                percent,
                note,
            })
        }),
        (issue(), text()).prop_map(|(issue_id, summary)| RecordBody::IssueResolved(
            IssueResolved { issue_id, summary }
        )),
        (
            issue(),
            any::<u8>(),
            prop_oneof![member().prop_map(Reviewer::Member), Just(Reviewer::Public)]
        )
            .prop_map(
                |(issue_id, rating, by)| RecordBody::IssueReviewed(IssueReviewed {
                    issue_id,
                    rating,
                    by
                })
            ),
    ]
}

/// Every kind, corrections with or without a replacement.
fn body() -> impl Strategy<Value = RecordBody> {
    prop_oneof![
        12 => plain_body(),
        1 => (hash(), text(), prop::option::of(plain_body())).prop_map(
            |(target, reason, replacement)| {
                RecordBody::Correction(Correction {
                    target,
                    reason,
                    replacement: replacement.map(Box::new),
                })
            }
        ),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (ident(), branch(), any::<u64>(), any::<u64>(), body()).prop_map(
        |(chain_id, branch_id, created_at_ms, nonce, body)| Record {
            chain_id,
            branch_id,
            created_at_ms,
            nonce,
            body,
        },
    )
}

/// Signed records with arbitrary (not verifying) signatures: for the codec only.
fn signed_record_unchecked() -> impl Strategy<Value = SignedRecord> {
    (
        record(),
        signature(),
        prop::collection::vec((public_key(), signature()), 0..3),
    )
        .prop_map(|(record, signature, co)| SignedRecord {
            record,
            signature,
            co_signatures: co
                .into_iter()
                .map(|(public_key, signature)| CoSignature {
                    public_key,
                    signature,
                })
                .collect(),
        })
}

/// A record really signed by a branch key from `seed`, with 0–2 real co-signatures.
fn signed_record() -> impl Strategy<Value = (SignedRecord, PublicKey)> {
    (record(), any::<u8>(), 0..3usize).prop_map(|(record, seed, co_signers)| {
        let branch_key = Keypair::from_seed([seed; 32]);
        let mut co_signed = record.with_co_signatures(Vec::new());
        for i in 0..co_signers {
            co_signed =
                co_signed.co_signed_by(&Keypair::from_seed([seed.wrapping_add(1 + i as u8); 32]));
        }
        (co_signed.sign(&branch_key), branch_key.public_key())
    })
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        ident(),
        any::<(u64, u64, u32, u16)>(),
        hash(),
        hash(),
        hash(),
        hash(),
    )
        .prop_map(
            |(
                chain_id,
                (height, time_ms, record_count, proposer_index),
                prev_block_id,
                records_root,
                state_digest,
                validator_set_id,
            )| BlockHeader {
                chain_id,
                height,
                time_ms,
                prev_block_id,
                records_root,
                record_count,
                state_digest,
                proposer_index,
                validator_set_id,
            },
        )
}

fn vote() -> impl Strategy<Value = Vote> {
    (
        any::<(u64, u32, u16)>(),
        prop_oneof![Just(VoteKind::Prevote), Just(VoteKind::Precommit)],
        prop::option::of(hash()),
    )
        .prop_map(|((height, round, validator_index), kind, block_id)| Vote {
            height,
            round,
            kind,
            block_id,
            validator_index,
        })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        any::<(u64, u32, u16)>(),
        hash(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(
            |((height, round, proposer_index), block_id, valid_round)| Proposal {
                height,
                round,
                block_id,
                valid_round,
                proposer_index,
            },
        )
}

fn commit() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<(u64, u32)>(),
        hash(),
        prop::collection::vec((any::<u16>(), signature()), 0..6),
    )
        .prop_map(
            |((height, round), block_id, signatures)| CommitCertificate {
                height,
                round,
                block_id,
                signatures: signatures
                    .into_iter()
                    .map(|(validator_index, signature)| CommitSignature {
                        validator_index,
                        signature,
                    })
                    .collect(),
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (
        header(),
        prop::collection::vec(signed_record_unchecked(), 0..3),
    )
        .prop_map(|(header, records)| Block { header, records })
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Round trip, determinism, trailing byte and limit, for any encoded type.
fn check_codec<T>(value: &T) -> Result<(), TestCaseError>
where
    T: BorshSerialize + BorshDeserialize + PartialEq + Clone + std::fmt::Debug,
{
    let bytes = encode(value);
    prop_assert_eq!(
        &encode(value),
        &bytes,
        "encoding twice gives the same bytes"
    );
    prop_assert_eq!(&encode(&value.clone()), &bytes, "a clone encodes the same");
    let back: T =
        decode("value", &bytes, bytes.len()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    prop_assert_eq!(
        encode(&back),
        bytes.clone(),
        "re-encoding gives the same bytes"
    );

    for extra in [0u8, 1, 0xff] {
        let mut longer = bytes.clone();
        longer.push(extra);
        let refused = matches!(
            decode::<T>("value", &longer, longer.len()),
            Err(DecodeError::Malformed { .. })
        );
        prop_assert!(refused, "a trailing {:#04x} must be refused", extra);
    }
    if !bytes.is_empty() {
        prop_assert_eq!(
            decode::<T>("value", &bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge {
                what: "value",
                actual: bytes.len(),
                limit: bytes.len() - 1
            })
        );
    }
    Ok(())
}

/// True if the branch signature verifies under `branch_key` and every co-signature under
/// the key it names: what a verifier would accept.
fn all_signatures_verify(record: &SignedRecord, branch_key: &PublicKey) -> bool {
    verify(branch_key, &record.signing_message(), &record.signature).is_ok()
        && record.co_signatures.iter().all(|co| {
            verify(
                &co.public_key,
                &record.record.co_signing_message(),
                &co.signature,
            )
            .is_ok()
        })
}

/// Flips `bit` of the encoding of `original`; the result must not decode to a different,
/// fully verifying record.
fn check_flip(
    original: &SignedRecord,
    branch_key: &PublicKey,
    bytes: &[u8],
    bit: usize,
) -> Result<(), TestCaseError> {
    let mut flipped = bytes.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    if let Ok(decoded) = SignedRecord::from_bytes(&flipped) {
        prop_assert_ne!(&decoded, original, "bit {} decoded to the same record", bit);
        prop_assert!(
            !all_signatures_verify(&decoded, branch_key),
            "bit {} gave a different record whose signatures verify: {:?}",
            bit,
            decoded
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn records_round_trip(record in signed_record_unchecked()) {
        check_codec(&record)?;
        check_codec(&record.record)?;
        prop_assert_eq!(SignedRecord::from_bytes(&record.to_bytes()), Ok(record.clone()));
        // The id is a function of the record and its co-signatures, not of the branch
        // signature.
        let mut resigned = record.clone();
        resigned.signature.0[0] ^= 1;
        prop_assert_eq!(resigned.id(), record.id());
        let mut stripped = record.clone();
        if stripped.co_signatures.pop().is_some() {
            prop_assert_ne!(stripped.id(), record.id());
        }
    }

    #[test]
    fn consensus_types_round_trip(
        header in header(),
        vote in vote(),
        proposal in proposal(),
        commit in commit(),
        sig in signature(),
    ) {
        check_codec(&header)?;
        check_codec(&vote)?;
        check_codec(&proposal)?;
        check_codec(&commit)?;
        let signed_vote = SignedVote { vote, signature: sig };
        check_codec(&signed_vote)?;
        prop_assert_eq!(SignedVote::from_bytes(&signed_vote.to_bytes()), Ok(signed_vote));
        check_codec(&SignedProposal { proposal, signature: sig })?;
        prop_assert_eq!(CommitCertificate::from_bytes(&commit.to_bytes()), Ok(commit.clone()));
        prop_assert_eq!(header.clone().block_id(), header.block_id());
    }

    #[test]
    fn blocks_round_trip(block in block()) {
        check_codec(&block)?;
        let bytes = block.to_bytes();
        prop_assert_eq!(Block::from_bytes(&bytes, bytes.len()), Ok(block.clone()));
        let too_large = matches!(
            Block::from_bytes(&bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge { .. })
        );
        prop_assert!(too_large, "a block over its limit must be refused");
    }

    #[test]
    fn no_bit_flip_makes_another_valid_signed_record(
        (record, branch_key) in signed_record(),
        bits in prop::collection::vec(any::<prop::sample::Index>(), FLIPS_PER_RECORD),
    ) {
        prop_assert!(all_signatures_verify(&record, &branch_key));
        let bytes = record.to_bytes();
        for bit in bits {
            check_flip(&record, &branch_key, &bytes, bit.index(bytes.len() * 8))?;
        }
    }

    #[test]
    fn signatures_never_cross_domains_or_chains(
        seed in any::<[u8; 32]>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        signed_domain in prop::sample::select(&Domain::ALL[..]),
        signed_on_b in any::<bool>(),
    ) {
        let keypair = Keypair::from_seed(seed);
        let chains = ["a", "b"];
        let signed_chain = chains[usize::from(signed_on_b)];
        let signature = keypair.sign(&signing_bytes(signed_domain, signed_chain, &body));
        for domain in Domain::ALL {
            for chain in chains {
                let verdict = verify(&keypair.public_key(), &signing_bytes(domain, chain, &body), &signature);
                let expected = domain == signed_domain && chain == signed_chain;
                prop_assert_eq!(verdict.is_ok(), expected, "{:?} on {}", domain, chain);
            }
        }
    }

    #[test]
    fn typed_signatures_never_cross_purposes_or_chains(
        record in record(),
        vote in vote(),
        proposal in proposal(),
        seed in any::<[u8; 32]>(),
    ) {
        let keypair = Keypair::from_seed(seed);
        let key = keypair.public_key();
        let on = |chain: &str| Record { chain_id: chain.into(), ..record.clone() };
        // Every message a key could be asked to sign, for chains "a" and "b".
        let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
        for chain in ["a", "b"] {
            messages.push((format!("record on {chain}"), branch_signing_message(&on(chain), &[])));
            messages.push((format!("co-signature on {chain}"), on(chain).co_signing_message()));
            messages.push((format!("vote on {chain}"), vote.signing_message(chain)));
            messages.push((format!("proposal on {chain}"), proposal.signing_message(chain)));
        }
        for (signed_name, signed_message) in &messages {
            let signature = keypair.sign(signed_message);
            for (name, message) in &messages {
                prop_assert_eq!(
                    verify(&key, message, &signature).is_ok(),
                    name == signed_name,
                    "signed as {}, checked as {}", signed_name, name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Exhaustive and boundary cases.

/// Every bit of one co-signed record, not just a sample.
#[test]
fn every_bit_flip_of_a_co_signed_record_is_caught() {
    let branch_key = Keypair::from_seed([1; 32]);
    let record = Record {
        chain_id: "a".into(),
        branch_id: BranchId("b0".into()),
        created_at_ms: 1_767_225_600_000,
        nonce: 7,
        body: RecordBody::MeetingHeld(MeetingHeld {
            meeting_id: MeetingId("mt-1".into()),
            kind: MeetingKind::Lecture,
            topic: "党课".into(),
            held_on: Date::new(2026, 1, 5),
            attendees: vec![Attendee {
                member_id: MemberId("m-1".into()),
                guest: true,
            }],
            absentees: vec![Absentee {
                member_id: MemberId("m-2".into()),
                reason: AbsenceReason::Work,
            }],
        }),
    }
    .co_signed_by(&Keypair::from_seed([2; 32]))
    .sign(&branch_key);
    let bytes = record.to_bytes();
    let public = branch_key.public_key();
    for bit in 0..bytes.len() * 8 {
        check_flip(&record, &public, &bytes, bit).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn decoding_refuses_input_over_the_type_limits() {
    // The length check comes before any parsing, so a long run of zeros is enough.
    let too_long = vec![0u8; RECORD_BYTES_MAX + 1];
    assert!(matches!(
        SignedRecord::from_bytes(&too_long),
        Err(DecodeError::TooLarge { actual, limit, .. })
            if actual == RECORD_BYTES_MAX + 1 && limit == RECORD_BYTES_MAX
    ));
    let too_long = vec![0u8; CONSENSUS_MESSAGE_BYTES_MAX + 1];
    assert!(matches!(
        SignedVote::from_bytes(&too_long),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        CommitCertificate::from_bytes(&too_long),
        Err(DecodeError::TooLarge { .. })
    ));
}
