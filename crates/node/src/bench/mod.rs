//! `branchd bench …`: the measuring tools behind `scripts/bench` and `docs/benchmarks.md`.
//!
//! * `gen-chain` writes a one-validator chain of N records straight into a node home's store
//!   (signed, checked by the state rules, certified), fast enough for ten million records, so
//!   the queries, the auditor and block sync can be measured on a chain of that size;
//! * `query` drives a query load against a node's API and reports queries/s and latency
//!   percentiles per query;
//! * `cluster` runs a local validator network and steps an open-loop record load (`load`, a
//!   process of its own) up to saturation, against this machine's own signature-checking
//!   limit measured in the same run;
//!
//! * `audit` runs the full-chain audit and the batch-verification rate in one run, and `sync`
//!   times an empty validator catching up by block sync.
//!
//! Every tool prints one JSON object on standard output, for the scripts to collect.

use std::time::Instant;

use branchledger_crypto::{BatchVerifier, Keypair, Signer};
use rayon::prelude::*;

pub mod audit;
pub mod chain;
pub mod cluster;
pub mod load;
pub mod query;

/// Verifies `count` signatures (of `keys` distinct keys) in batches of 256 on one thread;
/// returns signatures per second.
pub fn batch_verify_rate(count: usize) -> f64 {
    let keys: Vec<Keypair> = (0..50u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("branchledger batch rate sample {i}").into_bytes())
        .collect();
    let signed: Vec<_> = messages
        .par_iter()
        .enumerate()
        .map(|(i, m)| {
            (
                keys[i % keys.len()].public_key(),
                keys[i % keys.len()].sign(m),
            )
        })
        .collect();
    let started = Instant::now();
    for (chunk, sigs) in messages.chunks(256).zip(signed.chunks(256)) {
        let mut batch = BatchVerifier::with_capacity(chunk.len());
        for (message, (key, signature)) in chunk.iter().zip(sigs) {
            batch.queue(*key, message, *signature);
        }
        // A failure here would be a bug in the sample, not a measurement.
        assert!(batch.verify().is_ok(), "sample signatures verify");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Latency summary of a set of samples, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// The summary of `samples` (seconds).
    pub fn of(samples: &mut [f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[index.min(samples.len() - 1)] * 1000.0
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What to measure.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Write a one-validator chain of N generated records into a new network home.
    GenChain(chain::GenChainArgs),
    /// Measure queries against a running node.
    Query(query::QueryArgs),
    /// Offer signed records at a fixed rate to running nodes (the cluster benchmark's load).
    Load(load::LoadArgs),
    /// Throughput and finality of a local validator network, against this machine's limit.
    Cluster(cluster::ClusterArgs),
    /// Full-chain audit rate against this machine's batch-verification rate, in one run.
    Audit(audit::AuditArgs),
    /// Catch-up rate of an empty validator syncing a chain `gen-chain --validators 2` wrote.
    Sync(audit::SyncArgs),
}

/// Runs a bench command.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::GenChain(args) => chain::run(&args),
        BenchCommand::Query(args) => crate::cli::run(query::run(&args)),
        BenchCommand::Load(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(load::run(&args))
        }
        BenchCommand::Cluster(args) => cluster::run(&args),
        BenchCommand::Audit(args) => audit::run(&args),
        BenchCommand::Sync(args) => audit::sync(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut samples: Vec<f64> = (1..=100).map(|ms| f64::from(ms) / 1000.0).collect();
        let latency = Latency::of(&mut samples);
        assert_eq!(latency.count, 100);
        assert!((latency.p50_ms - 50.0).abs() <= 1.0, "{latency:?}");
        assert!((latency.p99_ms - 99.0).abs() <= 1.0, "{latency:?}");
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
