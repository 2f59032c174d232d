//! The gRPC API (DESIGN.md §7), served by tonic over HTTP/2: the `branchledger.v1` services,
//! standard health checking, and server reflection (so `grpcurl` works with no proto file).
//!
//! Every service reads through [`ApiContext`]: the node handle (commands to the node loop),
//! the store (reads answer from indices and aggregates kept at commit time), and genesis.
//! Limits on what clients send are the constants below; bad input gets a precise status
//! naming the field and the rule, and never reaches the chain.

mod node;
mod submit;

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
    /// The operator's credential; `None`: none configured (development).
    pub token: Option<String>,
    /// Reads need the credential too.
    pub reads_require_token: bool,
}

impl ApiContext {
    /// Checks the credential of a write call.
    pub fn check_write<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        branchledger_api::auth::check(request, self.token.as_deref())
    }

    /// Checks the credential of a read call, if reads need one.
    pub fn check_read<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        if self.reads_require_token {
            self.check_write(request)
        } else {
            Ok(())
        }
    }
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
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(API_CONCURRENCY_PER_CONNECTION)
        .max_concurrent_streams(API_STREAMS_PER_CONNECTION_MAX)
        .timeout(API_REQUEST_TIMEOUT)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(node)
        .add_service(submit)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
