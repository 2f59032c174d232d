//! The simulated world: nodes, network, store, application, faults and the checks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use branchledger_consensus::{
    verify_certificate, Config, Core, Effect, Input, Message, Mutation, SafetyState, Step,
};
use branchledger_crypto::{Hash, Keypair, Signature, Signer};
use branchledger_types::genesis::peer_id_of;
use branchledger_types::{
    BranchId, CommitCertificate, ConsensusParams, Evidence, Height, Proposal, Round, Validator,
    ValidatorIndex, ValidatorSet, Vote, VoteKind,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{EVENTS_MAX, TRACE_LINES_MAX};

/// The chain id of every simulated cluster.
const CHAIN_ID: &str = "sim-chain";
/// Longest message delay before the network heals, above the base timeouts on purpose.
const DELAY_UNSTABLE_MS_MAX: u64 = 1_500;
/// Longest message delay once the network is healed (the paper's Δ after GST).
const DELAY_STABLE_MS_MAX: u64 = 100;
/// How long the application takes to answer.
const APP_DELAY_MS_MAX: u64 = 5;
/// Longest the network stays unstable.
const UNSTABLE_MS_MAX: u64 = 20_000;
/// How often each node re-sends its messages of the current round.
const REBROADCAST_MS: u64 = 1_000;
/// How often lagging nodes fetch committed blocks from the peers they can reach.
const SYNC_MS: u64 = 5_000;
/// After healing, every honest node must decide the next heights within this long.
const LIVENESS_MS_MAX: u64 = 120_000;
/// Loss rates a run may draw, in percent of messages.
const LOSS_PERCENTS: [u32; 4] = [5, 10, 20, 40];
/// Longest a crashed node stays down before the network heals.
const DOWNTIME_MS_MAX: u64 = 5_000;

/// The kinds of fault a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Messages lost before the network heals.
    pub loss: bool,
    /// Messages delivered twice.
    pub duplication: bool,
    /// Partitions that form and heal.
    pub partitions: bool,
    /// Crashes (including in the middle of executing effects) and restarts from the synced
    /// safety state.
    pub crashes: bool,
    /// One Byzantine validator that equivocates (only where n ≥ 4).
    pub byzantine: bool,
}

impl Faults {
    /// Every fault.
    pub const ALL: Faults = Faults {
        loss: true,
        duplication: true,
        partitions: true,
        crashes: true,
        byzantine: true,
    };

    /// The names, in the order shrinking tries to turn them off.
    pub const KINDS: [&'static str; 5] =
        ["crashes", "partitions", "duplication", "loss", "byzantine"];

    /// Turns off one kind; false if it was already off or is unknown.
    pub fn disable(&mut self, kind: &str) -> bool {
        let flag = match kind {
            "loss" => &mut self.loss,
            "duplication" => &mut self.duplication,
            "partitions" => &mut self.partitions,
            "crashes" => &mut self.crashes,
            "byzantine" => &mut self.byzantine,
            _ => return false,
        };
        std::mem::replace(flag, false)
    }

    /// The comma-separated names of the faults that are on (`none` if none), as read back by
    /// [`Faults::from_env`].
    pub fn to_env(&self) -> String {
        let names: Vec<&str> = Faults::KINDS
            .iter()
            .copied()
            .filter(|k| {
                let mut copy = *self;
                copy.disable(k)
            })
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }

    /// Parses [`Faults::to_env`]'s format; unknown names are an error.
    pub fn from_env(text: &str) -> Result<Faults, String> {
        let mut faults = Faults {
            loss: false,
            duplication: false,
            partitions: false,
            crashes: false,
            byzantine: false,
        };
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "none" => {}
                "loss" => faults.loss = true,
                "duplication" => faults.duplication = true,
                "partitions" => faults.partitions = true,
                "crashes" => faults.crashes = true,
                "byzantine" => faults.byzantine = true,
                "all" => faults = Faults::ALL,
                other => return Err(format!("unknown fault kind `{other}`")),
            }
        }
        Ok(faults)
    }
}

/// One simulation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Fixes every random choice of the run.
    pub seed: u64,
    /// Number of validators.
    pub validators: usize,
    /// Faults to inject.
    pub faults: Faults,
    /// Heights every honest node must decide after the network heals.
    pub heights_after_heal: u64,
    /// A deliberately broken rule in every core (tests of the simulator itself).
    pub mutation: Mutation,
    /// Record a trace of every event.
    pub trace: bool,
}

/// Cluster sizes the seeds cycle through: n = 1, 2, 3 tolerate no fault, 4 and 7 tolerate
/// one and two.
const SIZES: [usize; 9] = [1, 4, 7, 2, 4, 7, 3, 4, 7];

impl SimConfig {
    /// The configuration the seed stands for: its cluster size, every fault that size can
    /// bear, three heights after healing.
    pub fn for_seed(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            validators: SIZES[(seed % SIZES.len() as u64) as usize],
            faults: Faults::ALL,
            heights_after_heal: 3,
            mutation: Mutation::None,
            trace: false,
        }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Highest height decided by every honest validator.
    pub height: Height,
    /// Simulated time at the end, in milliseconds.
    pub time_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Evidence items reported by honest cores.
    pub evidence: u64,
    /// Crashes injected.
    pub crashes: u64,
}

/// An invariant the run broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two honest validators decided different blocks at one height.
    Agreement {
        /// The height.
        height: Height,
        /// One decision.
        first: Hash,
        /// The other.
        second: Hash,
        /// Simulated time.
        time_ms: u64,
    },
    /// A decided block failed the application's check or its certificate did not verify.
    Validity {
        /// The validator.
        validator: ValidatorIndex,
        /// The height.
        height: Height,
        /// Why.
        reason: String,
        /// Simulated time.
        time_ms: u64,
    },
    /// An honest validator signed two different votes (or proposals) for one step.
    DoubleSign {
        /// The validator.
        validator: ValidatorIndex,
        /// What it signed.
        detail: String,
        /// Simulated time.
        time_ms: u64,
    },
    /// After healing, honest validators did not decide the next heights in time.
    Liveness {
        /// The height all honest validators had to reach.
        target: Height,
        /// Each honest validator's highest decided height.
        reached: Vec<(ValidatorIndex, Height)>,
        /// Simulated time.
        time_ms: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Agreement {
                height,
                first,
                second,
                time_ms,
            } => write!(
                f,
                "agreement: height {height} decided as {first} and as {second} (t={time_ms} ms)"
            ),
            Violation::Validity {
                validator,
                height,
                reason,
                time_ms,
            } => write!(
                f,
                "validity: validator {validator} decided height {height}: {reason} (t={time_ms} ms)"
            ),
            Violation::DoubleSign {
                validator,
                detail,
                time_ms,
            } => write!(
                f,
                "double sign: honest validator {validator} {detail} (t={time_ms} ms)"
            ),
            Violation::Liveness {
                target,
                reached,
                time_ms,
            } => write!(
                f,
                "liveness: height {target} not decided by every honest validator by t={time_ms} ms; reached {reached:?}"
            ),
        }
    }
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Result<Outcome, Violation> {
    World::new(config).run()
}

/// Runs one simulation with tracing on, returning the result and the trace's end.
pub(crate) fn run_traced(config: &SimConfig) -> (Result<Outcome, Violation>, Vec<String>) {
    let mut world = World::new(config);
    world.tracing = true;
    let result = world.run();
    for (i, node) in world.nodes.iter().enumerate() {
        let line = match &node.core {
            Some(core) => {
                let s = core.safety_state();
                format!(
                    "end: node {i} h={} r={} {:?} locked={:?} valid={:?} store height {}",
                    s.height,
                    s.round,
                    s.step,
                    s.locked.map(|v| (v.round, short(&v.block_id))),
                    s.valid.map(|v| (v.round, short(&v.block_id))),
                    node.committed()
                )
            }
            None => format!("end: node {i} is down"),
        };
        world.trace.push_back(line);
    }
    let trace: Vec<String> = world.trace.into_iter().collect();
    (result, trace)
}

/// The simulated disk holding one validator's safety state.
#[derive(Default)]
struct Store {
    synced: Option<SafetyState>,
    unsynced: Option<SafetyState>,
}

impl Store {
    fn write(&mut self, state: SafetyState) {
        self.unsynced = Some(state);
    }

    fn sync(&mut self) {
        if let Some(state) = self.unsynced.take() {
            self.synced = Some(state);
        }
    }

    /// A crash: the page cache is gone.
    fn crash(&mut self) {
        self.unsynced = None;
    }
}

struct Node {
    core: Option<Core>,
    store: Store,
    /// Bumped at every crash so that timeouts and answers for the old process are dropped.
    incarnation: u64,
    /// The block store: decided or synced blocks, durable.
    decided: BTreeMap<Height, Hash>,
}

impl Node {
    fn committed(&self) -> Height {
        self.decided.keys().next_back().copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        message: Message,
    },
    App {
        node: usize,
        incarnation: u64,
        input: Input,
    },
    Timeout {
        node: usize,
        incarnation: u64,
        height: Height,
        round: Round,
        step: Step,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Partition,
    HealPartition,
    Rebroadcast {
        node: usize,
    },
    Sync,
    Stabilise,
}

struct World {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    sequence: u64,
    queue: BTreeMap<(u64, u64), Event>,
    params: ConsensusParams,
    validators: ValidatorSet,
    keys: Vec<Keypair>,
    nodes: Vec<Node>,
    byzantine: Option<usize>,
    /// Each node's side while a partition stands.
    partition: Option<Vec<bool>>,
    stable: bool,
    /// Percentage of messages lost before healing, drawn per run so that some runs are
    /// nearly clean and some barely connected.
    loss_percent: u32,
    /// Height every honest node must reach once stable, and by when.
    target: Option<(Height, u64)>,
    valid_blocks: BTreeSet<Hash>,
    blocks_made: u64,
    /// The first honest decision of every height.
    decisions: BTreeMap<Height, Hash>,
    /// What each honest validator signed, by `(validator, height, round, kind)`.
    signed_votes: BTreeMap<(usize, Height, Round, VoteKind), Option<Hash>>,
    signed_proposals: BTreeMap<(usize, Height, Round), Hash>,
    /// Block ids proposed at each `(height, round)`, for the Byzantine validator's choices.
    proposed: BTreeMap<(Height, Round), BTreeSet<Hash>>,
    /// Certificate signatures already verified.
    verified: HashSet<(Vote, Signature)>,
    events: u64,
    evidence: u64,
    crashes: u64,
    tracing: bool,
    trace: std::collections::VecDeque<String>,
}

impl World {
    fn new(config: &SimConfig) -> World {
        let n = config.validators;
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        let validators = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, key)| Validator {
                    name: format!("v{i}"),
                    branch_id: BranchId("sim".into()),
                    consensus_key: key.public_key(),
                    peer_id: peer_id_of(&key.public_key()),
                })
                .collect(),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let faulty_allowed = (n - 1) / 3;
        let byzantine =
            (config.faults.byzantine && faulty_allowed >= 1).then(|| rng.random_range(0..n));
        let nodes = (0..n)
            .map(|_| Node {
                core: None,
                store: Store::default(),
                incarnation: 0,
                decided: BTreeMap::new(),
            })
            .collect();
        World {
            config: config.clone(),
            rng,
            now: 0,
            sequence: 0,
            queue: BTreeMap::new(),
            params: ConsensusParams::default(),
            validators,
            keys,
            nodes,
            byzantine,
            partition: None,
            stable: false,
            loss_percent: 0,
            target: None,
            valid_blocks: BTreeSet::new(),
            blocks_made: 0,
            decisions: BTreeMap::new(),
            signed_votes: BTreeMap::new(),
            signed_proposals: BTreeMap::new(),
            proposed: BTreeMap::new(),
            verified: HashSet::new(),
            events: 0,
            evidence: 0,
            crashes: 0,
            tracing: config.trace,
            trace: std::collections::VecDeque::new(),
        }
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.sequence += 1;
        self.queue
            .insert((self.now + delay_ms, self.sequence), event);
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            if self.trace.len() == TRACE_LINES_MAX {
                self.trace.pop_front();
            }
            let line = format!("t={:>6} {}", self.now, line());
            self.trace.push_back(line);
        }
    }

    fn is_honest(&self, node: usize) -> bool {
        Some(node) != self.byzantine
    }

    fn run(&mut self) -> Result<Outcome, Violation> {
        let n = self.nodes.len();
        let faults = self.config.faults;
        let unstable_ms = self.rng.random_range(0..=UNSTABLE_MS_MAX);
        self.loss_percent = LOSS_PERCENTS[self.rng.random_range(0..LOSS_PERCENTS.len())];
        self.schedule(unstable_ms, Event::Stabilise);
        if faults.crashes {
            for _ in 0..self.rng.random_range(0..=4u32) {
                let at = self.rng.random_range(0..=unstable_ms);
                let node = self.rng.random_range(0..n);
                self.schedule(at, Event::Crash { node });
            }
        }
        if faults.partitions && n > 1 {
            for _ in 0..self.rng.random_range(0..=3u32) {
                let at = self.rng.random_range(0..=unstable_ms);
                let length = self.rng.random_range(100..=5_000);
                self.schedule(at, Event::Partition);
                self.schedule(at + length, Event::HealPartition);
            }
        }
        for node in 0..n {
            let offset = self.rng.random_range(0..REBROADCAST_MS);
            self.schedule(offset, Event::Rebroadcast { node });
            self.start_node(node)?;
        }
        self.schedule(SYNC_MS, Event::Sync);

        while let Some(((time, _), event)) = self.queue.pop_first() {
            self.now = time;
            self.events += 1;
            self.step(event)?;
            if let Some((target, deadline)) = self.target {
                let reached = self.honest_heights();
                if reached.iter().all(|(_, h)| *h >= target) {
                    return Ok(Outcome {
                        height: target,
                        time_ms: self.now,
                        events: self.events,
                        evidence: self.evidence,
                        crashes: self.crashes,
                    });
                }
                if self.now > deadline || self.events > EVENTS_MAX {
                    return Err(Violation::Liveness {
                        target,
                        reached,
                        time_ms: self.now,
                    });
                }
            }
        }
        // The rebroadcast and sync ticks never stop, so the queue is never empty.
        Err(Violation::Liveness {
            target: 0,
            reached: self.honest_heights(),
            time_ms: self.now,
        })
    }

    fn honest_heights(&self) -> Vec<(ValidatorIndex, Height)> {
        (0..self.nodes.len())
            .filter(|i| self.is_honest(*i))
            .map(|i| (i as ValidatorIndex, self.nodes[i].committed()))
            .collect()
    }

    fn core_config(&self) -> Config {
        let mut config = Config::new(CHAIN_ID, self.params.clone());
        config.mutation = self.config.mutation;
        config
    }

    fn start_node(&mut self, node: usize) -> Result<(), Violation> {
        let core = Core::new(
            self.core_config(),
            self.validators.clone(),
            Some(Box::new(self.keys[node].clone())),
            self.nodes[node].store.synced.clone(),
        );
        let mut core = match core {
            Ok(core) => core,
            Err(e) => panic!("simulated validator {node} cannot start: {e}"),
        };
        let height = self.nodes[node].committed() + 1;
        let effects = core.handle(Input::Start { height });
        self.nodes[node].core = Some(core);
        self.note(|| format!("node {node} starts at height {height}"));
        self.apply(node, effects, true)
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side[a] != side[b])
    }

    fn step(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver { from, to, message } => {
                if self.nodes[to].core.is_none() || (!self.stable && self.partitioned(from, to)) {
                    return Ok(());
                }
                self.note(|| format!("deliver {from}->{to} {}", show(&message)));
                if Some(to) == self.byzantine {
                    self.back_any_proposal(to, &message);
                }
                self.input(to, Input::Message(message))
            }
            Event::App {
                node,
                incarnation,
                input,
            } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].core.is_none() {
                    return Ok(());
                }
                self.note(|| format!("app -> {node} {input:?}"));
                self.input(node, input)
            }
            Event::Timeout {
                node,
                incarnation,
                height,
                round,
                step,
            } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].core.is_none() {
                    return Ok(());
                }
                self.note(|| format!("timeout {node} h={height} r={round} {step:?}"));
                self.input(
                    node,
                    Input::Timeout {
                        height,
                        round,
                        step,
                    },
                )
            }
            Event::Crash { node } => {
                if !self.stable && self.is_honest(node) && self.nodes[node].core.is_some() {
                    self.crash(node);
                }
                Ok(())
            }
            Event::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.start_node(node)?;
                }
                Ok(())
            }
            Event::Partition => {
                if !self.stable {
                    let side: Vec<bool> = (0..self.nodes.len())
                        .map(|_| self.rng.random_bool(0.5))
                        .collect();
                    self.note(|| format!("partition {side:?}"));
                    self.partition = Some(side);
                }
                Ok(())
            }
            Event::HealPartition => {
                self.note(|| "partition heals".into());
                self.partition = None;
                Ok(())
            }
            Event::Rebroadcast { node } => {
                self.schedule(REBROADCAST_MS, Event::Rebroadcast { node });
                if self.nodes[node].core.is_some() {
                    self.input(node, Input::Rebroadcast)?;
                }
                Ok(())
            }
            Event::Sync => {
                self.schedule(SYNC_MS, Event::Sync);
                self.block_sync()
            }
            Event::Stabilise => {
                self.note(|| "network heals for good".into());
                self.stable = true;
                self.partition = None;
                for node in 0..self.nodes.len() {
                    if self.nodes[node].core.is_none() {
                        self.start_node(node)?;
                    }
                }
                let highest = self
                    .honest_heights()
                    .iter()
                    .map(|(_, h)| *h)
                    .max()
                    .unwrap_or(0);
                self.target = Some((
                    highest + self.config.heights_after_heal,
                    self.now + LIVENESS_MS_MAX,
                ));
                Ok(())
            }
        }
    }

    fn crash(&mut self, node: usize) {
        self.note(|| format!("node {node} crashes"));
        self.crashes += 1;
        let state = &mut self.nodes[node];
        state.core = None;
        state.store.crash();
        state.incarnation += 1;
        let downtime = self.rng.random_range(1..=DOWNTIME_MS_MAX);
        self.schedule(downtime, Event::Restart { node });
    }

    fn input(&mut self, node: usize, input: Input) -> Result<(), Violation> {
        let Some(core) = self.nodes[node].core.as_mut() else {
            return Ok(());
        };
        let effects = core.handle(input);
        self.apply(node, effects, false)
    }

    /// A lagging node fetches, from any node it can reach, the blocks it has not decided.
    fn block_sync(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            while let Some(core) = self.nodes[node].core.as_ref() {
                let height = core.height();
                let source = (0..self.nodes.len()).find(|other| {
                    *other != node
                        && self.is_honest(*other)
                        && (self.stable || !self.partitioned(node, *other))
                        && self.nodes[*other].decided.contains_key(&height)
                });
                let Some(source) = source else { break };
                let Some(block_id) = self.nodes[source].decided.get(&height).copied() else {
                    break;
                };
                self.note(|| format!("sync {source}->{node} height {height}"));
                self.nodes[node].decided.insert(height, block_id);
                self.input(node, Input::Committed { height })?;
            }
        }
        Ok(())
    }

    /// Carries out a node's effects in order, as the node's shell would; before the network
    /// heals a crash may cut the list short at any point, even between a write and its sync.
    fn apply(
        &mut self,
        node: usize,
        effects: Vec<Effect>,
        starting: bool,
    ) -> Result<(), Violation> {
        let byzantine = !self.is_honest(node);
        let crash_at = (!self.stable
            && !starting
            && !byzantine
            && self.config.faults.crashes
            && !effects.is_empty()
            && self.rng.random_ratio(1, 100))
        .then(|| self.rng.random_range(0..effects.len()));
        for (index, effect) in effects.into_iter().enumerate() {
            if crash_at == Some(index) {
                if let Effect::PersistSafety(state) = &effect {
                    if self.rng.random_bool(0.5) {
                        // Written to the page cache, never synced.
                        self.nodes[node].store.write(state.as_ref().clone());
                    }
                }
                self.crash(node);
                return Ok(());
            }
            self.effect(node, effect, byzantine)?;
        }
        Ok(())
    }

    fn effect(&mut self, node: usize, effect: Effect, byzantine: bool) -> Result<(), Violation> {
        match effect {
            Effect::PersistSafety(state) => {
                let store = &mut self.nodes[node].store;
                store.write(*state);
                store.sync();
            }
            Effect::Broadcast(message) => {
                if byzantine {
                    self.equivocate(node, message);
                } else {
                    self.check_signing(node, &message)?;
                    for to in 0..self.nodes.len() {
                        if to != node {
                            self.send(node, to, message);
                        }
                    }
                }
            }
            Effect::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => {
                let incarnation = self.nodes[node].incarnation;
                self.schedule(
                    duration_ms,
                    Event::Timeout {
                        node,
                        incarnation,
                        height,
                        round,
                        step,
                    },
                );
            }
            Effect::RequestValue { height, round } => {
                let block_id = self.make_block(true);
                self.answer(
                    node,
                    Input::ProposeValue {
                        height,
                        round,
                        block_id,
                    },
                );
            }
            Effect::ValidateValue {
                height, block_id, ..
            } => {
                let valid = self.valid_blocks.contains(&block_id);
                self.answer(
                    node,
                    Input::Verdict {
                        height,
                        block_id,
                        valid,
                    },
                );
            }
            Effect::Decide {
                height,
                block_id,
                certificate,
            } => {
                self.note(|| format!("node {node} decides h={height} {}", short(&block_id)));
                self.nodes[node].decided.insert(height, block_id);
                if !byzantine {
                    self.check_decision(node, height, block_id, &certificate)?;
                }
            }
            Effect::Evidence(evidence) => {
                let Evidence::DuplicateVote { first, second } = &evidence;
                let culprit = usize::from(first.vote.validator_index);
                self.note(|| format!("node {node} reports evidence against {culprit}"));
                if !byzantine {
                    self.evidence += 1;
                    let proven = first.vote.validator_index == second.vote.validator_index
                        && (first.vote.height, first.vote.round, first.vote.kind)
                            == (second.vote.height, second.vote.round, second.vote.kind)
                        && first.vote.block_id != second.vote.block_id;
                    if !proven {
                        return Err(Violation::DoubleSign {
                            validator: first.vote.validator_index,
                            detail: format!("was accused by unfounded evidence {evidence:?}"),
                            time_ms: self.now,
                        });
                    }
                    if self.is_honest(culprit) {
                        return Err(Violation::DoubleSign {
                            validator: first.vote.validator_index,
                            detail: format!("is proven to have signed {first:?} and {second:?}"),
                            time_ms: self.now,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn answer(&mut self, node: usize, input: Input) {
        let incarnation = self.nodes[node].incarnation;
        let delay = self.rng.random_range(0..=APP_DELAY_MS_MAX);
        self.schedule(
            delay,
            Event::App {
                node,
                incarnation,
                input,
            },
        );
    }

    fn make_block(&mut self, valid: bool) -> Hash {
        self.blocks_made += 1;
        let mut bytes = self.config.seed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.blocks_made.to_le_bytes());
        let block_id = Hash::of(&bytes);
        if valid {
            self.valid_blocks.insert(block_id);
        }
        block_id
    }

    fn send(&mut self, from: usize, to: usize, message: Message) {
        if let Message::Proposal(p) = message {
            self.proposed
                .entry((p.proposal.height, p.proposal.round))
                .or_default()
                .insert(p.proposal.block_id);
        }
        let faults = self.config.faults;
        if !self.stable
            && (self.partitioned(from, to)
                || (faults.loss && self.rng.random_ratio(self.loss_percent, 100)))
        {
            return;
        }
        let delay_max = if self.stable {
            DELAY_STABLE_MS_MAX
        } else {
            DELAY_UNSTABLE_MS_MAX
        };
        let copies = if faults.duplication && self.rng.random_ratio(1, 20) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=delay_max);
            self.schedule(delay, Event::Deliver { from, to, message });
        }
    }

    /// The Byzantine validator sends each peer its honest core's message, a conflicting one
    /// it signs itself, or both: two proposals for one round, two votes for one step.
    fn equivocate(&mut self, node: usize, message: Message) {
        let signer = match message {
            Message::Vote(v) => v.vote.validator_index,
            Message::Proposal(p) => p.proposal.proposer_index,
        };
        if usize::from(signer) != node {
            // A relayed message of another validator: its signature cannot be forged.
            for to in (0..self.nodes.len()).filter(|to| *to != node) {
                self.send(node, to, message);
            }
            return;
        }
        let other = match message {
            Message::Vote(v) => {
                let known: Vec<Hash> = self
                    .proposed
                    .get(&(v.vote.height, v.vote.round))
                    .map(|set| set.iter().copied().collect())
                    .unwrap_or_default();
                let choices: Vec<Option<Hash>> = known
                    .into_iter()
                    .map(Some)
                    .chain([None])
                    .filter(|b| *b != v.vote.block_id)
                    .collect();
                let block_id = if choices.is_empty() {
                    Some(self.make_block(true))
                } else {
                    choices[self.rng.random_range(0..choices.len())]
                };
                let vote = Vote { block_id, ..v.vote };
                Message::Vote(vote.sign(CHAIN_ID, &self.keys[node]))
            }
            Message::Proposal(p) => {
                let valid = self.rng.random_bool(0.7);
                let block_id = self.make_block(valid);
                let proposal = Proposal {
                    block_id,
                    ..p.proposal
                };
                Message::Proposal(proposal.sign(CHAIN_ID, &self.keys[node]))
            }
        };
        self.note(|| {
            format!(
                "byzantine {node} equivocates {} / {}",
                show(&message),
                show(&other)
            )
        });
        for to in 0..self.nodes.len() {
            if to == node {
                continue;
            }
            match self.rng.random_range(0..3u8) {
                0 => self.send(node, to, message),
                1 => self.send(node, to, other),
                _ => {
                    self.send(node, to, message);
                    self.send(node, to, other);
                }
            }
        }
    }

    /// The Byzantine validator also votes, at any height and round, for any proposal it
    /// hears of, and tells only some peers: the split views that locks exist to survive.
    fn back_any_proposal(&mut self, node: usize, message: &Message) {
        let Message::Proposal(p) = message else {
            return;
        };
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            let vote = Vote {
                height: p.proposal.height,
                round: p.proposal.round,
                kind,
                block_id: Some(p.proposal.block_id),
                validator_index: node as ValidatorIndex,
            };
            let signed = Message::Vote(vote.sign(CHAIN_ID, &self.keys[node]));
            for to in 0..self.nodes.len() {
                if to != node && self.rng.random_bool(0.5) {
                    self.send(node, to, signed);
                }
            }
        }
    }

    /// No honest validator signs two different votes, or two proposals, for one step: the
    /// property the synced safety state exists for.
    fn check_signing(&mut self, node: usize, message: &Message) -> Result<(), Violation> {
        match message {
            Message::Vote(v) => {
                let vote = v.vote;
                if usize::from(vote.validator_index) != node {
                    // A relayed vote of another validator, not this one's signature.
                    return Ok(());
                }
                let key = (node, vote.height, vote.round, vote.kind);
                match self.signed_votes.get(&key) {
                    Some(previous) if *previous != vote.block_id => Err(Violation::DoubleSign {
                        validator: vote.validator_index,
                        detail: format!(
                            "signed {:?} at h={} r={} for {:?} and for {:?}",
                            vote.kind, vote.height, vote.round, previous, vote.block_id
                        ),
                        time_ms: self.now,
                    }),
                    Some(_) => Ok(()),
                    None => {
                        self.signed_votes.insert(key, vote.block_id);
                        Ok(())
                    }
                }
            }
            Message::Proposal(p) => {
                let proposal = p.proposal;
                if usize::from(proposal.proposer_index) != node {
                    // A relayed proposal of another validator.
                    return Ok(());
                }
                let key = (node, proposal.height, proposal.round);
                match self.signed_proposals.get(&key) {
                    Some(previous) if *previous != proposal.block_id => {
                        Err(Violation::DoubleSign {
                            validator: proposal.proposer_index,
                            detail: format!(
                                "proposed {} and {} at h={} r={}",
                                short(previous),
                                short(&proposal.block_id),
                                proposal.height,
                                proposal.round
                            ),
                            time_ms: self.now,
                        })
                    }
                    Some(_) => Ok(()),
                    None => {
                        self.signed_proposals.insert(key, proposal.block_id);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Validity (the block passed the application's check and carries a certificate of a
    /// quorum of distinct validators with good signatures) and agreement.
    fn check_decision(
        &mut self,
        node: usize,
        height: Height,
        block_id: Hash,
        certificate: &CommitCertificate,
    ) -> Result<(), Violation> {
        let invalid = |reason: String, now: u64| Violation::Validity {
            validator: node as ValidatorIndex,
            height,
            reason,
            time_ms: now,
        };
        if !self.valid_blocks.contains(&block_id) {
            return Err(invalid(
                format!("block {} failed the application's check", short(&block_id)),
                self.now,
            ));
        }
        if certificate.height != height || certificate.block_id != block_id {
            return Err(invalid(
                format!("certificate is for another block: {certificate:?}"),
                self.now,
            ));
        }
        // Verifying every signature of every certificate dominates the run time, and most
        // signatures recur in the certificates of several validators: check each once.
        let fresh = certificate.signatures.iter().any(|s| {
            !self
                .verified
                .contains(&(certificate.vote_of(s.validator_index), s.signature))
        });
        let structural = certificate
            .signatures
            .windows(2)
            .all(|w| w[0].validator_index < w[1].validator_index)
            && certificate.signatures.len() >= self.validators.quorum();
        if fresh || !structural {
            if let Err(e) = verify_certificate(CHAIN_ID, &self.validators, certificate) {
                return Err(invalid(
                    format!("certificate does not verify: {e}"),
                    self.now,
                ));
            }
            for s in &certificate.signatures {
                self.verified
                    .insert((certificate.vote_of(s.validator_index), s.signature));
            }
        }
        match self.decisions.get(&height) {
            Some(first) if *first != block_id => Err(Violation::Agreement {
                height,
                first: *first,
                second: block_id,
                time_ms: self.now,
            }),
            Some(_) => Ok(()),
            None => {
                self.decisions.insert(height, block_id);
                Ok(())
            }
        }
    }
}

fn short(hash: &Hash) -> String {
    hash.to_hex()[..8].to_string()
}

fn show(message: &Message) -> String {
    match message {
        Message::Proposal(p) => {
            let p = p.proposal;
            format!(
                "PROPOSAL h={} r={} {} vr={:?} from {}",
                p.height,
                p.round,
                short(&p.block_id),
                p.valid_round,
                p.proposer_index
            )
        }
        Message::Vote(v) => {
            let v = v.vote;
            format!(
                "{:?} h={} r={} {} from {}",
                v.kind,
                v.height,
                v.round,
                v.block_id.map_or_else(|| "nil".to_string(), |b| short(&b)),
                v.validator_index
            )
        }
    }
}
