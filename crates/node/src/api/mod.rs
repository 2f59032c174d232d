//! The gRPC API (DESIGN.md §7), served by tonic over HTTP/2: the `branchledger.v1` services,
//! standard health checking, and server reflection (so `grpcurl` works with no proto file).
//!
//! Every service reads through [`ApiContext`]: the node handle (commands to the node loop),
//! the store (reads answer from indices and aggregates kept at commit time), and genesis.
//! Limits on what clients send are the constants below; bad input gets a precise status
//! naming the field and the rule, and never reaches the chain.

mod audit;
mod ledger;
mod node;
mod progress;
pub(crate) mod submit;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use branchledger_api::pb;
use branchledger_crypto::Keypair;
use branchledger_storage::RocksStore;
use branchledger_types::{BranchId, Genesis};
use tokio::net::TcpListener;
use tonic::Status;

use crate::service::NodeHandle;

/// Largest request or response message, in bytes.
pub const API_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most requests served at once on one connection.
pub const API_CONCURRENCY_PER_CONNECTION: usize = 256;
/// Most HTTP/2 streams open at once on one connection.
pub const API_STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Longest a request may take (a commit wait included).
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(330);
/// Most records in one `SubmitBatch`.
pub const SUBMIT_BATCH_RECORDS_MAX: usize = 4_096;
/// A commit wait with no timeout given lasts this long.
pub const WAIT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// The longest commit wait a client may ask for.
pub const WAIT_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// What the services share.
pub struct ApiContext {
    /// Commands to the node loop.
    pub handle: NodeHandle,
    /// The store, for reads.
    pub store: Arc<RocksStore>,
    /// The chain's genesis.
    pub genesis: Arc<Genesis>,
    /// This node's branch and the key that signs its records, if it holds one.
    pub branch: Option<(BranchId, Keypair)>,
    /// This node's name.
    pub node_name: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Whether it is a validator.
    pub validator: bool,
    /// Who may call what, and how often.
    pub access: Access,
}

/// A limiter of a request rate.
pub type RateLimiter = governor::DefaultDirectRateLimiter;

/// A limiter of `per_second` requests per second, with bursts of as many (0: a limit so high
/// it never applies).
pub fn rate_limiter(per_second: u32) -> RateLimiter {
    let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MAX);
    governor::RateLimiter::direct(governor::Quota::per_second(rate))
}

/// Who may call what, and how often (DESIGN.md §7): writes need the operator's credential,
/// reads need it too if so configured, and each kind of call draws on its own bucket of
/// `api.requests_per_second`.
///
/// A write's credential is checked before it takes a token from the write bucket, and reads
/// never take from it: traffic without the credential (open reads, writes refused as
/// unauthenticated) cannot use up the rate of the operator's writes. Reads share one bucket,
/// all clients together; when reads need the credential, it is checked first too.
pub struct Access {
    /// The operator's credential; `None`: none configured (development: writes are open).
    token: Option<String>,
    /// Reads need the credential too.
    reads_require_token: bool,
    /// The bucket of read calls, all clients together.
    reads: RateLimiter,
    /// The bucket of write calls that passed the credential check.
    writes: RateLimiter,
}

impl Access {
    /// The API's access rules: `token` (empty: none), whether reads need it, and the rate of
    /// each kind of call.
    pub fn new(token: &str, reads_require_token: bool, requests_per_second: u32) -> Access {
        Access {
            token: (!token.is_empty()).then(|| token.to_owned()),
            reads_require_token,
            reads: rate_limiter(requests_per_second),
            writes: rate_limiter(requests_per_second),
        }
    }

    fn take(bucket: &RateLimiter, kind: &str) -> Result<(), Status> {
        bucket.check().map_err(|_| {
            Status::resource_exhausted(format!(
                "the node's rate limit of {kind} requests (api.requests_per_second) is reached: \
                 retry later"
            ))
        })
    }

    /// Checks the credential, then the write rate, of a write call.
    pub fn check_write<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        branchledger_api::auth::check(request, self.token.as_deref())?;
        Self::take(&self.writes, "write")
    }

    /// Checks the credential if reads need one, then the read rate, of a read call.
    pub fn check_read<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        if self.reads_require_token {
            // Refused at start (`NodeConfig::check`); if it got here, stay closed.
            let Some(token) = self.token.as_deref() else {
                return Err(Status::unauthenticated(
                    "reads need a credential, and this node has none configured (api.token)",
                ));
            };
            branchledger_api::auth::check(request, Some(token))?;
        }
        Self::take(&self.reads, "read")
    }
}

impl ApiContext {
    /// Checks the credential and the rate of a write call ([`Access::check_write`]).
    pub fn check_write<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        self.access.check_write(request)
    }

    /// Checks the credential (if reads need one) and the rate of a read call
    /// ([`Access::check_read`]).
    pub fn check_read<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        self.access.check_read(request)
    }
}

/// Page size when a list request gives none.
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Largest page a list request may ask for.
pub const PAGE_SIZE_MAX: usize = 1_000;
/// Longest span of months a progress query may cover.
pub const SPAN_MONTHS_MAX: usize = 36;
/// Most bytes of records one `GetBlock` answer carries (well under [`API_MESSAGE_BYTES_MAX`],
/// and above what a block of the default 4 MiB encodes to): a larger block is read in pages
/// (`records_from`, `next_records_from`).
pub const GET_BLOCK_RECORDS_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Block streams open at once; more are refused with RESOURCE_EXHAUSTED.
pub const BLOCK_STREAMS_MAX: usize = 64;
/// Longest a block stream waits for its client to take an event (its queue full). A client
/// that stays connected but reads nothing for this long loses the stream with
/// DEADLINE_EXCEEDED, so it cannot hold one of the [`BLOCK_STREAMS_MAX`] slots for ever.
pub const BLOCK_STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Exports running at once; more are refused with RESOURCE_EXHAUSTED.
pub const EXPORTS_MAX: usize = 2;
/// Size of the pieces an export is streamed in.
pub const EXPORT_CHUNK_BYTES: usize = 1024 * 1024;
/// Longest an export waits for its client to take a chunk (its queue full). A client that
/// takes none for this long loses the export with DEADLINE_EXCEEDED, so a client that stops
/// reading gives its slot (and a blocking thread) back.
pub const EXPORT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// An INVALID_ARGUMENT naming the field and the rule.
pub fn invalid(error: branchledger_types::ValidationError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// The page size asked for: 0 is the default; above [`PAGE_SIZE_MAX`] is refused.
pub fn page_size(field: &str, asked: u32) -> Result<usize, Status> {
    match asked as usize {
        0 => Ok(PAGE_SIZE_DEFAULT),
        n if n <= PAGE_SIZE_MAX => Ok(n),
        n => Err(invalid(branchledger_types::ValidationError::new(
            field,
            branchledger_types::Rule::Range {
                min: 0,
                max: PAGE_SIZE_MAX as u64,
                actual: n as u64,
            },
        ))),
    }
}

/// A page token: the hex of the last index key of the previous page, which must lie under the
/// query's `prefix` (a token of another query is refused).
pub fn page_token(field: &str, token: &str, prefix: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    match hex::decode(token) {
        Ok(key) if key.starts_with(prefix) && key.len() > prefix.len() => Ok(Some(key)),
        _ => Err(Status::invalid_argument(format!(
            "field `{field}`: not a page token of this query (pass the `next_page_token` of the previous page)"
        ))),
    }
}

/// The token for the page after one that ended at `next_after`.
pub fn next_token(next_after: Option<Vec<u8>>) -> String {
    next_after.map(hex::encode).unwrap_or_default()
}

/// Runs store reads off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(internal)?
}

/// The months of a span: `from ..= to`, at most [`SPAN_MONTHS_MAX`]; empty fields as the
/// proto says (both empty: the current month).
pub fn span(
    field: &str,
    span: Option<&pb::Span>,
) -> Result<Vec<branchledger_types::Period>, Status> {
    use branchledger_api::convert::period;
    let now = branchledger_types::Date::from_unix_ms(crate::devnet::now_ms()).period();
    let (from, to) = match span {
        None => (now, now),
        Some(s) => {
            let from = if s.from_period.is_empty() {
                now
            } else {
                period(&format!("{field}.from_period"), &s.from_period).map_err(invalid)?
            };
            let to = if s.to_period.is_empty() {
                from
            } else {
                period(&format!("{field}.to_period"), &s.to_period).map_err(invalid)?
            };
            (from, to)
        }
    };
    if to < from {
        return Err(Status::invalid_argument(format!(
            "field `{field}.to_period`: {to} is before from_period {from}"
        )));
    }
    let mut months = vec![from];
    while *months.last().expect("one month") < to {
        if months.len() >= SPAN_MONTHS_MAX {
            return Err(Status::invalid_argument(format!(
                "field `{field}`: spans at most {SPAN_MONTHS_MAX} months"
            )));
        }
        months.push(months.last().expect("one month").next());
    }
    Ok(months)
}

/// The node loop has stopped: the node is shutting down.
pub fn stopping() -> Status {
    Status::unavailable("the node is shutting down")
}

/// A failure inside the node (storage, a corrupt value): logged, and reported without detail
/// beyond its kind.
pub fn internal(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "API request failed inside the node");
    Status::internal(format!("internal error: {error}"))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    context: Arc<ApiContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::node_server::NodeServer<node::NodeService>>()
        .await;
    health
        .set_serving::<pb::submit_server::SubmitServer<submit::SubmitService>>()
        .await;
    health
        .set_serving::<pb::ledger_server::LedgerServer<ledger::LedgerService>>()
        .await;
    health
        .set_serving::<pb::progress_server::ProgressServer<progress::ProgressService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<audit::AuditService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets are valid");
    let node = pb::node_server::NodeServer::new(node::NodeService(context.clone()))
        .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
    let submit = pb::submit_server::SubmitServer::new(submit::SubmitService(context.clone()))
        .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
    let ledger = pb::ledger_server::LedgerServer::new(ledger::LedgerService::new(context.clone()))
        .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
    let progress =
        pb::progress_server::ProgressServer::new(progress::ProgressService(context.clone()))
            .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
    let audit = pb::audit_server::AuditServer::new(audit::AuditService::new(context.clone()))
        .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(API_CONCURRENCY_PER_CONNECTION)
        .max_concurrent_streams(API_STREAMS_PER_CONNECTION_MAX)
        .timeout(API_REQUEST_TIMEOUT)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(node)
        .add_service(submit)
        .add_service(ledger)
        .add_service(progress)
        .add_service(audit)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY, small answers wait on the peer's delayed ACK (~40 ms each).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
