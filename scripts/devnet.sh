#!/usr/bin/env bash
# The README's run command: builds branchd and runs the local demo chain with sample data.
# Extra arguments go to `branchd devnet` (see `branchd devnet --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked -p branchledger-node --bin branchd
exec "$CARGO_TARGET_DIR/release/branchd" devnet "$@"
