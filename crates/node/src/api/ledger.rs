//! `branchledger.v1.Ledger`: blocks, records and the record indices.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use branchledger_api::{convert, pb};
use branchledger_crypto::Hash;
use branchledger_state::{keys, read};
use branchledger_storage::{ChainReader, IndexEntry, Page, RocksStore, StoredRecord};
use branchledger_types::{BlockHeader, Height, RecordKind, ValidationError};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    blocking, internal, invalid, next_token, page_size, page_token, stopping, ApiContext,
    BLOCK_STREAMS_MAX, BLOCK_STREAM_SEND_TIMEOUT, GET_BLOCK_RECORDS_BYTES_MAX,
};
use crate::mempool::RecordStatus;

/// Block events waiting for a slow stream client.
const STREAM_QUEUE: usize = 64;

/// The `Ledger` service.
pub struct LedgerService {
    context: Arc<ApiContext>,
    streams: Arc<Semaphore>,
    /// How long a block event may wait for the client to take it
    /// ([`BLOCK_STREAM_SEND_TIMEOUT`]).
    send_timeout: std::time::Duration,
    /// Events a stream's queue holds ([`STREAM_QUEUE`]; smaller in tests).
    queue: usize,
}

impl LedgerService {
    /// The service over `context`.
    pub fn new(context: Arc<ApiContext>) -> LedgerService {
        LedgerService {
            context,
            streams: Arc::new(Semaphore::new(BLOCK_STREAMS_MAX)),
            send_timeout: BLOCK_STREAM_SEND_TIMEOUT,
            queue: STREAM_QUEUE,
        }
    }

    /// The service with block-stream queues of `queue` events and a send deadline of
    /// `send_timeout`.
    #[cfg(test)]
    pub(super) fn with_streams(
        context: Arc<ApiContext>,
        queue: usize,
        send_timeout: std::time::Duration,
    ) -> LedgerService {
        LedgerService {
            send_timeout,
            queue,
            ..LedgerService::new(context)
        }
    }

    /// Block stream slots free.
    #[cfg(test)]
    pub(super) fn streams_free(&self) -> usize {
        self.streams.available_permits()
    }
}

/// Parses a hex hash field.
pub fn hash_field(field: &str, text: &str) -> Result<Hash, Status> {
    if text.is_empty() {
        return Err(invalid(ValidationError::new(
            field,
            branchledger_types::Rule::Required,
        )));
    }
    convert::hash(field, text).map_err(invalid)
}

/// Checks an identifier field (member, branch) against the identifier rule.
pub fn ident_field(field: &str, text: &str) -> Result<(), Status> {
    branchledger_types::ids::check_ident(field, text).map_err(invalid)
}

fn header_at(store: &RocksStore, height: Height) -> Result<BlockHeader, Status> {
    store
        .header(height)
        .map_err(internal)?
        .ok_or_else(|| internal(format!("block {height} is indexed but not stored")))
}

/// Where a stored record is, in the API's terms.
fn location(stored: &StoredRecord, header: &BlockHeader) -> pb::RecordLocation {
    pb::RecordLocation {
        height: stored.height,
        index: stored.index,
        block_id: header.block_id().to_hex(),
        time_ms: header.time_ms,
    }
}

/// The records an index page points to, with where each is: each is read at the position its
/// index key holds.
fn records_of(store: &RocksStore, page: Page<IndexEntry>) -> Result<pb::RecordPage, Status> {
    let mut headers: BTreeMap<Height, BlockHeader> = BTreeMap::new();
    let mut records = Vec::with_capacity(page.items.len());
    for entry in page.items {
        let stored = store.indexed_record(&entry).map_err(internal)?;
        if let std::collections::btree_map::Entry::Vacant(slot) = headers.entry(stored.height) {
            slot.insert(header_at(store, stored.height)?);
        }
        records.push(pb::CommittedRecord {
            record: Some(pb::SignedRecord::from(&stored.record)),
            location: Some(location(&stored, &headers[&stored.height])),
        });
    }
    Ok(pb::RecordPage {
        records,
        next_page_token: next_token(page.next_after),
    })
}

fn block_event(store: &RocksStore, height: Height) -> Result<pb::BlockEvent, Status> {
    let header = header_at(store, height)?;
    let ids = store
        .record_ids(height)
        .map_err(internal)?
        .unwrap_or_default();
    Ok(pb::BlockEvent {
        header: Some(pb::BlockHeader::from(&header)),
        record_ids: ids.iter().map(Hash::to_hex).collect(),
    })
}

/// Which block a `GetBlock` asks for.
#[derive(Clone, Copy, Debug)]
pub(super) enum BlockAt {
    /// By height.
    Height(Height),
    /// By block id.
    Id(Hash),
}

/// The answer to `GetBlock`: the block's header and commit certificate, and its records if
/// asked.
///
/// Only blocks at or below the store's tip are served: the tip is written last, in the same
/// atomic batch as its block, so anything above it was never committed here (an edited or
/// damaged store could hold uncertified blocks there). Above the tip is NOT_FOUND, as for a
/// height never reached.
pub(super) fn block_answer<R: ChainReader + ?Sized>(
    store: &R,
    at: BlockAt,
    records: Option<RecordsPage>,
) -> Result<pb::GetBlockResponse, Status> {
    let tip = store.tip().map_err(internal)?.map_or(0, |t| t.height);
    let height = match at {
        BlockAt::Height(height) => height,
        BlockAt::Id(id) => match store.height_of(&id).map_err(internal)? {
            Some(height) if height <= tip => height,
            _ => return Err(Status::not_found(format!("no block {id} here"))),
        },
    };
    let not_found = || {
        Status::not_found(format!(
            "no block at height {height} here (committed up to height {tip})"
        ))
    };
    if height > tip {
        return Err(not_found());
    }
    let header = store
        .header(height)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let commit = store
        .commit(height)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let (records, records_from, next_records_from) = match records {
        Some(page) => block_records_page(store, &header, page)?,
        None => (Vec::new(), 0, 0),
    };
    Ok(pb::GetBlockResponse {
        header: Some(pb::BlockHeader::from(&header)),
        commit: Some(pb::CommitCertificate::from(&commit)),
        records,
        records_from,
        next_records_from,
    })
}

/// Which of a block's records a `GetBlock` answer carries.
#[derive(Clone, Copy, Debug)]
pub(super) struct RecordsPage {
    /// The index of the first.
    pub from: u32,
    /// Most bytes of encoded records ([`GET_BLOCK_RECORDS_BYTES_MAX`]; smaller in tests).
    pub bytes_max: usize,
}

/// The records of the block of `header` from `page.from` on, as many as fit in
/// `page.bytes_max` (at least one), with the index of the first and the index to ask from
/// next (0 when none are left).
fn block_records_page<R: ChainReader + ?Sized>(
    store: &R,
    header: &BlockHeader,
    page: RecordsPage,
) -> Result<(Vec<pb::SignedRecord>, u32, u32), Status> {
    let (height, count) = (header.height, header.record_count);
    if page.from > count {
        return Err(Status::out_of_range(format!(
            "records_from {}: block {height} holds {count} records",
            page.from
        )));
    }
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut index = page.from;
    while index < count {
        let stored = store
            .record_at(height, index)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("record {index} of block {height} is not stored")))?;
        let record = pb::SignedRecord::from(&stored.record);
        // The record's bytes in the answer: its own and its field's tag and length.
        let size = prost::Message::encoded_len(&record) + 1 + 5;
        if !records.is_empty() && bytes + size > page.bytes_max {
            break;
        }
        bytes += size;
        records.push(record);
        index += 1;
    }
    let next = if index < count { index } else { 0 };
    Ok((records, page.from, next))
}

/// The `GetRecord` answer for a committed record (where it is, and its corrected view), or
/// `None` if the store does not hold it.
async fn committed_record(
    store: Arc<RocksStore>,
    id: Hash,
) -> Result<Option<pb::GetRecordResponse>, Status> {
    blocking(move || {
        let Some(stored) = store.record(&id).map_err(internal)? else {
            return Ok(None);
        };
        let header = header_at(&store, stored.height)?;
        let correctable = read::correctable(store.as_ref(), &id).map_err(internal)?;
        let mut response = pb::GetRecordResponse {
            status: "committed".into(),
            record: Some(pb::SignedRecord::from(&stored.record)),
            location: Some(location(&stored, &header)),
            ..Default::default()
        };
        if let Some(entry) = correctable {
            response.effective_body = Some(pb::RecordBody::from(&entry.body));
            response.corrections = entry.corrections.iter().map(Hash::to_hex).collect();
            response.retracted = entry.retracted;
        }
        Ok(Some(response))
    })
    .await
}

type BlockStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BlockEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn get_block(
        &self,
        request: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        self.context.check_read(&request)?;
        let request = request.into_inner();
        let at = match &request.at {
            Some(pb::get_block_request::At::Height(h)) => BlockAt::Height(*h),
            Some(pb::get_block_request::At::BlockId(id)) => {
                BlockAt::Id(hash_field("block_id", id)?)
            }
            None => {
                return Err(invalid(ValidationError::new(
                    "at",
                    branchledger_types::Rule::Required,
                )))
            }
        };
        let store = self.context.store.clone();
        let records = request.include_records.then_some(RecordsPage {
            from: request.records_from,
            bytes_max: GET_BLOCK_RECORDS_BYTES_MAX,
        });
        blocking(move || block_answer(store.as_ref(), at, records).map(Response::new)).await
    }

    async fn get_record(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::GetRecordResponse>, Status> {
        self.context.check_read(&request)?;
        let id = hash_field("record_id", &request.get_ref().record_id)?;
        // The store first: a committed record is committed, whatever the mempool remembers.
        if let Some(committed) = committed_record(self.context.store.clone(), id).await? {
            return Ok(Response::new(committed));
        }
        let (status, record) = self
            .context
            .handle
            .record_status(id)
            .await
            .ok_or_else(stopping)?;
        if status != RecordStatus::Pending {
            // It may have committed between the two reads (and so left the mempool).
            if let Some(committed) = committed_record(self.context.store.clone(), id).await? {
                return Ok(Response::new(committed));
            }
        }
        match status {
            RecordStatus::Pending => Ok(Response::new(pb::GetRecordResponse {
                status: "pending".into(),
                record: record.as_ref().map(pb::SignedRecord::from),
                ..Default::default()
            })),
            RecordStatus::Dropped(reason) => Ok(Response::new(pb::GetRecordResponse {
                status: "dropped".into(),
                dropped_reason: reason,
                ..Default::default()
            })),
            RecordStatus::Unknown => Err(Status::not_found(format!(
                "record {id} is neither committed nor known to this node's mempool"
            ))),
        }
    }

    async fn member_history(
        &self,
        request: Request<pb::MemberHistoryRequest>,
    ) -> Result<Response<pb::RecordPage>, Status> {
        self.context.check_read(&request)?;
        let request = request.into_inner();
        ident_field("member_id", &request.member_id)?;
        let limit = page_size("page_size", request.page_size)?;
        let after = page_token(
            "page_token",
            &request.page_token,
            &keys::id_prefix(&request.member_id),
        )?;
        let store = self.context.store.clone();
        blocking(move || {
            if read::member(
                store.as_ref(),
                &branchledger_types::MemberId(request.member_id.clone()),
            )
            .map_err(internal)?
            .is_none()
            {
                return Err(Status::not_found(format!(
                    "no member {} on this chain",
                    request.member_id
                )));
            }
            let page = store
                .member_history(&request.member_id, after.as_deref(), limit)
                .map_err(internal)?;
            records_of(&store, page).map(Response::new)
        })
        .await
    }

    async fn list_records(
        &self,
        request: Request<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::RecordPage>, Status> {
        self.context.check_read(&request)?;
        let request = request.into_inner();
        ident_field("branch_id", &request.branch_id)?;
        let branch = branchledger_types::BranchId(request.branch_id.clone());
        if self.context.genesis.branch(&branch).is_none() {
            return Err(Status::not_found(format!(
                "no branch {} in genesis",
                request.branch_id
            )));
        }
        let kind = RecordKind::parse_field("kind", &request.kind).map_err(invalid)?;
        let period = convert::period("period", &request.period).map_err(invalid)?;
        let limit = page_size("page_size", request.page_size)?;
        let after = page_token(
            "page_token",
            &request.page_token,
            &keys::branch_kind_period_prefix(&request.branch_id, kind, period),
        )?;
        let store = self.context.store.clone();
        blocking(move || {
            let page = store
                .records_by_branch_kind_period(
                    &request.branch_id,
                    kind,
                    period,
                    after.as_deref(),
                    limit,
                )
                .map_err(internal)?;
            records_of(&store, page).map(Response::new)
        })
        .await
    }

    type StreamBlocksStream = BlockStream;

    async fn stream_blocks(
        &self,
        request: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        self.context.check_read(&request)?;
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "{BLOCK_STREAMS_MAX} block streams are open: retry later"
            )));
        };
        let from = request.get_ref().from_height;
        // Subscribe before reading the tip, so no block falls between the two.
        let mut committed = self.context.handle.subscribe();
        let store = self.context.store.clone();
        let tip = store.tip().map_err(internal)?.map_or(0, |t| t.height);
        // One place more than the events take, held for the status that ends a stream whose
        // client stopped reading: it can always be queued, even behind a full queue.
        let (tx, rx) = mpsc::channel(self.queue + 1);
        let last = tx.clone().reserve_owned().await.map_err(internal)?;
        let send_timeout = self.send_timeout;
        // The task holds the slot until it ends: when the node stops, when the store fails,
        // when the client goes away (seen on a send, or while waiting for a commit), or when
        // it takes no event for `send_timeout`.
        tokio::spawn(async move {
            let _permit = permit;
            let mut next = if from == 0 { tip + 1 } else { from };
            loop {
                // Send what is stored up to the tip, then wait for the next commit.
                let tip = match store.tip() {
                    Ok(tip) => tip.map_or(0, |t| t.height),
                    Err(e) => {
                        last.send(Err(internal(e)));
                        return;
                    }
                };
                while next <= tip {
                    let event = {
                        let store = store.clone();
                        let height = next;
                        tokio::task::spawn_blocking(move || block_event(&store, height))
                            .await
                            .unwrap_or_else(|e| Err(internal(e)))
                    };
                    match tokio::time::timeout(send_timeout, tx.send(event)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            last.send(Err(Status::deadline_exceeded(format!(
                                "block stream stopped at height {next}: the client took no \
                                 block for {} s; stream again from that height and read the \
                                 blocks as they arrive (the slot is given back to other clients)",
                                send_timeout.as_secs_f64()
                            ))));
                            return;
                        }
                    }
                    next += 1;
                }
                // Idle: a client that goes away now must not keep its slot until a block
                // commits (on a stalled chain, or from a height far ahead, none may).
                tokio::select! {
                    () = tx.closed() => return,
                    received = committed.recv() => match received {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
