//! Crash test: a writer process is killed with SIGKILL at random instants, and the store it
//! leaves must reopen with whole blocks only and every block it acknowledged.
//!
//! The writer is this test binary itself, re-executed with [`WRITER_DIR_ENV`] set and only
//! the ignored test [`crash_writer`] selected, so no extra binary has to be built or found.
//! It prints `committed <height>` after each `commit_block` returns. The parent kills it
//! after a random delay, reopens the store, checks it, and starts the next writer, which goes
//! on from the reopened tip.
//!
//! The kill instants come from a seed printed at the start; set [`SEED_ENV`] to replay a run,
//! and [`KILLS_ENV`] for more kills than the default [`KILLS_DEFAULT`].
//!
//! A SIGKILL leaves the page cache intact, so this proves atomicity and recovery, not that the
//! write is synced; `sync = true` on every block's batch is what covers power loss.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use branchledger_storage::{ChainReader, ChainWriter, RocksStore};

/// Set in the writer child: the store directory it writes to.
const WRITER_DIR_ENV: &str = "BRANCHLEDGER_STORAGE_CRASH_WRITER_DIR";
/// Replays a run: the seed of the kill instants.
const SEED_ENV: &str = "BRANCHLEDGER_STORAGE_CRASH_SEED";
/// How many times the writer is killed.
const KILLS_ENV: &str = "BRANCHLEDGER_STORAGE_CRASH_KILLS";
/// Kills in a default (CI) run.
const KILLS_DEFAULT: u32 = 24;
/// Records in each block the writer commits.
const RECORDS_PER_BLOCK: u32 = 3;
/// Longest random delay between the writer being ready and its kill.
const KILL_DELAY_MS_MAX: u64 = 200;
/// One kill in this many comes at a random instant of the writer's start-up (while it opens
/// and recovers the store) instead of after it is ready.
const EARLY_KILL_ONE_IN: u64 = 5;
/// How long a writer may take to open the store and say so.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// A writer stops by itself after this many blocks, so an orphaned one cannot fill the disk.
const WRITER_BLOCKS_MAX: u64 = 20_000;
/// Starts every line the writer prints. The test harness may print its own text at the start
/// of the same line ("test crash_writer ... "), so the parent looks for it anywhere.
const TAG: &str = "crash-writer: ";
/// What the writer says once the store is open.
const READY: &str = "ready";
/// What the writer says after each committed block, before the height.
const COMMITTED: &str = "committed ";

/// The writer half: commits blocks until killed. Ignored in normal runs, and a no-op when
/// not started by [`killed_writer_leaves_whole_blocks_and_loses_nothing_acknowledged`].
#[test]
#[ignore = "run as a child process by the crash test"]
fn crash_writer() {
    let Ok(dir) = std::env::var(WRITER_DIR_ENV) else {
        return;
    };
    let store = RocksStore::open(dir.as_ref()).expect("writer opens the store");
    println!("{TAG}{READY}");
    for _ in 0..WRITER_BLOCKS_MAX {
        let (block, delta) = support::block_after(store.tip().expect("tip"), RECORDS_PER_BLOCK);
        let tip = store.commit_block(&block, &delta).expect("commit");
        // Printed only after commit_block returned: this is the acknowledgement.
        println!("{TAG}{COMMITTED}{}", tip.height);
    }
}

/// SplitMix64: a small, well-mixed generator, so a seed fully determines the kill instants.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {text:?}"))
    })
}

/// Lines of the writer's stdout, read on a thread so the pipe never fills.
enum Line {
    Ready,
    Committed(u64),
}

fn spawn_writer(dir: &std::path::Path) -> (Child, mpsc::Receiver<Line>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx_line, rx_line) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(start) = line.rfind(TAG) else {
                continue; // The test harness's own lines.
            };
            let line = &line[start + TAG.len()..];
            let parsed = if line == READY {
                Line::Ready
            } else if let Some(height) = line.strip_prefix(COMMITTED) {
                Line::Committed(height.parse().unwrap())
            } else {
                panic!("unexpected writer output {line:?}");
            };
            if tx_line.send(parsed).is_err() {
                break;
            }
        }
    });
    (child, rx_line)
}

#[test]
fn killed_writer_leaves_whole_blocks_and_loses_nothing_acknowledged() {
    let seed = env_u64(SEED_ENV).unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        nanos as u64
    });
    let kills = env_u64(KILLS_ENV).unwrap_or(u64::from(KILLS_DEFAULT));
    println!("crash test seed {seed}, {kills} kills (replay: {SEED_ENV}={seed})");
    let mut rng = SplitMix64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut tip_height = 0;
    let mut acknowledged_total = 0;

    for round in 0..kills {
        let (mut child, rx_line) = spawn_writer(dir.path());
        if rng.below(EARLY_KILL_ONE_IN) != 0 {
            match rx_line.recv_timeout(READY_DEADLINE) {
                Ok(Line::Ready) => {}
                Ok(Line::Committed(_)) => panic!("round {round}: commit before ready"),
                Err(e) => {
                    let _ = child.kill();
                    panic!("round {round}: writer not ready within {READY_DEADLINE:?}: {e}");
                }
            }
        }
        // The random instant: a delay after readiness (or after spawning, for early kills).
        std::thread::sleep(Duration::from_millis(rng.below(KILL_DELAY_MS_MAX)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("round {round}: writer exited by itself with {status} (seed {seed})");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // The reader thread ends at EOF, which comes once the killed child's pipe closes.
        let acknowledged: Vec<u64> = rx_line
            .iter()
            .filter_map(|line| match line {
                Line::Committed(height) => Some(height),
                Line::Ready => None,
            })
            .collect();

        // The writer went on from the reopened tip, one height at a time.
        let expected: Vec<u64> = (tip_height + 1..).take(acknowledged.len()).collect();
        assert_eq!(acknowledged, expected, "round {round} (seed {seed})");

        let store = RocksStore::open(dir.path()).unwrap();
        let reopened = support::check_whole_blocks(&store, RECORDS_PER_BLOCK);
        let last_acknowledged = acknowledged.last().copied().unwrap_or(tip_height);
        assert!(
            reopened >= last_acknowledged,
            "round {round}: acknowledged height {last_acknowledged} lost, tip is {reopened} (seed {seed})"
        );
        // At most one block can have been written but not yet acknowledged.
        assert!(
            reopened <= last_acknowledged + 1,
            "round {round}: tip {reopened} beyond acknowledged {last_acknowledged} + 1 (seed {seed})"
        );
        acknowledged_total += acknowledged.len();
        tip_height = reopened;
    }
    println!("{acknowledged_total} blocks acknowledged, final tip {tip_height}");
    assert!(
        acknowledged_total > 0,
        "no writer committed anything, so nothing was tested (seed {seed})"
    );
}
