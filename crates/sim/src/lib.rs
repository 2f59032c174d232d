//! A deterministic simulator of a cluster of consensus cores, in the manner of TigerBeetle's
//! VOPR: one seed fixes every delay, loss, duplication, partition, crash and Byzantine choice,
//! so any failure it finds replays exactly from its seed.
//!
//! It owns the simulated world around `branchledger-consensus`: a network with simulated time,
//! a store that loses every write not synced before a crash (the only place that can prove the
//! safety state is synced before a vote leaves), an application that builds and checks blocks,
//! a block sync, and one Byzantine validator that equivocates. After every step it checks
//! agreement, validity, that no honest validator signs two different votes for one step, and,
//! once the network is healed, liveness.
//!
//! It is test support: it must never be a dependency of the node, and it never touches a real
//! clock, socket or disk.

mod world;

pub use world::{run, Faults, Outcome, SimConfig, Violation};

use std::fmt;

/// How many events after which a run is declared stuck even before its simulated deadline.
pub const EVENTS_MAX: u64 = 3_000_000;

/// Lines of trace printed with a failure (the end of the run, where the violation is).
pub const TRACE_LINES_MAX: usize = 300;

/// A run that broke an invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The configuration that failed (after shrinking, if shrunk).
    pub config: SimConfig,
    /// What broke.
    pub violation: Violation,
    /// The last events before the violation, if the run was traced.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation failed: {}", self.violation)?;
        writeln!(f, "config: {:?}", self.config)?;
        if !self.trace.is_empty() {
            writeln!(f, "trace (last {} events):", self.trace.len())?;
            for line in &self.trace {
                writeln!(f, "  {line}")?;
            }
        }
        writeln!(
            f,
            "replay: SIM_SEED={} SIM_FAULTS={} cargo test -p branchledger-sim --test sim replay -- --nocapture",
            self.config.seed,
            self.config.faults.to_env()
        )
    }
}

/// Runs `config`; on failure, shrinks it by turning off one kind of fault at a time while it
/// still fails, and returns the smallest failing configuration with its trace.
pub fn run_and_explain(config: &SimConfig) -> Result<Outcome, Box<Failure>> {
    let violation = match run(config) {
        Ok(outcome) => return Ok(outcome),
        Err(violation) => violation,
    };
    let mut smallest = config.clone();
    let mut violation = violation;
    for fault in Faults::KINDS {
        let mut candidate = smallest.clone();
        if !candidate.faults.disable(fault) {
            continue;
        }
        if let Err(v) = run(&candidate) {
            smallest = candidate;
            violation = v;
        }
    }
    let mut traced = smallest.clone();
    traced.trace = true;
    let trace = match world::run_traced(&traced) {
        (Err(_), trace) => trace,
        // A traced run is the same run; if it passed, determinism is broken, which is itself
        // worth reporting with the untraced violation.
        (Ok(_), trace) => {
            let mut trace = trace;
            trace.push(
                "NOTE: the traced rerun did not fail: the simulation is not deterministic".into(),
            );
            trace
        }
    };
    Err(Box::new(Failure {
        config: smallest,
        violation,
        trace,
    }))
}
