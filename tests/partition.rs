//! Network partitions between real processes: each validator runs in a network namespace of
//! its own (`ip netns`), with a veth on a "data" bridge for the peer-to-peer network and one
//! on a "management" bridge where its API listens for the test. A partition moves data veths
//! to a second bridge; healing moves them back.
//!
//! - 2|2: neither side commits, nothing forks; healed, the records of both sides commit;
//! - 1|3: the three commit; healed, the one catches up;
//! - a flapping link: after the last heal, commits resume within a bounded time.
//!
//! Needs root (as CI has); without it each test says it skipped.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{fast_timeouts, member_joined, study, submit, Cluster, Node};

/// After a heal, commits must resume within this.
const RESUME_WITHIN: Duration = Duration::from_secs(60);

/// A small laboratory network: namespaces, veths and bridges, removed when dropped.
struct Lab {
    tag: String,
    nodes: usize,
    /// The third octet of the data and management subnets (10.201.X.0/24, 10.202.X.0/24).
    subnet: u8,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    /// Builds the lab, or says why not (no root, no `ip`).
    fn new(nodes: usize) -> Option<Lab> {
        let random: u32 = rand::random();
        let tag = format!("{:04x}", random & 0xffff);
        let lab = Lab {
            subnet: (random >> 16) as u8 % 200 + 20,
            tag,
            nodes,
        };
        if !ip(&["link", "add", &lab.bridge("m"), "type", "bridge"]) {
            println!("skipped: creating a bridge needs root and iproute2");
            return None;
        }
        for bridge in [lab.bridge("d0"), lab.bridge("d1")] {
            must(&["link", "add", &bridge, "type", "bridge"]);
            must(&["link", "set", &bridge, "up"]);
        }
        must(&[
            "addr",
            "add",
            &format!("10.202.{}.254/24", lab.subnet),
            "dev",
            &lab.bridge("m"),
        ]);
        must(&["link", "set", &lab.bridge("m"), "up"]);
        for i in 0..nodes {
            let ns = lab.ns(i);
            must(&["netns", "add", &ns]);
            must(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            for (kind, bridge, net) in [("d", lab.bridge("d0"), 201), ("m", lab.bridge("m"), 202)] {
                let inside = format!("v{kind}{}{i}a", lab.tag);
                let outside = format!("v{kind}{}{i}b", lab.tag);
                must(&[
                    "link", "add", &inside, "type", "veth", "peer", "name", &outside,
                ]);
                must(&["link", "set", &inside, "netns", &ns]);
                must(&["link", "set", &outside, "master", &bridge]);
                must(&["link", "set", &outside, "up"]);
                let address = format!("10.{net}.{}.{}/24", lab.subnet, i + 1);
                must(&[
                    "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", &inside,
                ]);
                must(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
            }
        }
        Some(lab)
    }

    fn bridge(&self, name: &str) -> String {
        format!("b{name}{}", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("bl{}-{i}", self.tag)
    }

    fn data_ip(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.subnet, i + 1)
    }

    fn management_ip(&self, i: usize) -> String {
        format!("10.202.{}.{}", self.subnet, i + 1)
    }

    /// Puts node `i`'s data link on side 0 or 1.
    fn place(&self, i: usize, side: usize) {
        let outside = format!("vd{}{i}b", self.tag);
        must(&[
            "link",
            "set",
            &outside,
            "master",
            &self.bridge(&format!("d{side}")),
        ]);
    }

    /// Cuts the network into `left` and the rest.
    fn split(&self, left: &[usize]) {
        for i in 0..self.nodes {
            self.place(i, usize::from(!left.contains(&i)));
        }
    }

    /// One network again.
    fn heal(&self) {
        for i in 0..self.nodes {
            self.place(i, 0);
        }
    }

    /// Takes node `i`'s data link down or up.
    fn link(&self, i: usize, up: bool) {
        let outside = format!("vd{}{i}b", self.tag);
        must(&["link", "set", &outside, if up { "up" } else { "down" }]);
    }

    /// The validators of a cluster, each in its namespace, dialling each other's data IPs.
    /// Every node has addresses of its own (its namespace's), so the ports can be the
    /// defaults without two nodes or two tests ever colliding.
    fn cluster(&self) -> Cluster {
        let mut cluster = Cluster::new(self.nodes, fast_timeouts);
        let genesis: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(cluster.genesis_path()).expect("genesis"),
        )
        .expect("json");
        for i in 0..self.nodes {
            let peers: Vec<String> = (0..self.nodes)
                .filter(|j| *j != i)
                .map(|j| {
                    format!(
                        "/ip4/{}/tcp/26656/p2p/{}",
                        self.data_ip(j),
                        genesis["validators"][j]["peer_id"]
                            .as_str()
                            .expect("peer id")
                    )
                })
                .collect();
            let node = &cluster.nodes[i];
            let mut replaced = Node::configure(
                node.home.clone(),
                node.log.clone(),
                &[26656, 9090, 9100],
                &peers,
            );
            cluster.edit_config(i, |config| {
                config["p2p"]["listen"] = format!("/ip4/{}/tcp/26656", self.data_ip(i)).into();
                config["api"]["listen"] = format!("{}:9090", self.management_ip(i)).into();
                config["metrics"]["listen"] = format!("{}:9100", self.management_ip(i)).into();
            });
            replaced.api = format!("{}:9090", self.management_ip(i))
                .parse()
                .expect("address");
            replaced.metrics = format!("{}:9100", self.management_ip(i))
                .parse()
                .expect("address");
            replaced.wrapper = vec!["ip".into(), "netns".into(), "exec".into(), self.ns(i)];
            cluster.nodes[i] = replaced;
        }
        cluster
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            ip(&["netns", "del", &self.ns(i)]);
            for kind in ["d", "m"] {
                ip(&["link", "del", &format!("v{kind}{}{i}b", self.tag)]);
            }
        }
        for bridge in ["m", "d0", "d1"] {
            ip(&["link", "del", &self.bridge(bridge)]);
        }
    }
}

/// Every node's chain is a prefix of the longest: no fork.
fn no_fork(cluster: &mut Cluster) {
    cluster.terminate_all();
    let chains: Vec<Vec<Vec<u8>>> = (0..cluster.nodes.len())
        .map(|i| cluster.blocks(i))
        .collect();
    let longest = chains
        .iter()
        .max_by_key(|c| c.len())
        .expect("nodes")
        .clone();
    for (i, chain) in chains.iter().enumerate() {
        assert_eq!(chain[..], longest[..chain.len()], "node {i} forked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_two_split_commits_nothing_and_forks_nothing_and_heals() {
    let Some(lab) = Lab::new(4) else { return };
    let mut cluster = lab.cluster();
    cluster.start_all();
    cluster.wait_connected().await;
    support::join_members(&cluster, 0..4, 30_000).await;
    // Settle first: a node may already hold a commit another has not seen yet, so the
    // split starts only once every node reports one height and has nothing pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let mut seen = Vec::new();
        for i in 0..4 {
            seen.push(cluster.status(i).await.expect("status"));
        }
        let height = seen[0].height;
        if seen
            .iter()
            .all(|s| s.height == height && s.mempool_records == 0)
        {
            break height;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never settled: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    lab.split(&[0, 1]);
    let left = submit(&cluster, 0, study("m-0", 20), 3_000)
        .await
        .expect("admitted");
    let right = submit(&cluster, 2, study("m-2", 20), 3_000)
        .await
        .expect("admitted");
    assert!(
        left.committed.is_none() && right.committed.is_none(),
        "a side of 2 committed"
    );
    for i in 0..4 {
        assert_eq!(
            cluster.status(i).await.expect("status").height,
            before,
            "node {i} moved"
        );
    }
    let healed = Instant::now();
    lab.heal();
    cluster.wait_height(0..4, before + 1, RESUME_WITHIN).await;
    for i in 0..4 {
        cluster
            .wait_status(i, "both sides' records committed", RESUME_WITHIN, |s| {
                s.mempool_records == 0
            })
            .await;
    }
    println!("2|2: commits resumed {:?} after the heal", healed.elapsed());
    no_fork(&mut cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cut_off_from_three_catches_up_after_the_heal() {
    let Some(lab) = Lab::new(4) else { return };
    let mut cluster = lab.cluster();
    cluster.start_all();
    cluster.wait_connected().await;
    support::join_members(&cluster, 0..3, 30_000).await;
    lab.split(&[3]);
    let mut top = 0;
    for n in 0..6u32 {
        let i = (n % 3) as usize;
        let response = submit(&cluster, i, study(&format!("m-{i}"), 10 + n), 30_000)
            .await
            .unwrap_or_else(|e| panic!("node {i} without node 3: {e}"));
        top = top.max(response.committed.expect("the three commit").height);
    }
    assert!(cluster.status(3).await.expect("status").height < top);
    lab.heal();
    cluster
        .wait_status(3, "caught up", RESUME_WITHIN, |s| s.height >= top)
        .await;
    no_fork(&mut cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_resume_after_a_flapping_link_settles() {
    let Some(lab) = Lab::new(4) else { return };
    let mut cluster = lab.cluster();
    cluster.start_all();
    cluster.wait_connected().await;
    submit(&cluster, 0, member_joined("m-0"), 30_000)
        .await
        .expect("joined");
    // Node 1's link goes down and up; with node 2 cut off too, node 1 decides the quorum.
    lab.split(&[0, 1, 3]);
    for round in 0..6 {
        lab.link(1, round % 2 == 1);
        let _ = submit(&cluster, 0, study("m-0", 10 + round), 500).await;
    }
    lab.link(1, true);
    lab.heal();
    let settled = Instant::now();
    let response = submit(
        &cluster,
        0,
        study("m-0", 99),
        RESUME_WITHIN.as_millis() as u32,
    )
    .await
    .expect("admitted");
    assert!(
        response.committed.is_some(),
        "no commit within {RESUME_WITHIN:?} of the heal"
    );
    println!(
        "flapping: committed {:?} after the link settled",
        settled.elapsed()
    );
    no_fork(&mut cluster);
}
