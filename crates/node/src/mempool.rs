//! The mempool: records verified once on admission, waiting to be proposed.
//!
//! * **Admission** checks that the record is neither pending nor already committed, its
//!   stateless rules and the pool's room first, and only then the signatures of what is left
//!   (in one batch for a batch of records), so a record that must be refused anyway costs no
//!   signature work. Stateful rules are not checked here: a record may depend on another
//!   that is still pending (a member's first study session right after the member joined).
//! * **Bounded**: at most [`MempoolLimits::records_max`] records and
//!   [`MempoolLimits::bytes_max`] bytes. A full pool refuses with [`AdmitError::Full`], which
//!   the API turns into back-pressure (`RESOURCE_EXHAUSTED`), never unbounded memory.
//! * **After each commit** the committed records leave the pool, and the rest are re-checked
//!   in order against the new state; those that became invalid are dropped, and the reason is
//!   kept (bounded) so the API can report it later. A reason is forgotten when its record is
//!   admitted again or committed (in any validator's block), so a committed record is never
//!   reported as dropped.
//! * A record admitted here had its signatures verified; a proposal that carries the same
//!   record (same id, same signatures) need not verify it again ([`Mempool::is_verified`]).
//! * Records a peer sent that were refused for want of room are kept a little while,
//!   unverified and never proposed ([`OVERFLOW_RECORDS_MAX`], [`OVERFLOW_BYTES_MAX`]): another
//!   validator's compact proposal may name them by id, and the block is then rebuilt here
//!   rather than asked for whole ([`Mempool::find`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use branchledger_crypto::Hash;
use branchledger_state::{read, ApplyError, BlockExecutor, ReadError, StateReader};
use branchledger_types::{encoded_len, Genesis, Height, SignedRecord};

/// Bounds of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most pending records.
    pub records_max: usize,
    /// Most pending bytes (encoded records).
    pub bytes_max: usize,
    /// Most drop reasons remembered for the API.
    pub dropped_max: usize,
}

/// Default bound on pending records.
pub const MEMPOOL_RECORDS_MAX_DEFAULT: usize = 50_000;
/// Default bound on pending bytes.
pub const MEMPOOL_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Default number of drop reasons remembered.
pub const MEMPOOL_DROPPED_MAX_DEFAULT: usize = 10_000;
/// Most records from peers refused for want of room that are kept (oldest go first), so a
/// compact proposal naming them can be rebuilt here.
pub const OVERFLOW_RECORDS_MAX: usize = 20_000;
/// Most bytes (encoded) of such records kept.
pub const OVERFLOW_BYTES_MAX: usize = 8 * 1024 * 1024;

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            records_max: MEMPOOL_RECORDS_MAX_DEFAULT,
            bytes_max: MEMPOOL_BYTES_MAX_DEFAULT,
            dropped_max: MEMPOOL_DROPPED_MAX_DEFAULT,
        }
    }
}

/// Why a record was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The pool is full: try again later.
    #[error("mempool full ({records} records, {bytes} bytes pending): retry later")]
    Full {
        /// Records pending.
        records: usize,
        /// Bytes pending.
        bytes: usize,
    },
    /// The same record is already pending.
    #[error("record {0} is already pending")]
    Pending(Hash),
    /// The same record is already committed.
    #[error("record {0} is already committed at height {1}")]
    Committed(Hash, Height),
    /// A stateless rule or a signature failed.
    #[error("record {0} is invalid: {1}")]
    Invalid(Hash, String),
    /// State could not be read (the record may be fine).
    #[error("state read failed: {0}")]
    Read(#[from] ReadError),
}

/// Where a record is, as far as this pool knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStatus {
    /// Waiting to be proposed.
    Pending,
    /// Dropped after a commit made it invalid (or a proposal built here refused it), with
    /// the reason; not admitted again nor committed since.
    Dropped(String),
    /// Not known to the pool (never seen, committed, withdrawn, or its drop forgotten).
    Unknown,
}

struct Entry {
    record: SignedRecord,
    bytes: usize,
    sequence: u64,
    /// Admitted from this node's own clients (see [`Mempool::mark_local`]).
    local: bool,
}

/// The pool.
pub struct Mempool {
    limits: MempoolLimits,
    /// Pending records by id.
    entries: HashMap<Hash, Entry>,
    /// Arrival order: sequence → id. Proposals take records in this order.
    order: BTreeMap<u64, Hash>,
    next_sequence: u64,
    bytes: usize,
    /// Drops remembered, oldest first, at most `limits.dropped_max`: the record and the
    /// drop's number. An entry is stale once its record's reason was forgotten (the record
    /// was admitted again or committed) or replaced by a later drop; it is skipped when it
    /// leaves.
    dropped: VecDeque<(Hash, u64)>,
    /// The reason of each record's latest drop still remembered, with the drop's number.
    dropped_index: HashMap<Hash, (u64, String)>,
    /// The number of the next drop.
    next_drop: u64,
    /// Records from peers refused for want of room, oldest first (an id whose record has
    /// left `overflow_records` is skipped), and the records by id with their sizes.
    overflow: VecDeque<Hash>,
    overflow_records: HashMap<Hash, (SignedRecord, usize)>,
    overflow_bytes: usize,
}

impl Mempool {
    /// An empty pool.
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_sequence: 0,
            bytes: 0,
            dropped: VecDeque::new(),
            dropped_index: HashMap::new(),
            next_drop: 0,
            overflow: VecDeque::new(),
            overflow_records: HashMap::new(),
            overflow_bytes: 0,
        }
    }

    /// Pending records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pending bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Admits a batch of records. Returns one result per record, in order.
    ///
    /// The cheap checks come before any signature work, so what must be refused anyway costs
    /// no verification:
    ///
    /// 1. back-pressure: the records of a batch beyond the pool's free room (in records) when
    ///    the batch arrives are refused as [`AdmitError::Full`];
    /// 2. a record already pending ([`AdmitError::Pending`]) — same content, so same id,
    ///    whatever its signatures;
    /// 3. its stateless rules and chain ([`branchledger_verifier::check_record_stateless`]:
    ///    fields, co-signature count and distinctness), reported as that rule;
    /// 4. a record already committed ([`AdmitError::Committed`]: the store's record-id
    ///    lookup, a filter in front of it);
    /// 5. a record that would take the pending bytes over the bound, counting those of the
    ///    batch before it ([`AdmitError::Full`]).
    ///
    /// Only the records left are verified, their signatures in one batch; each keeps its
    /// first fault (the branch signature before the co-signatures).
    pub fn admit(
        &mut self,
        genesis: &Genesis,
        committed: &(impl StateReader + ?Sized),
        records: Vec<SignedRecord>,
    ) -> Vec<Result<Hash, AdmitError>> {
        self.admit_inner(genesis, committed, records, false)
    }

    /// Admits a batch of records a peer sent, as [`Mempool::admit`] does, and keeps those
    /// refused for want of room as [`OVERFLOW_RECORDS_MAX`] says.
    pub fn admit_from_peer(
        &mut self,
        genesis: &Genesis,
        committed: &(impl StateReader + ?Sized),
        records: Vec<SignedRecord>,
    ) -> Vec<Result<Hash, AdmitError>> {
        self.admit_inner(genesis, committed, records, true)
    }

    fn admit_inner(
        &mut self,
        genesis: &Genesis,
        committed: &(impl StateReader + ?Sized),
        mut records: Vec<SignedRecord>,
        keep_overflow: bool,
    ) -> Vec<Result<Hash, AdmitError>> {
        let room = self.limits.records_max.saturating_sub(self.entries.len());
        let beyond_room = records.len().saturating_sub(room);
        let beyond = records.split_off(records.len() - beyond_room);
        if keep_overflow {
            for record in beyond {
                self.keep_overflow(record.id(), record);
            }
        }
        let mut results: Vec<Result<Hash, AdmitError>> =
            Vec::with_capacity(records.len() + beyond_room);
        // The records that pass the cheap checks, with where their answer goes.
        let mut to_verify: Vec<SignedRecord> = Vec::new();
        let mut to_verify_at: Vec<(usize, Hash, usize)> = Vec::new();
        let mut batch_bytes = 0usize;
        for record in records {
            let id = record.id();
            match self.precheck(genesis, committed, &record, id, batch_bytes) {
                Ok(bytes) => {
                    batch_bytes += bytes;
                    to_verify_at.push((results.len(), id, bytes));
                    to_verify.push(record);
                    // Overwritten below with the record's own answer.
                    results.push(Ok(id));
                }
                Err(error) => {
                    if keep_overflow && matches!(error, AdmitError::Full { .. }) {
                        self.keep_overflow(id, record);
                    }
                    results.push(Err(error));
                }
            }
        }
        let mut verdicts: Vec<Result<(), AdmitError>> = vec![Ok(()); to_verify.len()];
        if !to_verify.is_empty() {
            if let Err(error) = branchledger_verifier::verify_records_batch(genesis, &to_verify) {
                for (index, record_id, reason) in error.bad {
                    // The first fault found for a record is the one reported.
                    if let Some(verdict @ Ok(())) = verdicts.get_mut(index) {
                        *verdict = Err(AdmitError::Invalid(record_id, reason.to_string()));
                    }
                }
            }
        }
        for ((record, (at, id, bytes)), verdict) in
            to_verify.into_iter().zip(to_verify_at).zip(verdicts)
        {
            results[at] = verdict.and_then(|()| self.insert(record, id, bytes));
        }
        let full = AdmitError::Full {
            records: self.entries.len(),
            bytes: self.bytes,
        };
        results.extend(std::iter::repeat_n(Err(full), beyond_room));
        results
    }

    /// The checks of [`Mempool::admit`] that need no signature work: pending, stateless
    /// rules, committed, and the byte bound with `batch_bytes` taken by the records of the
    /// batch before this one. Returns the record's encoded size.
    fn precheck(
        &self,
        genesis: &Genesis,
        committed: &(impl StateReader + ?Sized),
        record: &SignedRecord,
        id: Hash,
        batch_bytes: usize,
    ) -> Result<usize, AdmitError> {
        if self.entries.contains_key(&id) {
            return Err(AdmitError::Pending(id));
        }
        branchledger_verifier::check_record_stateless(genesis, record)
            .map_err(|reason| AdmitError::Invalid(id, reason.to_string()))?;
        if let Some(location) = read::record_location(committed, &id)? {
            return Err(AdmitError::Committed(id, location.height));
        }
        let bytes = encoded_len(record);
        if self.bytes + batch_bytes + bytes > self.limits.bytes_max {
            return Err(AdmitError::Full {
                records: self.entries.len(),
                bytes: self.bytes,
            });
        }
        Ok(bytes)
    }

    /// Adds a record whose checks passed. A record of the same batch may have taken its id
    /// since its checks ([`AdmitError::Pending`]); the bounds are checked again, exactly.
    fn insert(&mut self, record: SignedRecord, id: Hash, bytes: usize) -> Result<Hash, AdmitError> {
        if self.entries.contains_key(&id) {
            return Err(AdmitError::Pending(id));
        }
        if self.entries.len() + 1 > self.limits.records_max
            || self.bytes + bytes > self.limits.bytes_max
        {
            return Err(AdmitError::Full {
                records: self.entries.len(),
                bytes: self.bytes,
            });
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.order.insert(sequence, id);
        self.bytes += bytes;
        self.entries.insert(
            id,
            Entry {
                record,
                bytes,
                sequence,
                local: false,
            },
        );
        // Pending again: an old drop reason no longer describes it.
        self.forget_drop(&id);
        Ok(id)
    }

    /// Records in arrival order, up to `records_max` records and `bytes_max` bytes, for a
    /// proposal (the proposer still filters them through the state rules).
    pub fn candidates(&self, records_max: usize, bytes_max: usize) -> Vec<SignedRecord> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for id in self.order.values() {
            let Some(entry) = self.entries.get(id) else {
                continue;
            };
            if out.len() >= records_max || bytes + entry.bytes > bytes_max {
                break;
            }
            bytes += entry.bytes;
            out.push(entry.record.clone());
        }
        out
    }

    /// True if this exact record (same id and signatures) was admitted, so its signatures
    /// were verified.
    pub fn is_verified(&self, record: &SignedRecord, id: &Hash) -> bool {
        self.entries.get(id).is_some_and(|entry| {
            entry.record.signature == record.signature
                && entry.record.co_signatures == record.co_signatures
        })
    }

    /// Notes that pending records came from this node's own clients: this node sends them on
    /// to its peers, which may not hold them yet when it proposes them.
    pub fn mark_local(&mut self, ids: impl IntoIterator<Item = Hash>) {
        for id in ids {
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.local = true;
            }
        }
    }

    /// True if the record is pending and came from a peer (so the peers were sent it before
    /// this node had it): a proposal may name it by its id alone.
    pub fn came_from_peers(&self, id: &Hash) -> bool {
        self.entries.get(id).is_some_and(|entry| !entry.local)
    }

    /// A pending record.
    pub fn get(&self, id: &Hash) -> Option<&SignedRecord> {
        self.entries.get(id).map(|entry| &entry.record)
    }

    /// A pending record, or one a peer sent that was refused for want of room not long ago
    /// (its signatures not verified: [`Mempool::is_verified`] is false for it).
    pub fn find(&self, id: &Hash) -> Option<&SignedRecord> {
        self.get(id)
            .or_else(|| self.overflow_records.get(id).map(|(record, _)| record))
    }

    /// Keeps a record refused for want of room, as [`OVERFLOW_RECORDS_MAX`] says.
    fn keep_overflow(&mut self, id: Hash, record: SignedRecord) {
        let bytes = encoded_len(&record);
        if bytes > OVERFLOW_BYTES_MAX || self.overflow_records.contains_key(&id) {
            return;
        }
        while self.overflow.len() >= OVERFLOW_RECORDS_MAX
            || self.overflow_bytes + bytes > OVERFLOW_BYTES_MAX
        {
            let Some(old) = self.overflow.pop_front() else {
                break;
            };
            if let Some((_, old_bytes)) = self.overflow_records.remove(&old) {
                self.overflow_bytes -= old_bytes;
            }
        }
        self.overflow.push_back(id);
        self.overflow_records.insert(id, (record, bytes));
        self.overflow_bytes += bytes;
    }

    /// What the pool knows of a record.
    pub fn status(&self, id: &Hash) -> RecordStatus {
        if self.entries.contains_key(id) {
            RecordStatus::Pending
        } else if let Some((_, reason)) = self.dropped_index.get(id) {
            RecordStatus::Dropped(reason.clone())
        } else {
            RecordStatus::Unknown
        }
    }

    /// After a block at `height` is committed: removes its records, then, if `recheck` (the
    /// block held a record that may invalidate others, see
    /// [`branchledger_state::may_invalidate_pending`]), re-checks the rest in order against
    /// the new state (as if proposed in the next block at `next_time_ms`) and drops those that
    /// became invalid. Returns the dropped records with their reasons.
    pub fn on_commit(
        &mut self,
        genesis: &Genesis,
        committed_state: &dyn StateReader,
        committed_ids: &[Hash],
        recheck: bool,
        height: Height,
        next_time_ms: u64,
    ) -> Result<Vec<(Hash, String)>, ReadError> {
        for id in committed_ids {
            self.remove(id);
            // Committed (here or in another validator's block): no longer dropped.
            self.forget_drop(id);
            if let Some((_, bytes)) = self.overflow_records.remove(id) {
                self.overflow_bytes -= bytes;
            }
        }
        if !recheck {
            return Ok(Vec::new());
        }
        let mut executor = BlockExecutor::new(committed_state, genesis, height + 1, next_time_ms);
        let mut dropped = Vec::new();
        // Only what fits the next block is re-checked: the cost per commit stays bounded by
        // a block's size, and the rest is checked when it moves up.
        let recheck_max = genesis.consensus.max_block_records as usize;
        let pending: Vec<Hash> = self.order.values().take(recheck_max).copied().collect();
        for id in pending {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            match executor.apply_with_id(&entry.record, id) {
                Ok(_) => {}
                Err(ApplyError::Rejected(reason)) => dropped.push((id, reason.to_string())),
                Err(ApplyError::Read(error)) => return Err(error),
            }
        }
        for (id, reason) in &dropped {
            self.remove(id);
            self.remember_drop(*id, reason.clone());
        }
        Ok(dropped)
    }

    /// Drops records a proposal built here left out because they break a state rule against
    /// the committed state and the records before them, remembering the reasons.
    pub fn drop_refused(&mut self, refused: &[(Hash, String)]) {
        for (id, reason) in refused {
            if self.entries.contains_key(id) {
                self.remove(id);
                self.remember_drop(*id, reason.clone());
            }
        }
    }

    /// Takes a pending record back out (the API found it breaks a state rule before it was
    /// gossiped). Returns whether it was pending.
    pub fn withdraw(&mut self, id: &Hash) -> bool {
        let pending = self.entries.contains_key(id);
        self.remove(id);
        pending
    }

    fn remove(&mut self, id: &Hash) {
        if let Some(entry) = self.entries.remove(id) {
            self.order.remove(&entry.sequence);
            self.bytes -= entry.bytes;
        }
    }

    fn remember_drop(&mut self, id: Hash, reason: String) {
        if self.limits.dropped_max == 0 {
            return;
        }
        while self.dropped.len() >= self.limits.dropped_max {
            let Some((old, number)) = self.dropped.pop_front() else {
                break;
            };
            // Only the entry of the record's latest drop takes its reason along.
            if self
                .dropped_index
                .get(&old)
                .is_some_and(|(latest, _)| *latest == number)
            {
                self.dropped_index.remove(&old);
            }
        }
        let number = self.next_drop;
        self.next_drop += 1;
        self.dropped.push_back((id, number));
        self.dropped_index.insert(id, (number, reason));
    }

    /// Forgets why a record was dropped: it is pending again, or committed.
    fn forget_drop(&mut self, id: &Hash) {
        // Its queue entry stays, stale, until it leaves by age: the queue's bound holds.
        self.dropped_index.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use branchledger_crypto::{Keypair, Signer};
    use branchledger_state::{apply_block, MemState};
    use branchledger_types::genesis::{
        peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
    };
    use branchledger_types::limits::CO_SIGNATURES_MAX;
    use branchledger_types::record::{
        AbsenceReason, Absentee, Attendee, CoSignature, LeaveReason, MeetingHeld, MeetingKind,
        MemberJoined, MemberLeft, MemberStatus, StudyForm, StudySession,
    };
    use branchledger_types::{BranchId, Date, MeetingId, MemberId, Record, RecordBody};

    const NOW_MS: u64 = 1_767_225_600_000; // 2026-01-01

    fn branch_key() -> Keypair {
        Keypair::from_seed([1; 32])
    }

    fn genesis() -> Genesis {
        Genesis {
            chain_id: "test".into(),
            genesis_time_ms: NOW_MS - 1,
            validators: vec![Validator {
                name: "v0".into(),
                branch_id: BranchId("b0".into()),
                consensus_key: Keypair::from_seed([2; 32]).public_key(),
                peer_id: peer_id_of(&Keypair::from_seed([3; 32]).public_key()),
            }],
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

    fn record(nonce: u64, body: RecordBody) -> SignedRecord {
        Record {
            chain_id: "test".into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: NOW_MS,
            nonce,
            body,
        }
        .sign(&branch_key())
    }

    fn join(member: &str) -> SignedRecord {
        record(
            0,
            RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(member.into()),
                joined_on: Date::new(2025, 12, 1),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        )
    }

    fn study(member: &str, nonce: u64) -> SignedRecord {
        record(
            nonce,
            RecordBody::StudySession(StudySession {
                member_id: MemberId(member.into()),
                material: "handbook".into(),
                minutes: 30,
                form: StudyForm::SelfStudy,
                occurred_on: Date::new(2025, 12, 2),
            }),
        )
    }

    fn commit(state: &mut MemState, genesis: &Genesis, height: Height, records: &[SignedRecord]) {
        let (delta, _) =
            apply_block(state, genesis, height, NOW_MS, records, &Hash::ZERO).expect("valid block");
        state.apply_block(height, records, delta);
    }

    #[test]
    fn admits_verified_records_and_refuses_duplicates_and_bad_signatures() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let a = join("m1");
        let mut bad = study("m1", 1);
        bad.signature.0[0] ^= 1;
        let results = pool.admit(
            &genesis,
            &state,
            vec![a.clone(), a.clone(), bad.clone(), study("m1", 2)],
        );
        assert_eq!(results[0], Ok(a.id()));
        assert_eq!(results[1], Err(AdmitError::Pending(a.id())));
        assert!(
            matches!(&results[2], Err(AdmitError::Invalid(id, reason)) if *id == bad.id() && reason.contains("signature")),
            "{:?}",
            results[2]
        );
        assert!(results[3].is_ok());
        assert_eq!(pool.len(), 2);
        assert!(pool.is_verified(&a, &a.id()));
        assert!(!pool.is_verified(&bad, &bad.id()));
        // Once committed, the same record is refused as committed.
        commit(&mut state, &genesis, 1, std::slice::from_ref(&a));
        pool.on_commit(&genesis, &state, &[a.id()], true, 1, NOW_MS)
            .expect("recheck");
        assert_eq!(
            pool.admit(&genesis, &state, vec![a.clone()])[0],
            Err(AdmitError::Committed(a.id(), 1))
        );
        assert_eq!(pool.len(), 1);
    }

    /// A pool bounded by record count only.
    fn pool_of(records_max: usize) -> Mempool {
        Mempool::new(MempoolLimits {
            records_max,
            bytes_max: usize::MAX,
            dropped_max: 10,
        })
    }

    #[test]
    fn full_pool_gives_back_pressure_not_growth() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = pool_of(3);
        let records: Vec<SignedRecord> = (0..5).map(|i| study("m1", i)).collect();
        let results = pool.admit(&genesis, &state, records);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(matches!(
            results[3],
            Err(AdmitError::Full { records: 3, .. })
        ));
        assert_eq!(pool.len(), 3);
        let bytes = pool.bytes();
        let mut small = Mempool::new(MempoolLimits {
            records_max: 100,
            bytes_max: bytes / 3 * 2,
            dropped_max: 10,
        });
        let results = small.admit(&genesis, &state, (0..3).map(|i| study("m1", i)).collect());
        assert!(
            matches!(results[2], Err(AdmitError::Full { .. })),
            "{results:?}"
        );
    }

    #[test]
    fn records_beyond_the_free_room_are_refused_before_their_signatures_are_checked() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = pool_of(3);
        let mut bad = study("m1", 10);
        bad.signature.0[0] ^= 1;
        // Room for three: the first three are checked (two admitted, one refused as
        // invalid), the fourth refused as full, its bad signature not even looked at.
        let results = pool.admit(
            &genesis,
            &state,
            vec![study("m1", 1), bad.clone(), study("m1", 2), bad.clone()],
        );
        assert!(
            results[0].is_ok()
                && matches!(results[1], Err(AdmitError::Invalid(..)))
                && results[2].is_ok(),
            "{results:?}"
        );
        assert!(
            matches!(results[3], Err(AdmitError::Full { records: 2, .. })),
            "{results:?}"
        );
        assert_eq!(results.len(), 4);
        assert_eq!(pool.len(), 2);
        // Room for one more, then none: a bad record is refused as full, not as invalid.
        assert!(pool.admit(&genesis, &state, vec![study("m1", 3)])[0].is_ok());
        assert!(
            matches!(
                pool.admit(&genesis, &state, vec![bad])[0],
                Err(AdmitError::Full { records: 3, .. })
            ),
            "a full pool checks nothing"
        );
    }

    #[test]
    fn records_from_peers_refused_for_room_are_found_but_never_proposed_nor_trusted() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = pool_of(2);
        let records: Vec<SignedRecord> = (0..4).map(|i| study("m1", i)).collect();
        let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
        // From a client: refused, not kept.
        let results = pool.admit(&genesis, &state, records[..3].to_vec());
        assert!(matches!(results[2], Err(AdmitError::Full { .. })));
        assert!(pool.find(&ids[2]).is_none());
        // From a peer: refused, kept, found for a compact proposal, and that is all.
        let results = pool.admit_from_peer(&genesis, &state, records[2..].to_vec());
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(AdmitError::Full { .. }))));
        for (id, record) in ids[2..].iter().zip(&records[2..]) {
            assert_eq!(pool.find(id), Some(record));
            assert!(pool.get(id).is_none());
            assert!(!pool.is_verified(record, id));
            assert_eq!(pool.status(id), RecordStatus::Unknown);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.candidates(10, usize::MAX).len(), 2);
        // Committed elsewhere: forgotten.
        pool.on_commit(&genesis, &state, &ids[2..3], false, 1, 0)
            .expect("commit");
        assert!(pool.find(&ids[2]).is_none());
        assert!(pool.find(&ids[3]).is_some());
    }

    #[test]
    fn candidates_come_in_arrival_order_within_limits() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let records: Vec<SignedRecord> = (0..10).map(|i| study("m1", i)).collect();
        pool.admit(&genesis, &state, records.clone());
        assert_eq!(pool.candidates(4, usize::MAX), records[..4].to_vec());
        let one = records[0].to_bytes().len();
        assert_eq!(pool.candidates(100, one * 2 + 1).len(), 2);
    }

    #[test]
    fn records_made_invalid_by_a_commit_are_dropped_with_a_reason() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let joined = join("m1");
        commit(&mut state, &genesis, 1, std::slice::from_ref(&joined));
        let pending_study = study("m1", 7);
        let orphan = study("nobody", 8);
        pool.admit(
            &genesis,
            &state,
            vec![pending_study.clone(), orphan.clone()],
        );
        // The member leaves in block 2: the pending study session can never be committed.
        let left = record(
            9,
            RecordBody::MemberLeft(MemberLeft {
                member_id: MemberId("m1".into()),
                reason: LeaveReason::Resigned,
            }),
        );
        commit(&mut state, &genesis, 2, std::slice::from_ref(&left));
        let dropped = pool
            .on_commit(&genesis, &state, &[left.id()], true, 2, NOW_MS)
            .expect("recheck");
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(pool.is_empty());
        assert!(
            matches!(pool.status(&pending_study.id()), RecordStatus::Dropped(reason) if reason.contains("m1"))
        );
        assert!(matches!(
            pool.status(&orphan.id()),
            RecordStatus::Dropped(_)
        ));
        assert_eq!(pool.status(&joined.id()), RecordStatus::Unknown);
    }

    #[test]
    fn a_block_of_study_and_dues_only_skips_the_recheck_and_a_proposal_drops_what_it_refused() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let joined = join("m1");
        commit(&mut state, &genesis, 1, std::slice::from_ref(&joined));
        let orphan = study("nobody", 3);
        pool.admit(&genesis, &state, vec![orphan.clone()]);
        let session = study("m1", 4);
        commit(&mut state, &genesis, 2, std::slice::from_ref(&session));
        let recheck = branchledger_state::may_invalidate_pending(session.record.body.kind());
        assert!(!recheck);
        let dropped = pool
            .on_commit(&genesis, &state, &[session.id()], recheck, 2, NOW_MS)
            .expect("no recheck");
        assert!(dropped.is_empty());
        assert_eq!(pool.status(&orphan.id()), RecordStatus::Pending);
        // The proposer refuses it when it builds a block: it leaves the pool with the reason.
        pool.drop_refused(&[(orphan.id(), "member nobody is not registered".into())]);
        assert!(
            matches!(pool.status(&orphan.id()), RecordStatus::Dropped(reason) if reason.contains("nobody"))
        );
        assert!(pool.is_empty());
        assert!(branchledger_state::may_invalidate_pending(
            joined.record.body.kind()
        ));
    }

    /// A record of `attendees` attendees and as many absentees, each id 64 characters long:
    /// about 28 KiB of canonical bytes for 200, the message every co-signature signs.
    fn big_meeting(nonce: u64, attendees: usize) -> SignedRecord {
        let id = |prefix: &str, i: usize| MemberId(format!("{prefix}{i:0>62}"));
        record(
            nonce,
            RecordBody::MeetingHeld(MeetingHeld {
                meeting_id: MeetingId(format!("mt-{nonce}")),
                kind: MeetingKind::Lecture,
                topic: "Spring lecture".into(),
                held_on: Date::new(2025, 12, 3),
                attendees: (0..attendees)
                    .map(|i| Attendee {
                        member_id: id("a-", i),
                        guest: false,
                    })
                    .collect(),
                absentees: (0..attendees)
                    .map(|i| Absentee {
                        member_id: id("b-", i),
                        reason: AbsenceReason::Work,
                    })
                    .collect(),
            }),
        )
    }

    /// `count` co-signatures by one key over another message: each would fail verification,
    /// and there are far more than the rule allows.
    fn crowd_of_co_signatures(record: &mut SignedRecord, count: usize) {
        let key = Keypair::from_seed([9; 32]);
        let co = CoSignature {
            public_key: key.public_key(),
            signature: key.sign(b"something else"),
        };
        record.co_signatures = vec![co; count];
    }

    #[test]
    fn pending_and_committed_copies_are_answered_without_their_signatures() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let a = join("m1");
        assert_eq!(pool.admit(&genesis, &state, vec![a.clone()])[0], Ok(a.id()));
        // The same content (so the same id) under a forged signature: a duplicate, whatever
        // its signature.
        let mut forged = a.clone();
        forged.signature.0[0] ^= 1;
        assert_eq!(
            pool.admit(&genesis, &state, vec![forged.clone()])[0],
            Err(AdmitError::Pending(a.id()))
        );
        commit(&mut state, &genesis, 1, std::slice::from_ref(&a));
        pool.on_commit(&genesis, &state, &[a.id()], true, 1, NOW_MS)
            .expect("recheck");
        assert_eq!(
            pool.admit(&genesis, &state, vec![forged])[0],
            Err(AdmitError::Committed(a.id(), 1))
        );
    }

    #[test]
    fn records_over_the_byte_bound_are_refused_before_their_signatures_are_checked() {
        let genesis = genesis();
        let state = MemState::new();
        let one = encoded_len(&study("m1", 1));
        let mut pool = Mempool::new(MempoolLimits {
            records_max: 100,
            bytes_max: one * 2,
            dropped_max: 10,
        });
        let mut bad = study("m1", 3);
        bad.signature.0[0] ^= 1;
        // Room in bytes for two: the third, bad as it is, is refused as full.
        let results = pool.admit(&genesis, &state, vec![study("m1", 1), study("m1", 2), bad]);
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(
            matches!(results[2], Err(AdmitError::Full { records: 0, .. })),
            "{results:?}"
        );
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn a_record_breaking_a_stateless_rule_reports_the_rule_not_its_signatures() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let mut crowded = study("m1", 5);
        crowded.signature.0[0] ^= 1;
        crowd_of_co_signatures(&mut crowded, CO_SIGNATURES_MAX + 1);
        let fine = study("m1", 6);
        let results = pool.admit(&genesis, &state, vec![crowded.clone(), fine.clone()]);
        match &results[0] {
            Err(AdmitError::Invalid(id, reason)) => {
                assert_eq!(*id, crowded.id());
                assert!(
                    reason.contains("co_signatures") && !reason.contains("signature:"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(results[1], Ok(fine.id()));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn oversized_co_signature_lists_cost_no_signature_work() {
        let genesis = genesis();
        let state = MemState::new();
        // Records of about 160 KiB with 1 360 co-signatures each, far over the rule's 4.
        let records: Vec<SignedRecord> = (0..2)
            .map(|nonce| {
                let mut record = big_meeting(nonce, 200);
                crowd_of_co_signatures(&mut record, 1_360);
                assert!(record.to_bytes().len() > 150 * 1024);
                record
            })
            .collect();
        // What verifying their signatures costs here (the work admission used to do first).
        let started = std::time::Instant::now();
        assert!(branchledger_verifier::verify_records_batch(&genesis, &records).is_err());
        let verifying = started.elapsed();
        let mut pool = Mempool::new(MempoolLimits::default());
        let started = std::time::Instant::now();
        let results = pool.admit(&genesis, &state, records.clone());
        let admitting = started.elapsed();
        for (record, result) in records.iter().zip(&results) {
            assert!(
                matches!(result, Err(AdmitError::Invalid(id, reason))
                    if *id == record.id() && reason.contains("co_signatures")),
                "{result:?}"
            );
        }
        assert!(pool.is_empty());
        // Refusing them takes a small fraction of verifying them (the ratio keeps the check
        // independent of the machine's speed).
        assert!(
            admitting * 10 < verifying,
            "admission took {admitting:?}; verifying the signatures takes {verifying:?}"
        );
    }

    #[test]
    fn a_dropped_record_committed_later_is_not_reported_dropped() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        // Dropped here (its member is not registered yet)...
        let session = study("m1", 3);
        pool.admit(&genesis, &state, vec![session.clone()]);
        pool.drop_refused(&[(session.id(), "member m1 is not registered".into())]);
        assert!(matches!(
            pool.status(&session.id()),
            RecordStatus::Dropped(_)
        ));
        // ... then committed in a block another validator proposed, after the member joined.
        let joined = join("m1");
        commit(&mut state, &genesis, 1, std::slice::from_ref(&joined));
        commit(&mut state, &genesis, 2, std::slice::from_ref(&session));
        pool.on_commit(&genesis, &state, &[session.id()], false, 2, NOW_MS)
            .expect("no recheck");
        assert_eq!(pool.status(&session.id()), RecordStatus::Unknown);
    }

    #[test]
    fn a_dropped_record_admitted_again_forgets_its_old_drop() {
        let genesis = genesis();
        let mut state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits::default());
        let session = study("m1", 3);
        pool.admit(&genesis, &state, vec![session.clone()]);
        pool.drop_refused(&[(session.id(), "member m1 is not registered".into())]);
        // Admitted again once the member has joined: pending, and the old reason is gone...
        let joined = join("m1");
        commit(&mut state, &genesis, 1, std::slice::from_ref(&joined));
        assert_eq!(
            pool.admit(&genesis, &state, vec![session.clone()])[0],
            Ok(session.id())
        );
        assert_eq!(pool.status(&session.id()), RecordStatus::Pending);
        // ... so it is not reported once it leaves the pool another way,
        pool.withdraw(&session.id());
        assert_eq!(pool.status(&session.id()), RecordStatus::Unknown);
        // nor when it commits after being admitted again.
        pool.admit(&genesis, &state, vec![session.clone()]);
        pool.drop_refused(&[(session.id(), "refused once more".into())]);
        pool.admit(&genesis, &state, vec![session.clone()]);
        commit(&mut state, &genesis, 2, std::slice::from_ref(&session));
        pool.on_commit(&genesis, &state, &[session.id()], false, 2, NOW_MS)
            .expect("no recheck");
        assert_eq!(pool.status(&session.id()), RecordStatus::Unknown);
        // A later drop of another record still evicts by age only what it should.
        let other = study("m1", 4);
        pool.admit(&genesis, &state, vec![other.clone()]);
        pool.drop_refused(&[(other.id(), "why".into())]);
        assert_eq!(
            pool.status(&other.id()),
            RecordStatus::Dropped("why".into())
        );
    }

    #[test]
    fn drop_reasons_are_bounded() {
        let genesis = genesis();
        let state = MemState::new();
        let mut pool = Mempool::new(MempoolLimits {
            records_max: 100,
            bytes_max: usize::MAX,
            dropped_max: 2,
        });
        let orphans: Vec<SignedRecord> = (0..5).map(|i| study("nobody", i)).collect();
        pool.admit(&genesis, &state, orphans.clone());
        let dropped = pool
            .on_commit(&genesis, &state, &[], true, 1, NOW_MS)
            .expect("recheck");
        assert_eq!(dropped.len(), 5);
        assert_eq!(pool.status(&orphans[0].id()), RecordStatus::Unknown);
        assert!(matches!(
            pool.status(&orphans[4].id()),
            RecordStatus::Dropped(_)
        ));
    }
}
