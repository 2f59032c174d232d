//! The simulator's seed sweep, replay entry point and mutation checks.
//!
//! `SIM_SEEDS=100000 cargo test -p branchledger-sim --release --test sim seeds` sweeps more
//! seeds; `SIM_SEED=1234 [SIM_FAULTS=loss,crashes] cargo test -p branchledger-sim --test sim
//! replay -- --nocapture` replays one run with its trace.

use std::time::Instant;

use branchledger_consensus::Mutation;
use branchledger_sim::{run, run_and_explain, Faults, SimConfig, Violation};

/// Seeds the sweep runs unless `SIM_SEEDS` says otherwise.
const CI_SEEDS: u64 = 1_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}"))
    })
}

#[test]
fn seeds() {
    let count = env_u64("SIM_SEEDS").unwrap_or(CI_SEEDS);
    let first = env_u64("SIM_SEED_START").unwrap_or(0);
    let started = Instant::now();
    let mut sizes = std::collections::BTreeMap::<usize, u64>::new();
    let (mut evidence, mut crashes, mut heights) = (0, 0, 0);
    for seed in first..first + count {
        let config = SimConfig::for_seed(seed);
        match run_and_explain(&config) {
            Ok(outcome) => {
                *sizes.entry(config.validators).or_default() += 1;
                evidence += outcome.evidence;
                crashes += outcome.crashes;
                heights += outcome.height;
            }
            Err(failure) => panic!("seed {seed}:\n{failure}"),
        }
    }
    println!(
        "{count} seeds from {first} passed in {:.1?}: runs by cluster size {sizes:?}, \
         {heights} heights decided, {crashes} crashes, {evidence} evidence reports",
        started.elapsed()
    );
    // The sweep must actually exercise the faults it claims to.
    if count >= 100 {
        assert!(evidence > 0, "no Byzantine equivocation was ever detected");
        assert!(crashes > 0, "no crash was ever injected");
    }
}

#[test]
fn replay() {
    let Some(seed) = env_u64("SIM_SEED") else {
        // Without a seed there is nothing to replay: check that a replay is exact instead.
        let config = SimConfig::for_seed(7);
        assert_eq!(run(&config), run(&config), "two runs of one seed differ");
        return;
    };
    let mut config = SimConfig::for_seed(seed);
    if let Ok(text) = std::env::var("SIM_FAULTS") {
        config.faults = Faults::from_env(&text).unwrap_or_else(|e| panic!("SIM_FAULTS: {e}"));
    }
    if let Some(n) = env_u64("SIM_N") {
        config.validators = n as usize;
    }
    config.trace = true;
    match run_and_explain(&config) {
        Ok(outcome) => println!("seed {seed} passes: {outcome:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn a_single_validator_decides_alone() {
    let mut config = SimConfig::for_seed(0);
    assert_eq!(config.validators, 1);
    config.faults = Faults::from_env("none").expect("valid");
    config.heights_after_heal = 20;
    let outcome = run(&config).expect("one validator decides");
    assert!(outcome.height >= 20);
}

/// Runs a broken core through at most the CI budget of simulator runs (1,000, or
/// `SIM_SEEDS`) of the CI seeds whose cluster size is in `sizes`, until one fails; returns the
/// number of runs it took and the violation. Sizes matter because some rules (the lock) can
/// only be exercised where a fault is tolerated (n ≥ 4).
fn hunt(mutation: Mutation, sizes: &[usize]) -> Option<(u64, Violation)> {
    let budget = env_u64("SIM_SEEDS").unwrap_or(CI_SEEDS);
    let mut tried = 0;
    let mut seed = 0;
    while tried < budget {
        let mut config = SimConfig::for_seed(seed);
        seed += 1;
        if !sizes.contains(&config.validators) {
            continue;
        }
        config.mutation = mutation;
        tried += 1;
        if let Err(violation) = run(&config) {
            println!(
                "{mutation:?} caught after {tried} runs (seed {}): {violation}",
                config.seed
            );
            return Some((tried, violation));
        }
    }
    None
}

#[test]
fn mutation_counting_a_vote_twice_is_caught() {
    let found = hunt(Mutation::CountDuplicates, &[4, 7]);
    assert!(
        matches!(
            found,
            Some((_, Violation::Agreement { .. } | Violation::Validity { .. }))
        ),
        "counting copies of one vote went unnoticed: {found:?}"
    );
}

#[test]
fn mutation_ignoring_the_lock_is_caught() {
    let found = hunt(Mutation::IgnoreLock, &[4, 7]);
    assert!(
        matches!(found, Some((_, Violation::Agreement { .. }))),
        "ignoring the lock went unnoticed: {found:?}"
    );
}

#[test]
fn mutation_broadcasting_before_persisting_is_caught() {
    let found = hunt(Mutation::BroadcastBeforePersist, &[1, 2, 3, 4, 7]);
    assert!(
        matches!(found, Some((_, Violation::DoubleSign { .. }))),
        "sending a vote before it is synced went unnoticed: {found:?}"
    );
}
