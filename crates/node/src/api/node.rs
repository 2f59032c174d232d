//! `branchledger.v1.Node`: the node's status.

use std::sync::Arc;

use branchledger_api::pb;
use branchledger_storage::ChainReader;
use tonic::{Request, Response, Status};

use super::{internal, stopping, ApiContext};

/// The `Node` service.
pub struct NodeService(pub Arc<ApiContext>);

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let context = &self.0;
        context.check_read(&request)?;
        let status = context.handle.status().await.ok_or_else(stopping)?;
        let tip = context.store.tip().map_err(internal)?;
        let tip_header = match &tip {
            Some(tip) => context.store.header(tip.height).map_err(internal)?,
            None => None,
        };
        let validators = context.genesis.validator_set();
        Ok(Response::new(pb::StatusResponse {
            chain_id: context.genesis.chain_id.clone(),
            node_name: context.node_name.clone(),
            peer_id: context.peer_id.clone(),
            validator: context.validator,
            height: status.height,
            tip_block_id: tip.map(|t| t.block_id.to_hex()).unwrap_or_default(),
            tip_time_ms: tip_header.map_or(0, |h| h.time_ms),
            deciding_height: status.deciding,
            round: status.round,
            peers: u32::try_from(status.peers).unwrap_or(u32::MAX),
            peer_tip: status.peer_tip,
            sync_state: if status.peer_tip > status.height {
                "catching_up".into()
            } else {
                "synced".into()
            },
            mempool_records: status.mempool_records as u64,
            mempool_bytes: status.mempool_bytes as u64,
            not_committing_reason: status.not_committing_reason,
            validators: context
                .genesis
                .validators
                .iter()
                .enumerate()
                .map(|(index, v)| branchledger_api::convert::validator_info(index, v))
                .collect(),
            quorum: validators.quorum() as u32,
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}
