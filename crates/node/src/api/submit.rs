//! `branchledger.v1.Submit`: records into the mempool, optionally waiting for the commit.

use std::sync::Arc;
use std::time::Duration;

use branchledger_api::{convert, pb};
use branchledger_crypto::Hash;
use branchledger_storage::ChainReader;
use branchledger_types::{Record, Rule, SignedRecord, ValidationError};
use tonic::{Request, Response, Status};

use super::{
    blocking, internal, invalid, stopping, ApiContext, SUBMIT_BATCH_RECORDS_MAX,
    WAIT_TIMEOUT_DEFAULT, WAIT_TIMEOUT_MAX,
};
use crate::driver::SubmitError;
use crate::mempool::AdmitError;

/// The `Submit` service.
pub struct SubmitService(pub Arc<ApiContext>);

/// The metadata key of an `ALREADY_EXISTS` answer that names the record already there (hex),
/// so a client that sent a record again knows its id.
pub const RECORD_ID_METADATA: &str = "record-id";

/// The status for a record the node did not take.
pub fn submit_status(error: &SubmitError) -> Status {
    match error {
        SubmitError::Admit(AdmitError::Full { .. }) => {
            Status::resource_exhausted(error.to_string())
        }
        SubmitError::Admit(AdmitError::Pending(id) | AdmitError::Committed(id, _)) => {
            let mut status = Status::already_exists(error.to_string());
            if let Ok(value) = id.to_hex().parse() {
                status.metadata_mut().insert(RECORD_ID_METADATA, value);
            }
            status
        }
        SubmitError::Admit(AdmitError::Invalid(..)) => Status::invalid_argument(error.to_string()),
        SubmitError::Admit(AdmitError::Read(e)) => internal(e),
        SubmitError::Rejected(..) => Status::failed_precondition(error.to_string()),
    }
}

/// Where a record is committed, if the store holds it.
async fn committed(context: &Arc<ApiContext>, id: Hash) -> Result<Option<pb::Committed>, Status> {
    let store = context.store.clone();
    blocking(move || {
        let Some(stored) = store.record(&id).map_err(internal)? else {
            return Ok(None);
        };
        let header = store
            .header(stored.height)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("block {} is not stored", stored.height)))?;
        Ok(Some(pb::Committed {
            height: stored.height,
            block_id: header.block_id().to_hex(),
            index: stored.index,
        }))
    })
    .await
}

fn outcome(result: &Result<Hash, AdmitError>) -> (&'static str, String) {
    match result {
        Ok(_) => ("ok", String::new()),
        Err(e @ AdmitError::Invalid(..)) => ("invalid", e.to_string()),
        Err(e @ AdmitError::Pending(_)) => ("duplicate", e.to_string()),
        Err(e @ AdmitError::Committed(..)) => ("committed", e.to_string()),
        Err(e @ AdmitError::Full { .. }) => ("full", e.to_string()),
        Err(e @ AdmitError::Read(_)) => ("error", e.to_string()),
    }
}

impl SubmitService {
    /// Submits one record and, if asked, waits for its commit.
    async fn submit_one(
        &self,
        record: SignedRecord,
        wait: Option<pb::WaitOptions>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let context = &self.0;
        let id = context
            .handle
            .submit_checked(record)
            .await
            .ok_or_else(stopping)?
            .map_err(|e| submit_status(&e))?;
        let mut response = pb::SubmitResponse {
            record_id: id.to_hex(),
            committed: None,
        };
        let Some(wait) = wait.filter(|w| w.wait_committed) else {
            return Ok(Response::new(response));
        };
        let timeout = if wait.timeout_ms == 0 {
            WAIT_TIMEOUT_DEFAULT
        } else {
            Duration::from_millis(u64::from(wait.timeout_ms)).min(WAIT_TIMEOUT_MAX)
        };
        match tokio::time::timeout(timeout, context.handle.wait_committed(id)).await {
            Ok(Some(Ok(_height))) => {
                response.committed = Some(
                    committed(context, id)
                        .await?
                        .ok_or_else(|| internal(format!("committed record {id} is not stored")))?,
                );
            }
            Ok(Some(Err(reason))) => {
                // The store has the last word: a record dropped here may have been committed
                // in another validator's block, and a client told "dropped" might submit the
                // same fact again.
                match committed(context, id).await? {
                    Some(location) => response.committed = Some(location),
                    None => {
                        return Err(Status::failed_precondition(format!(
                            "record {id} was admitted, then dropped before it could commit: \
                             {reason}"
                        )))
                    }
                }
            }
            // The node stopped, or too many clients wait: answer without the commit.
            Ok(None) => {}
            // Timed out: the record may still commit.
            Err(_) => {}
        }
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl pb::submit_server::Submit for SubmitService {
    async fn submit_record(
        &self,
        request: Request<pb::SubmitRecordRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let context = &self.0;
        context.check_write(&request)?;
        let request = request.into_inner();
        let Some((branch_id, key)) = &context.branch else {
            return Err(Status::failed_precondition(
                "this node holds no branch key: submit records signed elsewhere with SubmitSigned",
            ));
        };
        let body = request
            .body
            .as_ref()
            .ok_or_else(|| invalid(ValidationError::new("body", Rule::Required)))
            .and_then(|b| convert::record_body("body", b).map_err(invalid))?;
        let nonce = if request.nonce == 0 {
            rand::random::<u64>().max(1)
        } else {
            request.nonce
        };
        let created_at_ms = if request.created_at_ms == 0 {
            crate::devnet::now_ms()
        } else {
            request.created_at_ms
        };
        let record = Record {
            chain_id: context.genesis.chain_id.clone(),
            branch_id: branch_id.clone(),
            created_at_ms,
            nonce,
            body,
        };
        record.validate().map_err(invalid)?;
        self.submit_one(record.sign(key), request.wait).await
    }

    async fn submit_signed(
        &self,
        request: Request<pb::SubmitSignedRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.0.check_write(&request)?;
        let request = request.into_inner();
        if request.signed_record.is_empty() {
            return Err(invalid(ValidationError::new(
                "signed_record",
                Rule::Required,
            )));
        }
        let record = SignedRecord::from_bytes(&request.signed_record)
            .map_err(|e| Status::invalid_argument(format!("field `signed_record`: {e}")))?;
        self.submit_one(record, request.wait).await
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let context = &self.0;
        context.check_write(&request)?;
        let request = request.into_inner();
        if request.signed_records.len() > SUBMIT_BATCH_RECORDS_MAX {
            return Err(invalid(ValidationError::new(
                "signed_records",
                Rule::Length {
                    min: 0,
                    max: SUBMIT_BATCH_RECORDS_MAX,
                    actual: request.signed_records.len(),
                },
            )));
        }
        // Bytes that do not decode get their result here; the rest go to the node at once.
        let mut results: Vec<Option<pb::SubmitResult>> = Vec::new();
        let mut records = Vec::new();
        for (i, bytes) in request.signed_records.iter().enumerate() {
            match SignedRecord::from_bytes(bytes) {
                Ok(record) => {
                    records.push(record);
                    results.push(None);
                }
                Err(e) => results.push(Some(pb::SubmitResult {
                    record_id: String::new(),
                    outcome: "invalid".into(),
                    message: format!("field `signed_records[{i}]`: {e}"),
                })),
            }
        }
        let admitted = if records.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<Hash> = records.iter().map(SignedRecord::id).collect();
            let answers = context.handle.submit(records).await.ok_or_else(stopping)?;
            ids.into_iter().zip(answers).collect()
        };
        let mut admitted = admitted.into_iter();
        let mut count = 0u32;
        let results = results
            .into_iter()
            .map(|slot| match slot {
                Some(result) => result,
                None => {
                    let (id, answer) = admitted.next().expect("one answer per decoded record");
                    let (outcome, message) = outcome(&answer);
                    count += u32::from(answer.is_ok());
                    pb::SubmitResult {
                        record_id: id.to_hex(),
                        outcome: outcome.into(),
                        message,
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::SubmitBatchResponse {
            results,
            admitted: count,
        }))
    }
}
