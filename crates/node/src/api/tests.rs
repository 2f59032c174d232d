//! The API services in process, over a one-validator node whose store is on disk: the slots
//! of streams and exports, reads against the store's tip, and the order of the credential and
//! rate checks. (The whole API over the network, against the `branchd` binary, is tested in
//! the top-level `tests/api.rs`.)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use branchledger_api::pb;
use branchledger_api::pb::audit_server::Audit;
use branchledger_api::pb::ledger_server::Ledger;
use branchledger_crypto::{Hash, Keypair, Signer};
use branchledger_storage::tables::{ChainTable, META_TIP};
use branchledger_storage::{ChainReader, Column, RocksStore, Tip};
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
};
use branchledger_types::record::{MemberJoined, MemberStatus};
use branchledger_types::{
    BranchId, Date, Genesis, Height, MemberId, Record, RecordBody, SignedRecord,
};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::{Code, Request};

use super::audit::AuditService;
use super::ledger::{block_answer, BlockAt, LedgerService, RecordsPage};
use super::{Access, ApiContext, BLOCK_STREAMS_MAX, EXPORTS_MAX};
use crate::driver::{Driver, DriverError};
use crate::ledger::Ledger as ChainLedger;
use crate::mempool::{Mempool, MempoolLimits};
use crate::metrics::Metrics;
use crate::safety_file::SafetyFile;

/// Longest a test waits for a condition before it fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(10);
/// The chain id of these tests.
const CHAIN_ID: &str = "api-test";

fn branch_key() -> Keypair {
    Keypair::from_seed([1; 32])
}

fn consensus_key() -> Keypair {
    Keypair::from_seed([10; 32])
}

fn genesis(now_ms: u64) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: now_ms - 1,
        validators: vec![Validator {
            name: "v0".into(),
            branch_id: BranchId("b0".into()),
            consensus_key: consensus_key().public_key(),
            peer_id: peer_id_of(&Keypair::from_seed([40; 32]).public_key()),
        }],
        branches: vec![Branch {
            branch_id: BranchId("b0".into()),
            name: "B0".into(),
            signing_key: branch_key().public_key(),
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

/// Waits until `ready` holds, failing the test with `what` after [`DEADLINE`].
async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// `future`, or a failure naming `what` after [`DEADLINE`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// A running one-validator node (no network) and the API context over it.
struct TestNode {
    context: Arc<ApiContext>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), DriverError>>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    async fn start() -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let now_ms = crate::devnet::now_ms();
        let genesis = Arc::new(genesis(now_ms));
        let store = Arc::new(RocksStore::open(&dir.path().join("store")).expect("store"));
        let driver = Driver::new(
            ChainLedger::new(genesis.clone(), store.clone()),
            Mempool::new(MempoolLimits::default()),
            SafetyFile::new(dir.path()),
            Some(consensus_key()),
            Instant::now(),
            now_ms,
        )
        .expect("driver");
        let (handle, node) = crate::service::new(driver, Arc::new(Metrics::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            node.run(None, async {
                let _ = stopped.await;
            })
            .await
        });
        let context = Arc::new(ApiContext {
            handle,
            store,
            genesis,
            branch: Some((BranchId("b0".into()), branch_key())),
            node_name: "test".into(),
            peer_id: String::new(),
            validator: true,
            access: Access::new("", false, 0),
        });
        TestNode {
            context,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Commits one block holding the joining of `member`; returns its height.
    async fn commit_member(&self, member: &str, nonce: u64) -> Height {
        self.commit_members(&[member], nonce).await
    }

    /// Submits the joinings of `members` at once (nonces from `nonce` on), so they go into
    /// one block; returns its height.
    async fn commit_members(&self, members: &[&str], nonce: u64) -> Height {
        let records: Vec<SignedRecord> = members
            .iter()
            .zip(nonce..)
            .map(|(member, nonce)| Self::joining(member, nonce))
            .collect();
        let handle = &self.context.handle;
        let results = handle.submit(records.clone()).await.expect("running");
        let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
        assert_eq!(results, ids.iter().map(|id| Ok(*id)).collect::<Vec<_>>());
        let mut heights = Vec::new();
        for id in ids {
            heights.push(
                within("the commit", handle.wait_committed(id))
                    .await
                    .expect("running")
                    .expect("committed"),
            );
        }
        heights.dedup();
        assert_eq!(heights.len(), 1, "one block: {heights:?}");
        heights[0]
    }

    fn joining(member: &str, nonce: u64) -> SignedRecord {
        Record {
            chain_id: CHAIN_ID.into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: crate::devnet::now_ms(),
            nonce,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(member.into()),
                joined_on: Date::new(2025, 12, 1),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(&branch_key())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("clean stop");
        }
    }
}

fn stream_request(from_height: Height) -> Request<pb::StreamBlocksRequest> {
    Request::new(pb::StreamBlocksRequest { from_height })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_streams_of_clients_gone_while_idle_give_their_slots_back() {
    let node = TestNode::start().await;
    let ledger = LedgerService::new(node.context.clone());
    // Every slot taken by streams that have nothing to send: half from a height far ahead,
    // half from now on a chain where nothing commits.
    let mut streams = Vec::new();
    for i in 0..BLOCK_STREAMS_MAX {
        let from = if i % 2 == 0 { 1_000_000 } else { 0 };
        let stream = ledger
            .stream_blocks(stream_request(from))
            .await
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        streams.push(stream.into_inner());
    }
    let refused = ledger
        .stream_blocks(stream_request(0))
        .await
        .err()
        .expect("no slot left");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // The clients go away without a block ever sent to them: every slot comes back.
    drop(streams);
    wait_until("every block stream slot free again", || {
        ledger.streams_free() == BLOCK_STREAMS_MAX
    })
    .await;
    // A stream still delivers what commits.
    let mut stream = ledger
        .stream_blocks(stream_request(1))
        .await
        .expect("a slot")
        .into_inner();
    let height = node.commit_member("m1", 1).await;
    let event = within("the block event", stream.next())
        .await
        .expect("an event")
        .expect("a block");
    assert_eq!(event.header.expect("header").height, height);
    drop(stream);
    wait_until("the last slot free again", || {
        ledger.streams_free() == BLOCK_STREAMS_MAX
    })
    .await;
    node.stop().await;
}

/// A client that keeps its block stream open but reads nothing: once its queue is full and
/// it takes no block within the send deadline, the stream ends with DEADLINE_EXCEEDED naming
/// the height to stream again from, and the slot is free for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stream_nobody_reads_gives_its_slot_back_and_says_why_it_ended() {
    const QUEUE: usize = 2;
    let node = TestNode::start().await;
    let ledger =
        LedgerService::with_streams(node.context.clone(), QUEUE, Duration::from_millis(300));
    let mut stream = ledger
        .stream_blocks(stream_request(1))
        .await
        .expect("a slot")
        .into_inner();
    assert_eq!(ledger.streams_free(), BLOCK_STREAMS_MAX - 1);
    // More blocks than the queue holds, none read.
    for i in 0..QUEUE + 2 {
        node.commit_member(&format!("m{i}"), i as u64 + 1).await;
    }
    wait_until("the unread stream's slot free again", || {
        ledger.streams_free() == BLOCK_STREAMS_MAX
    })
    .await;
    // The client reads at last: the queued blocks in order, then why the stream ended.
    let mut heights = Vec::new();
    let ended = loop {
        match within("the next event", stream.next()).await {
            Some(Ok(event)) => heights.push(event.header.expect("header").height),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why after {heights:?}"),
        }
    };
    assert_eq!(heights, (1..=QUEUE as u64).collect::<Vec<_>>());
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    let resume = format!("height {}", QUEUE + 1);
    assert!(ended.message().contains(&resume), "{resume:?} in {ended:?}");
    assert!(within("the end", stream.next()).await.is_none());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_nobody_reads_gives_its_slot_back_and_says_why_it_ended() {
    let node = TestNode::start().await;
    for (i, member) in ["m1", "m2", "m3"].into_iter().enumerate() {
        node.commit_member(member, i as u64 + 1).await;
    }
    // One byte a chunk: the export is far more chunks than the queue holds.
    let send_timeout = Duration::from_millis(200);
    let audit = AuditService::with_chunks(node.context.clone(), 1, send_timeout);
    let mut exports = Vec::new();
    for _ in 0..EXPORTS_MAX {
        let export = audit
            .export(Request::new(pb::ExportRequest {
                from_height: 1,
                to_height: 0,
            }))
            .await
            .expect("a slot");
        exports.push(export.into_inner());
    }
    // Nobody reads: within the send deadline every slot comes back.
    wait_until("every export slot free again", || {
        audit.exports_free() == EXPORTS_MAX
    })
    .await;
    // A client reading late gets what was queued, then the reason the export ended, never
    // a clean end to a cut-short file.
    for export in exports {
        let items: Vec<_> = export.collect().await;
        let (last, chunks) = items.split_last().expect("items");
        assert!(chunks.iter().all(Result::is_ok), "{chunks:?}");
        let status = last.as_ref().expect_err("the export ends with a status");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("export"), "{status:?}");
    }
    // A client that reads gets the whole export.
    let whole: Vec<_> = audit
        .export(Request::new(pb::ExportRequest {
            from_height: 1,
            to_height: 0,
        }))
        .await
        .expect("a slot")
        .into_inner()
        .collect()
        .await;
    assert!(whole.iter().all(Result::is_ok), "{whole:?}");
    node.stop().await;
}

/// The store as an edit left it: its tip moved back, the blocks above still there.
struct RewoundTip<'a> {
    store: &'a RocksStore,
    tip: Tip,
}

impl ChainReader for RewoundTip<'_> {
    fn get_raw(&self, column: Column, key: &[u8]) -> branchledger_storage::Result<Option<Vec<u8>>> {
        if column == Column::Chain(ChainTable::Meta) && key == META_TIP {
            return Ok(Some(branchledger_types::encode(&self.tip)));
        }
        self.store.get_raw(column, key)
    }

    fn scan_raw(
        &self,
        column: Column,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> branchledger_storage::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store.scan_raw(column, prefix, start_after, limit)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_block_serves_nothing_above_the_tip() {
    let node = TestNode::start().await;
    node.commit_member("m1", 1).await;
    node.commit_member("m2", 2).await;
    let store = node.context.store.as_ref();
    let first = store.header(1).expect("read").expect("block 1");
    let second = store.header(2).expect("read").expect("block 2");
    let rewound = RewoundTip {
        store,
        tip: Tip {
            height: 1,
            block_id: first.block_id(),
            state_digest: first.state_digest,
        },
    };
    let all = Some(RecordsPage {
        from: 0,
        bytes_max: usize::MAX,
    });
    let answer = block_answer(&rewound, BlockAt::Height(1), all).expect("block 1");
    assert_eq!(answer.header.expect("header").height, 1);
    for at in [BlockAt::Height(2), BlockAt::Id(second.block_id())] {
        for records in [None, all] {
            let status = block_answer(&rewound, at, records)
                .err()
                .unwrap_or_else(|| panic!("{at:?} is above the tip"));
            assert_eq!(status.code(), Code::NotFound, "{at:?}: {status:?}");
        }
    }
    // The store itself: block 2 is its tip, 3 does not exist.
    assert!(block_answer(store, BlockAt::Height(2), None).is_ok());
    let status = block_answer(store, BlockAt::Height(3), None).expect_err("no block 3");
    assert_eq!(status.code(), Code::NotFound);
    let status = block_answer(store, BlockAt::Id(Hash::ZERO), None).expect_err("no such id");
    assert_eq!(status.code(), Code::NotFound);
    node.stop().await;
}

/// A block's records read in pages: each answer holds what fits in the byte bound (at least
/// one record), names its first index and where to go on, and the pages put together are
/// the block's records in order; an index past the block's records is OUT_OF_RANGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_block_pages_the_records_of_a_large_block() {
    let node = TestNode::start().await;
    let members = ["m1", "m2", "m3", "m4", "m5"];
    let height = node.commit_members(&members, 1).await;
    let store = node.context.store.as_ref();
    let block = store.block(height).expect("read").expect("the block");
    assert_eq!(
        block.records.len(),
        members.len(),
        "one block of five records"
    );
    let expected: Vec<String> = block.records.iter().map(|r| r.id().to_hex()).collect();
    let page = |from: u32, bytes_max: usize| {
        block_answer(
            store,
            BlockAt::Height(height),
            Some(RecordsPage { from, bytes_max }),
        )
    };
    let whole = page(0, usize::MAX).expect("the whole block");
    assert_eq!(whole.next_records_from, 0);
    let one = prost::Message::encoded_len(&whole.records[0]);
    // Room for two records a page: pages of 2, 2 and 1.
    let mut pages = Vec::new();
    let mut from = 0;
    loop {
        let answer = page(from, 2 * (one + 6) + 6).expect("a page");
        assert_eq!(answer.records_from, from);
        pages.push(
            answer
                .records
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>(),
        );
        if answer.next_records_from == 0 {
            break;
        }
        from = answer.next_records_from;
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), expected);
    // A bound smaller than one record still answers one: every page moves on.
    let tiny = page(4, 1).expect("the last record");
    assert_eq!((tiny.records.len(), tiny.next_records_from), (1, 0));
    let status = page(6, usize::MAX).expect_err("past the records");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("holds 5 records"), "{status:?}");
    node.stop().await;
}

fn request(token: Option<&str>) -> Request<()> {
    let mut request = Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert(
            branchledger_api::auth::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    request
}

#[test]
fn traffic_without_the_credential_cannot_use_up_the_operators_write_rate() {
    // Bursts of 3 requests.
    let access = Access::new("s3cret", false, 3);
    for _ in 0..50 {
        let status = access
            .check_write(&request(None))
            .expect_err("no credential");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = access
            .check_write(&request(Some("wrong")))
            .expect_err("wrong credential");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Open reads use up their own bucket...
    let refused = (0..50)
        .filter_map(|_| access.check_read(&request(None)).err())
        .inspect(|s| assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"))
        .count();
    assert!(refused >= 45, "{refused} reads refused");
    // ... and the operator still has the whole write burst.
    for _ in 0..3 {
        access
            .check_write(&request(Some("s3cret")))
            .expect("the operator's write");
    }
    let status = access
        .check_write(&request(Some("s3cret")))
        .expect_err("beyond the write rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("rate limit"), "{status:?}");
}

#[test]
fn reads_that_need_the_credential_check_it_before_the_rate() {
    let access = Access::new("s3cret", true, 3);
    for _ in 0..50 {
        let status = access
            .check_read(&request(None))
            .expect_err("no credential");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    for _ in 0..3 {
        access
            .check_read(&request(Some("s3cret")))
            .expect("an authenticated read");
    }
    // With no token at all, reads that need one stay closed.
    let access = Access::new("", true, 0);
    let status = access
        .check_read(&request(Some("anything")))
        .expect_err("closed");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Writes with no token configured are open (development).
    access.check_write(&request(None)).expect("open writes");
}
