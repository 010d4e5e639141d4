#!/bin/sh
# Run the fuzz targets one after another, each for a bounded number of inputs (and time).
# Not part of CI. See docs/fuzzing.md.
#
#   fuzz/run.sh                      # every target, 1,000,000 inputs each
#   RUNS=5000000 fuzz/run.sh ledger  # one target, more inputs
#   MAX_TIME=60 fuzz/run.sh          # at most 60 s per target
set -eu
cd "$(dirname "$0")"
RUNS=${RUNS:-1000000}
MAX_TIME=${MAX_TIME:-1200}
TARGETS=${*:-lsp_framing papi_reply config ledger workspace_scan}
for target in $TARGETS; do
    echo "== $target: $RUNS inputs, at most ${MAX_TIME}s"
    # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
        -runs="$RUNS" -max_total_time="$MAX_TIME" -dict="dict/$target.dict" \
        -print_final_stats=1
done
