//! A small chain in memory: a genesis with three branches, record builders and a driver that
//! commits single-record or multi-record blocks into a `MemState`.

use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_state::{apply_block, BlockError, MemState, Rejection, StateDelta};
use branchledger_types::genesis::{peer_id_of, MeetingRule, RulePeriod, Rules, StudyRule};
use branchledger_types::record::{
    AbsenceReason, Absentee, Attendee, Correction, DuesPaid, IssueClaimed, IssueProgress,
    IssueRaised, IssueResolved, IssueReviewed, IssueScope, LeaveReason, MeetingHeld, MeetingKind,
    MemberAccepted, MemberJoined, MemberLeft, MemberStatus, MemberTransferred, RecordBody,
    Reviewer, StudyForm, StudySession,
};
use branchledger_types::{
    Branch, BranchId, ConsensusParams, Date, Genesis, IssueId, MeetingId, MemberId, Period, Record,
    SignedRecord, Validator,
};

pub const CHAIN: &str = "test-chain";
/// 2025-03-10T12:00:00Z.
pub const T0_MS: u64 = 1_741_608_000_000;
pub const MINUTE_MS: u64 = 60_000;
pub const DAY_MS: u64 = 86_400_000;

pub fn branch_key(branch: usize) -> Keypair {
    Keypair::from_seed([100 + branch as u8; 32])
}

pub fn b(branch: usize) -> BranchId {
    BranchId(format!("b{branch}"))
}

pub fn m(id: &str) -> MemberId {
    MemberId(id.into())
}

pub fn genesis() -> Genesis {
    let key = |seed: u8| Keypair::from_seed([seed; 32]).public_key();
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: T0_MS - DAY_MS,
        validators: vec![Validator {
            name: "v0".into(),
            branch_id: b(0),
            consensus_key: key(10),
            peer_id: peer_id_of(&key(20)),
        }],
        branches: (0..3)
            .map(|i| Branch {
                branch_id: b(i),
                name: format!("Branch {i}"),
                signing_key: branch_key(i).public_key(),
            })
            .collect(),
        consensus: ConsensusParams::default(),
        rules: Rules {
            meetings: vec![MeetingRule {
                kind: MeetingKind::Committee,
                at_least: 1,
                per: RulePeriod::Month,
            }],
            study: StudyRule {
                minutes_per_member_per_month: 600,
            },
            dues_minor_per_month: 100,
        },
    };
    genesis.validate().expect("fixture genesis is valid");
    genesis
}

/// A chain driven one block at a time.
pub struct Chain {
    pub genesis: Genesis,
    pub state: MemState,
    pub height: u64,
    pub time_ms: u64,
    pub digest: Hash,
    nonce: u64,
}

impl Chain {
    pub fn new() -> Chain {
        Chain::with_genesis(genesis())
    }

    pub fn with_genesis(genesis: Genesis) -> Chain {
        Chain {
            genesis,
            state: MemState::new(),
            height: 0,
            time_ms: T0_MS,
            digest: Hash::ZERO,
            nonce: 0,
        }
    }

    /// The time of the next block.
    pub fn next_time_ms(&self) -> u64 {
        self.time_ms + MINUTE_MS
    }

    /// A record of `branch`, created at the next block's time, signed with the branch key.
    pub fn record(&mut self, branch: usize, body: RecordBody) -> SignedRecord {
        self.nonce += 1;
        Record {
            chain_id: CHAIN.into(),
            branch_id: b(branch),
            created_at_ms: self.next_time_ms(),
            nonce: self.nonce,
            body,
        }
        .sign(&branch_key(branch))
    }

    /// A record of `branch` like [`Chain::record`], co-signed by `co_signers` before the
    /// branch signs it.
    pub fn co_signed(
        &mut self,
        branch: usize,
        body: RecordBody,
        co_signers: &[&Keypair],
    ) -> SignedRecord {
        let mut co_signed = self
            .record(branch, body)
            .record
            .with_co_signatures(Vec::new());
        for co_signer in co_signers {
            co_signed = co_signed.co_signed_by(*co_signer);
        }
        co_signed.sign(&branch_key(branch))
    }

    /// Applies a block of `records`; on success commits it into the state.
    pub fn block(&mut self, records: &[SignedRecord]) -> Result<StateDelta, BlockError> {
        let time_ms = self.next_time_ms();
        let (delta, digest) = apply_block(
            &self.state,
            &self.genesis,
            self.height + 1,
            time_ms,
            records,
            &self.digest,
        )?;
        self.state
            .apply_block(self.height + 1, records, delta.clone());
        self.height += 1;
        self.time_ms = time_ms;
        self.digest = digest;
        Ok(delta)
    }

    /// Commits one record of `branch` in its own block, or says why it is rejected.
    pub fn submit(&mut self, branch: usize, body: RecordBody) -> Result<Hash, Rejection> {
        let record = self.record(branch, body);
        self.submit_signed(&record)
    }

    pub fn submit_signed(&mut self, record: &SignedRecord) -> Result<Hash, Rejection> {
        match self.block(std::slice::from_ref(record)) {
            Ok(_) => Ok(record.id()),
            Err(BlockError::Rejected(rejection)) => {
                assert_eq!(rejection.index, 0);
                assert_eq!(rejection.record_id, record.id());
                Err(rejection.reason)
            }
            Err(BlockError::Read(error)) => panic!("state read failed: {error}"),
        }
    }

    /// Commits a record that must be accepted.
    pub fn ok(&mut self, branch: usize, body: RecordBody) -> Hash {
        let what = format!("{body:?}");
        self.submit(branch, body)
            .unwrap_or_else(|e| panic!("{what} should be accepted, got: {e}"))
    }

    /// Submits a record that must be rejected; the state must not change.
    pub fn rejected(&mut self, branch: usize, body: RecordBody) -> Rejection {
        let before = (self.state.clone(), self.height, self.digest);
        let what = format!("{body:?}");
        let rejection = self
            .submit(branch, body)
            .err()
            .unwrap_or_else(|| panic!("{what} should be rejected"));
        assert!(
            before == (self.state.clone(), self.height, self.digest),
            "a rejected record changed state"
        );
        rejection
    }
}

pub fn date(text: &str) -> Date {
    text.parse().expect("fixture date")
}

pub fn joined(member: &str, mobile: bool) -> RecordBody {
    RecordBody::MemberJoined(MemberJoined {
        member_id: m(member),
        joined_on: date("2025-01-15"),
        status: MemberStatus::Full,
        mobile,
        member_key: None,
    })
}

/// The key a member registers in [`joined_with_key`], from the member id.
pub fn member_key(member: &str) -> Keypair {
    let mut seed = [0x5a; 32];
    for (byte, id_byte) in seed.iter_mut().zip(member.bytes()) {
        *byte = id_byte;
    }
    Keypair::from_seed(seed)
}

/// [`joined`] with the member's own key, [`member_key`]`(member)`.
pub fn joined_with_key(member: &str, mobile: bool) -> RecordBody {
    let RecordBody::MemberJoined(mut body) = joined(member, mobile) else {
        unreachable!("joined makes a MemberJoined")
    };
    body.member_key = Some(member_key(member).public_key());
    RecordBody::MemberJoined(body)
}

pub fn transferred(member: &str, to: usize) -> RecordBody {
    RecordBody::MemberTransferred(MemberTransferred {
        member_id: m(member),
        to_branch: b(to),
    })
}

pub fn accepted(member: &str, from: usize) -> RecordBody {
    RecordBody::MemberAccepted(MemberAccepted {
        member_id: m(member),
        from_branch: b(from),
    })
}

pub fn left(member: &str) -> RecordBody {
    RecordBody::MemberLeft(MemberLeft {
        member_id: m(member),
        reason: LeaveReason::Resigned,
    })
}

pub fn study_on(member: &str, minutes: u16, on: &str) -> RecordBody {
    RecordBody::StudySession(StudySession {
        member_id: m(member),
        material: "Constitution, chapter 2".into(),
        minutes,
        form: StudyForm::Group,
        occurred_on: date(on),
    })
}

pub fn study(member: &str, minutes: u16) -> RecordBody {
    study_on(member, minutes, "2025-03-03")
}

pub fn dues(member: &str, period: Period, amount_minor: u64) -> RecordBody {
    RecordBody::DuesPaid(DuesPaid {
        member_id: m(member),
        period,
        amount_minor,
        reference_commitment: None,
    })
}

/// A meeting; attendees as `(member, guest)`.
pub fn meeting(
    id: &str,
    kind: MeetingKind,
    on: &str,
    attendees: &[(&str, bool)],
    absentees: &[&str],
) -> RecordBody {
    RecordBody::MeetingHeld(MeetingHeld {
        meeting_id: MeetingId(id.into()),
        kind,
        topic: "monthly committee".into(),
        held_on: date(on),
        attendees: attendees
            .iter()
            .map(|(member, guest)| Attendee {
                member_id: m(member),
                guest: *guest,
            })
            .collect(),
        absentees: absentees
            .iter()
            .map(|member| Absentee {
                member_id: m(member),
                reason: AbsenceReason::Work,
            })
            .collect(),
    })
}

pub fn i(id: &str) -> IssueId {
    IssueId(id.into())
}

pub fn raised(issue: &str, scope: IssueScope) -> RecordBody {
    RecordBody::IssueRaised(IssueRaised {
        issue_id: i(issue),
        scope,
        title: "street lights out".into(),
        raised_on: date("2025-03-05"),
    })
}

pub fn claimed(issue: &str, claimants: &[&str]) -> RecordBody {
    RecordBody::IssueClaimed(IssueClaimed {
        issue_id: i(issue),
        claimants: claimants.iter().map(|c| m(c)).collect(),
    })
}

pub fn progress(issue: &str, percent: u8) -> RecordBody {
    RecordBody::IssueProgress(IssueProgress {
        issue_id: i(issue),
        percent,
        note: String::new(),
    })
}

pub fn resolved(issue: &str) -> RecordBody {
    RecordBody::IssueResolved(IssueResolved {
        issue_id: i(issue),
        summary: "fixed".into(),
    })
}

pub fn reviewed(issue: &str, rating: u8, by: Reviewer) -> RecordBody {
    RecordBody::IssueReviewed(IssueReviewed {
        issue_id: i(issue),
        rating,
        by,
    })
}

pub fn correction(target: Hash, replacement: Option<RecordBody>) -> RecordBody {
    RecordBody::Correction(Correction {
        target,
        reason: "typo".into(),
        replacement: replacement.map(Box::new),
    })
}

/// A chain where b0 has `a0` (mobile), `a1`, `a2`; b1 has `c0` (mobile), `c1`; b2 has `d0`.
pub fn populated() -> Chain {
    let mut chain = Chain::new();
    let records: Vec<SignedRecord> = [
        (0, "a0", true),
        (0, "a1", false),
        (0, "a2", false),
        (1, "c0", true),
        (1, "c1", false),
        (2, "d0", false),
    ]
    .into_iter()
    .map(|(branch, member, mobile)| chain.record(branch, joined(member, mobile)))
    .collect();
    chain.block(&records).expect("members join");
    chain
}
