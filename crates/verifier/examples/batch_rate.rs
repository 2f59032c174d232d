//! Prints how fast signatures verify on this machine: one at a time, batched on one thread,
//! batched on all cores, and as whole signed records through `verify_records_batch`.
//!
//! `cargo run --release -p branchledger-verifier --example batch_rate [count]` (default 10000).

use std::time::Instant;

use rayon::prelude::*;

use branchledger_crypto::{verify, BatchVerifier, Keypair, PublicKey, Signature, Signer};
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Genesis, Rules, StudyRule, Validator,
};
use branchledger_types::record::{StudyForm, StudySession};
use branchledger_types::{BranchId, Date, MemberId, Record, RecordBody, SignedRecord};

/// Distinct signing keys, as from a few dozen branches.
const KEYS: usize = 50;
const DEFAULT_COUNT: usize = 10_000;

fn report(what: &str, count: usize, seconds: f64, threads: usize) {
    let rate = count as f64 / seconds;
    println!(
        "{what:<34} {count:>7} in {:>8.1} ms = {:>9.0}/s on {threads} thread(s), {:>8.0}/s per thread",
        seconds * 1e3,
        rate,
        rate / threads as f64
    );
}

fn main() {
    let count = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(DEFAULT_COUNT);
    let threads = rayon::current_num_threads();
    let keys: Vec<Keypair> = (0..KEYS)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect();
    let items: Vec<(PublicKey, Vec<u8>, Signature)> = (0..count)
        .map(|i| {
            let key = &keys[i % KEYS];
            let message = format!("branchledger rate message {i}").into_bytes();
            let signature = key.sign(&message);
            (key.public_key(), message, signature)
        })
        .collect();

    let start = Instant::now();
    for (key, message, signature) in &items {
        verify(key, message, signature).expect("every signature is good");
    }
    report("single verify", count, start.elapsed().as_secs_f64(), 1);

    let mut batch = BatchVerifier::with_capacity(count);
    for (key, message, signature) in &items {
        batch.queue(*key, message, *signature);
    }
    let start = Instant::now();
    batch.verify().expect("every signature is good");
    report(
        "BatchVerifier::verify",
        count,
        start.elapsed().as_secs_f64(),
        1,
    );

    let mut batch = BatchVerifier::with_capacity(count);
    for (key, message, signature) in &items {
        batch.queue(*key, message, *signature);
    }
    let start = Instant::now();
    batch.verify_parallel().expect("every signature is good");
    report(
        "BatchVerifier::verify_parallel",
        count,
        start.elapsed().as_secs_f64(),
        threads,
    );

    // For comparison: one batch per thread instead of chunks of `PARALLEL_CHUNK`, since batch
    // verification gets cheaper per item as the batch grows.
    let start = Instant::now();
    let part = count.div_ceil(threads).max(1);
    items.par_chunks(part).for_each(|chunk| {
        let mut batch = BatchVerifier::with_capacity(chunk.len());
        for (key, message, signature) in chunk {
            batch.queue(*key, message, *signature);
        }
        batch.verify().expect("every signature is good");
    });
    report(
        "one BatchVerifier per thread",
        count,
        start.elapsed().as_secs_f64(),
        threads,
    );

    // Whole records: encoding, signing-message construction and the batch together.
    let genesis = Genesis {
        chain_id: "rate-chain".into(),
        genesis_time_ms: 0,
        validators: vec![Validator {
            name: "v0".into(),
            branch_id: BranchId("b0".into()),
            consensus_key: Keypair::from_seed([200; 32]).public_key(),
            peer_id: peer_id_of(&Keypair::from_seed([201; 32]).public_key()),
        }],
        branches: (0..KEYS)
            .map(|i| Branch {
                branch_id: BranchId(format!("b{i}")),
                name: format!("Branch {i}"),
                signing_key: keys[i].public_key(),
            })
            .collect(),
        consensus: ConsensusParams::default(),
        rules: Rules {
            meetings: Vec::new(),
            study: StudyRule {
                minutes_per_member_per_month: 0,
            },
            dues_minor_per_month: 0,
        },
    };
    let records: Vec<SignedRecord> = (0..count)
        .map(|i| {
            Record {
                chain_id: genesis.chain_id.clone(),
                branch_id: BranchId(format!("b{}", i % KEYS)),
                created_at_ms: i as u64,
                nonce: i as u64,
                body: RecordBody::StudySession(StudySession {
                    member_id: MemberId(format!("m-{i}")),
                    material: "Constitution, chapter 2".into(),
                    minutes: 60,
                    form: StudyForm::Group,
                    occurred_on: Date::new(2025, 3, 1),
                }),
            }
            .sign(&keys[i % KEYS])
        })
        .collect();
    let start = Instant::now();
    branchledger_verifier::verify_records_batch(&genesis, &records).expect("every record is good");
    report(
        "verify_records_batch (records)",
        count,
        start.elapsed().as_secs_f64(),
        threads,
    );
}
