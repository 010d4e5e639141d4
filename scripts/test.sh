#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (after .ci/run has installed what it needs).
# Rust unit and integration tests run against real secret stores (scripts/with-keychain.sh);
# the editor tests drive a real headless Neovim, code-server in headless Chromium, and a replay
# of LSP4IJ; the benchmark runs once in its short smoke mode; the demo runs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "build"
cargo build --locked --all-targets

step "unit and integration tests (real Secret Service + keyutils)"
scripts/with-keychain.sh cargo test --locked --lib --bins --tests

export SCANMINT_BIN="$PWD/target/debug/scanmint"

step "Neovim (real, headless)"
tests/neovim/run.sh

step "VS Code (code-server in headless Chromium)"
tests/vscode/run.sh

step "JetBrains (LSP4IJ protocol replay)"
tests/jetbrains/run.sh

step "release artifacts (scripts/dist.sh, debug binary)"
tests/dist/run.sh

step "benchmark smoke run"
cargo bench --locked --bench scanmint -- --quick --out target/bench-smoke.json

step "demo"
"$SCANMINT_BIN" demo
