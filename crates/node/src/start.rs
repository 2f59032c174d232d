//! `branchd start`: opens the node home and runs the node until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use branchledger_crypto::Signer;
use branchledger_storage::{RocksOptions, RocksStore};

use crate::config::{LogFormat, NodeConfig};
use crate::driver::Driver;
use crate::home::{read_key, Home, KeyRole};
use crate::ledger::Ledger;
use crate::mempool::{Mempool, MempoolLimits, MEMPOOL_DROPPED_MAX_DEFAULT};
use crate::metrics::Metrics;
use crate::safety_file::SafetyFile;
use crate::service::{self, PeerLink};

/// Arguments of `branchd start`.
#[derive(clap::Args)]
pub struct StartArgs {
    /// The node home (config/ and data/).
    #[arg(long, env = "BRANCHD_HOME")]
    pub home: PathBuf,
    /// The configuration file (default: HOME/config/config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override `metrics.listen`.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Override `log.format` (text or json).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// For fault tests only: run the consensus clock this many milliseconds off the system
    /// clock, to show that a validator with a wrong clock cannot get blocks from the future
    /// accepted.
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,
    /// For fault tests only: this validator equivocates (two proposals per round it leads, a
    /// conflicting vote for every vote), to show that the honest ones never fork and report
    /// the evidence.
    #[arg(long, hide = true)]
    pub test_equivocate: bool,
}

fn init_logging(config: &NodeConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Loads the configuration with flags applied on top, and checks it ([`NodeConfig::check`]).
pub fn load_config(args: &StartArgs) -> Result<NodeConfig> {
    let home = Home::new(&args.home);
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| home.config_dir().join("config.toml"));
    let mut config = NodeConfig::load(&path)?;
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = Some(listen);
    }
    if let Some(format) = &args.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    config.check(&path)?;
    Ok(config)
}

/// Runs the node until a signal.
pub fn run(args: StartArgs) -> Result<()> {
    let config = load_config(&args)?;
    init_logging(&config);
    for warning in config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Installed before anything is opened, so that a SIGTERM arriving while the store opens
    // (seconds, for a large one) or as soon as the node is reachable is kept and stops the
    // node cleanly once it runs, rather than killing it.
    let signals = {
        let _runtime = runtime.enter();
        ShutdownSignals::install()?
    };
    let home = Home::new(&args.home);
    let text = std::fs::read_to_string(home.genesis_path())
        .with_context(|| format!("reading {}", home.genesis_path().display()))?;
    let genesis = Arc::new(branchledger_types::Genesis::from_json(&text)?);
    let consensus_path = home.key_path(KeyRole::Consensus);
    let consensus_key = if consensus_path.exists() {
        let key = read_key(&consensus_path, KeyRole::Consensus)?;
        genesis
            .validator_set()
            .index_of(&key.public_key())
            .map(|_| key)
    } else {
        None
    };
    std::fs::create_dir_all(home.data_dir())?;
    let store = Arc::new(RocksStore::open_with(
        &home.store_dir(),
        &RocksOptions {
            block_cache_bytes: config.storage.block_cache_bytes,
            state_cache_entries: config.storage.state_cache_entries,
            record_id_filter: true,
            ..RocksOptions::default()
        },
    )?);
    let ledger_store = store.clone();
    let ledger = Ledger::new(genesis.clone(), store);
    let mempool = Mempool::new(MempoolLimits {
        records_max: config.mempool.records_max,
        bytes_max: config.mempool.bytes_max,
        dropped_max: MEMPOOL_DROPPED_MAX_DEFAULT,
    });
    let validator = consensus_key.is_some();
    let equivocation = consensus_key.clone().filter(|_| args.test_equivocate);
    let mut driver = Driver::new(
        ledger,
        mempool,
        SafetyFile::new(&home.data_dir()),
        consensus_key,
        Instant::now(),
        crate::devnet::now_ms().saturating_add_signed(args.clock_offset_ms),
    )?;
    if let Some(key) = equivocation {
        tracing::warn!("fault test: this validator equivocates");
        driver.equivocate(key);
    }
    let node_key = read_key(&home.key_path(KeyRole::Node), KeyRole::Node)?;
    let p2p_config = p2p_config(&config, &genesis, node_key.seed())?;
    let store_for_sync = ledger_store.clone();
    let api_store = ledger_store.clone();
    let branch = branch_signer(&home, &genesis)?;
    runtime.block_on(async move {
        let mut metrics = Metrics::new();
        let (client, events, event_loop) =
            branchledger_p2p::new(p2p_config, metrics.registry_mut())?;
        let metrics = Arc::new(metrics);
        let peer_id = event_loop.local_peer_id();
        tracing::info!(%peer_id, "node identity");
        tokio::spawn(event_loop.run());
        let serve = crate::peers::spawn_sync_server(store_for_sync, client.clone());
        if let Some(address) = config.metrics.listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the metrics endpoint {address}"))?;
            tracing::info!(address = %listener.local_addr()?, "metrics endpoint listening");
            tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        }
        tracing::info!(chain = %genesis.chain_id, name = %config.name, validator, "node starting");
        let (handle, node) = service::new(driver, metrics);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let api_listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("binding the API endpoint {}", config.api.listen))?;
        tracing::info!(address = %api_listener.local_addr()?, "api listening");
        let context = Arc::new(crate::api::ApiContext {
            handle,
            store: api_store,
            genesis: genesis.clone(),
            branch,
            node_name: config.name.clone(),
            peer_id: peer_id.to_string(),
            validator,
            access: crate::api::Access::new(
                &config.api.token,
                config.api.reads_require_token,
                config.api.requests_per_second,
            ),
        });
        let api = tokio::spawn(crate::api::serve(
            api_listener,
            context,
            wait_for(stopped.clone()),
        ));
        tokio::spawn(async move {
            signals.wait().await;
            let _ = stop.send(true);
        });
        let link = PeerLink {
            client,
            events,
            serve,
        };
        node.run(Some(link), wait_for(stopped)).await?;
        match api.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "API server stopped with an error"),
            Err(error) => tracing::warn!(%error, "API server task failed"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!("node stopped cleanly");
    Ok(())
}

/// The network's configuration: addresses from the node configuration, the allow list and
/// message limit from genesis.
fn p2p_config(
    config: &NodeConfig,
    genesis: &branchledger_types::Genesis,
    node_key_seed: [u8; 32],
) -> Result<branchledger_p2p::Config> {
    let listen = config
        .p2p
        .listen
        .parse()
        .with_context(|| format!("p2p.listen {:?} is not a multiaddress", config.p2p.listen))?;
    let peers = config
        .p2p
        .peers
        .iter()
        .map(|p| {
            p.parse()
                .with_context(|| format!("p2p.peers entry {p:?} is not a multiaddress"))
        })
        .collect::<Result<Vec<_>>>()?;
    let allowed = genesis
        .validators
        .iter()
        .map(|v| branchledger_p2p::parse_peer_id(&v.peer_id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(branchledger_p2p::Config {
        node_key_seed,
        chain_id: genesis.chain_id.clone(),
        listen,
        peers,
        allowed,
        consensus_bytes_max: genesis.consensus.max_block_bytes as usize
            + branchledger_types::limits::CONSENSUS_MESSAGE_BYTES_MAX,
    })
}

/// Resolves once `stopped` turns true.
async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The branch this node signs records for: the genesis branch whose signing key is the home's
/// branch key. None without a branch key; an error for a key no branch has.
fn branch_signer(
    home: &Home,
    genesis: &branchledger_types::Genesis,
) -> Result<Option<(branchledger_types::BranchId, branchledger_crypto::Keypair)>> {
    let path = home.key_path(KeyRole::Branch);
    if !path.exists() {
        return Ok(None);
    }
    let key = read_key(&path, KeyRole::Branch)?;
    let public = key.public_key();
    let branch = genesis
        .branches
        .iter()
        .find(|b| b.signing_key == public)
        .with_context(|| {
            format!(
                "{}: the key {public} is the signing key of no branch in genesis",
                path.display()
            )
        })?;
    Ok(Some((branch.branch_id.clone(), key)))
}

/// SIGINT and SIGTERM, registered with the runtime when installed: a signal that arrives
/// before [`ShutdownSignals::wait`] is polled is kept, not lost.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())
                    .context("installing the SIGINT handler")?,
                terminate: signal(SignalKind::terminate())
                    .context("installing the SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}
