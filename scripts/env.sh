# Sourced by the scripts: keeps the build cache outside the clone so repeated runs (and
# fresh clones in CI) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/branchledger/target}"
