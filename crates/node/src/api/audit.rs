//! `branchledger.v1.Audit`: inclusion proofs, exports, the validator set and evidence.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use branchledger_api::{convert, pb};
use branchledger_audit::proof::{self, ProveError};
use branchledger_storage::ChainReader;
use branchledger_types::Evidence;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::ledger::hash_field;
use super::{
    blocking, internal, stopping, ApiContext, EXPORTS_MAX, EXPORT_CHUNK_BYTES, EXPORT_SEND_TIMEOUT,
};

/// Export chunks waiting for a slow client (each waits at most [`EXPORT_SEND_TIMEOUT`] for a
/// place).
const EXPORT_QUEUE: usize = 8;

/// The `Audit` service.
pub struct AuditService {
    context: Arc<ApiContext>,
    /// One permit per export that may run at once ([`EXPORTS_MAX`]).
    exports: Arc<Semaphore>,
    /// Size of an export's chunks ([`EXPORT_CHUNK_BYTES`]; smaller in tests).
    chunk_bytes: usize,
    /// How long a chunk may wait for the client to take it ([`EXPORT_SEND_TIMEOUT`]).
    send_timeout: Duration,
}

impl AuditService {
    /// The service over `context`.
    pub fn new(context: Arc<ApiContext>) -> AuditService {
        AuditService {
            context,
            exports: Arc::new(Semaphore::new(EXPORTS_MAX)),
            chunk_bytes: EXPORT_CHUNK_BYTES,
            send_timeout: EXPORT_SEND_TIMEOUT,
        }
    }

    /// The service with chunks of `chunk_bytes` and a send deadline of `send_timeout`.
    #[cfg(test)]
    pub(super) fn with_chunks(
        context: Arc<ApiContext>,
        chunk_bytes: usize,
        send_timeout: Duration,
    ) -> AuditService {
        AuditService {
            chunk_bytes,
            send_timeout,
            ..AuditService::new(context)
        }
    }

    /// Export slots free.
    #[cfg(test)]
    pub(super) fn exports_free(&self) -> usize {
        self.exports.available_permits()
    }
}

/// Why a [`ChunkWriter`] stopped sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendStopped {
    /// The client went away: nobody is left to tell.
    ClientGone,
    /// The client took no chunk within the send deadline.
    TimedOut,
}

/// A writer that sends what it is given, in chunks, down a channel (from a blocking thread),
/// each send waiting at most `send_timeout` for room.
struct ChunkWriter {
    buffer: Vec<u8>,
    chunk_bytes: usize,
    tx: mpsc::Sender<Result<pb::ExportChunk, Status>>,
    /// The runtime whose timer bounds each send (this thread is one of its blocking ones).
    runtime: tokio::runtime::Handle,
    send_timeout: Duration,
    /// Set when a send failed, and why.
    stopped: Option<SendStopped>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buffer);
        let sent = self.runtime.block_on(tokio::time::timeout(
            self.send_timeout,
            self.tx.send(Ok(pb::ExportChunk { data })),
        ));
        let (stopped, kind, what) = match sent {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) => (
                SendStopped::ClientGone,
                std::io::ErrorKind::BrokenPipe,
                "client went away",
            ),
            Err(_) => (
                SendStopped::TimedOut,
                std::io::ErrorKind::TimedOut,
                "client took no chunk in time",
            ),
        };
        self.stopped = Some(stopped);
        Err(std::io::Error::new(kind, what))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= self.chunk_bytes {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

type ExportStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ExportChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_proof(
        &self,
        request: Request<pb::GetProofRequest>,
    ) -> Result<Response<pb::GetProofResponse>, Status> {
        self.context.check_read(&request)?;
        let id = hash_field("record_id", &request.get_ref().record_id)?;
        let store = self.context.store.clone();
        blocking(move || {
            let proof = match proof::prove(store.as_ref(), &id) {
                Ok(proof) => proof,
                Err(ProveError::NotFound(_)) => {
                    return Err(Status::not_found(format!(
                        "record {id} is not committed here"
                    )))
                }
                Err(error) => return Err(internal(error)),
            };
            let json = serde_json::to_string_pretty(&proof).map_err(internal)?;
            Ok(Response::new(pb::GetProofResponse {
                record: Some(pb::SignedRecord::from(&proof.record)),
                index: proof.proof.index,
                tree_size: proof.proof.tree_size,
                path: proof.proof.path.iter().map(|h| h.to_hex()).collect(),
                header: Some(pb::BlockHeader::from(&proof.header)),
                commit: Some(pb::CommitCertificate::from(&proof.commit)),
                proof_json: json,
            }))
        })
        .await
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        self.context.check_read(&request)?;
        let Ok(permit) = self.exports.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "{EXPORTS_MAX} exports are running: retry later"
            )));
        };
        let request = request.into_inner();
        let store = self.context.store.clone();
        let genesis = self.context.genesis.clone();
        let tip = store.tip().map_err(internal)?.map_or(0, |t| t.height);
        let from = request.from_height.max(1);
        let to = if request.to_height == 0 {
            tip
        } else {
            request.to_height
        };
        if tip == 0 {
            return Err(Status::failed_precondition("the chain has no block yet"));
        }
        if from > to || to > tip {
            return Err(Status::out_of_range(format!(
                "heights {from}..={to} are not all committed here (tip {tip})"
            )));
        }
        // One place more than the chunks take, held for the status that ends an export cut
        // short: it can always be queued, even behind a full queue of chunks.
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE + 1);
        let last = tx.clone().reserve_owned().await.map_err(internal)?;
        let chunk_bytes = self.chunk_bytes;
        let send_timeout = self.send_timeout;
        let runtime = tokio::runtime::Handle::current();
        // The thread holds the slot until the export is written, the client is gone, or the
        // client took no chunk for `send_timeout`.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut writer = ChunkWriter {
                buffer: Vec::with_capacity(chunk_bytes),
                chunk_bytes,
                tx,
                runtime,
                send_timeout,
                stopped: None,
            };
            let written = branchledger_audit::export::write_export(
                &genesis,
                store.as_ref(),
                from,
                to,
                &mut writer,
            );
            // On success the reserved place is given back unused and the stream ends cleanly.
            let Err(error) = written else {
                return;
            };
            match writer.stopped {
                Some(SendStopped::ClientGone) => {}
                Some(SendStopped::TimedOut) => {
                    last.send(Err(Status::deadline_exceeded(format!(
                        "export of heights {from}..={to} stopped: the client took no chunk for \
                         {} s; export again and read the stream as it arrives (the slot is \
                         given back to other clients)",
                        send_timeout.as_secs_f64()
                    ))));
                }
                None => {
                    last.send(Err(internal(error)));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn validators(
        &self,
        request: Request<pb::ValidatorsRequest>,
    ) -> Result<Response<pb::ValidatorsResponse>, Status> {
        self.context.check_read(&request)?;
        let genesis = &self.context.genesis;
        let set = genesis.validator_set();
        Ok(Response::new(pb::ValidatorsResponse {
            validators: genesis
                .validators
                .iter()
                .enumerate()
                .map(|(i, v)| convert::validator_info(i, v))
                .collect(),
            quorum: set.quorum() as u32,
            validator_set_id: set.id().to_hex(),
        }))
    }

    async fn evidence(
        &self,
        request: Request<pb::EvidenceRequest>,
    ) -> Result<Response<pb::EvidenceResponse>, Status> {
        self.context.check_read(&request)?;
        let evidence = self.context.handle.evidence().await.ok_or_else(stopping)?;
        Ok(Response::new(pb::EvidenceResponse {
            duplicate_votes: evidence
                .iter()
                .map(|e| match e {
                    Evidence::DuplicateVote { first, second } => pb::DuplicateVote {
                        first: Some(pb::SignedVote::from(first)),
                        second: Some(pb::SignedVote::from(second)),
                    },
                })
                .collect(),
        }))
    }
}
