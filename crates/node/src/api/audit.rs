//! `branchledger.v1.Audit`: inclusion proofs, exports, the validator set and evidence.

use std::pin::Pin;
use std::sync::Arc;

use branchledger_api::{convert, pb};
use branchledger_audit::proof::{self, ProveError};
use branchledger_storage::ChainReader;
use branchledger_types::Evidence;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::ledger::hash_field;
use super::{blocking, internal, stopping, ApiContext, EXPORTS_MAX, EXPORT_CHUNK_BYTES};

/// Export chunks waiting for a slow client.
const EXPORT_QUEUE: usize = 8;

/// The `Audit` service.
pub struct AuditService {
    context: Arc<ApiContext>,
    exports: Arc<Semaphore>,
}

impl AuditService {
    /// The service over `context`.
    pub fn new(context: Arc<ApiContext>) -> AuditService {
        AuditService {
            context,
            exports: Arc::new(Semaphore::new(EXPORTS_MAX)),
        }
    }
}

/// A writer that sends what it is given, in chunks, down a channel (from a blocking thread).
struct ChunkWriter {
    buffer: Vec<u8>,
    tx: mpsc::Sender<Result<pb::ExportChunk, Status>>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buffer);
        self.tx
            .blocking_send(Ok(pb::ExportChunk { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
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
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut writer = ChunkWriter {
                buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES),
                tx: tx.clone(),
            };
            if let Err(error) = branchledger_audit::export::write_export(
                &genesis,
                store.as_ref(),
                from,
                to,
                &mut writer,
            ) {
                let _ = tx.blocking_send(Err(internal(error)));
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
