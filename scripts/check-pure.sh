#!/usr/bin/env bash
# The consensus core, the verifier and what they stand on must stay pure: no async runtime,
# database, network stack or RPC framework in their normal dependency tree (DESIGN.md §4).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
status=0
for crate in branchledger-crypto branchledger-types branchledger-state branchledger-verifier branchledger-consensus; do
    tree=$(cargo tree -e normal -p "$crate" --prefix none --locked)
    bad=$(printf '%s\n' "$tree" | grep -E '^(tokio|rocksdb|librocksdb-sys|libp2p[a-z0-9-]*|tonic|hyper|mio) ' | sort -u || true)
    if [ -n "$bad" ]; then
        echo "check-pure: $crate depends on IO crates:" >&2
        printf '  %s\n' $bad >&2
        status=1
    else
        echo "check-pure: $crate is pure ($(printf '%s\n' "$tree" | sort -u | wc -l) crates in its tree)"
    fi
done
exit $status
