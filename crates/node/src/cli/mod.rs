//! The client side of `branchd`: commands that talk to a running node over gRPC (`status`,
//! `submit`, `import`, `query …`). Each prints a human table, or JSON with `--json`.

pub mod fields;
pub mod import;
pub mod query;

use anyhow::{bail, Context, Result};
use branchledger_api::pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Where the node's API is and the credential for it.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiArgs {
    /// The node's gRPC address.
    #[arg(long, env = "BRANCHD_API", default_value = "http://127.0.0.1:26601")]
    pub api: String,
    /// The operator's token (needed for writes when the node has one).
    #[arg(
        long,
        env = "BRANCHD_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub token: String,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert(branchledger_api::auth::AUTHORIZATION, token.clone());
        }
        Ok(request)
    }
}

/// A connected client.
pub struct Api {
    channel: Channel,
    auth: Auth,
}

type Authed = InterceptedService<Channel, Auth>;

impl Api {
    /// Connects to the node.
    pub async fn connect(args: &ApiArgs) -> Result<Api> {
        let address = if args.api.contains("://") {
            args.api.clone()
        } else {
            format!("http://{}", args.api)
        };
        let channel = Channel::from_shared(address.clone())
            .with_context(|| format!("--api {address:?} is not a URI"))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to the node at {address}"))?;
        let auth = if args.token.is_empty() {
            Auth(None)
        } else {
            Auth(Some(
                format!("Bearer {}", args.token)
                    .parse()
                    .context("the token must be printable ASCII")?,
            ))
        };
        Ok(Api { channel, auth })
    }

    /// The `Node` service.
    pub fn node(&self) -> pb::node_client::NodeClient<Authed> {
        pb::node_client::NodeClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    /// The node's status, with a failed call turned into an error naming its status code.
    pub async fn status(&self) -> Result<pb::StatusResponse> {
        Ok(self
            .node()
            .status(pb::StatusRequest {})
            .await
            .map_err(status_error)?
            .into_inner())
    }

    /// The `Submit` service.
    pub fn submit(&self) -> pb::submit_client::SubmitClient<Authed> {
        pb::submit_client::SubmitClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(crate::api::API_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::api::API_MESSAGE_BYTES_MAX)
    }

    /// The `Ledger` service.
    pub fn ledger(&self) -> pb::ledger_client::LedgerClient<Authed> {
        pb::ledger_client::LedgerClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(crate::api::API_MESSAGE_BYTES_MAX)
    }

    /// The `Progress` service.
    pub fn progress(&self) -> pb::progress_client::ProgressClient<Authed> {
        pb::progress_client::ProgressClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
        .max_decoding_message_size(crate::api::API_MESSAGE_BYTES_MAX)
    }

    /// The `Audit` service.
    pub fn audit(&self) -> pb::audit_client::AuditClient<Authed> {
        pb::audit_client::AuditClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(crate::api::API_MESSAGE_BYTES_MAX)
    }
}

/// Runs a client command on a small runtime.
pub fn run<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// A gRPC failure as an operator reads it: the code and the node's message.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(row.iter().cloned());
    }
    println!("{table}");
}

/// `branchd status`.
pub async fn status(args: &ApiArgs, json: bool) -> Result<()> {
    let status = Api::connect(args).await?.status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
        return Ok(());
    }
    println!("chain        {}", status.chain_id);
    println!("node         {} ({})", status.node_name, status.peer_id);
    println!("validator    {}", status.validator);
    println!(
        "height       {} (block {}), deciding {} round {}",
        status.height,
        short(&status.tip_block_id),
        status.deciding_height,
        status.round
    );
    println!("peers        {}", status.peers);
    println!(
        "sync         {} (peers report {})",
        status.sync_state, status.peer_tip
    );
    println!(
        "mempool      {} records, {} bytes",
        status.mempool_records, status.mempool_bytes
    );
    if !status.not_committing_reason.is_empty() {
        println!("not committing: {}", status.not_committing_reason);
    }
    println!("validators (quorum {}):", status.quorum);
    print_validators(&status.validators);
    Ok(())
}

/// The validator set as a table.
pub fn print_validators(validators: &[pb::ValidatorInfo]) {
    print_table(
        &["#", "name", "branch", "peer id", "consensus key"],
        &validators
            .iter()
            .map(|v| {
                vec![
                    v.index.to_string(),
                    v.name.clone(),
                    v.branch_id.clone(),
                    v.peer_id.clone(),
                    v.consensus_key.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "chain_id": s.chain_id,
        "node_name": s.node_name,
        "peer_id": s.peer_id,
        "validator": s.validator,
        "height": s.height,
        "tip_block_id": s.tip_block_id,
        "tip_time_ms": s.tip_time_ms,
        "deciding_height": s.deciding_height,
        "round": s.round,
        "peers": s.peers,
        "peer_tip": s.peer_tip,
        "sync_state": s.sync_state,
        "mempool_records": s.mempool_records,
        "mempool_bytes": s.mempool_bytes,
        "not_committing_reason": s.not_committing_reason,
        "quorum": s.quorum,
        "validators": s.validators.iter().map(|v| serde_json::json!({
            "index": v.index, "name": v.name, "branch_id": v.branch_id,
            "consensus_key": v.consensus_key, "peer_id": v.peer_id,
        })).collect::<Vec<_>>(),
        "version": s.version,
    })
}

/// The first characters of a hex id, for tables.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `branchd submit <kind> …`: one record signed by the node's branch.
pub async fn submit(
    args: &ApiArgs,
    kind: fields::RecordKindArg,
    record: &fields::RecordFields,
    wait: bool,
    json: bool,
) -> Result<()> {
    let body = fields::body(kind, record)?;
    let api = Api::connect(args).await?;
    let response = api
        .submit()
        .submit_record(pb::SubmitRecordRequest {
            body: Some(body),
            nonce: 0,
            created_at_ms: 0,
            wait: Some(pb::WaitOptions {
                wait_committed: wait,
                timeout_ms: 0,
            }),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "record_id": response.record_id,
                "committed": response.committed.as_ref().map(|c| serde_json::json!({
                    "height": c.height, "block_id": c.block_id, "index": c.index,
                })),
            })
        );
    } else {
        match &response.committed {
            Some(c) => println!(
                "record {} committed at height {} (block {}, position {})",
                response.record_id,
                c.height,
                short(&c.block_id),
                c.index
            ),
            None if wait => {
                bail!(
                    "record {} was admitted but not committed in time; check it later with `branchd query record {}`",
                    response.record_id,
                    response.record_id
                )
            }
            None => println!("record {} admitted", response.record_id),
        }
    }
    Ok(())
}
