//! The running node: the async loop around the consensus driver.
//!
//! One task owns the [`Driver`] (and so the ledger, the mempool and the consensus core) and
//! serves, in turn: commands from the API (bounded channel, each with a oneshot reply),
//! messages from the network, timers, a periodic rebroadcast, and shutdown. Nothing else
//! touches consensus state, so no lock is held across it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use branchledger_crypto::Hash;
use branchledger_types::{Evidence, Height, SignedRecord};
use tokio::sync::{broadcast, mpsc, oneshot};

use branchledger_p2p::{Client, Event, Events, MessageId, PeerId};
use branchledger_types::wire::ConsensusMessage;

use crate::driver::{Driver, DriverError, Network, Outbound, SubmitError, Verdict};
use crate::ledger::LedgerError;
use crate::mempool::{AdmitError, RecordStatus};
use crate::metrics::{CompactLabels, Metrics};
use crate::peers::{GossipNetwork, ServeRequest, SyncState, SYNC_PROBE_INTERVAL};

/// Commands waiting for the node loop; senders wait (back-pressure) when it is full.
pub const COMMAND_QUEUE: usize = 1_024;
/// Most clients waiting for their records to commit.
pub const COMMIT_WAITERS_MAX: usize = 10_000;
/// How often the node sends its current consensus messages again.
pub const REBROADCAST_INTERVAL: Duration = Duration::from_secs(2);
/// Most urgent network events (consensus messages, sync answers, peers coming and going)
/// the node loop handles in a row before it serves its other inputs (client commands, record
/// batches, timers) again. Urgent events go first, so that a vote never waits behind the
/// signature checks of queued record batches; this bound keeps a burst of them from starving
/// the rest.
pub const URGENT_EVENTS_IN_A_ROW_MAX: usize = 64;

/// A record batch counts as useless against the peer that sent it (harmless alone; a flood
/// of them gets the peer banned, `branchledger_p2p::USELESS_PER_PENALTY`) only if every record
/// in it had been committed here at least this long before the batch arrived. A batch that
/// waited in this node's record queue while its records were committed, or one that an honest
/// peer a few blocks behind passed on, is not the sender's fault; a replay of old records is.
pub const STALE_RECORDS_AGE: Duration = Duration::from_secs(30);
/// Most commit times the node keeps to apply [`STALE_RECORDS_AGE`]; a height older than those
/// kept is taken to be committed when the oldest kept one was.
pub const COMMIT_TIMES_KEPT: usize = 4_096;

/// When this node committed its recent heights, oldest first.
#[derive(Debug, Default)]
struct CommitTimes {
    times: std::collections::VecDeque<(Height, Instant)>,
}

impl CommitTimes {
    /// Notes that `height` (above every height noted before) was committed at `at`.
    fn committed(&mut self, height: Height, at: Instant) {
        if self.times.len() >= COMMIT_TIMES_KEPT {
            self.times.pop_front();
        }
        self.times.push_back((height, at));
    }

    /// True if `height` is known to have been committed here no later than `at`. Heights
    /// commit in order, so the first noted height at or above it bounds its commit time; a
    /// height above every noted one is not known to be committed by then.
    fn committed_by(&self, height: Height, at: Instant) -> bool {
        let first_at_or_above = self.times.partition_point(|(h, _)| *h < height);
        self.times
            .get(first_at_or_above)
            .is_some_and(|(_, committed_at)| *committed_at <= at)
    }

    /// True if every answer says the record was committed [`STALE_RECORDS_AGE`] or more
    /// before `received` (and there is at least one answer).
    fn all_stale(&self, results: &[Result<Hash, AdmitError>], received: Instant) -> bool {
        let Some(cutoff) = received.checked_sub(STALE_RECORDS_AGE) else {
            return false;
        };
        !results.is_empty()
            && results.iter().all(|r| {
                matches!(r, Err(AdmitError::Committed(_, height)) if self.committed_by(*height, cutoff))
            })
    }
}

/// A request to the node loop.
pub enum Command {
    /// Admit records (already signed) and gossip them.
    Submit {
        /// The records.
        records: Vec<SignedRecord>,
        /// One result per record.
        reply: oneshot::Sender<Vec<Result<Hash, AdmitError>>>,
    },
    /// One record from a client, checked against the state rules too
    /// ([`Driver::submit_checked`]).
    SubmitChecked {
        /// The record.
        record: Box<SignedRecord>,
        /// The result.
        reply: oneshot::Sender<Result<Hash, SubmitError>>,
    },
    /// Answer with the height once the record is committed, or the reason it was dropped.
    WaitCommitted {
        /// The record.
        record_id: Hash,
        /// Sent the height when committed, or why the record was dropped (the sender is
        /// dropped if the node stops first or too many clients wait).
        reply: oneshot::Sender<Result<Height, String>>,
    },
    /// What the mempool knows of a record, with the record if pending.
    RecordStatus {
        /// The record.
        record_id: Hash,
        /// The answer.
        reply: oneshot::Sender<(RecordStatus, Option<SignedRecord>)>,
    },
    /// Evidence of misbehaviour seen, most recent last.
    Evidence {
        /// The answer.
        reply: oneshot::Sender<Vec<Evidence>>,
    },
    /// A snapshot of the node's state.
    Status {
        /// The answer.
        reply: oneshot::Sender<Status>,
    },
}

/// What the node reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Height of the last committed block.
    pub height: Height,
    /// Height being decided.
    pub deciding: Height,
    /// Its round.
    pub round: u32,
    /// Records in the mempool.
    pub mempool_records: usize,
    /// Bytes in the mempool.
    pub mempool_bytes: usize,
    /// Connected peers.
    pub peers: usize,
    /// The highest height a peer reported through block sync (0: none yet).
    pub peer_tip: Height,
    /// Why no block is committing, when none is (empty when blocks commit normally).
    pub not_committing_reason: String,
}

/// A network for a node with no peers (a one-validator development chain).
pub struct NoPeers;

impl Network for NoPeers {
    fn broadcast(&mut self, _message: Outbound) {}
}

/// The node's connection to the network: the client, its events, and the task that answers
/// sync requests.
pub struct PeerLink {
    /// Commands to the network.
    pub client: Client,
    /// Events from the network.
    pub events: Events,
    /// Sync requests to answer.
    pub serve: mpsc::Sender<ServeRequest>,
}

/// Committed heights announced to block streams; a stream that falls this far behind is
/// told to resume from the store.
pub const COMMITTED_ANNOUNCEMENTS: usize = 1_024;

/// A handle to send commands to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    committed: broadcast::Sender<Height>,
}

impl NodeHandle {
    /// Admits records; `None` if the node has stopped.
    pub async fn submit(
        &self,
        records: Vec<SignedRecord>,
    ) -> Option<Vec<Result<Hash, AdmitError>>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Submit { records, reply })
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Admits one record checked against the state rules too; `None` if the node has stopped.
    pub async fn submit_checked(&self, record: SignedRecord) -> Option<Result<Hash, SubmitError>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SubmitChecked {
                record: Box::new(record),
                reply,
            })
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Heights as they commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Height> {
        self.committed.subscribe()
    }

    /// What the mempool knows of a record; `None` if the node has stopped.
    pub async fn record_status(
        &self,
        record_id: Hash,
    ) -> Option<(RecordStatus, Option<SignedRecord>)> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::RecordStatus { record_id, reply })
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Evidence seen so far; `None` if the node has stopped.
    pub async fn evidence(&self) -> Option<Vec<Evidence>> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Evidence { reply }).await.ok()?;
        answer.await.ok()
    }

    /// Waits until `record_id` is committed (its height) or dropped (the reason); `None` if
    /// the node stops first.
    pub async fn wait_committed(&self, record_id: Hash) -> Option<Result<Height, String>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::WaitCommitted { record_id, reply })
            .await
            .ok()?;
        answer.await.ok()
    }

    /// The node's status; `None` if it has stopped.
    pub async fn status(&self) -> Option<Status> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.ok()?;
        answer.await.ok()
    }
}

/// The node loop, before it runs.
pub struct NodeLoop {
    driver: Driver,
    committed: broadcast::Sender<Height>,
    commands: mpsc::Receiver<Command>,
    metrics: Arc<Metrics>,
    waiters: HashMap<Hash, Vec<oneshot::Sender<Result<Height, String>>>>,
    admitted_at: HashMap<Hash, Instant>,
    sync: SyncState,
    last_commit: Instant,
    commit_times: CommitTimes,
}

/// A node loop and the handle to command it.
pub fn new(driver: Driver, metrics: Arc<Metrics>) -> (NodeHandle, NodeLoop) {
    let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
    let (committed, _) = broadcast::channel(COMMITTED_ANNOUNCEMENTS);
    // What the store holds was committed by now (at the latest).
    let mut commit_times = CommitTimes::default();
    if let Some(tip) = driver
        .ledger()
        .next_height()
        .ok()
        .and_then(|h| h.checked_sub(1))
    {
        commit_times.committed(tip, Instant::now());
    }
    (
        NodeHandle {
            commands: sender,
            committed: committed.clone(),
        },
        NodeLoop {
            driver,
            committed,
            commands: receiver,
            metrics,
            waiters: HashMap::new(),
            admitted_at: HashMap::new(),
            sync: SyncState::default(),
            last_commit: Instant::now(),
            commit_times,
        },
    )
}

impl NodeLoop {
    /// Runs until `shutdown` resolves or every handle is dropped; with `link`, over the
    /// network, otherwise alone (a one-validator development chain). The store is flushed by
    /// RocksDB when the driver is dropped at the end.
    pub async fn run(
        mut self,
        link: Option<PeerLink>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DriverError> {
        tokio::pin!(shutdown);
        // Without a network, channels that never yield stand in for its events.
        let (_no_events, mut events, client, serve) = match link {
            Some(link) => (None, link.events, Some(link.client), Some(link.serve)),
            None => {
                let (urgent_tx, urgent) = mpsc::channel(1);
                let (records_tx, records) = mpsc::channel(1);
                (
                    Some((urgent_tx, records_tx)),
                    Events { urgent, records },
                    None,
                    None,
                )
            }
        };
        let mut net: Box<dyn Network + Send> = match &client {
            Some(client) => Box::new(GossipNetwork::new(
                client.clone(),
                self.metrics.gossip_dropped.clone(),
            )),
            None => Box::new(NoPeers),
        };
        self.driver.start(Instant::now(), &mut *net)?;
        self.after_step();
        let mut rebroadcast = tokio::time::interval(REBROADCAST_INTERVAL);
        let mut rebroadcast_height = None;
        let mut probe = tokio::time::interval(SYNC_PROBE_INTERVAL);
        loop {
            // Urgent events first: each one handled may be the vote that decides the height.
            let mut urgent = 0;
            while urgent < URGENT_EVENTS_IN_A_ROW_MAX {
                let Ok(event) = events.urgent.try_recv() else {
                    break;
                };
                urgent += 1;
                if let (Some(client), Some(serve)) = (&client, &serve) {
                    self.handle_event(event, &mut *net, client, serve)?;
                }
                self.after_step();
            }
            let deadline = self
                .driver
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut shutdown => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command, &mut *net)?,
                    None => break,
                },
                Some(event) = events.urgent.recv() => {
                    if let (Some(client), Some(serve)) = (&client, &serve) {
                        self.handle_event(event, &mut *net, client, serve)?;
                    }
                }
                Some(event) = events.records.recv() => {
                    if let (Some(client), Some(serve)) = (&client, &serve) {
                        self.handle_event(event, &mut *net, client, serve)?;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.driver.on_time(Instant::now(), &mut *net)?;
                }
                _ = rebroadcast.tick() => {
                    // Only a height that made no progress since the last tick needs its
                    // messages sent again.
                    let height = self.driver.position().0;
                    if rebroadcast_height == Some(height) {
                        self.driver.rebroadcast(Instant::now(), &mut *net)?;
                    }
                    rebroadcast_height = Some(height);
                }
                _ = probe.tick() => {
                    if let Some(client) = &client {
                        let now = Instant::now();
                        if now.duration_since(self.last_commit) >= SYNC_PROBE_INTERVAL {
                            let from = self.driver.ledger().next_height()?;
                            self.sync.ask(client, from, None, now);
                        }
                    }
                }
            }
            self.after_step();
            if let (Some(client), Some(from)) = (&client, self.driver.sync_from()) {
                self.sync.ask(client, from, None, Instant::now());
            }
        }
        tracing::info!(height = self.driver.position().0, "node loop stopped");
        Ok(())
    }

    fn handle_event(
        &mut self,
        event: Event,
        net: &mut dyn Network,
        client: &Client,
        serve: &mpsc::Sender<ServeRequest>,
    ) -> Result<(), DriverError> {
        let now = Instant::now();
        match event {
            Event::Listening(_) => {}
            Event::PeerConnected(peer) => {
                self.sync.connected(peer);
                self.metrics.peers.set(self.sync.peer_count() as i64);
                // A node that was away asks the newcomer at once whether it is behind.
                let from = self.driver.ledger().next_height()?;
                self.sync.ask(client, from, Some(peer), now);
            }
            Event::PeerDisconnected(peer) => {
                self.sync.disconnected(peer);
                self.metrics.peers.set(self.sync.peer_count() as i64);
            }
            Event::Records {
                source,
                message_id,
                records,
                received,
            } => {
                let results = self.driver.submit(records, false, now, net)?;
                let verdict = if results
                    .iter()
                    .any(|r| matches!(r, Err(AdmitError::Invalid(..))))
                {
                    Verdict::Reject
                } else if results.iter().any(Result::is_ok) {
                    Verdict::Accept
                } else {
                    Verdict::Ignore
                };
                // Nothing new in it, and not for a while before it arrived (every record
                // committed `STALE_RECORDS_AGE` before): harmless alone, but it cost checks and
                // store reads; a peer flooding them is banned.
                if verdict == Verdict::Ignore && self.commit_times.all_stale(&results, received) {
                    let _ = client.report_useless(source, "record batch already committed");
                }
                if received.elapsed() < branchledger_p2p::GOSSIP_VERDICT_WINDOW {
                    self.report(client, "records", message_id, source, verdict);
                } else {
                    // It waited on the records queue so long that gossipsub has likely let it
                    // go: a verdict would change nothing there and only log a warning.
                    self.count_verdict("records", verdict);
                    self.metrics.gossip_verdicts_late.inc();
                }
            }
            Event::Consensus {
                source,
                message_id,
                message,
            } => {
                let verdict = match message {
                    ConsensusMessage::Proposal { proposal, block } => {
                        self.driver.on_proposal(proposal, *block, now, net)?
                    }
                    ConsensusMessage::CompactProposal { proposal, block } => self
                        .driver
                        .on_compact_proposal(proposal, *block, now, net)?,
                    ConsensusMessage::BlockWanted(wanted) => {
                        self.driver.on_block_wanted(wanted, now, net)
                    }
                    ConsensusMessage::Vote(vote) => self.driver.on_vote(vote, now, net)?,
                };
                self.report(client, "consensus", message_id, source, verdict);
            }
            Event::SyncRequest {
                peer,
                request,
                responder,
            } => {
                let request = ServeRequest {
                    peer,
                    request,
                    responder,
                };
                if serve.try_send(request).is_err() {
                    tracing::debug!(%peer, "sync request dropped: the serving queue is full");
                }
            }
            Event::SyncResponse { peer, result } => match result {
                Ok(response) => {
                    self.sync.answered(peer, Some(response.tip));
                    let mut applied = 0usize;
                    for block in response.blocks {
                        let height = block.block.header.height;
                        match self.driver.apply_synced(block, now, net) {
                            Ok(true) => applied += 1,
                            Ok(false) => {}
                            Err(DriverError::Commit(
                                error @ (LedgerError::Invalid { .. } | LedgerError::State { .. }),
                            )) => {
                                tracing::warn!(%peer, height, %error, "synced block refused");
                                self.metrics.messages_rejected.inc();
                                let _ =
                                    client.penalise(peer, format!("invalid synced block: {error}"));
                                break;
                            }
                            Err(other) => return Err(other),
                        }
                    }
                    if applied > 0 {
                        self.metrics.blocks_synced.inc_by(applied as u64);
                        let next = self.driver.ledger().next_height()?;
                        tracing::info!(%peer, applied, tip = response.tip, "blocks synced");
                        if response.tip >= next {
                            // The next peer in turn, not the same one: a peer that answers
                            // slowly, one block at a time, then gets only its share of the
                            // requests and cannot hold a node back.
                            self.sync.ask(client, next, None, now);
                        }
                    }
                }
                Err(reason) => {
                    self.sync.answered(peer, None);
                    tracing::debug!(%peer, %reason, "sync request failed");
                }
            },
        }
        Ok(())
    }

    fn report(
        &self,
        client: &Client,
        topic: &'static str,
        message_id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) {
        self.count_verdict(topic, verdict);
        let _ = client.report(message_id, source, verdict);
    }

    /// Counts a verdict on a gossip message in the metrics.
    fn count_verdict(&self, topic: &'static str, verdict: Verdict) {
        if verdict == Verdict::Reject {
            self.metrics.messages_rejected.inc();
        }
        let verdict_label = match verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        };
        self.metrics
            .gossip_verdicts
            .get_or_create(&crate::metrics::VerdictLabels {
                topic,
                verdict: verdict_label,
            })
            .inc();
    }

    fn handle(&mut self, command: Command, net: &mut dyn Network) -> Result<(), DriverError> {
        match command {
            Command::Submit { records, reply } => {
                let results = self.driver.submit(records, true, Instant::now(), net)?;
                let now = Instant::now();
                for id in results.iter().flatten() {
                    self.admitted_at.insert(*id, now);
                }
                let _ = reply.send(results);
            }
            Command::SubmitChecked { record, reply } => {
                let now = Instant::now();
                let result = self.driver.submit_checked(*record, now, net)?;
                if let Ok(id) = &result {
                    self.admitted_at.insert(*id, now);
                }
                let _ = reply.send(result);
            }
            Command::RecordStatus { record_id, reply } => {
                let mempool = self.driver.mempool();
                let _ = reply.send((mempool.status(&record_id), mempool.get(&record_id).cloned()));
            }
            Command::Evidence { reply } => {
                let _ = reply.send(self.driver.evidence().cloned().collect());
            }
            Command::WaitCommitted { record_id, reply } => {
                let stored = self.driver.ledger().store().as_ref();
                // The store first: a committed record is committed, whatever the mempool
                // remembers of an earlier drop.
                if let Ok(Some(record)) =
                    branchledger_storage::ChainReader::record(stored, &record_id)
                {
                    let _ = reply.send(Ok(record.height));
                    return Ok(());
                }
                if let RecordStatus::Dropped(reason) = self.driver.mempool().status(&record_id) {
                    let _ = reply.send(Err(reason));
                    return Ok(());
                }
                if self.waiters.len() >= COMMIT_WAITERS_MAX {
                    // Clients that stopped waiting (their call timed out) leave their places.
                    self.waiters.retain(|_, senders| {
                        senders.retain(|sender| !sender.is_closed());
                        !senders.is_empty()
                    });
                }
                if self.waiters.len() < COMMIT_WAITERS_MAX {
                    self.waiters.entry(record_id).or_default().push(reply);
                }
                // Too many waiters: dropping the sender tells the client to ask later.
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let height = self
            .driver
            .ledger()
            .tip()
            .ok()
            .flatten()
            .map_or(0, |t| t.height);
        let (deciding, round) = self.driver.position();
        let mempool = self.driver.mempool();
        let validators = self.driver.ledger().validators();
        let peers = usize::try_from(self.metrics.peers.get()).unwrap_or(0);
        let reachable = peers + 1;
        let peer_tip = self.sync.best_tip();
        let not_committing_reason = if peer_tip > height {
            format!("catching up: at height {height}, peers report height {peer_tip}")
        } else if reachable < validators.quorum() {
            format!(
                "connected to {reachable} of {} validators (this node included); a quorum needs {}",
                validators.len(),
                validators.quorum()
            )
        } else if mempool.is_empty() {
            "idle: no records waiting".to_owned()
        } else if round > 0 {
            format!("height {deciding} is in round {round}: earlier rounds timed out")
        } else {
            String::new()
        };
        Status {
            height,
            deciding,
            round,
            mempool_records: mempool.len(),
            mempool_bytes: mempool.bytes(),
            peers,
            peer_tip,
            not_committing_reason,
        }
    }

    fn after_step(&mut self) {
        for committed in self.driver.take_committed() {
            self.last_commit = Instant::now();
            self.commit_times
                .committed(committed.height, self.last_commit);
            self.metrics.blocks_committed.inc();
            self.metrics
                .records_committed
                .inc_by(committed.record_ids.len() as u64);
            self.metrics
                .height
                .set(i64::try_from(committed.height).unwrap_or(i64::MAX));
            let now = Instant::now();
            for id in &committed.record_ids {
                if let Some(at) = self.admitted_at.remove(id) {
                    self.metrics
                        .commit_latency_seconds
                        .observe(now.duration_since(at).as_secs_f64());
                }
                for waiter in self.waiters.remove(id).unwrap_or_default() {
                    let _ = waiter.send(Ok(committed.height));
                }
            }
            tracing::info!(
                height = committed.height,
                round = committed.round,
                records = committed.record_ids.len(),
                "committed block"
            );
            // No subscriber is fine.
            let _ = self.committed.send(committed.height);
        }
        for (id, reason) in self.driver.take_dropped() {
            self.admitted_at.remove(&id);
            for waiter in self.waiters.remove(&id).unwrap_or_default() {
                let _ = waiter.send(Err(reason.clone()));
            }
        }
        let counts = self.driver.take_compact_counts();
        for (outcome, count) in [
            ("sent", counts.sent),
            ("rebuilt", counts.rebuilt),
            ("wanted", counts.wanted),
            ("answered", counts.answered),
        ] {
            if count > 0 {
                self.metrics
                    .compact_proposals
                    .get_or_create(&CompactLabels { outcome })
                    .inc_by(count);
            }
        }
        let (_, round) = self.driver.position();
        self.metrics.round.set(i64::from(round));
        self.metrics
            .evidence
            .set(self.driver.evidence().count() as i64);
        self.metrics
            .mempool_records
            .set(self.driver.mempool().len() as i64);
        // Records dropped from the mempool are never committed: forget when they arrived.
        if self.admitted_at.len() > self.driver.mempool().len() + 10_000 {
            let mempool = self.driver.mempool();
            self.admitted_at
                .retain(|id, _| mempool.status(id) == RecordStatus::Pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::mempool::{Mempool, MempoolLimits};
    use crate::safety_file::SafetyFile;
    use branchledger_crypto::{Keypair, Signer};
    use branchledger_storage::RocksStore;
    use branchledger_types::genesis::{
        peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
    };
    use branchledger_types::record::{MemberJoined, MemberStatus};
    use branchledger_types::{BranchId, Date, Genesis, MemberId, Record, RecordBody};

    #[test]
    fn a_record_batch_is_useless_only_if_its_records_were_committed_well_before_it_arrived() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let committed = |height: Height| Err(AdmitError::Committed(Hash::ZERO, height));
        let mut times = CommitTimes::default();
        times.committed(5, at(0));
        times.committed(6, at(40));
        times.committed(9, at(50));
        let age = STALE_RECORDS_AGE.as_secs();

        // Committed more than the age before the batch arrived: a replay.
        assert!(times.all_stale(&[committed(5), committed(5)], at(age + 1)));
        // A height older than every one kept was committed before the oldest kept one.
        assert!(times.all_stale(&[committed(3)], at(age)));
        // Committed, but not that long before it arrived.
        assert!(!times.all_stale(&[committed(5)], at(age - 1)));
        // Committed after it arrived: it waited in this node's queue meanwhile.
        assert!(!times.all_stale(&[committed(6)], at(age + 1)));
        // A height skipped in the notes (synced with a later one) is bounded by the next.
        assert!(!times.all_stale(&[committed(8)], at(age + 49)));
        assert!(times.all_stale(&[committed(8)], at(age + 50)));
        // Committed at a height not noted yet.
        assert!(!times.all_stale(&[committed(10)], at(1_000)));
        // One record that was news, or none at all: not useless.
        assert!(!times.all_stale(&[committed(5), Ok(Hash::ZERO)], at(1_000)));
        assert!(!times.all_stale(&[], at(1_000)));

        // The notes are bounded; the oldest kept then stands for every height before it.
        for height in 10..(10 + COMMIT_TIMES_KEPT as Height) {
            times.committed(height, at(100));
        }
        assert_eq!(times.times.len(), COMMIT_TIMES_KEPT);
        assert!(!times.all_stale(&[committed(5)], at(age + 99)));
        assert!(times.all_stale(&[committed(5)], at(age + 100)));
    }

    fn genesis(now_ms: u64) -> Genesis {
        Genesis {
            chain_id: "service-test".into(),
            genesis_time_ms: now_ms - 1,
            validators: vec![Validator {
                name: "v0".into(),
                branch_id: BranchId("b0".into()),
                consensus_key: Keypair::from_seed([10; 32]).public_key(),
                peer_id: peer_id_of(&Keypair::from_seed([40; 32]).public_key()),
            }],
            branches: vec![Branch {
                branch_id: BranchId("b0".into()),
                name: "B0".into(),
                signing_key: Keypair::from_seed([1; 32]).public_key(),
            }],
            consensus: ConsensusParams {
                timeout_propose_ms: 50,
                timeout_prevote_ms: 50,
                timeout_precommit_ms: 50,
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

    type Stopped = tokio::task::JoinHandle<Result<(), DriverError>>;

    /// A one-validator node over a store in `dir`, running: its handle, its metrics, the
    /// sender that stops it and its task.
    fn start(
        dir: &std::path::Path,
        now_ms: u64,
    ) -> (NodeHandle, Arc<Metrics>, oneshot::Sender<()>, Stopped) {
        let (handle, metrics, node) = node(dir, now_ms);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            node.run(None, async {
                let _ = stopped.await;
            })
            .await
        });
        (handle, metrics, stop, task)
    }

    /// A one-validator node over a store in `dir`, not yet running.
    fn node(dir: &std::path::Path, now_ms: u64) -> (NodeHandle, Arc<Metrics>, NodeLoop) {
        let genesis = Arc::new(genesis(now_ms));
        let store = Arc::new(RocksStore::open(&dir.join("store")).expect("store"));
        let driver = Driver::new(
            Ledger::new(genesis, store),
            Mempool::new(MempoolLimits::default()),
            SafetyFile::new(dir),
            Some(Keypair::from_seed([10; 32])),
            Instant::now(),
            now_ms,
        )
        .expect("driver");
        let metrics = Arc::new(Metrics::new());
        let (handle, node) = new(driver, metrics.clone());
        (handle, metrics, node)
    }

    /// The joining of member `m1`, signed by branch `b0`.
    fn joining(now_ms: u64) -> SignedRecord {
        joining_of(now_ms, 1)
    }

    /// The joining of member `m<n>`, signed by branch `b0`.
    fn joining_of(now_ms: u64, n: u64) -> SignedRecord {
        Record {
            chain_id: "service-test".into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: now_ms,
            nonce: n,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(format!("m{n}")),
                joined_on: Date::from_unix_ms(now_ms),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(&Keypair::from_seed([1; 32]))
    }

    #[tokio::test]
    async fn a_one_validator_node_commits_submissions_and_reports_status() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now_ms = crate::devnet::now_ms();
        let (handle, metrics, stop, task) = start(dir.path(), now_ms);
        let status = handle.status().await.expect("running");
        assert_eq!(status.height, 0);
        assert!(status.not_committing_reason.contains("idle"), "{status:?}");
        let record = joining(now_ms);
        let results = handle.submit(vec![record.clone()]).await.expect("running");
        assert_eq!(results, vec![Ok(record.id())]);
        let height =
            tokio::time::timeout(Duration::from_secs(30), handle.wait_committed(record.id()))
                .await
                .expect("committed in time")
                .expect("running");
        assert_eq!(height, Ok(1));
        // Asked again after the fact: answered from the store.
        assert_eq!(handle.wait_committed(record.id()).await, Some(Ok(1)));
        // A replay is refused as committed.
        let results = handle.submit(vec![record.clone()]).await.expect("running");
        assert!(matches!(results[0], Err(AdmitError::Committed(_, 1))));
        assert_eq!(metrics.records_committed.get(), 1);
        assert!(metrics.render().contains("branchd_height 1"));
        let _ = stop.send(());
        task.await.expect("join").expect("clean stop");
    }

    /// Clients whose commit waits timed out leave their places: a node that saw
    /// COMMIT_WAITERS_MAX of them still takes the next client's wait, and answers it.
    #[tokio::test]
    async fn abandoned_commit_waits_do_not_take_the_places_of_new_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now_ms = crate::devnet::now_ms();
        let (handle, _, stop, task) = start(dir.path(), now_ms);
        for i in 0..COMMIT_WAITERS_MAX as u64 {
            // A wait whose client gave up at once.
            let (reply, answer) = oneshot::channel();
            drop(answer);
            let record_id = Hash::of(&i.to_le_bytes());
            handle
                .commands
                .send(Command::WaitCommitted { record_id, reply })
                .await
                .expect("running");
        }
        let record = joining(now_ms);
        let id = record.id();
        let waiting = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.wait_committed(id).await })
        };
        // The wait is queued before the record, so it is registered before the commit.
        tokio::task::yield_now().await;
        assert_eq!(handle.submit(vec![record]).await, Some(vec![Ok(id)]));
        let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("answered in time")
            .expect("task");
        assert_eq!(answer, Some(Ok(1)));
        let _ = stop.send(());
        task.await.expect("task").expect("clean stop");
    }

    #[tokio::test]
    async fn a_record_batch_judged_after_gossipsub_let_it_go_is_counted_not_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now_ms = crate::devnet::now_ms();
        let (_handle, metrics, mut node) = node(dir.path(), now_ms);
        let (client, _event_loop) = crate::peers::tests::client();
        let mut net = GossipNetwork::new(client.clone(), metrics.gossip_dropped.clone());
        let (serve, _serving) = mpsc::channel(1);
        let accepted = || {
            metrics
                .gossip_verdicts
                .get_or_create(&crate::metrics::VerdictLabels {
                    topic: "records",
                    verdict: "accept",
                })
                .get()
        };
        let waited = |n: u8, wait: Duration| Event::Records {
            source: PeerId::random(),
            message_id: MessageId::from(vec![n]),
            records: vec![joining_of(now_ms, u64::from(n))],
            received: Instant::now()
                .checked_sub(wait)
                .expect("an instant that long ago"),
        };
        // Judged at once: reported to gossipsub.
        node.handle_event(waited(1, Duration::ZERO), &mut net, &client, &serve)
            .expect("handled");
        assert_eq!((accepted(), metrics.gossip_verdicts_late.get()), (1, 0));
        // Just inside the window: still reported.
        let inside = branchledger_p2p::GOSSIP_VERDICT_WINDOW - Duration::from_millis(500);
        node.handle_event(waited(2, inside), &mut net, &client, &serve)
            .expect("handled");
        assert_eq!((accepted(), metrics.gossip_verdicts_late.get()), (2, 0));
        // Past it: admitted all the same and counted, but not reported.
        let past = branchledger_p2p::GOSSIP_VERDICT_WINDOW + Duration::from_secs(1);
        node.handle_event(waited(3, past), &mut net, &client, &serve)
            .expect("handled");
        assert_eq!((accepted(), metrics.gossip_verdicts_late.get()), (3, 1));
        assert_eq!(
            node.driver.mempool().len(),
            3,
            "every batch's record admitted"
        );
    }

    #[tokio::test]
    async fn consensus_messages_go_before_the_record_batches_queued_ahead_of_them() {
        // The loop picks among its ready inputs at random, so one node told to stop at once
        // may handle the vote by chance; five in a row without the priority hardly ever do.
        for _ in 0..5 {
            vote_handled_before_queued_record_batches().await;
        }
    }

    /// A node stopped as soon as it starts, with record batches queued before a vote, has
    /// handled the vote.
    async fn vote_handled_before_queued_record_batches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now_ms = crate::devnet::now_ms();
        let (_handle, metrics, node) = node(dir.path(), now_ms);
        // A network client whose event loop never runs: the node's reports wait in its queue.
        let (client, _event_loop) = crate::peers::tests::client();
        let (urgent_tx, urgent) = mpsc::channel(16);
        let (records_tx, records) = mpsc::channel(16);
        let (serve, _serving) = mpsc::channel(1);
        let source = PeerId::random();
        // Record batches arrive first, then a vote.
        for n in 0..8u8 {
            records_tx
                .try_send(Event::Records {
                    source,
                    message_id: MessageId::from(vec![n]),
                    records: vec![joining_of(now_ms, u64::from(n) + 1)],
                    received: Instant::now(),
                })
                .expect("queued");
        }
        let vote = branchledger_types::Vote {
            height: 1,
            round: 0,
            kind: branchledger_types::VoteKind::Prevote,
            block_id: None,
            validator_index: 0,
        }
        .sign("service-test", &Keypair::from_seed([10; 32]));
        urgent_tx
            .try_send(Event::Consensus {
                source,
                message_id: MessageId::from(vec![99]),
                message: ConsensusMessage::Vote(vote),
            })
            .expect("queued");
        // Told to stop at once, the loop handles what it takes first (the vote, whatever else it
        // picks before it sees the stop) and then stops.
        let link = PeerLink {
            client,
            events: Events { urgent, records },
            serve,
        };
        node.run(Some(link), std::future::ready(()))
            .await
            .expect("run");
        let handled = |topic: &'static str| -> u64 {
            ["accept", "reject", "ignore"]
                .into_iter()
                .map(|verdict| {
                    metrics
                        .gossip_verdicts
                        .get_or_create(&crate::metrics::VerdictLabels { topic, verdict })
                        .get()
                })
                .sum()
        };
        assert_eq!(handled("consensus"), 1, "the vote went first");
    }
}
