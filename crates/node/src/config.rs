//! The node configuration (`config/config.toml` in the node home).
//!
//! Precedence, lowest first: built-in defaults < the file < environment variables
//! (`BRANCHD_<SECTION>__<KEY>`, e.g. `BRANCHD_API__LISTEN=127.0.0.1:9090`) < command-line flags.
//! Unknown keys are refused, naming the key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use branchledger_api::auth::TOKEN_BYTES_MAX;

use crate::mempool::{MEMPOOL_BYTES_MAX_DEFAULT, MEMPOOL_RECORDS_MAX_DEFAULT};

/// Default of `api.requests_per_second`.
pub const API_REQUESTS_PER_SECOND_DEFAULT: u32 = 20_000;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's name in logs and status.
    pub name: String,
    /// Peer-to-peer network.
    pub p2p: P2pConfig,
    /// gRPC API.
    pub api: ApiConfig,
    /// Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// Mempool bounds.
    pub mempool: MempoolConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Peer-to-peer settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Multiaddress to listen on (port 0: any free port).
    pub listen: String,
    /// Multiaddresses of peers to dial at start (with `/p2p/<peer id>`).
    pub peers: Vec<String>,
}

/// gRPC API settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The operator's bearer token for write calls; empty: writes need no token (development
    /// only, and warned about at start unless the API listens on loopback only).
    pub token: String,
    /// Reads also need the token (refused at start with an empty token).
    pub reads_require_token: bool,
    /// Requests per second the node serves (bursts up to as many), counted apart for reads
    /// (all clients together) and for writes (those with the operator's credential); beyond
    /// it a request is refused with RESOURCE_EXHAUSTED.
    pub requests_per_second: u32,
}

/// Metrics settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint; none disables it.
    pub listen: Option<SocketAddr>,
}

/// Mempool bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Most pending records.
    pub records_max: usize,
    /// Most pending bytes.
    pub bytes_max: usize,
}

/// Storage settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// RocksDB block cache, bytes.
    pub block_cache_bytes: usize,
    /// State entries (keyed by member, branch, meeting or issue) kept in memory in front of
    /// RocksDB; 0 keeps none.
    pub state_cache_entries: usize,
}

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for tools.
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `branchd=debug,info`.
    pub filter: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "branchd".into(),
            p2p: P2pConfig::default(),
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            mempool: MempoolConfig::default(),
            storage: StorageConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "/ip4/0.0.0.0/tcp/26656".into(),
            peers: Vec::new(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: String::new(),
            reads_require_token: false,
            requests_per_second: API_REQUESTS_PER_SECOND_DEFAULT,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 26660))),
        }
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            records_max: MEMPOOL_RECORDS_MAX_DEFAULT,
            bytes_max: MEMPOOL_BYTES_MAX_DEFAULT,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            block_cache_bytes: branchledger_storage::BLOCK_CACHE_BYTES_DEFAULT,
            state_cache_entries: branchledger_storage::STATE_CACHE_ENTRIES_DEFAULT,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("configuration {path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the key and its source.
    pub message: String,
}

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "BRANCHD_";

impl NodeConfig {
    /// Defaults, then the file at `path` (if it exists), then `BRANCHD_…` environment
    /// variables. Flags are applied by the caller afterwards.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        Self::load_from(path, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_from(path: &Path, env: Env) -> Result<NodeConfig, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        if !path.exists() {
            return Err(error("file not found".into()));
        }
        Figment::from(Serialized::defaults(NodeConfig::default()))
            .merge(Toml::file_exact(path))
            .merge(env)
            .extract()
            .map_err(|e| {
                error(
                    e.into_iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })
    }

    /// Checks what no single key's type can: that the credential settings make sense
    /// together. Called by `branchd start` once the file, the environment and the flags are
    /// applied; `path` is the file, for the error.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let token = &self.api.token;
        if self.api.reads_require_token && token.is_empty() {
            return Err(error(
                "`api.reads_require_token` is true but `api.token` is empty: reads would stay \
                 open to anyone; set `api.token` (or BRANCHD_API__TOKEN), or set \
                 `api.reads_require_token = false`"
                    .into(),
            ));
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(error(format!(
                "`api.token` is {} bytes long; a client can present at most {TOKEN_BYTES_MAX}",
                token.len()
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(error(
                "`api.token` may hold only visible ASCII characters (no spaces or control \
                 characters): a client sends it in an HTTP/2 header"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Settings that work but that an operator should hear about at start: writes with no
    /// credential on an API that listens beyond loopback.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.api.token.is_empty() && !self.api.listen.ip().is_loopback() {
            warnings.push(format!(
                "`api.token` is empty and the API listens on {}, which is not a loopback \
                 address: anyone who can reach it can submit records signed with this node's \
                 branch key; set `api.token`",
                self.api.listen
            ));
        }
        warnings
    }

    /// The configuration as TOML, for `init` and `testnet`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serialises to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail fixes the closure's error type
    fn defaults_file_then_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "name = \"north\"\n[api]\nlisten = \"127.0.0.1:7000\"\n",
        );
        let config = NodeConfig::load_from(&path, Env::raw().only(&[])).expect("load");
        assert_eq!(config.name, "north");
        assert_eq!(config.api.listen, SocketAddr::from(([127, 0, 0, 1], 7000)));
        assert_eq!(config.mempool, MempoolConfig::default());
        figment::Jail::expect_with(|jail| {
            jail.set_env("BRANCHD_API__LISTEN", "127.0.0.1:7001");
            let config =
                NodeConfig::load_from(&path, Env::prefixed(ENV_PREFIX).split("__")).expect("load");
            assert_eq!(config.api.listen, SocketAddr::from(([127, 0, 0, 1], 7001)));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_naming_key_and_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "[api]\nlisten = \"127.0.0.1:7000\"\ncolour = \"red\"\n",
        );
        let error = NodeConfig::load_from(&path, Env::raw().only(&[])).expect_err("unknown key");
        let text = error.to_string();
        assert!(text.contains("colour"), "{text}");
        assert!(text.contains("config.toml"), "{text}");
    }

    #[test]
    fn the_example_configuration_is_the_defaults() {
        let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../config/config.example.toml");
        assert_eq!(
            NodeConfig::load_from(&path, Env::raw().only(&[])).expect("example parses"),
            NodeConfig::default()
        );
    }

    #[test]
    fn reads_that_require_an_empty_token_are_refused_naming_both_keys() {
        let path = Path::new("config.toml");
        let mut config = NodeConfig::default();
        config.api.reads_require_token = true;
        let text = config.check(path).expect_err("refused").to_string();
        assert!(
            text.contains("api.reads_require_token")
                && text.contains("api.token")
                && text.contains("config.toml"),
            "{text}"
        );
        config.api.token = "s3cret".into();
        config.check(path).expect("a token is set");
        config.api.reads_require_token = false;
        config.api.token = String::new();
        config
            .check(path)
            .expect("open reads, open writes: development");
    }

    #[test]
    fn tokens_no_client_could_present_are_refused() {
        let path = Path::new("config.toml");
        let mut config = NodeConfig::default();
        config.api.token = "x".repeat(TOKEN_BYTES_MAX + 1);
        let text = config.check(path).expect_err("too long").to_string();
        assert!(text.contains("api.token"), "{text}");
        config.api.token = "two words".into();
        let text = config.check(path).expect_err("a space").to_string();
        assert!(text.contains("api.token"), "{text}");
    }

    #[test]
    fn an_empty_write_token_beyond_loopback_is_warned_about() {
        let mut config = NodeConfig::default();
        assert!(config.warnings().is_empty(), "loopback by default");
        config.api.listen = SocketAddr::from(([0, 0, 0, 0], 9090));
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("api.token") && warnings[0].contains("0.0.0.0:9090"),
            "{warnings:?}"
        );
        config.api.listen = "[::1]:9090".parse().expect("address");
        assert!(config.warnings().is_empty(), "IPv6 loopback");
        config.api.listen = "10.1.2.3:9090".parse().expect("address");
        config.api.token = "s3cret".into();
        assert!(config.warnings().is_empty(), "a token is set");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), &NodeConfig::default().to_toml());
        assert_eq!(
            NodeConfig::load_from(&path, Env::raw().only(&[])).expect("load"),
            NodeConfig::default()
        );
    }
}
