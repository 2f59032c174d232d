//! Generates the gRPC code from `proto/` and the descriptor set served by reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "branchledger/v1/records.proto",
    "branchledger/v1/chain.proto",
    "branchledger/v1/node.proto",
    "branchledger/v1/submit.proto",
    "branchledger/v1/ledger.proto",
    "branchledger/v1/progress.proto",
    "branchledger/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it is compiled: one build cache serves several
    // checkouts of the workspace, and the compiled script is shared between them.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("branchledger_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&root))?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
