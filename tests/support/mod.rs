//! A cluster of real `branchd` processes on loopback for the multi-process tests: homes from
//! `branchd testnet` in a temporary directory, ports the operating system reports free,
//! RocksDB stores on disk, gRPC clients to each node, and waits on conditions with deadlines.

#![allow(dead_code)] // each test file uses part of the harness

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use branchledger_api::pb;
use branchledger_api::pb::node_client::NodeClient;
use branchledger_api::pb::submit_client::SubmitClient;
use tonic::transport::Channel;

/// The branchd binary built for these tests.
pub fn branchd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_branchd"))
}

/// `n` distinct loopback ports, free when asked and outside the kernel's ephemeral range, so
/// that no outgoing connection takes one before its node binds it.
pub fn free_ports(n: usize) -> Vec<u16> {
    branchledger_p2p::ports::unused_local_ports(n).expect("free loopback ports")
}

/// One node of the cluster.
pub struct Node {
    /// Its home directory.
    pub home: PathBuf,
    /// Its gRPC address.
    pub api: SocketAddr,
    /// Its metrics address.
    pub metrics: SocketAddr,
    /// Its peer-to-peer port.
    pub p2p_port: u16,
    /// Where its log goes (appended across restarts).
    pub log: PathBuf,
    /// A command the node runs under (e.g. `ip netns exec NS`); empty: none.
    pub wrapper: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Writes the addresses of a node home's configuration: p2p, API and metrics on `ports`,
    /// dialling `peers`.
    pub fn configure(home: PathBuf, log: PathBuf, ports: &[u16], peers: &[String]) -> Node {
        let config_path = home.join("config/config.toml");
        let mut config: toml::Table = std::fs::read_to_string(&config_path)
            .expect("config")
            .parse()
            .expect("toml");
        let (p2p, api, metrics) = (ports[0], ports[1], ports[2]);
        config["p2p"]["listen"] = format!("/ip4/127.0.0.1/tcp/{p2p}").into();
        config["p2p"]["peers"] =
            toml::Value::Array(peers.iter().cloned().map(toml::Value::String).collect());
        config["api"]["listen"] = format!("127.0.0.1:{api}").into();
        config["metrics"]["listen"] = format!("127.0.0.1:{metrics}").into();
        config["log"]["filter"] = "info,branchd=debug".into();
        std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("write");
        Node {
            log,
            home,
            api: SocketAddr::from(([127, 0, 0, 1], api)),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics)),
            p2p_port: p2p,
            wrapper: Vec::new(),
            child: None,
        }
    }

    /// The multiaddress others dial to reach this node, given its peer id.
    pub fn address(&self, peer_id: &str) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", self.p2p_port)
    }
}

/// The validators' peer ids, in genesis order.
pub fn peer_ids(genesis: &serde_json::Value) -> Vec<String> {
    genesis["validators"]
        .as_array()
        .expect("validators")
        .iter()
        .map(|v| v["peer_id"].as_str().expect("peer id").to_owned())
        .collect()
}

/// Consensus timeouts short enough for tests, long enough for loaded CI machines.
pub fn fast_timeouts(genesis: &mut serde_json::Value) {
    let consensus = &mut genesis["consensus"];
    consensus["timeout_propose_ms"] = 400.into();
    consensus["timeout_prevote_ms"] = 200.into();
    consensus["timeout_precommit_ms"] = 200.into();
    consensus["timeout_increase_ms"] = 200.into();
}

/// A cluster of validators.
pub struct Cluster {
    /// The temporary directory holding every home.
    pub dir: tempfile::TempDir,
    /// The nodes, in validator order.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Homes for `validators` validators (one branch each), with `tweak` applied to the shared
    /// genesis and every address on a free loopback port. Nothing is started.
    pub fn new(validators: usize, tweak: impl FnOnce(&mut serde_json::Value)) -> Cluster {
        Cluster::with_branches(validators, validators, tweak)
    }

    /// [`Cluster::new`] with `branches` branches (the extra branches' keys are in
    /// `net/branches/`).
    pub fn with_branches(
        validators: usize,
        branches: usize,
        tweak: impl FnOnce(&mut serde_json::Value),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("net");
        let status = branchd()
            .args([
                "testnet",
                "--validators",
                &validators.to_string(),
                "--branches",
                &branches.to_string(),
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run branchd testnet");
        assert!(status.success(), "branchd testnet failed");
        // One genesis for all, tweaked once.
        let genesis_path = out.join("node0/config/genesis.json");
        let mut genesis: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&genesis_path).expect("genesis"))
                .expect("genesis json");
        tweak(&mut genesis);
        let genesis_text = serde_json::to_string_pretty(&genesis).expect("json");
        let ports = free_ports(3 * validators);
        let peer_ids = peer_ids(&genesis);
        let mut nodes = Vec::new();
        for i in 0..validators {
            let home = out.join(format!("node{i}"));
            std::fs::write(home.join("config/genesis.json"), &genesis_text).expect("write");
            let peers: Vec<String> = (0..validators)
                .filter(|j| *j != i)
                .map(|j| format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", ports[3 * j], peer_ids[j]))
                .collect();
            let log = dir.path().join(format!("node{i}.log"));
            nodes.push(Node::configure(home, log, &ports[3 * i..3 * i + 3], &peers));
        }
        Cluster { dir, nodes }
    }

    /// Edits node `i`'s `config.toml` before it starts.
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(&mut toml::Table)) {
        let path = self.nodes[i].home.join("config/config.toml");
        let mut config: toml::Table = std::fs::read_to_string(&path)
            .expect("config")
            .parse()
            .expect("toml");
        edit(&mut config);
        std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write");
    }

    /// The key of a branch whose key testnet wrote to `net/branches/`, or node `i`'s own.
    pub fn branch_key(&self, file: &std::path::Path) -> branchledger_crypto::Keypair {
        let key: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("key file")).expect("json");
        let seed = hex::decode(key["secret_seed"].as_str().expect("seed")).expect("hex");
        branchledger_crypto::Keypair::from_seed(seed.try_into().expect("32 bytes"))
    }

    /// The shared genesis file.
    pub fn genesis_path(&self) -> PathBuf {
        self.nodes[0].home.join("config/genesis.json")
    }

    /// Starts node `i` (its log appended to [`Node::log`]).
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Starts node `i` with extra flags for `branchd start`.
    pub fn start_with(&mut self, i: usize, flags: &[&str]) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut command = match node.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_branchd"));
                command
            }
            None => branchd(),
        };
        let child = command
            .args(["start", "--home"])
            .arg(&node.home)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start branchd");
        node.child = Some(child);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Whether node `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM node `i` and waits for it to exit.
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        let mut child = self.nodes[i].child.take().expect("node is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "node {i} did not stop within 60 s of SIGTERM:\n{}",
                    self.log(i)
                );
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Stops every running node with SIGTERM, asserting each exits cleanly.
    pub fn terminate_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.running(i) {
                let status = self.terminate(i);
                assert!(
                    status.success(),
                    "node {i} exited with {status}:\n{}",
                    self.log(i)
                );
            }
        }
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// A channel to node `i`'s API (connects lazily).
    pub fn channel(&self, i: usize) -> Channel {
        Channel::from_shared(format!("http://{}", self.nodes[i].api))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect_lazy()
    }

    /// The `Node` client of node `i`.
    pub fn node_client(&self, i: usize) -> NodeClient<Channel> {
        NodeClient::new(self.channel(i))
    }

    /// The `Submit` client of node `i`.
    pub fn submit_client(&self, i: usize) -> SubmitClient<Channel> {
        SubmitClient::new(self.channel(i))
    }

    /// Node `i`'s status, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let mut client = self.node_client(i);
        client
            .status(pb::StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until node `i`'s status satisfies `ready`, or panics after `limit` with the log.
    pub async fn wait_status(
        &self,
        i: usize,
        what: &str,
        limit: Duration,
        ready: impl Fn(&pb::StatusResponse) -> bool,
    ) -> pb::StatusResponse {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(status) = self.status(i).await {
                if ready(&status) {
                    return status;
                }
                last = Some(status);
            }
            if Instant::now() > deadline {
                panic!(
                    "node {i}: {what} not reached within {limit:?}; last status {last:?}\n{}",
                    tail(&self.log(i), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node of `nodes` has committed `height`, each within `within`.
    pub async fn wait_height(&self, nodes: std::ops::Range<usize>, height: u64, within: Duration) {
        for i in nodes {
            self.wait_status(i, &format!("height {height}"), within, |s| {
                s.height >= height
            })
            .await;
        }
    }

    /// Waits until every running node is connected to every other running node.
    pub async fn wait_connected(&self) {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|i| self.running(*i)).collect();
        let others = running.len().saturating_sub(1) as u32;
        for i in &running {
            self.wait_status(*i, "all peers connected", Duration::from_secs(60), |s| {
                s.peers >= others
            })
            .await;
        }
    }

    /// The blocks (canonical bytes) node `i` holds, from height 1 to its tip, read from its
    /// store; the node must be stopped.
    pub fn blocks(&self, i: usize) -> Vec<Vec<u8>> {
        use branchledger_storage::ChainReader;
        assert!(!self.running(i), "read the store of a stopped node only");
        let store = branchledger_storage::RocksStore::open(&self.nodes[i].home.join("data/store"))
            .expect("open store");
        let tip = store.tip().expect("tip").map_or(0, |t| t.height);
        (1..=tip)
            .map(|h| {
                store
                    .block(h)
                    .expect("read block")
                    .unwrap_or_else(|| panic!("node {i} lacks block {h}"))
                    .to_bytes()
            })
            .collect()
    }

    /// Runs `branchd audit verify` on node `i`'s store; returns (success, output).
    pub fn audit(&self, i: usize) -> (bool, String) {
        let output = branchd()
            .args(["audit", "verify", "--genesis"])
            .arg(self.genesis_path())
            .arg("--data-dir")
            .arg(self.nodes[i].home.join("data/store"))
            .output()
            .expect("run audit");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// The branch node `i` signs for (testnet gives validator i branch i).
    pub fn branch_of(&self, i: usize) -> String {
        let genesis: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.genesis_path()).expect("genesis"))
                .expect("json");
        genesis["validators"][i]["branch_id"]
            .as_str()
            .expect("branch")
            .to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Node `i`'s Prometheus metrics, if its endpoint answers.
pub fn metrics(cluster: &Cluster, i: usize) -> Option<String> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(cluster.nodes[i].metrics).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The sum of every sample of the metric `name` (all label sets) in `text`.
pub fn metric(text: &str, name: &str) -> f64 {
    metric_with(text, name, &[])
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `MemberJoined` body.
pub fn member_joined(member_id: &str) -> pb::RecordBody {
    pb::RecordBody {
        kind: Some(pb::record_body::Kind::MemberJoined(pb::MemberJoined {
            member_id: member_id.into(),
            joined_on: "2026-01-05".into(),
            status: "full".into(),
            mobile: false,
            member_key: String::new(),
        })),
    }
}

/// A `StudySession` body.
pub fn study(member_id: &str, minutes: u32) -> pb::RecordBody {
    pb::RecordBody {
        kind: Some(pb::record_body::Kind::StudySession(pb::StudySession {
            member_id: member_id.into(),
            material: "Branch work handbook, chapter 3".into(),
            minutes,
            form: "group".into(),
            occurred_on: "2026-02-10".into(),
        })),
    }
}

/// Submits `body` to node `i`, signed by its branch, waiting up to `wait_ms` for the commit.
pub async fn submit(
    cluster: &Cluster,
    i: usize,
    body: pb::RecordBody,
    wait_ms: u32,
) -> Result<pb::SubmitResponse, tonic::Status> {
    cluster
        .submit_client(i)
        .submit_record(pb::SubmitRecordRequest {
            body: Some(body),
            nonce: 0,
            created_at_ms: 0,
            wait: Some(pb::WaitOptions {
                wait_committed: wait_ms > 0,
                timeout_ms: wait_ms,
            }),
        })
        .await
        .map(|r| r.into_inner())
}

/// The sum of the samples of the metric `name` whose labels include every `key="value"` of
/// `labels` (with none: every sample, labelled or not).
pub fn metric_with(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with(' ') && labels.is_empty())
                    || (rest.starts_with('{')
                        && labels
                            .iter()
                            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Member `m-{i}` joins through node `i`, for every node in `nodes`, each waiting up to
/// `wait_ms` for its commit.
pub async fn join_members(cluster: &Cluster, nodes: std::ops::Range<usize>, wait_ms: u32) {
    for i in nodes {
        submit(cluster, i, member_joined(&format!("m-{i}")), wait_ms)
            .await
            .unwrap_or_else(|e| panic!("m-{i} joining through node {i}: {e}"));
    }
}
