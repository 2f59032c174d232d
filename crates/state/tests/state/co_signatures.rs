//! Who may co-sign a record: the registered member key of an active member the record
//! concerns. Any other co-signer is refused with the field and the rule.

use branchledger_crypto::{Keypair, PublicKey, Signature, Signer};
use branchledger_state::Rejection;
use branchledger_types::record::{CoSignature, IssueScope, MeetingKind, Reviewer};
use branchledger_types::{Period, SignedRecord};

use crate::fixture::*;

/// b0 has `a0` (mobile), `a1`, `a2`; b1 has `c0` (mobile); each registered with its own
/// [`member_key`]. b0 also has `n0`, registered without a key.
fn keyed() -> Chain {
    let mut chain = Chain::new();
    let mut records: Vec<SignedRecord> = [(0, "a0", true), (0, "a1", false), (0, "a2", false)]
        .into_iter()
        .chain([(1, "c0", true)])
        .map(|(branch, member, mobile)| chain.record(branch, joined_with_key(member, mobile)))
        .collect();
    records.push(chain.record(0, joined("n0", false)));
    chain.block(&records).expect("members join");
    chain
}

/// A key no member registered.
fn outsider() -> Keypair {
    Keypair::from_seed([0xee; 32])
}

fn not_concerned(index: usize, key: &Keypair) -> Rejection {
    Rejection::CoSignerNotConcerned {
        field: format!("co_signatures[{index}].public_key"),
        key: key.public_key(),
    }
}

#[test]
fn a_member_co_signs_a_record_about_them() {
    let mut chain = keyed();
    let record = chain.co_signed(0, study("a0", 30), &[&member_key("a0")]);
    assert!(chain.submit_signed(&record).is_ok());
    let record = chain.co_signed(
        0,
        dues("a1", Period::new(2025, 3), 500),
        &[&member_key("a1")],
    );
    assert!(chain.submit_signed(&record).is_ok());
}

#[test]
fn a_key_no_member_registered_is_refused() {
    let mut chain = keyed();
    let record = chain.co_signed(0, study("a0", 30), &[&outsider()]);
    let rejection = chain.submit_signed(&record).expect_err("not a member key");
    assert_eq!(rejection, not_concerned(0, &outsider()));
    let message = rejection.to_string();
    assert!(
        message.contains("`co_signatures[0].public_key`"),
        "{message}"
    );
    assert!(
        message.contains("active member this record concerns"),
        "{message}"
    );
}

#[test]
fn a_member_key_on_a_record_about_another_member_is_refused() {
    let mut chain = keyed();
    // a1 is an active member of the same branch, but the session is a0's.
    let record = chain.co_signed(0, study("a0", 30), &[&member_key("a1")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a1")))
    );
    // The second co-signer is the one named.
    let record = chain.co_signed(0, study("a0", 30), &[&member_key("a0"), &member_key("c0")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(1, &member_key("c0")))
    );
}

#[test]
fn meeting_attendees_absentees_and_guests_may_co_sign() {
    let mut chain = keyed();
    let body = meeting(
        "mt-1",
        MeetingKind::Committee,
        "2025-03-03",
        &[("a0", false), ("c0", true)],
        &["a1"],
    );
    let record = chain.co_signed(
        0,
        body.clone(),
        &[&member_key("c0"), &member_key("a1"), &member_key("a0")],
    );
    assert!(chain.submit_signed(&record).is_ok());
    // a2 was not there.
    let body = meeting(
        "mt-2",
        MeetingKind::Committee,
        "2025-03-03",
        &[("a0", false)],
        &[],
    );
    let record = chain.co_signed(0, body, &[&member_key("a0"), &member_key("a2")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(1, &member_key("a2")))
    );
}

#[test]
fn issue_members_may_co_sign_and_issue_steps_without_members_may_not() {
    let mut chain = keyed();
    let record = chain.co_signed(
        0,
        raised("is-1", IssueScope::Member(m("a2"))),
        &[&member_key("a2")],
    );
    assert!(chain.submit_signed(&record).is_ok());
    let record = chain.co_signed(0, claimed("is-1", &["a0", "a1"]), &[&member_key("a1")]);
    assert!(chain.submit_signed(&record).is_ok());
    // Progress concerns no member: nobody co-signs it.
    let record = chain.co_signed(0, progress("is-1", 50), &[&member_key("a1")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a1")))
    );
    chain.ok(0, resolved("is-1"));
    let record = chain.co_signed(
        1,
        reviewed("is-1", 5, Reviewer::Member(m("c0"))),
        &[&member_key("c0")],
    );
    assert!(chain.submit_signed(&record).is_ok());
}

#[test]
fn a_member_co_signs_their_own_registration_with_the_key_it_registers() {
    let mut chain = keyed();
    let record = chain.co_signed(0, joined_with_key("a9", false), &[&member_key("a9")]);
    assert!(chain.submit_signed(&record).is_ok());
    // Another key, even a member's, does not co-sign someone else's registration.
    let record = chain.co_signed(0, joined_with_key("a8", false), &[&member_key("a0")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a0")))
    );
    // A registration without a key has no co-signer.
    let record = chain.co_signed(0, joined("a7", false), &[&member_key("a7")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a7")))
    );
}

#[test]
fn a_member_who_left_co_signs_their_leaving_and_nothing_after() {
    let mut chain = keyed();
    let record = chain.co_signed(0, left("a2"), &[&member_key("a2")]);
    assert!(chain.submit_signed(&record).is_ok());
    // An issue may still be raised about a registered member who left, but they no longer
    // co-sign.
    let record = chain.co_signed(
        0,
        raised("is-2", IssueScope::Member(m("a2"))),
        &[&member_key("a2")],
    );
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a2")))
    );
}

#[test]
fn a_member_registered_without_a_key_has_no_co_signer() {
    let mut chain = keyed();
    let record = chain.co_signed(0, study("n0", 30), &[&member_key("n0")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("n0")))
    );
    assert!(chain.submit(0, study("n0", 30)).is_ok());
}

#[test]
fn a_correction_is_co_signed_by_the_members_of_its_replacement() {
    let mut chain = keyed();
    let target = chain.ok(0, study("a0", 30));
    // A replacement about a0 is co-signed by a0; one that moves the session to a1 is not.
    let record = chain.co_signed(
        0,
        correction(target, Some(study("a0", 45))),
        &[&member_key("a0")],
    );
    assert!(chain.submit_signed(&record).is_ok());
    let record = chain.co_signed(
        0,
        correction(target, Some(study("a1", 45))),
        &[&member_key("a0")],
    );
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a0")))
    );
    // A retraction has no new body, so it concerns no member.
    let record = chain.co_signed(0, correction(target, None), &[&member_key("a0")]);
    assert_eq!(
        chain.submit_signed(&record),
        Err(not_concerned(0, &member_key("a0")))
    );
}

#[test]
fn members_sharing_a_key_do_not_hide_another_co_signer() {
    let mut chain = keyed();
    // b1 registers c1 with c0's key; a meeting of b1 lists both, and the guest a0.
    let mut body = joined_with_key("c1", false);
    if let branchledger_types::RecordBody::MemberJoined(joined) = &mut body {
        joined.member_key = Some(member_key("c0").public_key());
    }
    chain.ok(1, body);
    let body = meeting(
        "mt-3",
        MeetingKind::Committee,
        "2025-03-03",
        &[("c0", false), ("c1", false), ("a0", true)],
        &[],
    );
    let record = chain.co_signed(1, body, &[&member_key("c0"), &member_key("a0")]);
    assert!(chain.submit_signed(&record).is_ok());
}

#[test]
fn a_weak_co_signer_key_is_refused_statelessly() {
    let mut chain = keyed();
    // The identity point (y = 1), of small order: (R = identity, s = 0) verifies for any
    // message under ZIP-215.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut trivial = [0u8; 64];
    trivial[0] = 1;
    let record = chain
        .record(0, study("a0", 30))
        .record
        .with_co_signatures(vec![CoSignature {
            public_key: PublicKey(identity),
            signature: Signature(trivial),
        }])
        .sign(&branch_key(0));
    match chain.submit_signed(&record) {
        Err(Rejection::Stateless(error)) => {
            assert_eq!(error.field, "co_signatures[0].public_key");
            assert!(error.to_string().contains("small-order"), "{error}");
        }
        other => panic!("expected a stateless rejection, got {other:?}"),
    }
    // The same key is refused where a member key is registered.
    let mut body = joined_with_key("a6", false);
    if let branchledger_types::RecordBody::MemberJoined(joined) = &mut body {
        joined.member_key = Some(PublicKey(identity));
    }
    match chain.rejected(0, body) {
        Rejection::Stateless(error) => assert_eq!(error.field, "body.member_key"),
        other => panic!("expected a stateless rejection, got {other}"),
    }
}
