//! Golden vectors: the canonical bytes, ids and signing messages of every signed structure,
//! checked in at `tests/vectors/golden.json` (DESIGN.md §3).
//!
//! They lock the wire format: this test fails if any encoding, id, signing message or
//! signature changes. They are also what an independent implementation codes against, so the
//! file is self-describing: each entry has a name, the Rust type, the hex of its canonical
//! (borsh) encoding, its id where it has one, and for each signature the public key, the exact
//! signing message and the signature. The keys come from fixed seeds and Ed25519 signing is
//! deterministic, so the file is reproducible.
//!
//! After an intended protocol change, regenerate the file and review the diff:
//!
//! ```text
//! BRANCHLEDGER_BLESS=1 cargo test -p branchledger-types --test golden
//! ```

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{verify, Domain, Hash, Keypair, PublicKey, Signer};
use branchledger_types::block::Evidence;
use branchledger_types::genesis::{peer_id_of, Validator, ValidatorSet};
use branchledger_types::record::*;
use branchledger_types::{
    decode, encode, merkle, Block, BlockHeader, BranchId, CommitCertificate, CommitSignature, Date,
    IssueId, MeetingId, MemberId, Period, Proposal, SignedVote, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};

/// A path under this crate, resolved when the test runs (not when it is compiled, so a build
/// cache shared by several checkouts never points into another one).
fn manifest_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join(relative)
}

fn golden_path() -> std::path::PathBuf {
    manifest_path("tests/vectors/golden.json")
}
const CHAIN_ID: &str = "branchledger-golden";
/// Generous bound for decoding any vector back.
const DECODE_LIMIT: usize = 1 << 20;

/// The whole file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct GoldenFile {
    /// How to read the entries.
    format: Vec<String>,
    /// The chain id every signing message and structure uses.
    chain_id: String,
    /// The domain tags, as hex, by name.
    domain_tags: Vec<NamedHex>,
    /// The vectors.
    vectors: Vec<Entry>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct NamedHex {
    name: String,
    hex: String,
}

/// One vector.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    name: String,
    /// The Rust type whose borsh encoding `encoding` is.
    #[serde(rename = "type")]
    type_name: String,
    /// Hex of the canonical encoding.
    encoding: String,
    /// Record id or block id or validator set id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Every signature the structure carries, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    signatures: Vec<SignatureVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SignatureVector {
    /// What the signature is (branch, co-signature 0, validator 2, …).
    role: String,
    public_key: String,
    /// Hex of the exact bytes signed.
    signing_message: String,
    signature: String,
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}
fn north() -> Keypair {
    key(0x11)
}
fn south() -> Keypair {
    key(0x12)
}
fn member_key() -> Keypair {
    key(0x21)
}
fn second_member_key() -> Keypair {
    key(0x22)
}
fn validator_key(index: u16) -> Keypair {
    key(0x31 + index as u8)
}
fn node_key(index: u16) -> Keypair {
    key(0x41 + index as u8)
}

fn member(text: &str) -> MemberId {
    MemberId(text.into())
}
fn branch(text: &str) -> BranchId {
    BranchId(text.into())
}

fn record(branch_id: &str, nonce: u64, body: RecordBody) -> Record {
    Record {
        chain_id: CHAIN_ID.into(),
        branch_id: branch(branch_id),
        created_at_ms: 1_767_225_600_000 + nonce * 60_000,
        nonce,
        body,
    }
}

fn study_body(minutes: u16) -> RecordBody {
    RecordBody::StudySession(StudySession {
        member_id: member("m-0001"),
        material: "Constitution, chapter 2".into(),
        minutes,
        form: StudyForm::Group,
        occurred_on: Date::new(2026, 1, 3),
    })
}

/// One signed record of every kind, in `RecordKind::ALL` order.
fn records() -> Vec<SignedRecord> {
    let joined = record(
        "branch-north",
        1,
        RecordBody::MemberJoined(MemberJoined {
            member_id: member("m-0001"),
            joined_on: Date::new(2026, 1, 2),
            status: MemberStatus::Probationary,
            mobile: true,
            member_key: Some(member_key().public_key()),
        }),
    )
    .co_signed_by(&member_key())
    .sign(&north());
    let study = record("branch-north", 5, study_body(90))
        .co_signed_by(&member_key())
        .co_signed_by(&second_member_key())
        .sign(&north());
    let study_id = study.id();
    let bodies = vec![
        (
            "branch-north",
            2,
            RecordBody::MemberTransferred(MemberTransferred {
                member_id: member("m-0002"),
                to_branch: branch("branch-south"),
            }),
        ),
        (
            "branch-south",
            3,
            RecordBody::MemberAccepted(MemberAccepted {
                member_id: member("m-0002"),
                from_branch: branch("branch-north"),
            }),
        ),
        (
            "branch-north",
            4,
            RecordBody::MemberLeft(MemberLeft {
                member_id: member("m-0003"),
                reason: LeaveReason::Resigned,
            }),
        ),
        (
            "branch-north",
            6,
            RecordBody::DuesPaid(DuesPaid {
                member_id: member("m-0001"),
                period: Period::new(2026, 1),
                amount_minor: 5_000,
                reference_commitment: Some(commitment(b"salt kept off chain", b"PAY-2026-0001")),
            }),
        ),
        (
            "branch-north",
            7,
            RecordBody::MeetingHeld(MeetingHeld {
                meeting_id: MeetingId("mt-2026-q1-01".into()),
                kind: MeetingKind::BranchAssembly,
                // Non-ASCII on purpose: lengths are in bytes of UTF-8.
                topic: "学习党章 — quarterly assembly".into(),
                held_on: Date::new(2026, 1, 20),
                attendees: vec![
                    Attendee {
                        member_id: member("m-0001"),
                        guest: false,
                    },
                    Attendee {
                        member_id: member("m-0901"),
                        guest: true,
                    },
                ],
                absentees: vec![Absentee {
                    member_id: member("m-0004"),
                    reason: AbsenceReason::Illness,
                }],
            }),
        ),
        (
            "branch-north",
            8,
            RecordBody::IssueRaised(IssueRaised {
                issue_id: IssueId("issue-0001".into()),
                scope: IssueScope::Member(member("m-0001")),
                title: "Repair the reading room roof".into(),
                raised_on: Date::new(2026, 1, 21),
            }),
        ),
        (
            "branch-north",
            9,
            RecordBody::IssueClaimed(IssueClaimed {
                issue_id: IssueId("issue-0001".into()),
                claimants: vec![member("m-0001"), member("m-0005")],
            }),
        ),
        (
            "branch-north",
            10,
            RecordBody::IssueProgress(IssueProgress {
                issue_id: IssueId("issue-0001".into()),
                percent: 50,
                note: "Materials bought.\nWork starts Monday.".into(),
            }),
        ),
        (
            "branch-north",
            11,
            RecordBody::IssueResolved(IssueResolved {
                issue_id: IssueId("issue-0001".into()),
                summary: "Roof repaired and inspected.".into(),
            }),
        ),
        (
            "branch-north",
            12,
            RecordBody::IssueReviewed(IssueReviewed {
                issue_id: IssueId("issue-0001".into()),
                rating: 5,
                by: Reviewer::Public,
            }),
        ),
        (
            "branch-north",
            13,
            RecordBody::Correction(Correction {
                target: study_id,
                reason: "Duration entered wrongly".into(),
                replacement: Some(Box::new(study_body(60))),
            }),
        ),
    ];
    let signed: Vec<SignedRecord> = bodies
        .into_iter()
        .map(|(branch_id, nonce, body)| {
            let signer = if branch_id == "branch-south" {
                south()
            } else {
                north()
            };
            record(branch_id, nonce, body).sign(&signer)
        })
        .collect();
    // Put them in RecordKind order: joined, transferred, accepted, left, study, dues, …
    let mut all = vec![joined];
    all.extend(signed[..3].iter().cloned());
    all.push(study);
    all.extend(signed[3..].iter().cloned());
    all
}

fn branch_key_of(record: &SignedRecord) -> Keypair {
    match record.record.branch_id.as_str() {
        "branch-south" => south(),
        _ => north(),
    }
}

fn validator_set() -> ValidatorSet {
    ValidatorSet::new(
        (0..4u16)
            .map(|i| Validator {
                name: format!("validator-{i}"),
                branch_id: branch(if i % 2 == 0 {
                    "branch-north"
                } else {
                    "branch-south"
                }),
                consensus_key: validator_key(i).public_key(),
                peer_id: peer_id_of(&node_key(i).public_key()),
            })
            .collect(),
    )
}

fn signature_vector(
    role: String,
    key: PublicKey,
    message: &[u8],
    signature: &branchledger_crypto::Signature,
) -> SignatureVector {
    // A vector whose signature does not verify would be worse than none.
    verify(&key, message, signature).expect("golden signature verifies");
    SignatureVector {
        role,
        public_key: key.to_hex(),
        signing_message: hex::encode(message),
        signature: signature.to_hex(),
    }
}

/// Encodes `value`, checks it decodes back to itself, and returns the hex.
fn encoding_of<T: BorshSerialize + BorshDeserialize + PartialEq + std::fmt::Debug>(
    value: &T,
) -> String {
    let bytes = encode(value);
    let back: T = decode("golden", &bytes, DECODE_LIMIT).expect("golden value decodes");
    assert_eq!(&back, value, "golden value round-trips");
    hex::encode(bytes)
}

fn entries() -> Vec<Entry> {
    let mut out = Vec::new();
    let records = records();
    let kinds: Vec<RecordKind> = records.iter().map(|r| r.record.body.kind()).collect();
    assert_eq!(kinds, RecordKind::ALL, "one record of every kind, in order");

    for signed in &records {
        let mut signatures = vec![signature_vector(
            "branch".into(),
            branch_key_of(signed).public_key(),
            &signed.signing_message(),
            &signed.signature,
        )];
        for (i, co) in signed.co_signatures.iter().enumerate() {
            signatures.push(signature_vector(
                format!("co-signature {i}"),
                co.public_key,
                &signed.record.co_signing_message(),
                &co.signature,
            ));
        }
        signed.validate().expect("golden records are valid");
        out.push(Entry {
            name: format!("signed_record/{}", signed.record.body.kind()),
            type_name: "SignedRecord".into(),
            encoding: encoding_of(signed),
            id: Some(signed.id().to_hex()),
            signatures,
        });
    }

    let set = validator_set();
    let keys: Vec<PublicKey> = set.validators().iter().map(|v| v.consensus_key).collect();
    out.push(Entry {
        name: "validator_set/4".into(),
        type_name: "Vec<PublicKey> (consensus keys in genesis order)".into(),
        encoding: encoding_of(&keys),
        id: Some(set.id().to_hex()),
        signatures: Vec::new(),
    });

    // A block of the first three records at height 1.
    let block_records = records[..3].to_vec();
    let ids: Vec<Hash> = block_records.iter().map(SignedRecord::id).collect();
    let header = BlockHeader {
        chain_id: CHAIN_ID.into(),
        height: 1,
        time_ms: 1_767_225_700_000,
        prev_block_id: Hash::ZERO,
        records_root: merkle::root(&ids),
        record_count: 3,
        state_digest: Hash::of(b"golden state digest"),
        proposer_index: set.proposer(1, 0),
        validator_set_id: set.id(),
    };
    let block_id = header.block_id();
    out.push(Entry {
        name: "block_header/1".into(),
        type_name: "BlockHeader".into(),
        encoding: encoding_of(&header),
        id: Some(block_id.to_hex()),
        signatures: Vec::new(),
    });
    let block = Block {
        header: header.clone(),
        records: block_records,
    };
    assert_eq!(block.compute_records_root(), header.records_root);
    out.push(Entry {
        name: "block/1".into(),
        type_name: "Block".into(),
        encoding: encoding_of(&block),
        id: Some(block_id.to_hex()),
        signatures: Vec::new(),
    });

    // A second header on top of the first, so the parent link is covered.
    let header_2 = BlockHeader {
        height: 2,
        time_ms: header.time_ms + 1_000,
        prev_block_id: block_id,
        records_root: merkle::root(&[]),
        record_count: 0,
        state_digest: Hash::of(b"golden state digest 2"),
        proposer_index: set.proposer(2, 1),
        ..header.clone()
    };
    out.push(Entry {
        name: "block_header/2".into(),
        type_name: "BlockHeader".into(),
        encoding: encoding_of(&header_2),
        id: Some(header_2.block_id().to_hex()),
        signatures: Vec::new(),
    });

    let votes = [
        (
            "signed_vote/precommit",
            Vote {
                height: 1,
                round: 0,
                kind: VoteKind::Precommit,
                block_id: Some(block_id),
                validator_index: 2,
            },
        ),
        (
            "signed_vote/prevote_nil",
            Vote {
                height: 1,
                round: 3,
                kind: VoteKind::Prevote,
                block_id: None,
                validator_index: 0,
            },
        ),
    ];
    let mut signed_votes = Vec::new();
    for (name, vote) in votes {
        let validator = validator_key(vote.validator_index);
        let signed: SignedVote = vote.sign(CHAIN_ID, &validator);
        out.push(Entry {
            name: name.into(),
            type_name: "SignedVote".into(),
            encoding: encoding_of(&signed),
            id: None,
            signatures: vec![signature_vector(
                format!("validator {}", vote.validator_index),
                validator.public_key(),
                &vote.signing_message(CHAIN_ID),
                &signed.signature,
            )],
        });
        signed_votes.push(signed);
    }

    let proposal = Proposal {
        height: 1,
        round: 1,
        block_id,
        valid_round: Some(0),
        proposer_index: set.proposer(1, 1),
    };
    let proposer = validator_key(proposal.proposer_index);
    let signed = proposal.sign(CHAIN_ID, &proposer);
    out.push(Entry {
        name: "signed_proposal/1".into(),
        type_name: "SignedProposal".into(),
        encoding: encoding_of(&signed),
        id: None,
        signatures: vec![signature_vector(
            format!("validator {}", proposal.proposer_index),
            proposer.public_key(),
            &proposal.signing_message(CHAIN_ID),
            &signed.signature,
        )],
    });

    let mut cert = CommitCertificate {
        height: 1,
        round: 0,
        block_id,
        signatures: Vec::new(),
    };
    let mut signatures = Vec::new();
    for index in [0u16, 1, 3] {
        let vote = cert.vote_of(index);
        let validator = validator_key(index);
        let signature = vote.sign(CHAIN_ID, &validator).signature;
        signatures.push(signature_vector(
            format!("validator {index}"),
            validator.public_key(),
            &vote.signing_message(CHAIN_ID),
            &signature,
        ));
        cert.signatures.push(CommitSignature {
            validator_index: index,
            signature,
        });
    }
    out.push(Entry {
        name: "commit_certificate/1".into(),
        type_name: "CommitCertificate".into(),
        encoding: encoding_of(&cert),
        id: None,
        signatures,
    });

    // Two conflicting precommits by one validator: evidence.
    let conflicting = Vote {
        block_id: Some(header_2.block_id()),
        ..votes[0].1
    }
    .sign(CHAIN_ID, &validator_key(2));
    let evidence = Evidence::DuplicateVote {
        first: signed_votes[0],
        second: conflicting,
    };
    out.push(Entry {
        name: "evidence/duplicate_vote".into(),
        type_name: "Evidence".into(),
        encoding: encoding_of(&evidence),
        id: None,
        signatures: vec![
            signature_vector(
                "first vote, validator 2".into(),
                validator_key(2).public_key(),
                &signed_votes[0].vote.signing_message(CHAIN_ID),
                &signed_votes[0].signature,
            ),
            signature_vector(
                "second vote, validator 2".into(),
                validator_key(2).public_key(),
                &conflicting.vote.signing_message(CHAIN_ID),
                &conflicting.signature,
            ),
        ],
    });
    out
}

fn golden() -> GoldenFile {
    let tag = |domain: Domain| NamedHex {
        name: format!("{domain:?}"),
        hex: hex::encode(domain.tag()),
    };
    GoldenFile {
        format: vec![
            "Every value is hex. `encoding` is the canonical borsh encoding of `type` \
             (little-endian fixed-width integers; u32 length prefix for strings and vectors; \
             one byte 0/1 for Option and bool; one byte variant index for enums)."
                .into(),
            "Record id = BLAKE3(tag(RecordId) || borsh(Record) || borsh(co_signatures)); the \
             SignedRecord encoding is borsh(Record) || signature (64 bytes) || \
             borsh(co_signatures), so the id hashes it without the branch signature. \
             borsh(co_signatures) is a u32 count then (public key, signature) pairs; four \
             zero bytes when there are none."
                .into(),
            "Block id = BLAKE3(tag(BlockId) || borsh(BlockHeader)). Validator set id = \
             BLAKE3(tag(ValidatorSet) || borsh(Vec<PublicKey>))."
                .into(),
            "Signing message = tag(domain) || u32_le(len(chain_id)) || chain_id || body. \
             For the branch signature of a record (domain Record) body = borsh(Record) || \
             borsh(co_signatures), the bytes the id hashes; for a co-signature (domain \
             RecordCoSignature) body = borsh(Record): members co-sign the record, then the \
             branch signs it with the co-signatures. For a vote or proposal body = borsh(Vote) \
             or borsh(Proposal). A commit signature signs the precommit Vote {height, round, \
             Precommit, Some(block_id), validator_index}."
                .into(),
            "Signatures are Ed25519 (R || s), verified by the ZIP-215 rule.".into(),
        ],
        chain_id: CHAIN_ID.into(),
        domain_tags: Domain::ALL.into_iter().map(tag).collect(),
        vectors: entries(),
    }
}

fn render(file: &GoldenFile) -> String {
    serde_json::to_string_pretty(file).expect("golden file serialises") + "\n"
}

#[test]
fn golden_vectors_match_the_checked_in_file() {
    let current = golden();
    if std::env::var_os("BRANCHLEDGER_BLESS").is_some() {
        std::fs::create_dir_all(manifest_path("tests/vectors")).expect("create tests/vectors");
        std::fs::write(golden_path(), render(&current)).expect("write the golden file");
        println!("rewrote {}", golden_path().display());
        return;
    }
    let text = std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); create it with BRANCHLEDGER_BLESS=1",
            golden_path().display()
        )
    });
    let stored: GoldenFile = serde_json::from_str(&text).expect("golden file parses");
    let stored_names: Vec<&str> = stored.vectors.iter().map(|e| e.name.as_str()).collect();
    let current_names: Vec<&str> = current.vectors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        stored_names, current_names,
        "the set of golden vectors changed"
    );
    for (stored, current) in stored.vectors.iter().zip(&current.vectors) {
        assert_eq!(
            stored, current,
            "golden vector {} changed: the encoding is part of the protocol \
             (if intended, regenerate with BRANCHLEDGER_BLESS=1 and review the diff)",
            stored.name
        );
    }
    assert_eq!(stored, current);
    assert_eq!(text, render(&current), "golden file formatting changed");
}

/// The file alone is enough to re-derive ids and check signatures, as an independent
/// implementation would: nothing here uses the Rust types.
#[test]
fn golden_file_is_self_consistent() {
    // While blessing, the other test is rewriting the file: check what it writes.
    let text = if std::env::var_os("BRANCHLEDGER_BLESS").is_some() {
        render(&golden())
    } else {
        std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); create it with BRANCHLEDGER_BLESS=1",
                golden_path().display()
            )
        })
    };
    let file: GoldenFile = serde_json::from_str(&text).expect("golden file parses");
    let tag = |name: &str| -> Vec<u8> {
        let entry = file
            .domain_tags
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("tag {name}"));
        hex::decode(&entry.hex).expect("tag hex")
    };
    let blake3_tagged = |tag: &[u8], body: &[u8]| -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(tag);
        hasher.update(body);
        hasher.finalize().to_hex().to_string()
    };
    let chain = file.chain_id.as_bytes();
    let prefix_len = |name: &str| tag(name).len() + 4 + chain.len();
    let mut records_checked = 0;
    for entry in &file.vectors {
        let encoding = hex::decode(&entry.encoding).expect("encoding hex");
        for signature in &entry.signatures {
            let key = PublicKey::from_hex(&signature.public_key).expect("key hex");
            let message = hex::decode(&signature.signing_message).expect("message hex");
            let sig = branchledger_crypto::Signature::from_hex(&signature.signature)
                .expect("signature hex");
            assert_eq!(
                verify(&key, &message, &sig),
                Ok(()),
                "{} {}",
                entry.name,
                signature.role
            );
            // tag ‖ u32_le(len(chain_id)) ‖ chain_id ‖ body, for exactly one (prefix-free) tag.
            let tags: Vec<Vec<u8>> = file
                .domain_tags
                .iter()
                .map(|t| hex::decode(&t.hex).expect("tag hex"))
                .filter(|t| message.starts_with(t))
                .collect();
            assert_eq!(tags.len(), 1, "{} {}", entry.name, signature.role);
            let after_tag = &message[tags[0].len()..];
            assert_eq!(
                &after_tag[..4],
                &(chain.len() as u32).to_le_bytes(),
                "{}",
                entry.name
            );
            assert_eq!(&after_tag[4..4 + chain.len()], chain, "{}", entry.name);
        }
        if entry.type_name == "SignedRecord" {
            // The envelope is borsh(Record) ‖ signature ‖ borsh(co_signatures). The branch
            // signs tag(Record) ‖ chain ‖ borsh(Record) ‖ borsh(co_signatures), each
            // co-signer tag(RecordCoSignature) ‖ chain ‖ borsh(Record), and the id hashes
            // borsh(Record) ‖ borsh(co_signatures).
            let branch = &entry.signatures[0];
            let co_signers = &entry.signatures[1..];
            let message = hex::decode(&branch.signing_message).expect("message hex");
            assert!(message.starts_with(&tag("Record")), "{}", entry.name);
            let signed_body = &message[prefix_len("Record")..];
            let co_len = 4 + co_signers.len() * (32 + 64);
            assert!(signed_body.len() > co_len, "{}", entry.name);
            let (record_bytes, co_bytes) = signed_body.split_at(signed_body.len() - co_len);
            let signature = hex::decode(&branch.signature).expect("signature hex");
            assert_eq!(
                encoding,
                [record_bytes, &signature, co_bytes].concat(),
                "{}",
                entry.name
            );
            let mut expected_co_bytes = (co_signers.len() as u32).to_le_bytes().to_vec();
            for co in co_signers {
                expected_co_bytes.extend(hex::decode(&co.public_key).expect("key hex"));
                expected_co_bytes.extend(hex::decode(&co.signature).expect("signature hex"));
                let co_message = hex::decode(&co.signing_message).expect("message hex");
                assert!(co_message.starts_with(&tag("RecordCoSignature")));
                assert_eq!(&co_message[prefix_len("RecordCoSignature")..], record_bytes);
            }
            assert_eq!(co_bytes, expected_co_bytes, "{}", entry.name);
            assert_eq!(
                entry.id.as_deref(),
                Some(blake3_tagged(&tag("RecordId"), signed_body).as_str()),
                "{}",
                entry.name
            );
            records_checked += 1;
        }
        if entry.type_name == "BlockHeader" {
            assert_eq!(
                entry.id.as_deref(),
                Some(blake3_tagged(&tag("BlockId"), &encoding).as_str()),
                "{}",
                entry.name
            );
        }
        if entry.type_name.starts_with("Vec<PublicKey>") {
            assert_eq!(
                entry.id.as_deref(),
                Some(blake3_tagged(&tag("ValidatorSet"), &encoding).as_str())
            );
        }
    }
    assert_eq!(
        records_checked,
        RecordKind::ALL.len(),
        "one record of every kind"
    );
    assert!(
        file.vectors
            .iter()
            .any(|e| e.type_name == "SignedRecord" && e.signatures.len() > 2),
        "a record with co-signatures"
    );
}
