//! `branchd`: the branchledger node daemon and its command line.
//!
//! This crate is the only place where the parts are wired together. Protocol rules live in the
//! pure crates (`types`, `state`, `verifier`, `consensus`); this crate moves bytes between
//! them, the disk, the network and the operator.

mod api;
mod bench;
mod cli;
mod config;
mod devnet;
mod driver;
mod home;
mod init;
mod ledger;
mod localnet;
mod mempool;
mod metrics;
mod peers;
mod progress;
mod safety_file;
mod sample;
mod service;
mod start;
mod testnet;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use branchledger_crypto::Signer;
use clap::{Parser, Subcommand};

use home::{generate_keypair, read_key, write_key, KeyRole};

/// The branchledger node.
#[derive(Parser)]
#[command(name = "branchd", version, about = "branchledger node daemon", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local demo chain with realistic sample data and print the leaderboards.
    Devnet(devnet::DevnetArgs),
    /// Create a node home: configuration, node, consensus and branch keys, data directory.
    Init {
        /// The node home to create.
        #[arg(long, env = "BRANCHD_HOME")]
        home: PathBuf,
        /// This node's name.
        #[arg(long, default_value = "branchd")]
        name: String,
        /// A genesis file to copy into the home.
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Run a node.
    Start(start::StartArgs),
    /// Show a running node's status.
    Status {
        #[command(flatten)]
        api: cli::ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Submit one record, signed by the node's branch.
    Submit {
        /// The record kind.
        #[arg(value_enum)]
        kind: cli::fields::RecordKindArg,
        #[command(flatten)]
        fields: Box<cli::fields::RecordFields>,
        /// Do not wait for the commit.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        api: cli::ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import records from a CSV file (header: `kind` and record fields).
    Import(cli::import::ImportArgs),
    /// Ask a running node: leaderboards, study, dues, meetings, issues, records, blocks.
    Query {
        #[command(subcommand)]
        query: cli::query::Query,
        #[command(flatten)]
        api: cli::ApiArgs,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Delete the node's store (it syncs again from peers); the safety state stays.
    Reset {
        /// The node home.
        #[arg(long, env = "BRANCHD_HOME")]
        home: PathBuf,
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Measuring tools: generate a large chain, drive query load (JSON reports).
    #[command(subcommand, hide = true)]
    Bench(bench::BenchCommand),
    /// Print shell completions.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Generate genesis, keys and node homes for an N-node local network.
    Testnet {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Number of branches (at least the number of validators).
        #[arg(long)]
        branches: Option<usize>,
        /// Chain id.
        #[arg(long, default_value = "branchledger-devnet")]
        chain_id: String,
        /// Output directory (must be new or empty).
        #[arg(long)]
        out: PathBuf,
        /// First port on loopback: node i listens on base + 10 i (p2p), + 1 (gRPC), + 2
        /// (metrics).
        #[arg(long, default_value_t = testnet::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// For containers (config/compose.yaml): listen on all interfaces on fixed ports and
        /// dial the other nodes by service name.
        #[arg(long)]
        compose: bool,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Genesis tools.
    Genesis {
        #[command(subcommand)]
        command: GenesisCommand,
    },
    /// Verify a chain offline, trusting only the genesis file.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Export blocks with their records and commit certificates to a self-contained file.
    Export {
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// The node's RocksDB store.
        #[arg(long)]
        data_dir: PathBuf,
        /// First height (default 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last height (default: the tip).
        #[arg(long)]
        to: Option<u64>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify every block, certificate, signature, state digest, index and aggregate of a
    /// node's data directory from genesis to tip. Exits 0 only if everything holds.
    Verify {
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// The node's RocksDB store (`<home>/data/store`). Nothing is written to the chain.
        #[arg(long, required_unless_present = "export", conflicts_with = "export")]
        data_dir: Option<PathBuf>,
        /// An export file written by `branchd export`.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Print the report (or the failure) as JSON.
        #[arg(long)]
        json: bool,
        /// Where the replayed state is kept while the audit runs (a temporary directory is
        /// made and removed inside it; default: the system's temporary directory). It needs
        /// room for a copy of the node's state.
        #[arg(long)]
        scratch_dir: Option<PathBuf>,
        /// The tip the chain must end at (with --export: the export's last block), from a
        /// source you trust: another node's `branchd status`, a published checkpoint. A chain
        /// that ends below it, above it or on another block fails. Without it, a pass shows
        /// only that the chain is a finalised prefix: a store rolled back, or an export cut
        /// short, passes too.
        #[arg(long, value_name = "HEIGHT:BLOCK_ID")]
        expect_tip: Option<branchledger_audit::ExpectedTip>,
        /// Pass a store that holds no block (refused otherwise: an empty store proves
        /// nothing).
        #[arg(long, conflicts_with = "export")]
        allow_empty: bool,
    },
    /// Write the inclusion proof of a record (JSON): the record, its Merkle path, its block's
    /// header and commit certificate.
    Prove {
        /// The node's RocksDB store.
        #[arg(long)]
        data_dir: PathBuf,
        /// The record id (hex).
        record_id: String,
    },
    /// Check an inclusion proof with the genesis file alone.
    CheckProof {
        /// The proof file.
        file: PathBuf,
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new key file.
    Generate {
        /// What the key is for.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Where to write it (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a key file's public key (and libp2p peer id for node keys).
    Show {
        /// What the key is for.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The key file.
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum GenesisCommand {
    /// Check a genesis file and print its hash.
    Validate {
        /// The genesis file.
        path: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Node,
    Consensus,
    Branch,
}

impl From<RoleArg> for KeyRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Node => KeyRole::Node,
            RoleArg::Consensus => KeyRole::Consensus,
            RoleArg::Branch => KeyRole::Branch,
        }
    }
}

/// Runs the command. A failure is printed as its message and causes, never as a backtrace
/// (whatever `RUST_BACKTRACE` says: an operator's mistake is not a crash), and exits 1.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{}", failure_message(&error));
            ExitCode::FAILURE
        }
    }
}

/// `Error: message`, then each cause on a line of its own.
fn failure_message(error: &anyhow::Error) -> String {
    let mut message = format!("Error: {error}\n");
    let mut causes = error.chain().skip(1).peekable();
    if causes.peek().is_some() {
        message.push_str("\nCaused by:\n");
        for (i, cause) in causes.enumerate() {
            message.push_str(&format!("    {i}: {cause}\n"));
        }
    }
    message
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devnet(args) => devnet::run(args),
        Command::Init {
            home,
            name,
            genesis,
        } => init::init(&home, &name, genesis.as_deref()),
        Command::Start(args) => start::run(args),
        Command::Status { api, json } => cli::run(cli::status(&api, json)),
        Command::Submit {
            kind,
            fields,
            no_wait,
            api,
            json,
        } => cli::run(cli::submit(&api, kind, &fields, !no_wait, json)),
        Command::Import(args) => {
            let summary = cli::run(cli::import::run(&args))?;
            cli::import::print(&summary, args.json)?;
            if !summary.rejected.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Query { query, api, json } => cli::run(cli::query::run(&api, &query, json)),
        Command::Reset { home, yes } => {
            if !yes {
                anyhow::bail!(
                    "this deletes {}/data/store: confirm with --yes",
                    home.display()
                );
            }
            init::reset(&home)
        }
        Command::Bench(command) => bench::run(command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "branchd",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Testnet {
            validators,
            branches,
            chain_id,
            out,
            base_port,
            compose,
        } => {
            let genesis = testnet::generate_with(
                &out,
                &testnet::TestnetOptions {
                    chain_id,
                    validators,
                    branches: branches.unwrap_or(validators),
                    genesis_time_ms: devnet::now_ms(),
                    ports: if compose {
                        testnet::Ports::Compose
                    } else {
                        testnet::Ports::Base(base_port)
                    },
                    consensus: Default::default(),
                },
            )?;
            println!(
                "wrote {} node homes and genesis {} to {}",
                genesis.validators.len(),
                genesis.hash(),
                out.display()
            );
            Ok(())
        }
        Command::Keys { command } => match command {
            KeysCommand::Generate { role, out } => {
                let keypair = generate_keypair();
                write_key(&out, role.into(), &keypair)?;
                println!("{}", keypair.public_key());
                Ok(())
            }
            KeysCommand::Show { role, path } => {
                let keypair = read_key(&path, role.into())?;
                println!("public_key: {}", keypair.public_key());
                if matches!(role, RoleArg::Node) {
                    println!(
                        "peer_id: {}",
                        branchledger_types::genesis::peer_id_of(&keypair.public_key())
                    );
                }
                Ok(())
            }
        },
        Command::Genesis { command } => match command {
            GenesisCommand::Validate { path } => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let genesis = branchledger_types::Genesis::from_json(&text)
                    .with_context(|| format!("{} is not a valid genesis", path.display()))?;
                println!(
                    "{}: valid; chain {}, {} validators, {} branches, hash {}",
                    path.display(),
                    genesis.chain_id,
                    genesis.validators.len(),
                    genesis.branches.len(),
                    genesis.hash()
                );
                Ok(())
            }
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                genesis,
                data_dir,
                export,
                json,
                scratch_dir,
                expect_tip,
                allow_empty,
            } => match (data_dir, export) {
                (Some(data_dir), _) => {
                    let options = branchledger_audit::AuditOptions {
                        scratch_parent: scratch_dir.as_deref(),
                        expect_tip,
                        allow_empty,
                    };
                    audit_verify(&genesis, &data_dir, json, &options)
                }
                (None, Some(export)) => {
                    audit_verify_export(&genesis, &export, json, expect_tip.as_ref())
                }
                (None, None) => anyhow::bail!("give --data-dir or --export"),
            },
            AuditCommand::Prove {
                data_dir,
                record_id,
            } => {
                let id = branchledger_crypto::Hash::from_hex(&record_id)
                    .with_context(|| format!("record id {record_id:?}"))?;
                let store = open_store(&data_dir)?;
                let proof = branchledger_audit::proof::prove(&store, &id)?;
                println!("{}", serde_json::to_string_pretty(&proof)?);
                Ok(())
            }
            AuditCommand::CheckProof { file, genesis } => {
                let genesis = read_genesis(&genesis)?;
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let proof: branchledger_audit::proof::RecordProof = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a proof file", file.display()))?;
                match branchledger_audit::proof::check(&genesis, &proof) {
                    Ok(()) => {
                        println!(
                            "proof holds: record {} is at index {} of block {} (height {}), final with {} precommit signatures",
                            proof.record.id(),
                            proof.proof.index,
                            proof.header.block_id(),
                            proof.header.height,
                            proof.commit.signatures.len()
                        );
                        Ok(())
                    }
                    Err(error) => {
                        eprintln!("proof FAILED: {error}");
                        std::process::exit(1);
                    }
                }
            }
        },
        Command::Export {
            genesis,
            data_dir,
            from,
            to,
            out,
        } => {
            let genesis = read_genesis(&genesis)?;
            let store = open_store(&data_dir)?;
            let tip = branchledger_storage::ChainReader::tip(&store)?.map_or(0, |t| t.height);
            let to = to.unwrap_or(tip);
            let trailer = match out {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    branchledger_audit::export::write_export(&genesis, &store, from, to, &mut file)?
                }
                None => {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                    branchledger_audit::export::write_export(
                        &genesis,
                        &store,
                        from,
                        to,
                        &mut stdout,
                    )?
                }
            };
            eprintln!(
                "exported {} blocks ({from}..={to}), last block {to}:{}",
                trailer.blocks, trailer.last_block_id
            );
            Ok(())
        }
        Command::Version => {
            println!("branchd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

fn read_genesis(path: &std::path::Path) -> Result<branchledger_types::Genesis> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    branchledger_types::Genesis::from_json(&text)
        .with_context(|| format!("{} is not a valid genesis", path.display()))
}

/// Opens a stopped node's store to read it (an audit, an export, a proof): read-only, so
/// nothing in it changes, not even by RocksDB's own compactions.
fn open_store(data_dir: &std::path::Path) -> Result<branchledger_storage::RocksStore> {
    if let Some(problem) = not_a_store(data_dir) {
        anyhow::bail!(problem);
    }
    Ok(branchledger_storage::RocksStore::open_read_only(data_dir)?)
}

/// Why `data_dir` is not a store, naming the store under it when it is a node home or the
/// home's `data` directory (a store is `HOME/data/store`); `None` if it is one.
fn not_a_store(data_dir: &std::path::Path) -> Option<String> {
    if data_dir.join("CURRENT").exists() {
        return None;
    }
    let problem = format!(
        "{} is not a RocksDB store (no CURRENT file)",
        data_dir.display()
    );
    let under = [
        data_dir.join(home::STORE_DIR_NAME),
        home::Home::new(data_dir).store_dir(),
    ]
    .into_iter()
    .find(|store| store.join("CURRENT").exists());
    Some(match under {
        Some(store) => format!("{problem}; the store under it is {}", store.display()),
        None => problem,
    })
}

/// What a pass shows without an expected tip, printed under the summary; `what` is what ends
/// the verified chain ("tip", "last block").
fn prefix_only(what: &str) -> String {
    format!(
        "without --expect-tip this shows a finalised prefix of the chain, not that it is whole: \
         compare the {what} above with a tip you trust (another node's `branchd status`, a \
         published checkpoint)"
    )
}

fn audit_verify_export(
    genesis_path: &std::path::Path,
    export: &std::path::Path,
    json: bool,
    expect_tip: Option<&branchledger_audit::ExpectedTip>,
) -> Result<()> {
    let genesis = read_genesis(genesis_path)?;
    let file =
        std::fs::File::open(export).with_context(|| format!("opening {}", export.display()))?;
    match branchledger_audit::export::verify_export_expecting(
        &genesis,
        &mut std::io::BufReader::new(file),
        expect_tip,
    ) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "report": report }));
            } else {
                println!(
                    "export verified: heights {}..={}, last block {}:{}, {} records{}",
                    report.from,
                    report.to,
                    report.to,
                    report.last_block_id,
                    report.records,
                    if report.state_replayed {
                        ", state digests replayed"
                    } else {
                        " (partial: state not replayed)"
                    }
                );
                match expect_tip {
                    Some(tip) => println!("the last block is the expected tip {tip}"),
                    None => println!("{}", prefix_only("last block")),
                }
            }
            Ok(())
        }
        Err(failure) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "failure": failure }));
            } else {
                eprintln!("audit FAILED at {failure}");
            }
            std::process::exit(1);
        }
    }
}

fn audit_verify(
    genesis_path: &std::path::Path,
    data_dir: &std::path::Path,
    json: bool,
    options: &branchledger_audit::AuditOptions<'_>,
) -> Result<()> {
    let genesis = read_genesis(genesis_path)?;
    let store = open_store(data_dir)?;
    let tip = branchledger_storage::ChainReader::tip(&store)?.map_or(0, |t| t.height);
    let started = std::time::Instant::now();
    // A bar on a terminal (hidden otherwise, and with --json), with the rate so far.
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(tip)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "audit [{bar:40}] height {pos}/{len} {msg} (eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let result =
        branchledger_audit::verify_store_with(&genesis, &store, options, |height, records| {
            bar.set_position(height);
            bar.set_message(format!(
                "{records} records, {:.0} records/s",
                records as f64 / started.elapsed().as_secs_f64().max(1e-9)
            ));
        });
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "report": report }));
                return Ok(());
            }
            match &report.tip_block_id {
                Some(tip_block_id) => println!(
                    "audit passed: chain {}, tip height {} block {}, {} blocks, {} records, {} state entries and {} chain entries compared, state digest {} ({:.0} records/s)",
                    report.chain_id,
                    report.tip_height,
                    tip_block_id,
                    report.blocks,
                    report.records,
                    report.state_entries,
                    report.chain_entries,
                    report.state_digest,
                    report.records as f64 * 1000.0 / (report.elapsed_ms.max(1) as f64)
                ),
                None => println!(
                    "audit passed: chain {} is EMPTY (no block, tip height 0; allowed by --allow-empty), {} chain entries checked",
                    report.chain_id, report.chain_entries
                ),
            }
            match &options.expect_tip {
                Some(tip) => println!("the tip is the expected tip {tip}"),
                None if report.tip_block_id.is_some() => println!("{}", prefix_only("tip")),
                None => {}
            }
            Ok(())
        }
        Err(failure) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "failure": failure }));
            } else {
                eprintln!("audit FAILED at {failure}");
            }
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::not_a_store;

    #[test]
    fn a_path_that_is_not_a_store_is_refused_naming_the_store_under_it() {
        let home = tempfile::tempdir().expect("temp dir");
        let store = super::home::Home::new(home.path()).store_dir();
        std::fs::create_dir_all(&store).expect("store dir");
        assert!(not_a_store(&store).is_some(), "no CURRENT file yet");
        std::fs::write(store.join("CURRENT"), "MANIFEST-000001\n").expect("CURRENT");
        assert_eq!(not_a_store(&store), None);
        for given in [home.path().to_path_buf(), home.path().join("data")] {
            let problem = not_a_store(&given).expect("not a store");
            assert!(
                problem.starts_with(&format!("{} is not a RocksDB store", given.display())),
                "{problem}"
            );
            assert!(
                problem.ends_with(&format!("the store under it is {}", store.display())),
                "{problem}"
            );
        }
        let elsewhere = tempfile::tempdir().expect("temp dir");
        let problem = not_a_store(elsewhere.path()).expect("not a store");
        assert!(!problem.contains("under it"), "{problem}");
    }
}
