//! The consensus driver: the shell around the pure consensus core.
//!
//! It feeds the core its inputs (messages whose signatures it checked, timeouts that fired,
//! the application's answers) and carries out the core's effects **in order**: a
//! `PersistSafety` is written and synced before the next effect runs, so no vote leaves the
//! node before the state that covers it is on disk; a `Decide` is stored (one synced batch)
//! before the effects of the next height.
//!
//! The driver itself is synchronous and deterministic: time comes in as an argument, messages
//! leave through the [`Network`] trait, and the async node loop (or a test harness) moves
//! bytes and fires timers. That keeps the rules of *when* to do what testable without a
//! runtime.
//!
//! **No empty blocks while idle.** After a commit, this node does not start the propose
//! timeout of the next height, and does not answer a request to propose, until it has records
//! to propose, a peer has started the height (a proposal or vote for it arrived), or the
//! genesis heartbeat has elapsed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use branchledger_consensus::{Config, Core, Effect, Input, Message, Step, PROPOSALS_PER_ROUND_MAX};
use branchledger_crypto::{verify, Hash, Keypair, Signer};
use branchledger_state::{ApplyError, BlockExecutor, StateDelta};
use branchledger_types::wire::{BlockWanted, CompactBlock, CompactRecord};
use branchledger_types::{
    Block, BlockHeader, CommittedBlock, Evidence, Height, Round, SignedProposal, SignedRecord,
    SignedVote,
};
use branchledger_verifier::VerificationError;

use crate::ledger::{Ledger, LedgerError};
use crate::mempool::{AdmitError, Mempool};
use crate::safety_file::{SafetyFile, SafetyFileError};

/// Most evidence reports kept for the API.
pub const EVIDENCE_KEPT_MAX: usize = 1_000;
/// Most proposed blocks kept while their height is undecided. Only blocks of the height being
/// decided and the next one are kept, at most [`PROPOSALS_PER_ROUND_MAX`] per round, and when
/// the cache is full the block of the latest round goes first (never one this node checked,
/// nor its locked or valid value): a faulty validator's blocks for far rounds cannot take the
/// place of the current round's.
pub const BLOCKS_KEPT_MAX: usize = 64;
/// Compact proposals held while records they name are missing here, to be completed by the
/// records topic (the whole block is asked for after [`BLOCK_WANTED_DELAY`]). Only proposals
/// signed by the proposer of their height and round, for the height being decided or the next,
/// are held; when full, the one of the latest height and round goes first.
pub const PENDING_BLOCKS_MAX: usize = 8;
/// How long a compact proposal's block waits for its missing records from the records topic
/// before it is asked for whole. The records a proposal names by id reached its proposer from
/// peers, so they are nearly always on their way here too, often queued behind the proposal
/// itself (the node loop takes consensus messages first); asking at once would have the
/// proposer send the whole block to every peer for records that arrive a moment later.
pub const BLOCK_WANTED_DELAY: Duration = Duration::from_millis(20);
/// Most times a proposer answers requests for one block of its own whole. One answer reaches
/// every peer, so this many covers every validator asking, and a peer asking again and again
/// cannot make it send a large block without end.
pub const BLOCK_ANSWERS_MAX: u32 = 8;
/// Least time between two answers for one block: requests of several peers that arrive
/// together get one answer.
pub const BLOCK_ANSWER_INTERVAL: Duration = Duration::from_millis(50);

/// A message to every other validator.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// A proposal with its block.
    Proposal(SignedProposal, Box<Block>),
    /// A proposal with its block in compact form (records the peers hold as ids).
    CompactProposal(SignedProposal, Box<CompactBlock>),
    /// A request for the whole block of a compact proposal this node could not rebuild.
    BlockWanted(BlockWanted),
    /// A vote.
    Vote(SignedVote),
    /// Records admitted here, for the other mempools.
    Records(Vec<SignedRecord>),
}

/// Where outbound messages go.
pub trait Network {
    /// Sends to every peer (best effort; consensus tolerates loss).
    fn broadcast(&mut self, message: Outbound);
}

/// Whether a committed block holds a record that may make a pending one invalid.
fn may_invalidate_any(block: &Block) -> bool {
    block
        .records
        .iter()
        .any(|r| branchledger_state::may_invalidate_pending(r.record.body.kind()))
}

/// Why a client's record was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Not admitted to the mempool.
    #[error(transparent)]
    Admit(#[from] AdmitError),
    /// It breaks a state rule against the current state.
    #[error("record {0} breaks a state rule: {1}")]
    Rejected(Hash, String),
}

/// A failure that stops the node: continuing could break safety.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The safety state could not be synced.
    #[error(transparent)]
    Safety(#[from] SafetyFileError),
    /// A decided block could not be stored.
    #[error("storing a decided block failed: {0}")]
    Commit(#[from] LedgerError),
    /// The core could not be built.
    #[error("consensus: {0}")]
    Consensus(String),
}

/// A timer: when it fires, a sequence number (so equal instants keep their order), and the
/// timeout it carries.
type Timer = (Instant, u64, Height, Round, Step);

/// What happened to a message from a peer, reported back to the network: forwarded if
/// accepted, counted against the sender if rejected.
pub use branchledger_p2p::Verdict;

/// A block committed by this node, for waiters and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Its height.
    pub height: Height,
    /// The ids of its records.
    pub record_ids: Vec<Hash>,
    /// Its time.
    pub time_ms: u64,
    /// The round that decided it (above 0: earlier rounds of the height failed).
    pub round: Round,
}

/// A proposed block kept until its height is decided, with the latest round it was proposed in.
#[derive(Debug)]
struct KeptBlock {
    round: Round,
    block: Block,
    /// This node's own latest proposal of the block, to answer requests for it whole.
    own: Option<SignedProposal>,
    /// Requests answered so far ([`BLOCK_ANSWERS_MAX`]) and when the last was.
    answers: u32,
    answered_at: Option<Instant>,
}

impl KeptBlock {
    fn new(round: Round, block: Block) -> KeptBlock {
        KeptBlock {
            round,
            block,
            own: None,
            answers: 0,
            answered_at: None,
        }
    }
}

/// A compact proposal's block waiting for records this node does not hold.
#[derive(Debug)]
struct PendingBlock {
    round: Round,
    header: BlockHeader,
    /// The records in block order; `None` where one is missing.
    records: Vec<Option<SignedRecord>>,
    /// The missing records: their positions, by id.
    missing: HashMap<Hash, Vec<usize>>,
    /// When to ask for the whole block if it is still incomplete; `None` once asked.
    ask_at: Option<Instant>,
}

/// How compact proposals fared, counted since the last [`Driver::take_compact_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactCounts {
    /// Compact proposals sent (by this node as proposer).
    pub sent: u64,
    /// Records named by id alone in them.
    pub ids_sent: u64,
    /// Compact proposals received whose block was rebuilt at once from the mempool.
    pub rebuilt: u64,
    /// Compact proposals received that lacked records here, so the block was asked for.
    pub wanted: u64,
    /// Requests for a whole block this node answered.
    pub answered: u64,
}

/// The driver of one node.
pub struct Driver {
    core: Core,
    ledger: Ledger,
    mempool: Mempool,
    safety: SafetyFile,
    /// Blocks proposed for undecided heights, by id (see [`BLOCKS_KEPT_MAX`]).
    blocks: HashMap<Hash, KeptBlock>,
    /// Deltas of blocks checked (or built) here, by id.
    deltas: HashMap<Hash, (StateDelta, Vec<Hash>)>,
    /// Blocks the core asked to validate that have not arrived yet.
    awaiting: BTreeMap<(Height, Hash), Round>,
    /// Compact proposals' blocks waiting for records, by id (see [`PENDING_BLOCKS_MAX`]).
    pending: HashMap<Hash, PendingBlock>,
    compact: CompactCounts,
    /// A request to propose, held while idle.
    deferred_request: Option<(Height, Round)>,
    /// Propose timeouts held while idle.
    deferred_timeouts: Vec<(Height, Round, Step, u64)>,
    /// A peer started this height (so this node takes part even with nothing to propose).
    height_started_by_peer: Option<Height>,
    /// A height a quorum decided here without this node holding the block: at or above the
    /// stored tip's successor means this node is behind and must sync.
    highest_seen: Height,
    /// The highest height each validator signed a message for (by index). Only heights that
    /// f+1 validators reached count (at least one of them honest), so a faulty validator's
    /// claim of a far height cannot keep this node asking for blocks nobody has.
    claimed: Vec<Height>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_sequence: u64,
    evidence: VecDeque<Evidence>,
    /// Commits since the last call to [`Driver::take_committed`].
    committed: Vec<Committed>,
    /// Records dropped from the mempool since the last call to [`Driver::take_dropped`].
    dropped: Vec<(Hash, String)>,
    /// Fault tests only: the key this validator equivocates with ([`Driver::equivocate`]).
    equivocation: Option<Keypair>,
    /// Inputs produced by effects, handled after the current effects.
    queue: VecDeque<Input>,
    /// The clock's origin, so the driver can turn an `Instant` into Unix milliseconds.
    epoch: Instant,
    epoch_ms: u64,
    last_commit: Instant,
}

impl Driver {
    /// A driver for `ledger`, signing with `consensus_key` (none: an observer), resuming from
    /// the safety state in `safety` if there is one.
    pub fn new(
        ledger: Ledger,
        mempool: Mempool,
        mut safety: SafetyFile,
        consensus_key: Option<Keypair>,
        now: Instant,
        now_ms: u64,
    ) -> Result<Driver, DriverError> {
        let genesis = ledger.genesis();
        let restored = safety.load()?;
        let config = Config::new(genesis.chain_id.clone(), genesis.consensus.clone());
        let signer = consensus_key.map(|k| Box::new(k) as Box<dyn Signer + Send>);
        let core = Core::new(config, ledger.validators().clone(), signer, restored)
            .map_err(|e| DriverError::Consensus(e.to_string()))?;
        let validator_count = ledger.validators().len();
        Ok(Driver {
            core,
            ledger,
            mempool,
            safety,
            blocks: HashMap::new(),
            deltas: HashMap::new(),
            awaiting: BTreeMap::new(),
            pending: HashMap::new(),
            compact: CompactCounts::default(),
            deferred_request: None,
            deferred_timeouts: Vec::new(),
            height_started_by_peer: None,
            highest_seen: 0,
            claimed: vec![0; validator_count],
            timers: BinaryHeap::new(),
            timer_sequence: 0,
            evidence: VecDeque::new(),
            committed: Vec::new(),
            dropped: Vec::new(),
            equivocation: None,
            queue: VecDeque::new(),
            epoch: now,
            epoch_ms: now_ms,
            last_commit: now,
        })
    }

    fn now_ms(&self, now: Instant) -> u64 {
        self.epoch_ms + now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The height and round being decided.
    pub fn position(&self) -> (Height, Round) {
        (self.core.height(), self.core.round())
    }

    /// Evidence of misbehaviour seen so far (most recent last).
    pub fn evidence(&self) -> impl Iterator<Item = &Evidence> {
        self.evidence.iter()
    }

    /// How compact proposals fared since the last call.
    pub fn take_compact_counts(&mut self) -> CompactCounts {
        std::mem::take(&mut self.compact)
    }

    /// Blocks committed since the last call.
    pub fn take_committed(&mut self) -> Vec<Committed> {
        std::mem::take(&mut self.committed)
    }

    /// For fault tests only: from now on this validator equivocates, signing with `key` a
    /// second, conflicting vote for every vote it sends and a second proposal (of the same
    /// block a millisecond later) for every proposal. The honest validators must neither fork
    /// nor miss the evidence.
    pub fn equivocate(&mut self, key: Keypair) {
        self.equivocation = Some(key);
    }

    fn equivocate_vote(&self, vote: &SignedVote, net: &mut dyn Network) {
        let Some(key) = &self.equivocation else {
            return;
        };
        let mut twin = vote.vote;
        twin.block_id = match twin.block_id {
            Some(_) => None,
            None => Some(Hash::of(b"a block nobody proposed")),
        };
        net.broadcast(Outbound::Vote(
            twin.sign(&self.ledger.genesis().chain_id, key),
        ));
    }

    fn equivocate_proposal(&self, proposal: &SignedProposal, block: &Block, net: &mut dyn Network) {
        let Some(key) = &self.equivocation else {
            return;
        };
        let mut twin = block.clone();
        twin.header.time_ms += 1;
        let mut signed = proposal.proposal;
        signed.block_id = twin.id();
        net.broadcast(Outbound::Proposal(
            signed.sign(&self.ledger.genesis().chain_id, key),
            Box::new(twin),
        ));
    }

    /// Records dropped from the mempool since the last call (a commit made them invalid), with
    /// the reasons.
    pub fn take_dropped(&mut self) -> Vec<(Hash, String)> {
        std::mem::take(&mut self.dropped)
    }

    /// One record from a client, checked further than [`Driver::submit`] does: after
    /// admission (stateless rules, signatures, duplicates, bounds) it must also pass the state
    /// rules against the committed state, or, failing that, after the records pending before
    /// it — so a client learns at once that it names an unknown member, yet may submit a
    /// member's first study session right after the member joined. A record that fails is
    /// withdrawn before it is gossiped. Passing is no promise: a record committed in between
    /// can still make it invalid, and then it is dropped with a reason.
    pub fn submit_checked(
        &mut self,
        record: SignedRecord,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Result<Hash, SubmitError>, DriverError> {
        let admitted = self
            .mempool
            .admit(
                self.ledger.genesis(),
                self.ledger.store().as_ref(),
                vec![record.clone()],
            )
            .pop()
            .expect("one result per record");
        let id = match admitted {
            Ok(id) => id,
            Err(error) => return Ok(Err(SubmitError::Admit(error))),
        };
        if let Err(reason) = self.precheck(&record, id, now) {
            self.mempool.withdraw(&id);
            return Ok(Err(SubmitError::Rejected(id, reason)));
        }
        self.mempool.mark_local([id]);
        net.broadcast(Outbound::Records(vec![record]));
        self.fill_pending(&[id], now, net)?;
        self.release_if_ready(now, net)?;
        Ok(Ok(id))
    }

    fn precheck(&self, record: &SignedRecord, id: Hash, now: Instant) -> Result<(), String> {
        let genesis = self.ledger.genesis();
        let store = self.ledger.store().as_ref();
        let height = self.ledger.next_height().map_err(|e| e.to_string())?;
        let time_ms = self.now_ms(now);
        fn apply<'r>(
            executor: &mut BlockExecutor<'r>,
            record: &'r SignedRecord,
            id: Hash,
        ) -> Result<(), String> {
            match executor.apply_with_id(record, id) {
                Ok(_) => Ok(()),
                Err(ApplyError::Rejected(reason)) => Err(reason.to_string()),
                Err(ApplyError::Read(error)) => Err(error.to_string()),
            }
        }
        let mut alone = BlockExecutor::new(store, genesis, height, time_ms);
        let Err(first) = apply(&mut alone, record, id) else {
            return Ok(());
        };
        // It may depend on records still pending: apply those that would go first.
        let candidates = self.mempool.candidates(
            genesis.consensus.max_block_records as usize,
            genesis.consensus.max_block_bytes as usize,
        );
        let mut after_pending = BlockExecutor::new(store, genesis, height, time_ms);
        for pending in candidates.iter().filter(|r| r.id() != id) {
            let _ = after_pending.apply(pending);
        }
        apply(&mut after_pending, record, id).map_err(|_| first)
    }

    /// Starts consensus at the height after the stored tip.
    pub fn start(&mut self, now: Instant, net: &mut dyn Network) -> Result<(), DriverError> {
        let height = self.ledger.next_height()?;
        self.last_commit = now;
        self.step(Input::Start { height }, now, net)
    }

    /// Records from a client or a peer: admitted to the mempool; those admitted from a client
    /// (`gossip`) are sent on to the peers.
    pub fn submit(
        &mut self,
        records: Vec<SignedRecord>,
        gossip: bool,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Vec<Result<Hash, AdmitError>>, DriverError> {
        // Only records to gossip on are needed again after admission.
        let to_gossip = gossip.then(|| records.clone());
        let (genesis, store) = (self.ledger.genesis(), self.ledger.store().as_ref());
        let results = if gossip {
            self.mempool.admit(genesis, store, records)
        } else {
            self.mempool.admit_from_peer(genesis, store, records)
        };
        let admitted: Vec<Hash> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        if let Some(records) = to_gossip {
            self.mempool.mark_local(admitted.iter().copied());
            let admitted: Vec<SignedRecord> = records
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(record, _)| record)
                .collect();
            if !admitted.is_empty() {
                net.broadcast(Outbound::Records(admitted));
            }
        }
        self.fill_pending(&admitted, now, net)?;
        self.release_if_ready(now, net)?;
        Ok(results)
    }

    /// A proposal from a peer, with its block.
    ///
    /// Refused (and counted against the sender) unless it is signed by the proposer of its
    /// height and round and the block is the one it names, for that height. Kept only for the
    /// height being decided and the next one; a proposal for an earlier height, or a later
    /// one, is ignored (not relayed). Its block is kept as [`BLOCKS_KEPT_MAX`] says.
    pub fn on_proposal(
        &mut self,
        proposal: SignedProposal,
        block: Block,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Verdict, DriverError> {
        if let Some(verdict) = self.check_proposal(&proposal, &block.header) {
            return Ok(verdict);
        }
        self.proposed(proposal, Some(block), now, net)
    }

    /// A proposal from a peer with its block in compact form: checked as
    /// [`Driver::on_proposal`] says, and refused as well when its record count is not the
    /// header's or above the chain's limit. The block is rebuilt from the records pending
    /// here; when some are missing, the proposal still counts, the block is held
    /// ([`PENDING_BLOCKS_MAX`]) until the records topic completes it or, still incomplete after
    /// [`BLOCK_WANTED_DELAY`], it is asked for whole ([`Outbound::BlockWanted`]) and the
    /// proposer's answer brings it, and is judged then.
    pub fn on_compact_proposal(
        &mut self,
        proposal: SignedProposal,
        compact: CompactBlock,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Verdict, DriverError> {
        let records_max = self.ledger.genesis().consensus.max_block_records as usize;
        if compact.records.len() != compact.header.record_count as usize
            || compact.records.len() > records_max
        {
            return Ok(Verdict::Reject);
        }
        if let Some(verdict) = self.check_proposal(&proposal, &compact.header) {
            return Ok(verdict);
        }
        let p = proposal.proposal;
        if self.blocks.contains_key(&p.block_id) {
            // Held already: proposed in an earlier round, or answered whole.
            return self.proposed(proposal, None, now, net);
        }
        let block = match self.rebuild(compact, p.round) {
            Ok(block) => {
                self.compact.rebuilt += 1;
                Some(block)
            }
            Err(mut pending) => {
                tracing::debug!(
                    height = p.height,
                    round = p.round,
                    missing = pending.missing.len(),
                    "compact proposal lacks records here: waiting for them"
                );
                pending.ask_at = Some(now + BLOCK_WANTED_DELAY);
                self.hold_pending(p.block_id, *pending);
                None
            }
        };
        self.proposed(proposal, block, now, net)
    }

    /// A peer asks for the whole block of a compact proposal. Only the proposer answers, with
    /// its proposal and the whole block to every peer, at most [`BLOCK_ANSWERS_MAX`] times per
    /// block and [`BLOCK_ANSWER_INTERVAL`] apart. Never relayed: the proposer hears the
    /// request from its sender directly.
    pub fn on_block_wanted(
        &mut self,
        wanted: BlockWanted,
        now: Instant,
        net: &mut dyn Network,
    ) -> Verdict {
        let current = self.core.height();
        if wanted.height < current || wanted.height > current.saturating_add(1) {
            return Verdict::Ignore;
        }
        let Some(kept) = self.blocks.get_mut(&wanted.block_id) else {
            return Verdict::Ignore;
        };
        let Some(proposal) = kept.own else {
            return Verdict::Ignore;
        };
        if kept.answers >= BLOCK_ANSWERS_MAX
            || kept
                .answered_at
                .is_some_and(|at| now < at + BLOCK_ANSWER_INTERVAL)
        {
            return Verdict::Ignore;
        }
        kept.answers += 1;
        kept.answered_at = Some(now);
        net.broadcast(Outbound::Proposal(proposal, Box::new(kept.block.clone())));
        self.compact.answered += 1;
        Verdict::Ignore
    }

    /// The checks every proposal passes before its block is looked at: the verdict to return
    /// at once, or none to go on.
    fn check_proposal(
        &mut self,
        proposal: &SignedProposal,
        header: &BlockHeader,
    ) -> Option<Verdict> {
        let p = proposal.proposal;
        let validators = self.ledger.validators();
        let Some(validator) = validators.get(p.proposer_index) else {
            return Some(Verdict::Reject);
        };
        if p.proposer_index != validators.proposer(p.height, p.round) || header.height != p.height {
            return Some(Verdict::Reject);
        }
        let current = self.core.height();
        if p.height < current {
            // Stale: not worth a signature check.
            return Some(Verdict::Ignore);
        }
        let message = p.signing_message(&self.ledger.genesis().chain_id);
        if verify(&validator.consensus_key, &message, &proposal.signature).is_err()
            || header.block_id() != p.block_id
        {
            return Some(Verdict::Reject);
        }
        self.note_claim(p.proposer_index, p.height);
        if p.height > current.saturating_add(1) {
            return Some(Verdict::Ignore);
        }
        if p.height == current {
            self.height_started_by_peer = Some(p.height);
        }
        None
    }

    /// A checked proposal, with its block if it is here: the block is kept, the core told,
    /// and the block judged if the core was waiting for it.
    fn proposed(
        &mut self,
        proposal: SignedProposal,
        block: Option<Block>,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Verdict, DriverError> {
        let p = proposal.proposal;
        match block {
            Some(block) => {
                self.pending.remove(&p.block_id);
                self.keep_block(p.round, block);
            }
            None => {
                if let Some(kept) = self.blocks.get_mut(&p.block_id) {
                    kept.round = kept.round.max(p.round);
                }
            }
        }
        self.step(Input::Message(Message::Proposal(proposal)), now, net)?;
        self.judge_if_awaited(p.height, p.block_id, now, net)?;
        self.release_if_ready(now, net)?;
        Ok(Verdict::Accept)
    }

    /// Judges a block that has just arrived if the core asked for it before.
    fn judge_if_awaited(
        &mut self,
        height: Height,
        block_id: Hash,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<(), DriverError> {
        if self.blocks.contains_key(&block_id) {
            if let Some(round) = self.awaiting.remove(&(height, block_id)) {
                self.validate(height, round, block_id, now);
                self.drain(now, net)?;
            }
        }
        Ok(())
    }

    /// Asks for the whole blocks of held compact proposals still incomplete at their time.
    fn ask_for_pending_blocks(&mut self, now: Instant, net: &mut dyn Network) {
        for (block_id, pending) in &mut self.pending {
            if pending.ask_at.is_some_and(|at| at <= now) {
                pending.ask_at = None;
                self.compact.wanted += 1;
                tracing::debug!(
                    height = pending.header.height,
                    round = pending.round,
                    missing = pending.missing.len(),
                    "compact proposal still lacks records: asking for its block"
                );
                net.broadcast(Outbound::BlockWanted(BlockWanted {
                    height: pending.header.height,
                    round: pending.round,
                    block_id: *block_id,
                }));
            }
        }
    }

    /// The block of a compact proposal of `round` from the records here, or what is missing.
    fn rebuild(&self, compact: CompactBlock, round: Round) -> Result<Block, Box<PendingBlock>> {
        let mut records = Vec::with_capacity(compact.records.len());
        let mut missing: HashMap<Hash, Vec<usize>> = HashMap::new();
        for (position, record) in compact.records.into_iter().enumerate() {
            match record {
                CompactRecord::Full(record) => records.push(Some(*record)),
                CompactRecord::Id(id) => match self.mempool.find(&id) {
                    Some(record) => records.push(Some(record.clone())),
                    None => {
                        missing.entry(id).or_default().push(position);
                        records.push(None);
                    }
                },
            }
        }
        if missing.is_empty() {
            let records = records.into_iter().flatten().collect();
            return Ok(Block {
                header: compact.header,
                records,
            });
        }
        Err(Box::new(PendingBlock {
            round,
            header: compact.header,
            records,
            missing,
            ask_at: None,
        }))
    }

    /// Holds a compact proposal's incomplete block as [`PENDING_BLOCKS_MAX`] says.
    fn hold_pending(&mut self, block_id: Hash, pending: PendingBlock) {
        if self.pending.contains_key(&block_id) {
            return;
        }
        if self.pending.len() >= PENDING_BLOCKS_MAX {
            let latest = self
                .pending
                .iter()
                .map(|(id, p)| ((p.header.height, p.round), *id))
                .max();
            match latest {
                Some((position, id)) if position > (pending.header.height, pending.round) => {
                    self.pending.remove(&id);
                }
                _ => return,
            }
        }
        self.pending.insert(block_id, pending);
    }

    /// Records just admitted here may complete held blocks: those complete are kept and
    /// judged if the core waits for them.
    fn fill_pending(
        &mut self,
        admitted: &[Hash],
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<(), DriverError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut complete = Vec::new();
        for (block_id, pending) in &mut self.pending {
            for id in admitted {
                let Some(record) = self.mempool.get(id) else {
                    continue;
                };
                if let Some(positions) = pending.missing.remove(id) {
                    for position in positions {
                        pending.records[position] = Some(record.clone());
                    }
                }
            }
            if pending.missing.is_empty() {
                complete.push(*block_id);
            }
        }
        for block_id in complete {
            let Some(pending) = self.pending.remove(&block_id) else {
                continue;
            };
            let height = pending.header.height;
            let block = Block {
                header: pending.header,
                records: pending.records.into_iter().flatten().collect(),
            };
            self.keep_block(pending.round, block);
            self.judge_if_awaited(height, block_id, now, net)?;
        }
        Ok(())
    }

    /// Keeps a proposed block as [`BLOCKS_KEPT_MAX`] says.
    fn keep_block(&mut self, round: Round, block: Block) {
        let block_id = block.id();
        let height = block.header.height;
        if let Some(kept) = self.blocks.get_mut(&block_id) {
            kept.round = kept.round.max(round);
            return;
        }
        let in_round = self
            .blocks
            .values()
            .filter(|k| (k.block.header.height, k.round) == (height, round))
            .count();
        if in_round >= PROPOSALS_PER_ROUND_MAX {
            return;
        }
        if self.blocks.len() >= BLOCKS_KEPT_MAX {
            let protected: Vec<Hash> = [self.core.locked(), self.core.valid()]
                .into_iter()
                .flatten()
                .map(|v| v.block_id)
                .collect();
            let latest = self
                .blocks
                .iter()
                .filter(|(id, _)| !self.deltas.contains_key(*id) && !protected.contains(*id))
                .map(|(id, k)| ((k.block.header.height, k.round), *id))
                .max();
            match latest {
                Some((position, id)) if position > (height, round) => {
                    self.blocks.remove(&id);
                }
                _ => return,
            }
        }
        self.blocks.insert(block_id, KeptBlock::new(round, block));
    }

    /// Notes that validator `index` signed a message for `height`.
    fn note_claim(&mut self, index: u16, height: Height) {
        if let Some(claimed) = self.claimed.get_mut(usize::from(index)) {
            *claimed = (*claimed).max(height);
        }
    }

    /// The highest height that f+1 validators signed messages for (0 if none): at least one
    /// of them is honest, so the height before it was decided.
    fn attested_height(&self) -> Height {
        let mut claimed = self.claimed.clone();
        claimed.sort_unstable_by(|a, b| b.cmp(a));
        let threshold = self.ledger.validators().honest_threshold();
        claimed
            .get(threshold.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }

    /// A vote from a peer.
    pub fn on_vote(
        &mut self,
        vote: SignedVote,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<Verdict, DriverError> {
        let Some(validator) = self.ledger.validators().get(vote.vote.validator_index) else {
            return Ok(Verdict::Reject);
        };
        let current = self.core.height();
        if vote.vote.height < current {
            // Stale: not worth a signature check.
            return Ok(Verdict::Ignore);
        }
        let message = vote.vote.signing_message(&self.ledger.genesis().chain_id);
        if verify(&validator.consensus_key, &message, &vote.signature).is_err() {
            return Ok(Verdict::Reject);
        }
        self.note_claim(vote.vote.validator_index, vote.vote.height);
        if vote.vote.height > current.saturating_add(1) {
            // This node cannot use it (it syncs once f+1 validators are that far); not
            // relayed, so a faulty validator's far heights go nowhere.
            return Ok(Verdict::Ignore);
        }
        if vote.vote.height == self.core.height() {
            self.height_started_by_peer = Some(vote.vote.height);
        }
        self.step(Input::Message(Message::Vote(vote)), now, net)?;
        self.release_if_ready(now, net)?;
        Ok(Verdict::Accept)
    }

    /// When the next timer fires, if any is set.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, ..))| *at);
        let ask = self.pending.values().filter_map(|p| p.ask_at).min();
        [timer, self.heartbeat_deadline(), ask]
            .into_iter()
            .flatten()
            .min()
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        let heartbeat_ms = self.ledger.genesis().consensus.heartbeat_ms;
        let idle = self.deferred_request.is_some() || !self.deferred_timeouts.is_empty();
        (idle && heartbeat_ms > 0).then(|| self.last_commit + Duration::from_millis(heartbeat_ms))
    }

    /// Fires every timer due at `now`.
    pub fn on_time(&mut self, now: Instant, net: &mut dyn Network) -> Result<(), DriverError> {
        self.ask_for_pending_blocks(now, net);
        while let Some(Reverse((at, _, height, round, step))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            tracing::debug!(height, round, ?step, "timeout fired");
            self.step(
                Input::Timeout {
                    height,
                    round,
                    step,
                },
                now,
                net,
            )?;
        }
        self.release_if_ready(now, net)
    }

    /// Asks the core to send its current messages again (the network may have lost them).
    pub fn rebroadcast(&mut self, now: Instant, net: &mut dyn Network) -> Result<(), DriverError> {
        for (block_id, pending) in self.pending.iter().filter(|(_, p)| p.ask_at.is_none()) {
            net.broadcast(Outbound::BlockWanted(BlockWanted {
                height: pending.header.height,
                round: pending.round,
                block_id: *block_id,
            }));
        }
        self.step(Input::Rebroadcast, now, net)
    }

    /// The height from which this node must fetch blocks, if it is behind: a quorum decided
    /// a block it does not have, or peers are at a later height.
    pub fn sync_from(&self) -> Option<Height> {
        let next = self.ledger.next_height().ok()?;
        let behind = self.core.height() > next
            || self.highest_seen >= next
            || self.attested_height().saturating_sub(1) >= next;
        behind.then_some(next)
    }

    /// A block fetched by block sync: verified in full (link, certificate, records, state
    /// digest) and stored, then consensus moves on. Returns false for a block that is not the
    /// next one; a block that fails verification is an error the caller blames on its peer.
    pub fn apply_synced(
        &mut self,
        committed: CommittedBlock,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<bool, DriverError> {
        let height = committed.block.header.height;
        if Some(height) != self.ledger.next_height().ok() {
            return Ok(false);
        }
        let record_ids: Vec<Hash> = committed
            .block
            .records
            .iter()
            .map(SignedRecord::id)
            .collect();
        let recheck = may_invalidate_any(&committed.block);
        let time_ms = committed.block.header.time_ms;
        let round = committed.commit.round;
        self.ledger.apply_synced(committed)?;
        self.committed.push(Committed {
            height,
            record_ids: record_ids.clone(),
            time_ms,
            round,
        });
        self.after_commit(height, &record_ids, recheck, now)?;
        self.step(Input::Committed { height }, now, net)?;
        // Blocks held back while the store was behind can be judged now.
        let ready: Vec<((Height, Hash), Round)> = self
            .awaiting
            .iter()
            .map(|(key, round)| (*key, *round))
            .filter(|((h, _), _)| *h == height + 1)
            .collect();
        for ((h, block_id), round) in ready {
            self.awaiting.remove(&(h, block_id));
            self.validate(h, round, block_id, now);
        }
        self.drain(now, net)?;
        Ok(true)
    }

    fn step(
        &mut self,
        input: Input,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<(), DriverError> {
        self.queue.push_back(input);
        self.drain(now, net)
    }

    fn drain(&mut self, now: Instant, net: &mut dyn Network) -> Result<(), DriverError> {
        while let Some(input) = self.queue.pop_front() {
            let effects = self.core.handle(input);
            for effect in effects {
                self.execute(effect, now, net)?;
            }
        }
        Ok(())
    }

    fn execute(
        &mut self,
        effect: Effect,
        now: Instant,
        net: &mut dyn Network,
    ) -> Result<(), DriverError> {
        match effect {
            // Synced before the next effect: no vote leaves before the state covering it.
            Effect::PersistSafety(state) => self.safety.store(&state)?,
            Effect::Broadcast(Message::Vote(vote)) => {
                net.broadcast(Outbound::Vote(vote));
                self.equivocate_vote(&vote, net);
            }
            Effect::Broadcast(Message::Proposal(proposal)) => {
                let block_id = proposal.proposal.block_id;
                let Some(kept) = self.blocks.get_mut(&block_id) else {
                    return Ok(());
                };
                kept.own = Some(proposal);
                let block = &self.blocks[&block_id].block;
                self.equivocate_proposal(&proposal, block, net);
                // Records that came from peers travel as ids: every validator was sent them
                // before this node had them. Those of this node's own clients travel whole,
                // as they may still be on their way.
                let computed;
                let ids = match self.deltas.get(&block_id) {
                    Some((_, ids)) => ids,
                    None => {
                        computed = block
                            .records
                            .iter()
                            .map(SignedRecord::id)
                            .collect::<Vec<_>>();
                        &computed
                    }
                };
                let mempool = &self.mempool;
                // A block of this node's own clients' records only (a one-validator chain, a
                // proposer no peer has sent records) goes whole, without a compact copy first.
                if !ids.iter().any(|id| mempool.came_from_peers(id)) {
                    net.broadcast(Outbound::Proposal(proposal, Box::new(block.clone())));
                } else {
                    let compact = CompactBlock::new(block, ids, |id| mempool.came_from_peers(id));
                    let by_id = compact.ids_only();
                    self.compact.sent += 1;
                    self.compact.ids_sent += by_id as u64;
                    net.broadcast(Outbound::CompactProposal(proposal, Box::new(compact)));
                }
            }
            Effect::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => {
                if round == 0 && step == Step::Propose && !self.ready_to_start(height, now) {
                    self.deferred_timeouts
                        .push((height, round, step, duration_ms));
                } else {
                    self.schedule(height, round, step, duration_ms, now);
                }
            }
            Effect::RequestValue { height, round } => {
                if !self.mempool.is_empty() || self.heartbeat_due(now) {
                    self.propose(height, round, now)?;
                } else {
                    self.deferred_request = Some((height, round));
                }
            }
            Effect::ValidateValue {
                height,
                round,
                block_id,
            } => {
                if self.blocks.contains_key(&block_id) || self.deltas.contains_key(&block_id) {
                    self.validate(height, round, block_id, now);
                } else {
                    self.awaiting.insert((height, block_id), round);
                }
            }
            Effect::Decide {
                height,
                block_id,
                certificate,
            } => {
                // Taken, not copied: every block of this height goes after the commit anyway,
                // and a failed commit stops the node loop.
                let Some(KeptBlock { block, .. }) = self.blocks.remove(&block_id) else {
                    // A quorum decided a block this node never received (it was down or
                    // partitioned when it was proposed). Block sync fetches it with its
                    // certificate; see `Driver::sync_from`.
                    self.highest_seen = self.highest_seen.max(height);
                    return Ok(());
                };
                // The ids were computed once, when the block was built or checked here.
                let (delta, record_ids) = match self.deltas.remove(&block_id) {
                    Some(checked) => checked,
                    None => self.ledger.state_delta(&block)?,
                };
                let recheck = may_invalidate_any(&block);
                let time_ms = block.header.time_ms;
                let round = certificate.round;
                self.ledger
                    .commit(block, certificate, &delta, &record_ids)?;
                self.committed.push(Committed {
                    height,
                    record_ids: record_ids.clone(),
                    time_ms,
                    round,
                });
                self.after_commit(height, &record_ids, recheck, now)?;
            }
            Effect::Evidence(evidence) => {
                if self.evidence.len() >= EVIDENCE_KEPT_MAX {
                    self.evidence.pop_front();
                }
                self.evidence.push_back(evidence);
            }
        }
        Ok(())
    }

    fn after_commit(
        &mut self,
        height: Height,
        record_ids: &[Hash],
        recheck: bool,
        now: Instant,
    ) -> Result<(), DriverError> {
        let next_time_ms = self.now_ms(now);
        let dropped = self
            .mempool
            .on_commit(
                self.ledger.genesis(),
                self.ledger.store().as_ref(),
                record_ids,
                recheck,
                height,
                next_time_ms,
            )
            .map_err(|e| {
                // The block is stored; only this node's own reads failed, so the fault is
                // never blamed on the peer a synced block came from.
                DriverError::Commit(LedgerError::Storage(
                    branchledger_storage::StorageError::Backend(format!(
                        "rechecking the mempool after block {height}: {e}"
                    )),
                ))
            })?;
        self.dropped.extend(dropped);
        self.blocks.retain(|_, k| k.block.header.height > height);
        self.deltas.clear();
        self.awaiting.retain(|(h, _), _| *h > height);
        self.pending.retain(|_, p| p.header.height > height);
        // Only what was held for the committed height or earlier goes: a block synced while
        // the core is already at a later height must not cancel that height's timeout or
        // request to propose, or it would wait forever.
        if self.deferred_request.is_some_and(|(h, _)| h <= height) {
            self.deferred_request = None;
        }
        self.deferred_timeouts.retain(|(h, ..)| *h > height);
        self.last_commit = now;
        Ok(())
    }

    fn schedule(
        &mut self,
        height: Height,
        round: Round,
        step: Step,
        duration_ms: u64,
        now: Instant,
    ) {
        self.timer_sequence += 1;
        self.timers.push(Reverse((
            now + Duration::from_millis(duration_ms),
            self.timer_sequence,
            height,
            round,
            step,
        )));
    }

    fn heartbeat_due(&self, now: Instant) -> bool {
        let heartbeat_ms = self.ledger.genesis().consensus.heartbeat_ms;
        heartbeat_ms > 0 && now >= self.last_commit + Duration::from_millis(heartbeat_ms)
    }

    /// Whether this node takes part in `height` now rather than waiting for work.
    fn ready_to_start(&self, height: Height, now: Instant) -> bool {
        !self.mempool.is_empty()
            || self.height_started_by_peer == Some(height)
            || self.heartbeat_due(now)
    }

    /// Lets held timeouts and a held proposal go once there is a reason to start.
    fn release_if_ready(&mut self, now: Instant, net: &mut dyn Network) -> Result<(), DriverError> {
        let height = self.core.height();
        if !self.deferred_timeouts.is_empty() && self.ready_to_start(height, now) {
            for (h, round, step, duration_ms) in std::mem::take(&mut self.deferred_timeouts) {
                if h == height {
                    self.schedule(h, round, step, duration_ms, now);
                }
            }
        }
        if let Some((h, round)) = self.deferred_request {
            if h != height {
                self.deferred_request = None;
            } else if !self.mempool.is_empty() || self.heartbeat_due(now) {
                self.deferred_request = None;
                self.propose(h, round, now)?;
                self.drain(now, net)?;
            }
        }
        Ok(())
    }

    fn propose(&mut self, height: Height, round: Round, now: Instant) -> Result<(), DriverError> {
        let next = self.ledger.next_height()?;
        if next != height {
            // The store is behind the core (a decided block is still being synced): a block
            // built now would not follow the decided one. The round's timeout moves on.
            tracing::debug!(height, round, next, "not proposing: the store is behind");
            return Ok(());
        }
        let genesis = self.ledger.genesis();
        let candidates = self.mempool.candidates(
            genesis.consensus.max_block_records as usize,
            genesis.consensus.max_block_bytes as usize,
        );
        let proposer = self.ledger.validators().proposer(height, round);
        let built = self
            .ledger
            .build_block(&candidates, self.now_ms(now), proposer)?;
        let block_id = built.block.id();
        for (record_id, reason) in &built.refused {
            tracing::debug!(%record_id, %reason, height, "record left out of the proposal");
        }
        self.mempool.drop_refused(&built.refused);
        self.dropped.extend(built.refused.iter().cloned());
        self.deltas.insert(block_id, (built.delta, built.ids));
        self.blocks
            .insert(block_id, KeptBlock::new(round, built.block));
        self.queue.push_back(Input::ProposeValue {
            height,
            round,
            block_id,
        });
        Ok(())
    }

    fn validate(&mut self, height: Height, round: Round, block_id: Hash, now: Instant) {
        if self.deltas.contains_key(&block_id) {
            self.queue.push_back(Input::Verdict {
                height,
                block_id,
                valid: true,
            });
            return;
        }
        let Some(KeptBlock { block, .. }) = self.blocks.get(&block_id) else {
            // Not here (yet): judged when it arrives.
            self.awaiting.insert((height, block_id), round);
            return;
        };
        if self.ledger.next_height().ok() != Some(block.header.height) {
            // The store is behind (a decided block is still being synced): judge the block
            // once its parent is here, rather than refuse a block that may well be valid.
            self.awaiting.insert((height, block_id), round);
            return;
        }
        let now_ms = self.now_ms(now);
        let mempool = &self.mempool;
        let valid = match self
            .ledger
            .check_proposed(block, round, now_ms, |r, id| mempool.is_verified(r, id))
        {
            Ok(checked) => {
                self.deltas.insert(block_id, checked);
                true
            }
            Err(
                error @ LedgerError::Invalid {
                    error: VerificationError::TimeInFuture { .. },
                    ..
                },
            ) => {
                // Ahead of this node's clock: refused in this round, judged again in the next
                // (the clock may be the one that is wrong, and catch up).
                tracing::warn!(height, round, %block_id, %error, "proposed block refused for now");
                self.queue
                    .push_back(Input::NotYetValid { height, block_id });
                return;
            }
            Err(error) => {
                // The reason an operator needs when heights keep going to a second round.
                tracing::warn!(height, round, %block_id, %error, "proposed block refused");
                false
            }
        };
        self.queue.push_back(Input::Verdict {
            height,
            block_id,
            valid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use branchledger_storage::{ChainReader, RocksStore};
    use branchledger_types::genesis::{
        peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
    };
    use branchledger_types::record::{MemberJoined, MemberStatus, StudyForm, StudySession};
    use branchledger_types::{BranchId, Date, Genesis, MemberId, Record, RecordBody};

    use crate::mempool::MempoolLimits;

    const T0: u64 = 1_767_225_600_000;

    /// Collects what a driver sends.
    #[derive(Default)]
    struct Outbox(Vec<Outbound>);

    impl Network for Outbox {
        fn broadcast(&mut self, message: Outbound) {
            self.0.push(message);
        }
    }

    /// What the harness does with a message on its way to a node.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Route {
        Deliver,
        Drop,
        /// Kept aside until [`Cluster::release_held`].
        Hold,
    }

    type Router = Box<dyn FnMut(usize, &Outbound) -> Route>;

    struct Cluster {
        _dirs: Vec<tempfile::TempDir>,
        /// Decides each message's fate, by receiver (every message is delivered by default).
        route: Router,
        held: Vec<(usize, Outbound)>,
        /// Whether nodes that are behind fetch blocks (block sync).
        sync: bool,
        drivers: Vec<Option<Driver>>,
        branch_key: Keypair,
        now: Instant,
        start: Instant,
        /// Messages in flight: (to, message).
        inflight: VecDeque<(usize, Outbound)>,
        /// Nodes that drop everything (crashed).
        down: BTreeSet<usize>,
        /// Every vote each node sent, to check it never signed two different votes for one step.
        votes_sent: Vec<(usize, SignedVote)>,
        genesis: Arc<Genesis>,
    }

    fn genesis(n: usize, heartbeat_ms: u64) -> Genesis {
        Genesis {
            chain_id: "driver-test".into(),
            genesis_time_ms: T0 - 1,
            validators: (0..n)
                .map(|i| Validator {
                    name: format!("v{i}"),
                    branch_id: BranchId("b0".into()),
                    consensus_key: Keypair::from_seed([10 + i as u8; 32]).public_key(),
                    peer_id: peer_id_of(&Keypair::from_seed([40 + i as u8; 32]).public_key()),
                })
                .collect(),
            branches: vec![Branch {
                branch_id: BranchId("b0".into()),
                name: "B0".into(),
                signing_key: Keypair::from_seed([1; 32]).public_key(),
            }],
            consensus: ConsensusParams {
                heartbeat_ms,
                ..ConsensusParams::default()
            },
            rules: Rules {
                meetings: vec![],
                study: StudyRule {
                    minutes_per_member_per_month: 60,
                },
                dues_minor_per_month: 0,
            },
        }
    }

    impl Cluster {
        fn new(n: usize, heartbeat_ms: u64) -> Cluster {
            let genesis = Arc::new(genesis(n, heartbeat_ms));
            let now = Instant::now();
            let mut dirs = Vec::new();
            let mut drivers = Vec::new();
            for i in 0..n {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Arc::new(RocksStore::open(&dir.path().join("store")).expect("store"));
                let ledger = Ledger::new(genesis.clone(), store);
                let driver = Driver::new(
                    ledger,
                    Mempool::new(MempoolLimits::default()),
                    SafetyFile::new(dir.path()),
                    Some(Keypair::from_seed([10 + i as u8; 32])),
                    now,
                    T0,
                )
                .expect("driver");
                dirs.push(dir);
                drivers.push(Some(driver));
            }
            let mut cluster = Cluster {
                _dirs: dirs,
                route: Box::new(|_, _| Route::Deliver),
                held: Vec::new(),
                sync: true,
                drivers,
                branch_key: Keypair::from_seed([1; 32]),
                now,
                start: now,
                inflight: VecDeque::new(),
                down: BTreeSet::new(),
                votes_sent: Vec::new(),
                genesis: genesis.clone(),
            };
            for i in 0..n {
                let mut out = Outbox::default();
                cluster.driver(i).start(now, &mut out).expect("start");
                cluster.send(i, out);
            }
            cluster
        }

        /// Kills node `i` (its RocksDB closes, its memory is gone) and starts it again from
        /// its data directory.
        fn restart(&mut self, i: usize) {
            self.restart_with_clock_behind(i, 0);
        }

        /// [`Cluster::restart`], with node `i`'s clock `behind_ms` behind the others'.
        fn restart_with_clock_behind(&mut self, i: usize, behind_ms: u64) {
            self.drivers[i] = None;
            let dir = self._dirs[i].path().to_owned();
            let store = Arc::new(RocksStore::open(&dir.join("store")).expect("reopen store"));
            let ledger = Ledger::new(self.genesis.clone(), store);
            let now = self.now;
            let now_ms = T0 + now.duration_since(self.start).as_millis() as u64 - behind_ms;
            let driver = Driver::new(
                ledger,
                Mempool::new(MempoolLimits::default()),
                SafetyFile::new(&dir),
                Some(Keypair::from_seed([10 + i as u8; 32])),
                now,
                now_ms,
            )
            .expect("driver");
            self.drivers[i] = Some(driver);
            let mut out = Outbox::default();
            self.driver(i).start(now, &mut out).expect("start");
            self.send(i, out);
        }

        /// No node signed two different votes for one (height, round, kind).
        fn assert_no_double_sign(&self) {
            let mut seen: HashMap<
                (usize, Height, Round, branchledger_types::VoteKind),
                Option<Hash>,
            > = HashMap::new();
            for (from, vote) in &self.votes_sent {
                let key = (*from, vote.vote.height, vote.vote.round, vote.vote.kind);
                if let Some(previous) = seen.insert(key, vote.vote.block_id) {
                    assert_eq!(
                        previous, vote.vote.block_id,
                        "node {from} double-signed at {key:?}"
                    );
                }
            }
        }

        fn driver(&mut self, i: usize) -> &mut Driver {
            self.drivers[i].as_mut().expect("node is up")
        }

        fn send(&mut self, from: usize, out: Outbox) {
            for message in out.0 {
                if let Outbound::Vote(vote) = &message {
                    self.votes_sent.push((from, *vote));
                }
                for to in 0..self.drivers.len() {
                    if to != from {
                        self.inflight.push_back((to, message.clone()));
                    }
                }
            }
        }

        fn record(&self, nonce: u64, body: RecordBody) -> SignedRecord {
            Record {
                chain_id: "driver-test".into(),
                branch_id: BranchId("b0".into()),
                created_at_ms: T0,
                nonce,
                body,
            }
            .sign(&self.branch_key)
        }

        fn submit(&mut self, to: usize, records: Vec<SignedRecord>) {
            let mut out = Outbox::default();
            let now = self.now;
            let results = self
                .driver(to)
                .submit(records, true, now, &mut out)
                .expect("submit");
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            self.send(to, out);
        }

        /// Delivers messages and fires timers until `done` or the simulated deadline.
        fn run_until(
            &mut self,
            limit: Duration,
            mut done: impl FnMut(&mut Cluster) -> bool,
        ) -> bool {
            let deadline = self.now + limit;
            loop {
                if done(self) {
                    return true;
                }
                if let Some((to, message)) = self.inflight.pop_front() {
                    if self.down.contains(&to) {
                        continue;
                    }
                    match (self.route)(to, &message) {
                        Route::Deliver => {}
                        Route::Drop => continue,
                        Route::Hold => {
                            self.held.push((to, message));
                            continue;
                        }
                    }
                    let now = self.now;
                    let mut out = Outbox::default();
                    let driver = self.driver(to);
                    match message {
                        Outbound::Proposal(p, block) => {
                            driver
                                .on_proposal(p, *block, now, &mut out)
                                .expect("proposal");
                        }
                        Outbound::CompactProposal(p, block) => {
                            driver
                                .on_compact_proposal(p, *block, now, &mut out)
                                .expect("compact proposal");
                        }
                        Outbound::BlockWanted(wanted) => {
                            driver.on_block_wanted(wanted, now, &mut out);
                        }
                        Outbound::Vote(v) => {
                            driver.on_vote(v, now, &mut out).expect("vote");
                        }
                        Outbound::Records(records) => {
                            driver
                                .submit(records, false, now, &mut out)
                                .expect("records");
                        }
                    }
                    self.send(to, out);
                    continue;
                }
                if self.sync && self.sync_step() {
                    continue;
                }
                let next = (0..self.drivers.len())
                    .filter(|i| !self.down.contains(i))
                    .filter_map(|i| self.drivers[i].as_ref().and_then(Driver::next_deadline))
                    .min();
                let Some(next) = next else { return false };
                if next > deadline {
                    return false;
                }
                self.now = self.now.max(next);
                for i in 0..self.drivers.len() {
                    if self.down.contains(&i) {
                        continue;
                    }
                    let now = self.now;
                    let mut out = Outbox::default();
                    self.driver(i).on_time(now, &mut out).expect("timer");
                    self.send(i, out);
                }
            }
        }

        /// Sends the messages held so far on their way.
        fn release_held(&mut self) {
            self.inflight.extend(self.held.drain(..));
        }

        /// Block sync, as the node's network loop does it: a node that is behind fetches the
        /// next block with its certificate from a peer that has it. True if a block moved.
        fn sync_step(&mut self) -> bool {
            for i in 0..self.drivers.len() {
                if self.down.contains(&i) {
                    continue;
                }
                let Some(from) = self.drivers[i].as_ref().and_then(Driver::sync_from) else {
                    continue;
                };
                let source = (0..self.drivers.len())
                    .filter(|j| *j != i && !self.down.contains(j))
                    .find_map(|j| {
                        self.drivers[j]
                            .as_ref()
                            .and_then(|d| d.ledger().store().committed_block(from).expect("read"))
                    });
                if let Some(block) = source {
                    let now = self.now;
                    let mut out = Outbox::default();
                    assert!(self
                        .driver(i)
                        .apply_synced(block, now, &mut out)
                        .expect("synced block verifies"));
                    self.send(i, out);
                    return true;
                }
            }
            false
        }

        fn height(&self, i: usize) -> u64 {
            self.drivers[i]
                .as_ref()
                .and_then(|d| d.ledger().tip().expect("tip"))
                .map_or(0, |t| t.height)
        }
    }

    fn join(cluster: &Cluster, member: &str, nonce: u64) -> SignedRecord {
        cluster.record(
            nonce,
            RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(member.into()),
                joined_on: Date::new(2025, 12, 1),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        )
    }

    fn study(cluster: &Cluster, member: &str, nonce: u64) -> SignedRecord {
        cluster.record(
            nonce,
            RecordBody::StudySession(StudySession {
                member_id: MemberId(member.into()),
                material: "handbook".into(),
                minutes: 30,
                form: StudyForm::Group,
                occurred_on: Date::new(2025, 12, 2),
            }),
        )
    }

    #[test]
    fn four_validators_commit_submitted_records_into_identical_chains() {
        let (mut cluster, records) =
            submitted_to_validator_2(Box::new(|_, _| Route::Deliver), true, 0..4);
        cluster.submit(0, vec![study(&cluster, "m1", 3)]);
        assert!(
            cluster.run_until(Duration::from_secs(30), |c| (0..4)
                .all(|i| c.height(i) >= 2)),
            "no second commit"
        );
        let tips: Vec<_> = (0..4)
            .map(|i| {
                cluster.drivers[i]
                    .as_ref()
                    .expect("up")
                    .ledger()
                    .tip()
                    .expect("tip")
            })
            .collect();
        assert!(tips.windows(2).all(|w| w[0] == w[1]), "{tips:?}");
        let store = cluster.drivers[3]
            .as_ref()
            .expect("up")
            .ledger()
            .store()
            .clone();
        for record in &records {
            assert_eq!(
                store.record(&record.id()).expect("read").map(|r| r.height),
                Some(1)
            );
        }
        assert!(cluster
            .drivers
            .iter()
            .flatten()
            .all(|d| d.mempool().is_empty()));
    }

    /// The compact-proposal counts of every node since the last call.
    fn compact_counts(cluster: &mut Cluster) -> Vec<CompactCounts> {
        (0..cluster.drivers.len())
            .map(|i| cluster.driver(i).take_compact_counts())
            .collect()
    }

    /// Every node's tip, and whether `records` are in every node's store.
    fn assert_same_chain_with(cluster: &Cluster, records: &[SignedRecord]) {
        let tips: Vec<_> = cluster
            .drivers
            .iter()
            .map(|d| d.as_ref().expect("up").ledger().tip().expect("tip"))
            .collect();
        assert!(tips.windows(2).all(|w| w[0] == w[1]), "{tips:?}");
        for driver in cluster.drivers.iter().flatten() {
            for record in records {
                let stored = driver.ledger().store().record(&record.id()).expect("read");
                assert!(stored.is_some(), "record {} missing", record.id());
            }
        }
    }

    #[test]
    fn a_proposal_names_records_from_peers_by_id_and_the_others_rebuild_its_block() {
        // Height 1's proposer is validator 1; the records come from validator 2's clients.
        let (mut cluster, records) =
            submitted_to_validator_2(Box::new(|_, _| Route::Deliver), true, 0..4);
        let counts = compact_counts(&mut cluster);
        assert_eq!((counts[1].sent, counts[1].ids_sent), (1, 2), "{counts:?}");
        for i in [0, 2, 3] {
            assert_eq!(
                (counts[i].rebuilt, counts[i].wanted),
                (1, 0),
                "node {i}: {counts:?}"
            );
        }
        assert_same_chain_with(&cluster, &records);
        // Height 2's proposer (validator 2) has only its own clients' records: they travel
        // whole, as they may not have reached the others yet.
        let more = vec![study(&cluster, "m1", 3)];
        cluster.submit(2, more.clone());
        assert!(
            cluster.run_until(Duration::from_secs(30), |c| (0..4)
                .all(|i| c.height(i) >= 2)),
            "no second commit"
        );
        let counts = compact_counts(&mut cluster);
        assert!(
            counts.iter().all(|c| c.sent == 0 && c.rebuilt == 0),
            "{counts:?}"
        );
        assert_same_chain_with(&cluster, &more);
    }

    #[test]
    fn a_validator_whose_clock_lagged_prevotes_the_block_once_it_comes_again() {
        // Validator 0's clock is 2.5 s behind (the drift allowed is 2 s): in round 0 the block
        // is ahead of it, and it prevotes nil. Validator 3's precommits of round 0 are lost, so
        // the round ends undecided, and in round 1 validator 2 proposes the same block again
        // (the valid value of the others). Over a second later, validator 0 judges it anew and
        // prevotes it. Validator 3 decided in round 0 and moved on, so without validator 0's
        // prevote the height would never decide: with the verdict of round 0 kept for the
        // height, the chain halts here.
        let mut cluster = Cluster::new(4, 0);
        let behind_ms = cluster.genesis.consensus.max_clock_drift_ms + 500;
        cluster.restart_with_clock_behind(0, behind_ms);
        cluster.route = Box::new(|_, message| match message {
            Outbound::Vote(v)
                if v.vote.validator_index == 3
                    && v.vote.kind == branchledger_types::VoteKind::Precommit
                    && v.vote.round == 0 =>
            {
                Route::Drop
            }
            _ => Route::Deliver,
        });
        let records = vec![join(&cluster, "m1", 1)];
        cluster.submit(1, records.clone());
        assert!(
            cluster.run_until(Duration::from_secs(60), |c| (0..4)
                .all(|i| c.height(i) >= 1)),
            "no commit"
        );
        let prevotes_of_0: Vec<(Round, Option<Hash>)> = cluster
            .votes_sent
            .iter()
            .filter(|(from, v)| {
                *from == 0
                    && v.vote.height == 1
                    && v.vote.kind == branchledger_types::VoteKind::Prevote
            })
            .map(|(_, v)| (v.vote.round, v.vote.block_id))
            .collect();
        let committed = cluster.driver(1).ledger().store().header(1).expect("read");
        let block_id = committed.expect("height 1").block_id();
        assert_eq!(
            prevotes_of_0,
            vec![(0, None), (1, Some(block_id))],
            "validator 0's prevotes"
        );
        assert_same_chain_with(&cluster, &records);
    }

    /// Four validators, messages routed by `route`, block sync on or off (then only consensus
    /// brings a block), a member's join and study session submitted to validator 2, and the
    /// validators of `committing` run until they commit them.
    fn submitted_to_validator_2(
        route: Router,
        sync: bool,
        committing: std::ops::Range<usize>,
    ) -> (Cluster, Vec<SignedRecord>) {
        let mut cluster = Cluster::new(4, 0);
        cluster.sync = sync;
        cluster.route = route;
        let records = vec![join(&cluster, "m1", 1), study(&cluster, "m1", 2)];
        cluster.submit(2, records.clone());
        assert!(
            cluster.run_until(Duration::from_secs(30), |c| committing
                .clone()
                .all(|i| c.height(i) >= 1)),
            "validators {committing:?} did not commit"
        );
        (cluster, records)
    }

    #[test]
    fn a_validator_lacking_the_records_of_a_compact_proposal_gets_its_block_whole() {
        // Validator 3 never hears the records topic, and validator 0's votes are lost, so the
        // height needs validator 3's: it waits for the records, then asks for the block.
        let route: Router = Box::new(|to, message| match message {
            Outbound::Records(_) if to == 3 => Route::Drop,
            Outbound::Vote(v) if v.vote.validator_index == 0 => Route::Drop,
            _ => Route::Deliver,
        });
        let (mut cluster, records) = submitted_to_validator_2(route, false, 0..4);
        let counts = compact_counts(&mut cluster);
        assert_eq!(counts[3].wanted, 1, "{counts:?}");
        assert_eq!(
            counts[1].answered, 1,
            "only the proposer answers, once: {counts:?}"
        );
        assert!(
            counts.iter().all(|c| c.answered == 0 || c.sent > 0),
            "{counts:?}"
        );
        assert_same_chain_with(&cluster, &records);
    }

    #[test]
    fn a_compact_proposal_waiting_for_records_is_completed_by_the_records_topic() {
        // Validator 3 gets the records late and never a whole block.
        let route: Router = Box::new(|to, message| match message {
            Outbound::Records(_) if to == 3 => Route::Hold,
            Outbound::Proposal(..) if to == 3 => Route::Drop,
            _ => Route::Deliver,
        });
        let (mut cluster, records) = submitted_to_validator_2(route, false, 0..3);
        assert_eq!(cluster.height(3), 0);
        // Not asked for at once: the records may be on their way.
        assert_eq!(compact_counts(&mut cluster)[3].wanted, 0);
        cluster.run_until(BLOCK_WANTED_DELAY * 2, |_| false);
        assert_eq!(compact_counts(&mut cluster)[3].wanted, 1);
        cluster.route = Box::new(|to, message| match message {
            Outbound::Proposal(..) if to == 3 => Route::Drop,
            _ => Route::Deliver,
        });
        cluster.release_held();
        assert!(
            cluster.run_until(Duration::from_secs(30), |c| c.height(3) >= 1),
            "validator 3 did not complete the block from the records"
        );
        assert_same_chain_with(&cluster, &records);
    }

    #[test]
    fn records_arriving_just_after_their_compact_proposal_complete_it_without_asking() {
        // Validator 3 gets the records after the proposal, before the block would be asked for.
        let route: Router = Box::new(|to, message| match message {
            Outbound::Records(_) if to == 3 => Route::Hold,
            _ => Route::Deliver,
        });
        let (mut cluster, records) = submitted_to_validator_2(route, false, 0..3);
        // Validator 3's timers run at the same instant: too early to ask for the block.
        let now = cluster.now;
        let mut out = Outbox::default();
        cluster.driver(3).on_time(now, &mut out).expect("timer");
        cluster.send(3, out);
        cluster.route = Box::new(|_, _| Route::Deliver);
        cluster.release_held();
        assert!(
            cluster.run_until(Duration::from_secs(30), |c| c.height(3) >= 1),
            "validator 3 did not complete the block from the records"
        );
        let counts = compact_counts(&mut cluster);
        assert_eq!((counts[3].wanted, counts[1].answered), (0, 0), "{counts:?}");
        assert_same_chain_with(&cluster, &records);
    }

    #[test]
    fn a_compact_proposal_whose_record_count_is_not_its_headers_is_refused() {
        let mut cluster = Cluster::new(4, 0);
        let record = join(&cluster, "m1", 1);
        let now = cluster.now;
        // Validator 3 proposes at height 1, round 2; the header counts 0 records or 1.
        for (count, expected) in [(0, Verdict::Reject), (1, Verdict::Accept)] {
            let mut block = junk_block(1, T0 + 1);
            block.header.record_count = count;
            block.records = vec![record.clone()];
            let compact = CompactBlock::new(&block, &[record.id()], |_| true);
            let proposal = junk_proposal(1, 2, &block);
            let mut out = Outbox::default();
            let verdict = cluster
                .driver(0)
                .on_compact_proposal(proposal, compact, now, &mut out)
                .expect("handled");
            assert_eq!(verdict, expected, "record count {count}");
        }
    }

    #[test]
    fn an_idle_chain_makes_no_blocks_and_a_heartbeat_makes_them() {
        let mut idle = Cluster::new(4, 0);
        assert!(!idle.run_until(Duration::from_secs(60), |c| c.height(0) > 0));
        assert_eq!(
            idle.now, idle.start,
            "nothing at all was scheduled while idle"
        );
        let mut beating = Cluster::new(4, 5_000);
        assert!(beating.run_until(Duration::from_secs(30), |c| (0..4)
            .all(|i| c.height(i) >= 2)));
    }

    #[test]
    fn three_of_four_keep_committing_and_two_of_four_stop_without_forking() {
        let mut cluster = Cluster::new(4, 0);
        cluster.down.insert(3);
        cluster.submit(0, vec![join(&cluster, "m1", 1)]);
        assert!(
            cluster.run_until(Duration::from_secs(60), |c| (0..3)
                .all(|i| c.height(i) >= 1)),
            "3 of 4 must commit"
        );
        cluster.down.insert(2);
        cluster.submit(0, vec![study(&cluster, "m1", 2)]);
        assert!(
            !cluster.run_until(Duration::from_secs(60), |c| c.height(0) >= 2
                || c.height(1) >= 2),
            "2 of 4 must not commit"
        );
        assert_eq!(cluster.height(0), 1);
        assert_eq!(cluster.height(1), 1);
    }

    #[test]
    fn restarted_validators_resume_without_signing_twice() {
        let mut cluster = Cluster::new(4, 0);
        let mut nonce = 0;
        for height in 1..=6u64 {
            nonce += 1;
            let record = join(&cluster, &format!("m{nonce}"), nonce);
            cluster.submit((height % 4) as usize, vec![record]);
            // Restart a validator in the middle of the height, after it may have voted.
            let victim = (height % 4) as usize;
            let mut steps = 0;
            cluster.run_until(Duration::from_secs(30), |_| {
                steps += 1;
                steps > 3 + height as usize
            });
            cluster.restart(victim);
            assert!(
                cluster.run_until(Duration::from_secs(60), |c| (0..4)
                    .filter(|&i| c.height(i) >= height)
                    .count()
                    >= 3),
                "height {height} not committed after restarting node {victim}"
            );
        }
        cluster.assert_no_double_sign();
        let tips: Vec<_> = (0..4).map(|i| cluster.height(i)).collect();
        assert!(tips.iter().filter(|&&h| h >= 6).count() >= 3, "{tips:?}");
    }

    #[test]
    fn a_single_validator_chain_works() {
        let mut cluster = Cluster::new(1, 0);
        cluster.submit(0, vec![join(&cluster, "m1", 1)]);
        assert!(cluster.run_until(Duration::from_secs(10), |c| c.height(0) >= 1));
        let committed = cluster.driver(0).take_committed();
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].record_ids.len(), 1);
    }

    #[test]
    fn forged_messages_are_rejected() {
        let mut cluster = Cluster::new(4, 0);
        cluster.submit(1, vec![join(&cluster, "m1", 1)]);
        // Capture a real vote, then tamper with it.
        let mut vote = None;
        assert!(cluster.run_until(Duration::from_secs(30), |c| {
            if vote.is_none() {
                vote = c.inflight.iter().find_map(|(_, m)| match m {
                    Outbound::Vote(v) => Some(*v),
                    _ => None,
                });
            }
            vote.is_some()
        }));
        let mut forged = vote.expect("a vote was sent");
        forged.vote.round += 1;
        let now = cluster.now;
        let mut out = Outbox::default();
        assert_eq!(
            cluster
                .driver(0)
                .on_vote(forged, now, &mut out)
                .expect("handled"),
            Verdict::Reject
        );
        let mut outsider = forged;
        outsider.vote.validator_index = 9;
        assert_eq!(
            cluster
                .driver(0)
                .on_vote(outsider, now, &mut out)
                .expect("handled"),
            Verdict::Reject
        );
    }

    /// A junk block for `height` with the given time (so each is distinct), as validator 3
    /// would sign one: its id is right, its content is not.
    fn junk_block(height: Height, time_ms: u64) -> Block {
        Block {
            header: branchledger_types::BlockHeader {
                chain_id: "driver-test".into(),
                height,
                time_ms,
                prev_block_id: Hash::ZERO,
                records_root: Hash::ZERO,
                record_count: 0,
                state_digest: Hash::ZERO,
                proposer_index: 3,
                validator_set_id: Hash::ZERO,
            },
            records: vec![],
        }
    }

    fn junk_proposal(height: Height, round: Round, block: &Block) -> SignedProposal {
        branchledger_types::Proposal {
            height,
            round,
            block_id: block.id(),
            valid_round: None,
            proposer_index: 3,
        }
        .sign("driver-test", &Keypair::from_seed([13; 32]))
    }

    /// One faulty validator (3) sends every honest node signed proposals meant to fill their
    /// caches: blocks whose header names another height (refused), proposals for far heights
    /// (ignored, not relayed), and as many blocks as it may propose in its own rounds of the
    /// current height. Then it goes silent, and the three others still commit.
    #[test]
    fn a_faulty_validator_cannot_crowd_out_the_honest_proposals() {
        let mut cluster = Cluster::new(4, 0);
        for to in 0..3 {
            let now = cluster.now;
            let mut out = Outbox::default();
            let driver = cluster.driver(to);
            // Its own round of height 1 (round 2: (1 + 2) mod 4 = 3), a block of another height.
            let block = junk_block(u64::MAX, 1);
            let verdict = driver
                .on_proposal(junk_proposal(1, 2, &block), block, now, &mut out)
                .expect("handled");
            assert_eq!(verdict, Verdict::Reject);
            // A proposal for a height far ahead: not kept, not relayed.
            for i in 0..(2 * BLOCKS_KEPT_MAX as u64) {
                let height = 1_000 + 4 * i; // (h + 3) mod 4 = 3: validator 3's round 3.
                let block = junk_block(height, i);
                let verdict = driver
                    .on_proposal(junk_proposal(height, 3, &block), block, now, &mut out)
                    .expect("handled");
                assert_eq!(verdict, Verdict::Ignore);
            }
            // Every round of height 1 it proposes in, as many blocks as a round keeps.
            for round in (2..200u32).step_by(4) {
                for i in 0..PROPOSALS_PER_ROUND_MAX as u64 * 2 {
                    let block = junk_block(1, u64::from(round) * 100 + i);
                    driver
                        .on_proposal(junk_proposal(1, round, &block), block, now, &mut out)
                        .expect("handled");
                }
            }
            assert!(driver.blocks.len() <= BLOCKS_KEPT_MAX);
            assert_eq!(
                driver.sync_from(),
                None,
                "one validator's far heights are no proof"
            );
        }
        cluster.down.insert(3);
        cluster.submit(0, vec![join(&cluster, "m1", 1)]);
        assert!(
            cluster.run_until(Duration::from_secs(600), |c| (0..3)
                .all(|i| c.height(i) >= 1)),
            "the three honest validators did not commit"
        );
    }

    /// f+1 validators at a far height mean this node is behind; one does not.
    #[test]
    fn only_heights_that_f_plus_one_validators_reached_start_a_sync() {
        let mut cluster = Cluster::new(4, 0);
        let vote = |validator: u8| {
            branchledger_types::Vote {
                height: 50,
                round: 0,
                kind: branchledger_types::VoteKind::Prevote,
                block_id: None,
                validator_index: u16::from(validator),
            }
            .sign("driver-test", &Keypair::from_seed([10 + validator; 32]))
        };
        let now = cluster.now;
        let mut out = Outbox::default();
        let driver = cluster.driver(0);
        assert_eq!(
            driver.on_vote(vote(3), now, &mut out).expect("vote"),
            Verdict::Ignore
        );
        assert_eq!(driver.sync_from(), None);
        assert_eq!(
            driver.on_vote(vote(2), now, &mut out).expect("vote"),
            Verdict::Ignore
        );
        assert_eq!(driver.sync_from(), Some(1));
    }

    /// A one-validator chain crashes after the safety state of its proposal was synced and
    /// before its block was stored. Restarted, it neither decides the lost block nor moves
    /// past the height; the round times out and the next block commits.
    #[test]
    fn a_single_validator_recovers_from_a_crash_between_proposal_and_commit() {
        use branchledger_consensus::{Config as CoreConfig, Core as ConsensusCore};
        let genesis = Arc::new(genesis(1, 0));
        let key = Keypair::from_seed([10; 32]);
        let mut core = ConsensusCore::new(
            CoreConfig::new(genesis.chain_id.clone(), genesis.consensus.clone()),
            genesis.validator_set(),
            Some(Box::new(key.clone())),
            None,
        )
        .expect("core");
        let mut effects = core.handle(Input::Start { height: 1 });
        effects.extend(core.handle(Input::ProposeValue {
            height: 1,
            round: 0,
            block_id: Hash::of(b"the block lost in the crash"),
        }));
        let synced = effects
            .iter()
            .find_map(|e| match e {
                Effect::PersistSafety(s) => Some(s.as_ref().clone()),
                _ => None,
            })
            .expect("persisted");
        let dir = tempfile::tempdir().expect("dir");
        SafetyFile::new(dir.path()).store(&synced).expect("store");

        let store = Arc::new(RocksStore::open(&dir.path().join("store")).expect("store"));
        let start = Instant::now();
        let mut driver = Driver::new(
            Ledger::new(genesis.clone(), store),
            Mempool::new(MempoolLimits::default()),
            SafetyFile::new(dir.path()),
            Some(key.clone()),
            start,
            T0,
        )
        .expect("driver");
        let mut out = Outbox::default();
        driver.start(start, &mut out).expect("start");
        assert_eq!(driver.position().0, 1, "moved past a height never stored");
        assert_eq!(driver.ledger().next_height().expect("tip"), 1);
        let branch_key = Keypair::from_seed([1; 32]);
        let record = Record {
            chain_id: "driver-test".into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: T0,
            nonce: 1,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId("m1".into()),
                joined_on: Date::new(2025, 12, 1),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(&branch_key);
        let results = driver
            .submit(vec![record], true, start, &mut out)
            .expect("submit");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let mut now = start;
        for _ in 0..100 {
            if driver.ledger().tip().expect("tip").is_some() {
                break;
            }
            let Some(deadline) = driver.next_deadline() else {
                break;
            };
            now = now.max(deadline);
            driver.on_time(now, &mut out).expect("timer");
        }
        let tip = driver
            .ledger()
            .tip()
            .expect("tip")
            .expect("a block committed");
        assert_eq!(tip.height, 1);
    }

    /// A block synced while the core is already deciding a later height (it decided one
    /// without the block) leaves that height's held timeouts and request to propose alone.
    #[test]
    fn a_synced_block_keeps_what_was_held_for_a_later_height() {
        let mut cluster = Cluster::new(4, 0);
        let now = cluster.now;
        let driver = cluster.driver(0);
        driver.deferred_timeouts = vec![(1, 0, Step::Propose, 10), (2, 0, Step::Propose, 10)];
        driver.deferred_request = Some((2, 0));
        driver
            .after_commit(1, &[], false, now)
            .expect("after commit");
        assert_eq!(driver.deferred_timeouts, vec![(2, 0, Step::Propose, 10)]);
        assert_eq!(driver.deferred_request, Some((2, 0)));
        driver
            .after_commit(2, &[], false, now)
            .expect("after commit");
        assert!(driver.deferred_timeouts.is_empty());
        assert_eq!(driver.deferred_request, None);
    }
}
