//! `branchd bench cluster`: throughput and finality of a local validator network, against
//! this machine's own limit measured in the same run.
//!
//! 1. Measures the single-thread ed25519 batch-verification rate here; every validator
//!    verifies every record once, so `cores × batch rate / validators` records/s is the
//!    ceiling signature checking allows.
//! 2. Generates a network (free loopback ports), starts one `branchd start` per validator, and
//!    has the members of every branch join.
//! 3. For each offered rate, runs `branchd bench load` as a separate process for the window,
//!    and stops at saturation (commits fall below 90% of the offer, records are lost, or
//!    p99 exceeds 5 s).
//! 4. Runs twice more at half the best committed rate: alone, for the latency there, and with
//!    a query load (`branchd bench query`, a process of its own) against one node meanwhile.
//!
//! Before each step every node's mempool has drained, so no step inherits its predecessor's
//! backlog.
//! 5. Reports every step, the ratio to the ceiling, and each node's peak resident memory, as
//!    JSON (`--out`) and as a table.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use branchledger_api::pb;
use branchledger_types::record::{MemberJoined, MemberStatus};
use branchledger_types::{ConsensusParams, Date, Record, RecordBody, SignedRecord};

use super::chain::member;
use super::load::LoadReport;
use crate::cli::Api;
use crate::{localnet, testnet};

/// Offered rates tried in turn when none are given, records/s.
const RATES_DEFAULT: &[u64] = &[
    500, 1_000, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000, 16_000, 24_000, 32_000,
];

/// Arguments of `branchd bench cluster`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// Validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Seconds each offered rate is sustained.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Offered rates to try, comma separated (default: 500 up to 32 000).
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Members per branch.
    #[arg(long, default_value_t = 250)]
    pub members_per_branch: u64,
    /// Most records per block (genesis).
    #[arg(long, default_value_t = 5_000)]
    pub block_records: u32,
    /// Where to write the JSON report.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to keep the network and the logs (default: a temporary directory).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Skip the run at half the saturation rate.
    #[arg(long)]
    pub no_half: bool,
}

/// The whole report.
#[derive(Debug, serde::Serialize)]
pub struct ClusterReport {
    /// Cores of this machine.
    pub cores: usize,
    /// Validators.
    pub validators: usize,
    /// ed25519 signatures verified per second by one thread, batched.
    pub batch_verify_per_core: f64,
    /// `cores × batch rate / validators`.
    pub ceiling_records_per_second: f64,
    /// Every offered rate, in order.
    pub steps: Vec<StepReport>,
    /// The best committed records/s of any step without loss.
    pub best_committed_per_second: f64,
    /// `best / ceiling`.
    pub ratio_to_ceiling: f64,
    /// The run at half the best rate.
    pub half: Option<StepReport>,
    /// The run at half the best rate again, with the query load meanwhile.
    pub half_with_queries: Option<StepReport>,
    /// The query load against node 1 during `half_with_queries`: per query kind, queries/s and
    /// latency (`branchd bench query`'s report).
    pub queries_during_half: Option<serde_json::Value>,
    /// Each node's peak resident memory, bytes (VmHWM).
    pub node_peak_rss_bytes: Vec<u64>,
}

/// One offered rate: the load generator's report and what the validators spent on it.
#[derive(Debug, serde::Serialize)]
pub struct StepReport {
    /// The load generator's report.
    #[serde(flatten)]
    pub load: LoadReport,
    /// CPU time the validator processes used, all together, from the load generator's start
    /// to its report (the window and the wait for the last commits), seconds.
    pub node_cpu_seconds: f64,
    /// `node_cpu_seconds` per committed record and per validator, µs: what one node spends on
    /// one record, to set against one core's batch-verification time per signature
    /// (`1e6 / batch_verify_per_core`). Less noisy than the committed rate when the machine's
    /// load moves, so it is the figure to compare two builds by.
    pub node_cpu_us_per_record: f64,
    /// Gossip bytes a node received per committed record, over the step, on the records topic
    /// (the records themselves, as admitted elsewhere): from the nodes' own gossipsub
    /// counters, summed over the nodes and divided by the committed records and the validators.
    pub gossip_record_bytes_per_record: f64,
    /// The same on the consensus topic (proposals with their blocks, votes).
    pub gossip_consensus_bytes_per_record: f64,
    /// Compact proposals over the step, all nodes together, by outcome (the nodes'
    /// `branchd_compact_proposals_total`): sent, rebuilt at once, block asked for whole,
    /// requests answered.
    pub compact_proposals: CompactOutcomes,
}

/// Counts of [`StepReport::compact_proposals`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactOutcomes {
    /// Sent by proposers.
    pub sent: u64,
    /// Received and rebuilt from the mempool at once.
    pub rebuilt: u64,
    /// Received lacking records: the block was asked for whole.
    pub wanted: u64,
    /// Requests for a whole block answered.
    pub answered: u64,
}

impl CompactOutcomes {
    fn since(self, before: CompactOutcomes) -> CompactOutcomes {
        CompactOutcomes {
            sent: self.sent.saturating_sub(before.sent),
            rebuilt: self.rebuilt.saturating_sub(before.rebuilt),
            wanted: self.wanted.saturating_sub(before.wanted),
            answered: self.answered.saturating_sub(before.answered),
        }
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// CPU time a process has used so far, all its threads (exited ones too), nanoseconds: user
/// and system time from `/proc/PID/stat`, at a resolution of 10 ms; 0 if it cannot be read.
/// (`/proc/PID/schedstat` would count the main thread alone.)
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| process_ticks(&stat))
        .map_or(0, |ticks| ticks * (1_000_000_000 / USER_HZ))
}

/// User plus system clock ticks from the text of `/proc/PID/stat` (fields 14 and 15; the
/// command name before them is in parentheses and may hold spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Busy and total time of all of the host's cores so far, in clock ticks (`/proc/stat`);
/// `(0, 0)` if it cannot be read.
pub fn host_cpu_ticks() -> (u64, u64) {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| host_ticks(&stat))
        .unwrap_or((0, 0))
}

/// Busy and total ticks from the text of `/proc/stat`: its first line sums every core; idle
/// and iowait (the fourth and fifth numbers) count as not busy.
fn host_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total.saturating_sub(idle), total))
}

/// Cores kept busy on average between two [`host_cpu_ticks`] readings.
pub fn busy_cores(before: (u64, u64), after: (u64, u64), cores: usize) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64 * cores as f64
}

/// Peak resident memory of a process, bytes.
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Longest wait for a node's `/metrics` answer.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read of a `/metrics` answer.
const METRICS_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A node's `/metrics` text, or `None` if it does not answer.
pub fn scrape(address: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect_timeout(&address, METRICS_TIMEOUT).ok()?;
    socket.set_read_timeout(Some(METRICS_TIMEOUT)).ok()?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    socket
        .take(METRICS_BYTES_MAX)
        .read_to_string(&mut response)
        .ok()?;
    Some(response)
}

/// Bytes received on the gossip topic whose name ends with `/{topic}/1`, from a node's
/// metrics text (0 if the counter is not there yet).
pub fn gossip_received_bytes(metrics: &str, topic: &str) -> u64 {
    let suffix = format!("/{topic}/1\"}}");
    metrics
        .lines()
        .filter(|line| line.starts_with("branchd_gossipsub_topic_msg_recv_bytes_total{"))
        .filter_map(|line| line.split_once(' '))
        .filter(|(series, _)| series.ends_with(&suffix))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// The value of the counter series `series` (name and labels, exactly as exposed), from a
/// node's metrics text (0 if it is not there yet).
pub fn counter_value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(name, _)| *name == series)
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// What the nodes' metrics say so far, all nodes together.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// Gossip bytes received on the records topic.
    records_bytes: u64,
    /// Gossip bytes received on the consensus topic.
    consensus_bytes: u64,
    compact: CompactOutcomes,
}

fn counters(metrics: &[std::net::SocketAddr]) -> Counters {
    let compact = |text: &str, outcome: &str| {
        counter_value(
            text,
            &format!("branchd_compact_proposals_total{{outcome=\"{outcome}\"}}"),
        )
    };
    metrics
        .iter()
        .filter_map(|address| scrape(*address))
        .fold(Counters::default(), |sum, text| Counters {
            records_bytes: sum.records_bytes + gossip_received_bytes(&text, "records"),
            consensus_bytes: sum.consensus_bytes + gossip_received_bytes(&text, "consensus"),
            compact: CompactOutcomes {
                sent: sum.compact.sent + compact(&text, "sent"),
                rebuilt: sum.compact.rebuilt + compact(&text, "rebuilt"),
                wanted: sum.compact.wanted + compact(&text, "wanted"),
                answered: sum.compact.answered + compact(&text, "answered"),
            },
        })
}

/// Longest wait for the mempools to drain between steps.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// Waits until no node has records waiting.
async fn drained(apis: &[crate::cli::ApiArgs]) -> Result<()> {
    let deadline = Instant::now() + DRAIN_WAIT;
    for args in apis {
        let api = Api::connect(args).await?;
        while api.status().await?.mempool_records > 0 {
            if Instant::now() > deadline {
                bail!(
                    "the mempools did not drain within {} s",
                    DRAIN_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn saturated(report: &LoadReport) -> bool {
    report.lost > 0
        || report.committed_per_second < 0.9 * report.offered_rate as f64
        || report.p99_ms > 5_000.0
}

/// Runs the benchmark.
pub fn run(args: &ClusterArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("bench: measuring the batch verification rate of one core");
    let batch_rate = super::batch_verify_rate(50_000);
    let ceiling = cores as f64 * batch_rate / args.validators as f64;
    eprintln!(
        "bench: {batch_rate:.0} signatures/s per core; ceiling {cores} × {batch_rate:.0} / {} = {ceiling:.0} records/s",
        args.validators
    );
    let (_temp, root) = localnet::work_dir(args.home.as_deref(), "branchledger-bench-")?;
    let net = root.join("net");
    let genesis = testnet::generate_with(
        &net,
        &testnet::TestnetOptions {
            chain_id: "branchledger-bench".into(),
            validators: args.validators,
            branches: args.validators,
            genesis_time_ms: crate::devnet::now_ms().saturating_sub(1_000),
            ports: testnet::Ports::Free,
            consensus: ConsensusParams {
                max_block_records: args.block_records,
                ..ConsensusParams::default()
            },
        },
    )?;
    let mut network = localnet::Network::start(&net, &root, args.validators)?;
    let apis: Vec<String> = network.apis.iter().map(|a| a.api.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let probe_record = runtime.block_on(async {
        localnet::wait_connected(&network.apis).await?;
        // Every member joins before the load.
        let keys = crate::devnet::branch_keys(&net, &genesis)?;
        let today = Date::from_unix_ms(crate::devnet::now_ms());
        let joins: Vec<SignedRecord> = (0..args.members_per_branch)
            .flat_map(|m| (0..keys.len()).map(move |b| (b, m)))
            .map(|(b, m)| {
                Record {
                    chain_id: genesis.chain_id.clone(),
                    branch_id: keys[b].0.clone(),
                    created_at_ms: crate::devnet::now_ms(),
                    nonce: m,
                    body: RecordBody::MemberJoined(MemberJoined {
                        member_id: member(b, m),
                        joined_on: today,
                        status: MemberStatus::Full,
                        mobile: false,
                        member_key: None,
                    }),
                }
                .sign(&keys[b].1)
            })
            .collect();
        let api = Api::connect(&network.apis[0]).await?;
        let mut submit = api.submit();
        for chunk in joins.chunks(1_000) {
            let answer = submit
                .submit_batch(pb::SubmitBatchRequest {
                    signed_records: chunk.iter().map(SignedRecord::to_bytes).collect(),
                })
                .await
                .map_err(crate::cli::status_error)?
                .into_inner();
            if answer.admitted as usize != chunk.len() {
                bail!("members could not join: {:?}", answer.results.first());
            }
        }
        let last = joins.last().map(|r| r.id().to_hex()).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut ledger = api.ledger();
        loop {
            let status = ledger
                .get_record(pb::GetRecordRequest {
                    record_id: last.clone(),
                })
                .await
                .map(|r| r.into_inner().status);
            if status.is_ok_and(|s| s == "committed") {
                break;
            }
            if Instant::now() > deadline {
                bail!("the members' joins did not commit within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>(last)
    })?;

    let exe = std::env::current_exe().context("finding the branchd binary")?;
    let mut nonce_base = 1_000_000_000u64;
    let pids = network.pids();
    let nodes_cpu_ns = || pids.iter().copied().map(cpu_ns).sum::<u64>();
    let metrics = network
        .metrics
        .iter()
        .enumerate()
        .map(|(i, listen)| listen.with_context(|| format!("node {i} has no metrics endpoint")))
        .collect::<Result<Vec<_>>>()?;
    let mut load = |rate: u64| -> Result<StepReport> {
        runtime.block_on(drained(&network.apis))?;
        let cpu_before = nodes_cpu_ns();
        let before = counters(&metrics);
        eprintln!("bench: offering {rate} records/s for {} s", args.seconds);
        let output = Command::new(&exe)
            .args(["bench", "load", "--net"])
            .arg(&net)
            .arg("--apis")
            .arg(apis.join(","))
            .args(["--rate", &rate.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--members-per-branch", &args.members_per_branch.to_string()])
            .args(["--nonce-base", &nonce_base.to_string()])
            .output()
            .context("running the load generator")?;
        nonce_base += 1_000_000_000;
        if !output.status.success() {
            bail!(
                "the load generator failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let node_cpu_seconds = nodes_cpu_ns().saturating_sub(cpu_before) as f64 / 1e9;
        let after = counters(&metrics);
        let report: LoadReport = serde_json::from_slice(&output.stdout)
            .context("reading the load generator's report")?;
        let per_record_and_node = |total: f64| {
            if report.committed == 0 {
                0.0
            } else {
                total / report.committed as f64 / args.validators as f64
            }
        };
        let node_cpu_us_per_record = per_record_and_node(node_cpu_seconds * 1e6);
        let gossip_record_bytes_per_record =
            per_record_and_node(after.records_bytes.saturating_sub(before.records_bytes) as f64);
        let gossip_consensus_bytes_per_record = per_record_and_node(
            after.consensus_bytes.saturating_sub(before.consensus_bytes) as f64,
        );
        let compact_proposals = after.compact.since(before.compact);
        eprintln!(
            "bench:   committed {:.0}/s, lost {}, full {}, p50 {:.0} ms, p99 {:.0} ms, {:.1} µs of node CPU per record and node; gossip received per record and node {:.0} B of records, {:.0} B of consensus; compact proposals {} sent, {} rebuilt, {} wanted, {} answered; generator {:.1} s of CPU, host {:.2} cores busy",
            report.committed_per_second,
            report.lost,
            report.refused_full,
            report.p50_ms,
            report.p99_ms,
            node_cpu_us_per_record,
            gossip_record_bytes_per_record,
            gossip_consensus_bytes_per_record,
            compact_proposals.sent,
            compact_proposals.rebuilt,
            compact_proposals.wanted,
            compact_proposals.answered,
            report.generator_cpu_seconds,
            report.host_busy_cores
        );
        Ok(StepReport {
            load: report,
            node_cpu_seconds,
            node_cpu_us_per_record,
            gossip_record_bytes_per_record,
            gossip_consensus_bytes_per_record,
            compact_proposals,
        })
    };
    let rates = if args.rates.is_empty() {
        RATES_DEFAULT.to_vec()
    } else {
        args.rates.clone()
    };
    let mut steps = Vec::new();
    for rate in rates {
        let report = load(rate)?;
        let stop = saturated(&report.load);
        steps.push(report);
        if stop {
            break;
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.load.lost == 0)
        .map(|s| s.load.committed_per_second)
        .fold(0.0, f64::max);
    let (half, half_with_queries, queries_during_half) = if args.no_half || best < 2.0 {
        (None, None, None)
    } else {
        let half_rate = (best / 2.0).round() as u64;
        let half = load(half_rate)?;
        runtime.block_on(drained(&network.apis))?;
        // Blocks are made only while records come, so two more blocks on node 1 mean the
        // half-rate load has begun: the queries start then.
        let height = runtime.block_on(async {
            Ok::<_, anyhow::Error>(Api::connect(&network.apis[1]).await?.status().await?.height)
        })?;
        let month = Date::from_unix_ms(crate::devnet::now_ms())
            .period()
            .to_string();
        let per_kind = (args.seconds * 0.8 / super::query::KINDS.len() as f64).max(1.0);
        let queries = Command::new(&exe)
            .args(["bench", "query", "--api", &apis[1]])
            .args(["--seconds", &per_kind.to_string()])
            .args(["--member", &member(1, 0).0])
            .args(["--record", &probe_record])
            .args(["--from", &month, "--to", &month])
            .args(["--after-height", &(height + 2).to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting the query load")?;
        let with_queries = load(half_rate)?;
        let output = queries
            .wait_with_output()
            .context("waiting for the query load")?;
        if !output.status.success() {
            bail!(
                "the query load failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let queries: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("reading the query load's report")?;
        eprintln!("bench:   queries meanwhile: {queries}");
        (Some(half), Some(with_queries), Some(queries))
    };
    let node_peak_rss_bytes = network.pids().into_iter().map(peak_rss).collect();
    network.stop()?;
    let report = ClusterReport {
        cores,
        validators: args.validators,
        batch_verify_per_core: batch_rate,
        ceiling_records_per_second: ceiling,
        steps,
        best_committed_per_second: best,
        ratio_to_ceiling: best / ceiling,
        half,
        half_with_queries,
        queries_during_half,
        node_peak_rss_bytes,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (branchd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 56 0 0 20 0 9 0 100 1000 10 18446744073709551615";
        assert_eq!(process_ticks(stat), Some(1234 + 56));
        assert_eq!(process_ticks("4242 (branchd) S 1"), None);
    }

    #[test]
    fn gossip_bytes_are_read_per_topic_from_the_metrics_text() {
        let text = "\
# HELP branchd_gossipsub_topic_msg_recv_bytes_total Bytes received.
branchd_gossipsub_topic_msg_recv_bytes_total{hash=\"/branchledger/c/consensus/1\"} 4258
branchd_gossipsub_topic_msg_recv_bytes_total{hash=\"/branchledger/c/records/1\"} 42173654
branchd_gossipsub_topic_msg_recv_bytes_unfiltered_total{hash=\"/branchledger/c/records/1\"} 9
branchd_gossipsub_topic_msg_sent_bytes_total{hash=\"/branchledger/c/records/1\"} 7
";
        assert_eq!(gossip_received_bytes(text, "records"), 42_173_654);
        assert_eq!(gossip_received_bytes(text, "consensus"), 4_258);
        assert_eq!(gossip_received_bytes(text, "other"), 0);
        assert_eq!(gossip_received_bytes("", "records"), 0);
    }

    #[test]
    fn a_counter_is_read_by_its_exact_series() {
        let text = "\
# TYPE branchd_compact_proposals counter
branchd_compact_proposals_total{outcome=\"sent\"} 12
branchd_compact_proposals_total{outcome=\"wanted\"} 3
branchd_compact_proposals_total{outcome=\"wanted_other\"} 5
";
        let series =
            |outcome: &str| format!("branchd_compact_proposals_total{{outcome=\"{outcome}\"}}");
        assert_eq!(counter_value(text, &series("sent")), 12);
        assert_eq!(counter_value(text, &series("wanted")), 3);
        assert_eq!(counter_value(text, &series("answered")), 0);
    }

    #[test]
    fn host_ticks_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 45 800 50 0 0 0 0 0\ncpu0 50 2 20 400 25 0 0 0 0 0\n";
        assert_eq!(host_ticks(stat), Some((150, 1_000)));
        assert_eq!(host_ticks("intr 1 2 3"), None);
        // Half the ticks busy on two cores: one core busy on average.
        assert_eq!(busy_cores((100, 1_000), (600, 2_000), 2), 1.0);
        assert_eq!(busy_cores((100, 1_000), (100, 1_000), 2), 0.0);
    }

    #[test]
    fn cpu_time_counts_every_thread_of_the_process() {
        let pid = std::process::id();
        let before = cpu_ns(pid);
        // The main thread only waits; the CPU is spent on another thread.
        let spent = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut x = 0u64;
            while cpu_ns(pid).saturating_sub(before) < 100_000_000 && Instant::now() < deadline {
                for i in 0..100_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
            }
            cpu_ns(pid).saturating_sub(before)
        })
        .join()
        .expect("the spinning thread");
        assert!(
            spent >= 100_000_000,
            "counted {spent} ns of another thread's CPU"
        );
    }
}
