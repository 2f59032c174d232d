#!/usr/bin/env bash
# The test command of the README: formatting, lints, docs, the purity check of the pure crates,
# and every test of the workspace. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== purity of the pure crates"
bash scripts/check-pure.sh
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== test"
cargo test --workspace --locked
