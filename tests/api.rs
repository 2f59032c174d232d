//! The gRPC API against a real `branchd` process: credentials, reflection and health, every
//! query answered, and a table of bad requests, each refused with its precise status code and
//! a message naming the field and the rule, after which the node is healthy and its chain
//! unchanged.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use branchledger_api::pb;
use branchledger_crypto::Keypair;
use branchledger_types::{BranchId, Record, SignedRecord};
use support::{fast_timeouts, member_joined, study, Cluster};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "s3cret-operator-token";
const MEMPOOL_RECORDS_MAX: i64 = 64;

type Authed = InterceptedService<Channel, fn(Request<()>) -> Result<Request<()>, Status>>;

fn with_token(mut request: Request<()>) -> Result<Request<()>, Status> {
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("ascii"),
    );
    Ok(request)
}

struct Clients {
    submit: pb::submit_client::SubmitClient<Authed>,
    ledger: pb::ledger_client::LedgerClient<Channel>,
    progress: pb::progress_client::ProgressClient<Channel>,
    audit: pb::audit_client::AuditClient<Channel>,
    node: pb::node_client::NodeClient<Channel>,
}

fn clients(cluster: &Cluster) -> Clients {
    let channel = cluster.channel(0);
    Clients {
        submit: pb::submit_client::SubmitClient::with_interceptor(
            channel.clone(),
            with_token as fn(Request<()>) -> Result<Request<()>, Status>,
        )
        .max_encoding_message_size(64 * 1024 * 1024),
        ledger: pb::ledger_client::LedgerClient::new(channel.clone()),
        progress: pb::progress_client::ProgressClient::new(channel.clone()),
        audit: pb::audit_client::AuditClient::new(channel.clone()),
        node: pb::node_client::NodeClient::new(channel),
    }
}

/// A node of a 1-validator chain with two branches (the node signs for `branch-north`), a
/// credential, and a small mempool.
async fn node() -> (Cluster, Clients, Keypair, String) {
    let mut cluster = Cluster::with_branches(1, 2, fast_timeouts);
    cluster.edit_config(0, |config| {
        config["api"]["token"] = TOKEN.into();
        config["mempool"]["records_max"] = MEMPOOL_RECORDS_MAX.into();
    });
    cluster.start(0);
    cluster.wait_connected().await;
    let south = cluster.branch_key(&cluster.dir.path().join("net/branches/branch-south.json"));
    let chain_id = cluster.status(0).await.expect("status").chain_id;
    let clients = clients(&cluster);
    (cluster, clients, south, chain_id)
}

fn record(chain_id: &str, branch: &str, body: pb::RecordBody, nonce: u64) -> Record {
    Record {
        chain_id: chain_id.into(),
        branch_id: BranchId(branch.into()),
        created_at_ms: 1_767_225_600_000,
        nonce,
        body: branchledger_api::convert::record_body("body", &body).expect("valid body"),
    }
}

fn signed(record: Record, key: &Keypair) -> SignedRecord {
    record.sign(key)
}

fn record_request(body: pb::RecordBody) -> pb::SubmitRecordRequest {
    pb::SubmitRecordRequest {
        body: Some(body),
        nonce: 0,
        created_at_ms: 0,
        wait: Some(pb::WaitOptions {
            wait_committed: true,
            timeout_ms: 30_000,
        }),
    }
}

fn signed_request(bytes: Vec<u8>) -> pb::SubmitSignedRequest {
    pb::SubmitSignedRequest {
        signed_record: bytes,
        wait: Some(pb::WaitOptions {
            wait_committed: true,
            timeout_ms: 30_000,
        }),
    }
}

fn with_study(f: impl FnOnce(&mut pb::StudySession)) -> pb::RecordBody {
    let mut body = study("m-1", 30);
    if let Some(pb::record_body::Kind::StudySession(s)) = &mut body.kind {
        f(s);
    }
    body
}

fn kind(k: pb::record_body::Kind) -> pb::RecordBody {
    pb::RecordBody { kind: Some(k) }
}

fn meeting(attendees: &[&str]) -> pb::RecordBody {
    kind(pb::record_body::Kind::MeetingHeld(pb::MeetingHeld {
        meeting_id: "mt-1".into(),
        kind: "committee".into(),
        topic: "Plan for spring".into(),
        held_on: "2026-03-02".into(),
        attendees: attendees
            .iter()
            .map(|m| pb::Attendee {
                member_id: (*m).into(),
                guest: false,
            })
            .collect(),
        absentees: vec![],
    }))
}

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

fn call<T: Send + 'static>(
    future: impl Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
) -> Call {
    Box::pin(async move { future.await.map(|_| ()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_errors_and_leave_the_node_healthy_and_the_chain_unchanged() {
    let (cluster, c, south, chain_id) = node().await;
    // What the cases run against: a member of this node's branch, one of the other branch,
    // and a committed record to replay.
    let mut submit = c.submit.clone();
    let joined = submit
        .submit_record(record_request(member_joined("m-1")))
        .await
        .expect("m-1 joins")
        .into_inner();
    let south_member = signed(
        record(&chain_id, "branch-south", member_joined("m-9"), 1),
        &south,
    );
    submit
        .submit_signed(signed_request(south_member.to_bytes()))
        .await
        .expect("m-9 joins branch-south");
    let joined_record = c
        .ledger
        .clone()
        .get_record(pb::GetRecordRequest {
            record_id: joined.record_id.clone(),
        })
        .await
        .expect("record")
        .into_inner();
    let joined_bytes = joined_record.record.expect("record").canonical;
    let before = c
        .node
        .clone()
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();

    let mut bad_signature = signed(
        record(&chain_id, "branch-south", study("m-9", 20), 2),
        &south,
    );
    bad_signature.signature.0[10] ^= 1;
    let other_chain = signed(
        record("another-chain", "branch-south", study("m-9", 20), 3),
        &south,
    );
    let unknown_branch = signed(
        record(&chain_id, "branch-nowhere", study("m-9", 20), 4),
        &south,
    );
    let wrong_key = signed(
        record(&chain_id, "branch-north", study("m-1", 20), 5),
        &south,
    );
    let mut future_record = record(&chain_id, "branch-south", study("m-9", 20), 6);
    future_record.created_at_ms = 4_102_444_800_000; // 2100
    let future_record = signed(future_record, &south);

    let s = || c.submit.clone();
    let anonymous = pb::submit_client::SubmitClient::new(cluster.channel(0));
    let l = || c.ledger.clone();
    let p = || c.progress.clone();
    let a = || c.audit.clone();
    let no_span = |from: &str, to: &str| {
        Some(pb::Span {
            from_period: from.into(),
            to_period: to.into(),
        })
    };
    let long_text = "x".repeat(201);
    let cases: Vec<(&str, Call, Code, Vec<&str>)> = vec![
        (
            "no credential",
            call({
                let mut x = anonymous.clone();
                async move { x.submit_record(record_request(study("m-1", 30))).await }
            }),
            Code::Unauthenticated,
            vec!["credential"],
        ),
        (
            "wrong credential",
            call({
                let mut x = pb::submit_client::SubmitClient::with_interceptor(
                    cluster.channel(0),
                    |mut r: Request<()>| {
                        r.metadata_mut()
                            .insert("authorization", "Bearer guess".parse().expect("ascii"));
                        Ok(r)
                    },
                );
                async move { x.submit_record(record_request(study("m-1", 30))).await }
            }),
            Code::Unauthenticated,
            vec!["wrong token"],
        ),
        (
            "missing body",
            call({
                let mut x = s();
                async move { x.submit_record(pb::SubmitRecordRequest::default()).await }
            }),
            Code::InvalidArgument,
            vec!["`body`", "required"],
        ),
        (
            "empty body",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(pb::RecordBody { kind: None }))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["`body`", "required"],
        ),
        (
            "zero minutes",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| s.minutes = 0)))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.minutes", "1..=720"],
        ),
        (
            "too many minutes",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| s.minutes = 721)))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.minutes", "721"],
        ),
        (
            "unknown study form",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| s.form = "nap".into())))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.form", "one of"],
        ),
        (
            "impossible date",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| {
                        s.occurred_on = "2026-02-30".into()
                    })))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.occurred_on", "date"],
        ),
        (
            "empty material",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| s.material = String::new())))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.material", "length"],
        ),
        (
            "material too long",
            call({
                let mut x = s();
                let t = long_text.clone();
                async move {
                    x.submit_record(record_request(with_study(|s| s.material = t)))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.study_session.material", "201"],
        ),
        (
            "member id with a space",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(member_joined("Alice Smith")))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.member_joined.member_id", "must match"],
        ),
        (
            "empty member id",
            call({
                let mut x = s();
                async move { x.submit_record(record_request(member_joined(""))).await }
            }),
            Code::InvalidArgument,
            vec!["body.member_joined.member_id"],
        ),
        (
            "unknown member status",
            call({
                let mut x = s();
                async move {
                    let mut body = member_joined("m-2");
                    if let Some(pb::record_body::Kind::MemberJoined(m)) = &mut body.kind {
                        m.status = "vip".into();
                    }
                    x.submit_record(record_request(body)).await
                }
            }),
            Code::InvalidArgument,
            vec!["body.member_joined.status", "full, probationary"],
        ),
        (
            "malformed member key",
            call({
                let mut x = s();
                async move {
                    let mut body = member_joined("m-2");
                    if let Some(pb::record_body::Kind::MemberJoined(m)) = &mut body.kind {
                        m.member_key = "zz".into();
                    }
                    x.submit_record(record_request(body)).await
                }
            }),
            Code::InvalidArgument,
            vec!["body.member_joined.member_key", "hex"],
        ),
        (
            "zero dues",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::DuesPaid(
                        pb::DuesPaid {
                            member_id: "m-1".into(),
                            period: "2026-03".into(),
                            amount_minor: 0,
                            reference_commitment: String::new(),
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.dues_paid.amount_minor", "got 0"],
        ),
        (
            "dues over the limit",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::DuesPaid(
                        pb::DuesPaid {
                            member_id: "m-1".into(),
                            period: "2026-03".into(),
                            amount_minor: u64::MAX,
                            reference_commitment: String::new(),
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.dues_paid.amount_minor", "100000000"],
        ),
        (
            "month 13",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::DuesPaid(
                        pb::DuesPaid {
                            member_id: "m-1".into(),
                            period: "2026-13".into(),
                            amount_minor: 100,
                            reference_commitment: String::new(),
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.dues_paid.period", "YYYY-MM"],
        ),
        (
            "meeting without attendees",
            call({
                let mut x = s();
                async move { x.submit_record(record_request(meeting(&[]))).await }
            }),
            Code::InvalidArgument,
            vec!["body.meeting_held.attendees", "length"],
        ),
        (
            "attendee listed twice",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(meeting(&["m-1", "m-1"])))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.meeting_held.attendees[1].member_id", "duplicate"],
        ),
        (
            "rating 6",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::IssueReviewed(
                        pb::IssueReviewed {
                            issue_id: "i-1".into(),
                            rating: 6,
                            by: "public".into(),
                            by_member_id: String::new(),
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.issue_reviewed.rating", "1..=5"],
        ),
        (
            "percent 101",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::IssueProgress(
                        pb::IssueProgress {
                            issue_id: "i-1".into(),
                            percent: 101,
                            note: String::new(),
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.issue_progress.percent", "0..=100"],
        ),
        (
            "no claimants",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(kind(pb::record_body::Kind::IssueClaimed(
                        pb::IssueClaimed {
                            issue_id: "i-1".into(),
                            claimants: vec![],
                        },
                    ))))
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["body.issue_claimed.claimants", "length"],
        ),
        (
            "unknown member",
            call({
                let mut x = s();
                async move { x.submit_record(record_request(study("m-404", 30))).await }
            }),
            Code::FailedPrecondition,
            vec!["m-404"],
        ),
        (
            "member of another branch",
            call({
                let mut x = s();
                async move { x.submit_record(record_request(study("m-9", 30))).await }
            }),
            Code::FailedPrecondition,
            vec!["m-9", "branch"],
        ),
        (
            "study in the future",
            call({
                let mut x = s();
                async move {
                    x.submit_record(record_request(with_study(|s| {
                        s.occurred_on = "2099-01-01".into()
                    })))
                    .await
                }
            }),
            Code::FailedPrecondition,
            vec!["occurred_on", "after the block date"],
        ),
        (
            "created in the future",
            call({
                let mut x = s();
                let b = future_record.to_bytes();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::FailedPrecondition,
            vec!["created at", "after the block time"],
        ),
        (
            "member joined twice",
            call({
                let mut x = s();
                async move { x.submit_record(record_request(member_joined("m-1"))).await }
            }),
            Code::FailedPrecondition,
            vec!["m-1"],
        ),
        (
            "replay of a committed record",
            call({
                let mut x = s();
                let b = joined_bytes.clone();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::AlreadyExists,
            vec!["already committed"],
        ),
        (
            "no signed record",
            call({
                let mut x = s();
                async move { x.submit_signed(signed_request(vec![])).await }
            }),
            Code::InvalidArgument,
            vec!["`signed_record`", "required"],
        ),
        (
            "garbage bytes",
            call({
                let mut x = s();
                async move {
                    x.submit_signed(signed_request(vec![0xde, 0xad, 0xbe, 0xef]))
                        .await
                }
            }),
            Code::InvalidArgument,
            vec!["`signed_record`", "malformed"],
        ),
        (
            "bad signature",
            call({
                let mut x = s();
                let b = bad_signature.to_bytes();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::InvalidArgument,
            vec!["invalid", "signature"],
        ),
        (
            "signed by another branch's key",
            call({
                let mut x = s();
                let b = wrong_key.to_bytes();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::InvalidArgument,
            vec!["signature"],
        ),
        (
            "another chain",
            call({
                let mut x = s();
                let b = other_chain.to_bytes();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::InvalidArgument,
            vec!["chain"],
        ),
        (
            "unknown branch",
            call({
                let mut x = s();
                let b = unknown_branch.to_bytes();
                async move { x.submit_signed(signed_request(b)).await }
            }),
            Code::InvalidArgument,
            vec!["branch-nowhere"],
        ),
        (
            "oversized batch",
            call({
                let mut x = s();
                async move {
                    x.submit_batch(pb::SubmitBatchRequest {
                        signed_records: vec![vec![0]; 4097],
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["signed_records", "4096"],
        ),
        (
            "oversized message",
            call({
                let mut x = s();
                async move {
                    x.submit_signed(signed_request(vec![7; 17 * 1024 * 1024]))
                        .await
                }
            }),
            Code::OutOfRange,
            vec!["message"],
        ),
        (
            "record id not hex",
            call({
                let mut x = l();
                async move {
                    x.get_record(pb::GetRecordRequest {
                        record_id: "xyz".into(),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`record_id`", "hex"],
        ),
        (
            "unknown record",
            call({
                let mut x = l();
                async move {
                    x.get_record(pb::GetRecordRequest {
                        record_id: "ab".repeat(32),
                    })
                    .await
                }
            }),
            Code::NotFound,
            vec!["neither committed"],
        ),
        (
            "block not there",
            call({
                let mut x = l();
                async move {
                    x.get_block(pb::GetBlockRequest {
                        at: Some(pb::get_block_request::At::Height(999_999)),
                        include_records: false,
                        records_from: 0,
                    })
                    .await
                }
            }),
            Code::NotFound,
            vec!["999999"],
        ),
        (
            "bad page token",
            call({
                let mut x = l();
                async move {
                    x.member_history(pb::MemberHistoryRequest {
                        member_id: "m-1".into(),
                        page_size: 10,
                        page_token: "00ff".into(),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`page_token`"],
        ),
        (
            "page too large",
            call({
                let mut x = l();
                async move {
                    x.member_history(pb::MemberHistoryRequest {
                        member_id: "m-1".into(),
                        page_size: 5000,
                        page_token: String::new(),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`page_size`", "0..=1000"],
        ),
        (
            "history of nobody",
            call({
                let mut x = l();
                async move {
                    x.member_history(pb::MemberHistoryRequest {
                        member_id: "m-404".into(),
                        page_size: 10,
                        page_token: String::new(),
                    })
                    .await
                }
            }),
            Code::NotFound,
            vec!["m-404"],
        ),
        (
            "unknown record kind",
            call({
                let mut x = l();
                async move {
                    x.list_records(pb::ListRecordsRequest {
                        branch_id: "branch-north".into(),
                        kind: "party".into(),
                        period: "2026-03".into(),
                        page_size: 10,
                        page_token: String::new(),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`kind`", "study_session"],
        ),
        (
            "span backwards",
            call({
                let mut x = p();
                async move {
                    x.leaderboard(pb::LeaderboardRequest {
                        span: no_span("2026-05", "2026-01"),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["span.to_period", "before"],
        ),
        (
            "span too long",
            call({
                let mut x = p();
                async move {
                    x.leaderboard(pb::LeaderboardRequest {
                        span: no_span("2020-01", "2026-01"),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`span`", "36 months"],
        ),
        (
            "unknown branch in a query",
            call({
                let mut x = p();
                async move {
                    x.study_hours(pb::StudyHoursRequest {
                        subject: Some(pb::study_hours_request::Subject::BranchId(
                            "branch-nowhere".into(),
                        )),
                        span: None,
                        per_member: false,
                    })
                    .await
                }
            }),
            Code::NotFound,
            vec!["branch-nowhere"],
        ),
        (
            "unknown issue status",
            call({
                let mut x = p();
                async move {
                    x.issue_board(pb::IssueBoardRequest {
                        status: "done".into(),
                        page_size: 10,
                        page_token: String::new(),
                    })
                    .await
                }
            }),
            Code::InvalidArgument,
            vec!["`status`", "open, claimed"],
        ),
        (
            "proof of nothing",
            call({
                let mut x = a();
                async move {
                    x.get_proof(pb::GetProofRequest {
                        record_id: "cd".repeat(32),
                    })
                    .await
                }
            }),
            Code::NotFound,
            vec!["not committed"],
        ),
        (
            "export beyond the tip",
            call({
                let mut x = a();
                async move {
                    x.export(pb::ExportRequest {
                        from_height: 1,
                        to_height: 1_000,
                    })
                    .await
                }
            }),
            Code::OutOfRange,
            vec!["tip"],
        ),
    ];
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, future, code, needles) in cases {
        match future.await {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(status) => {
                let message = status.message();
                if status.code() != code || !needles.iter().all(|n| message.contains(n)) {
                    failures.push(format!(
                        "{name}: got {:?} {message:?}, wanted {code:?} naming {needles:?}",
                        status.code()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Still healthy, and nothing reached the chain.
    let after = c
        .node
        .clone()
        .status(pb::StatusRequest {})
        .await
        .expect("still answering")
        .into_inner();
    assert_eq!(
        (after.height, &after.tip_block_id, after.mempool_records),
        (before.height, &before.tip_block_id, 0)
    );

    // Back-pressure: a batch larger than the mempool gets `full` for what does not fit, and
    // those records can be sent again later.
    let batch: Vec<Vec<u8>> = (0..MEMPOOL_RECORDS_MAX as u64 + 20)
        .map(|n| {
            signed(
                record(&chain_id, "branch-south", study("m-9", 10), 100 + n),
                &south,
            )
            .to_bytes()
        })
        .collect();
    let answer = submit
        .submit_batch(pb::SubmitBatchRequest {
            signed_records: batch,
        })
        .await
        .expect("batch")
        .into_inner();
    let full = answer
        .results
        .iter()
        .filter(|r| r.outcome == "full")
        .count();
    assert!(
        full >= 20,
        "{full} refused as full of {}",
        answer.results.len()
    );
    assert!(answer
        .results
        .iter()
        .all(|r| r.outcome == "ok" || r.outcome == "full"));
    assert!(answer
        .results
        .iter()
        .find(|r| r.outcome == "full")
        .is_some_and(|r| r.message.contains("mempool full")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_answers_from_the_committed_state() {
    let (cluster, c, _south, _chain) = node().await;
    let mut submit = c.submit.clone();
    let joined = submit
        .submit_record(record_request(member_joined("m-1")))
        .await
        .expect("join")
        .into_inner();
    let mut sessions = Vec::new();
    for minutes in [30, 45, 60] {
        let body = with_study(|s| {
            s.minutes = minutes;
            s.occurred_on = "2026-02-10".into();
        });
        sessions.push(
            submit
                .submit_record(record_request(body))
                .await
                .expect("study")
                .into_inner(),
        );
    }
    let committed = sessions[2].committed.clone().expect("committed");

    // Ledger.
    let mut ledger = c.ledger.clone();
    let block = ledger
        .get_block(pb::GetBlockRequest {
            at: Some(pb::get_block_request::At::Height(committed.height)),
            include_records: true,
            records_from: 0,
        })
        .await
        .expect("block")
        .into_inner();
    assert_eq!(block.next_records_from, 0, "a small block in one answer");
    assert_eq!(
        block.records.len() as u32,
        block.header.as_ref().expect("header").record_count
    );
    assert_eq!(block.header.expect("header").block_id, committed.block_id);
    assert!(block.records.iter().any(|r| r.id == sessions[2].record_id));
    let history = ledger
        .member_history(pb::MemberHistoryRequest {
            member_id: "m-1".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.records.len(), 2);
    assert_eq!(
        history.records[0].record.as_ref().expect("record").id,
        joined.record_id,
        "time order"
    );
    let rest = ledger
        .member_history(pb::MemberHistoryRequest {
            member_id: "m-1".into(),
            page_size: 2,
            page_token: history.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(rest.records.len(), 2);
    assert!(rest.next_page_token.is_empty());
    let listed = ledger
        .list_records(pb::ListRecordsRequest {
            branch_id: "branch-north".into(),
            kind: "study_session".into(),
            period: "2026-02".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.records.len(), 3);

    // Progress.
    let mut progress = c.progress.clone();
    let span = Some(pb::Span {
        from_period: "2026-02".into(),
        to_period: "2026-02".into(),
    });
    let hours = progress
        .study_hours(pb::StudyHoursRequest {
            subject: Some(pb::study_hours_request::Subject::MemberId("m-1".into())),
            span: span.clone(),
            per_member: false,
        })
        .await
        .expect("study")
        .into_inner();
    assert_eq!(hours.total_minutes, 135);
    let board = progress
        .leaderboard(pb::LeaderboardRequest { span: span.clone() })
        .await
        .expect("leaderboard")
        .into_inner();
    assert_eq!(board.rows[0].branch_id, "branch-north");
    assert_eq!(board.rows[0].minutes, 135);
    let dues = progress
        .dues(pb::DuesRequest {
            span: span.clone(),
            branch_id: "branch-north".into(),
            per_member: true,
        })
        .await
        .expect("dues")
        .into_inner();
    assert_eq!(dues.rows.len(), 1);
    assert_eq!(dues.rows[0].outstanding_minor, dues.rows[0].expected_minor);
    let compliance = progress
        .meeting_compliance(pb::MeetingComplianceRequest {
            span: span.clone(),
            branch_id: String::new(),
        })
        .await
        .expect("compliance")
        .into_inner();
    assert!(compliance.rows.iter().all(|r| !r.met));
    progress
        .issue_board(pb::IssueBoardRequest::default())
        .await
        .expect("issue board");
    let issues = progress
        .issue_leaderboard(pb::IssueLeaderboardRequest {})
        .await
        .expect("issue leaderboard")
        .into_inner();
    assert_eq!(issues.rows.len(), 2);

    // Audit: the proof checks offline.
    let mut audit = c.audit.clone();
    let proof = audit
        .get_proof(pb::GetProofRequest {
            record_id: sessions[0].record_id.clone(),
        })
        .await
        .expect("proof")
        .into_inner();
    let proof_file = cluster.dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.proof_json).expect("write proof");
    let checked = support::branchd()
        .args(["audit", "check-proof"])
        .arg(&proof_file)
        .arg("--genesis")
        .arg(cluster.genesis_path())
        .output()
        .expect("check-proof");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let mut export = audit
        .export(pb::ExportRequest::default())
        .await
        .expect("export")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = export.message().await.expect("chunk") {
        bytes.extend(chunk.data);
    }
    let export_file = cluster.dir.path().join("chain.export");
    std::fs::write(&export_file, &bytes).expect("write export");
    let verified = support::branchd()
        .args(["audit", "verify", "--genesis"])
        .arg(cluster.genesis_path())
        .arg("--export")
        .arg(&export_file)
        .output()
        .expect("verify export");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let validators = audit
        .validators(pb::ValidatorsRequest {})
        .await
        .expect("validators")
        .into_inner();
    assert_eq!(validators.quorum, 1);
    let evidence = audit
        .evidence(pb::EvidenceRequest {})
        .await
        .expect("evidence")
        .into_inner();
    assert!(evidence.duplicate_votes.is_empty());

    // The block stream: from height 1, every block in order, then the next one as it commits.
    let mut stream = ledger
        .stream_blocks(pb::StreamBlocksRequest { from_height: 1 })
        .await
        .expect("stream")
        .into_inner();
    for height in 1..=committed.height {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("in time")
            .expect("event")
            .expect("open");
        assert_eq!(event.header.expect("header").height, height);
    }
    let next = submit
        .submit_record(record_request(study("m-1", 15)))
        .await
        .expect("study")
        .into_inner();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("event")
        .expect("open");
    assert!(event.record_ids.contains(&next.record_id));

    // The view of a correctable record: the record itself until a correction makes one.
    let view = |id: &str| {
        let mut ledger = c.ledger.clone();
        let id = id.to_owned();
        async move {
            ledger
                .get_record(pb::GetRecordRequest { record_id: id })
                .await
                .expect("record")
                .into_inner()
        }
    };
    let minutes_of = |body: Option<pb::RecordBody>| match body.and_then(|b| b.kind) {
        Some(pb::record_body::Kind::StudySession(s)) => s.minutes,
        other => panic!("not a study session: {other:?}"),
    };
    let uncorrected = view(&sessions[0].record_id).await;
    assert_eq!(minutes_of(uncorrected.effective_body), 30);
    assert!(uncorrected.corrections.is_empty() && !uncorrected.retracted);
    let fix = submit
        .submit_record(record_request(kind(pb::record_body::Kind::Correction(
            Box::new(pb::Correction {
                target: sessions[1].record_id.clone(),
                reason: "entered wrongly".into(),
                replacement: Some(Box::new(with_study(|s| {
                    s.minutes = 50;
                    s.occurred_on = "2026-02-10".into();
                }))),
            }),
        ))))
        .await
        .expect("correction")
        .into_inner();
    assert!(fix.committed.is_some(), "{fix:?}");
    let corrected = view(&sessions[1].record_id).await;
    assert_eq!(minutes_of(corrected.effective_body), 50);
    assert_eq!(corrected.corrections, vec![fix.record_id.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_a_proto_file() {
    let (cluster, _c, _south, _chain) = node().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(cluster.channel(0));
    for service in ["", "branchledger.v1.Submit", "branchledger.v1.Progress"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(cluster.channel(0));
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "branchledger.v1.Node",
        "branchledger.v1.Submit",
        "branchledger.v1.Ledger",
        "branchledger.v1.Progress",
        "branchledger.v1.Audit",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_configured_rate_are_refused_and_the_node_recovers() {
    let mut cluster = Cluster::new(1, fast_timeouts);
    cluster.edit_config(0, |config| config["api"]["requests_per_second"] = 5.into());
    cluster.start(0);
    cluster.wait_connected().await;
    let mut node = pb::node_client::NodeClient::new(cluster.channel(0));
    let mut refused = 0;
    for _ in 0..50 {
        match node.status(pb::StatusRequest {}).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("rate limit"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 40,
        "only {refused} of 50 refused at 5 requests/s"
    );
    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    node.status(pb::StatusRequest {})
        .await
        .expect("served again after the limit window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_without_the_credential_cannot_use_up_the_rate_of_the_operators_writes() {
    let mut cluster = Cluster::new(1, fast_timeouts);
    cluster.edit_config(0, |config| {
        config["api"]["token"] = TOKEN.into();
        config["api"]["requests_per_second"] = 5.into();
    });
    cluster.start(0);
    cluster.wait_connected().await;
    // Writes without the credential are refused as such, however many: they take nothing
    // from the rate of writes.
    let mut stranger = cluster.submit_client(0);
    for i in 0..50 {
        let status = stranger
            .submit_record(record_request(member_joined(&format!("x-{i}"))))
            .await
            .expect_err("no credential");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "write {i}: {status:?}"
        );
    }
    // Open reads use up their own bucket...
    let mut node = pb::node_client::NodeClient::new(cluster.channel(0));
    let mut refused = 0;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        if let Err(status) = node.status(pb::StatusRequest {}).await {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            refused += 1;
        }
    }
    // A burst of 5, then 5 a second for as long as the loop took (longer on a busy machine).
    let allowed = 5 + (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        refused >= 50usize.saturating_sub(allowed).max(1),
        "only {refused} of 50 reads refused at 5 requests/s in {:?}",
        started.elapsed()
    );
    // ... and the operator's write still goes through at once.
    let answer = clients(&cluster)
        .submit
        .submit_record(record_request(member_joined("m-op")))
        .await
        .expect("the operator's write")
        .into_inner();
    assert!(answer.committed.is_some(), "{answer:?}");
}

#[test]
fn a_node_whose_reads_need_a_token_but_has_none_does_not_start() {
    let cluster = Cluster::new(1, fast_timeouts);
    cluster.edit_config(0, |config| {
        config["api"]["reads_require_token"] = true.into();
    });
    let log = cluster.dir.path().join("refused.log");
    let mut child = support::branchd()
        .args(["start", "--home"])
        .arg(&cluster.nodes[0].home)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run branchd start");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node started and ran:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    assert!(!status.success(), "it exited cleanly");
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(
        stderr.contains("api.reads_require_token")
            && stderr.contains("api.token")
            && stderr.contains("config.toml"),
        "{stderr}"
    );
}

/// A SubmitRecord sent again with the same nonce and creation time (a client retrying after a
/// lost answer) is the same record: answered ALREADY_EXISTS with its id, pending or committed,
/// and committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_sent_again_is_the_same_record_and_is_never_added_twice() {
    let (_cluster, mut clients, _south, _chain_id) = node().await;
    let created_at_ms = branchd_now_ms() - 1_000;
    let request = |wait: bool| pb::SubmitRecordRequest {
        body: Some(member_joined("m-again")),
        nonce: 42,
        wait: Some(pb::WaitOptions {
            wait_committed: wait,
            timeout_ms: 30_000,
        }),
        created_at_ms,
    };
    let first = clients
        .submit
        .submit_record(request(true))
        .await
        .expect("the first copy")
        .into_inner();
    assert!(first.committed.is_some(), "{first:?}");
    let again = clients
        .submit
        .submit_record(request(false))
        .await
        .expect_err("the same record");
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    assert_eq!(
        again
            .metadata()
            .get("record-id")
            .and_then(|v| v.to_str().ok()),
        Some(first.record_id.as_str()),
        "{again:?}"
    );
    // A new nonce is another record, refused by the state rules (the member id is taken).
    let other = clients
        .submit
        .submit_record(pb::SubmitRecordRequest {
            nonce: 43,
            ..request(false)
        })
        .await
        .expect_err("another record for the same member");
    assert_eq!(other.code(), Code::FailedPrecondition, "{other:?}");
}

fn branchd_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}
