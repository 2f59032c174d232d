//! A local network of `branchd start` processes on loopback, for `devnet` and the cluster
//! benchmark: started from homes `branchd testnet` wrote, logs beside them, and every node
//! stopped with SIGTERM (so each flushes its store) when done.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use branchledger_api::pb;

use crate::cli::{Api, ApiArgs};

/// The directory a network is written to: `home` if given, else a new temporary directory
/// (removed when the returned guard drops).
pub fn work_dir(
    home: Option<&Path>,
    prefix: &str,
) -> Result<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    match home {
        Some(path) => Ok((None, path.to_owned())),
        None => {
            let temp = tempfile::Builder::new().prefix(prefix).tempdir()?;
            let path = temp.path().to_owned();
            Ok((Some(temp), path))
        }
    }
}

/// Time allowed for the nodes to start and connect.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The running nodes; every one still running is stopped with SIGTERM when dropped.
pub struct Network {
    children: Vec<Child>,
    /// The API of each node.
    pub apis: Vec<ApiArgs>,
    /// The `/metrics` address of each node, if it serves one.
    pub metrics: Vec<Option<std::net::SocketAddr>>,
}

impl Network {
    /// Starts node `0..count` of the network in `net` (`net/node<i>`), logging to
    /// `logs/node<i>.log`.
    pub fn start(net: &Path, logs: &Path, count: usize) -> Result<Network> {
        let exe = std::env::current_exe().context("finding the branchd binary")?;
        let mut network = Network {
            children: Vec::new(),
            apis: Vec::new(),
            metrics: Vec::new(),
        };
        for i in 0..count {
            let home = net.join(format!("node{i}"));
            let log = std::fs::File::create(logs.join(format!("node{i}.log")))?;
            let child = Command::new(&exe)
                .args(["start", "--home"])
                .arg(&home)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting node {i}"))?;
            network.children.push(child);
            let config = crate::config::NodeConfig::load(&home.join("config/config.toml"))?;
            network.apis.push(api_args(&config));
            network.metrics.push(config.metrics.listen);
        }
        Ok(network)
    }

    /// The process ids, in node order.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops every node with SIGTERM and waits; an error names the nodes that did not exit
    /// cleanly.
    pub fn stop(&mut self) -> Result<()> {
        for child in &self.children {
            // SIGTERM: each node flushes its store and exits.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let mut failed = Vec::new();
        for (i, child) in self.children.iter_mut().enumerate() {
            match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => failed.push(format!("node {i} exited with {status}")),
                Err(e) => failed.push(format!("node {i}: {e}")),
            }
        }
        self.children.clear();
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The API address and token a node's configuration gives.
fn api_args(config: &crate::config::NodeConfig) -> ApiArgs {
    ApiArgs {
        api: format!("http://{}", config.api.listen),
        token: config.api.token.clone(),
    }
}

/// Waits until every node answers and is connected to all the others.
pub async fn wait_connected(apis: &[ApiArgs]) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for (i, args) in apis.iter().enumerate() {
        loop {
            if let Ok(api) = Api::connect(args).await {
                if let Ok(status) = api.node().status(pb::StatusRequest {}).await {
                    if status.into_inner().peers as usize + 1 >= apis.len() {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("node {i} did not start and connect within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
