#!/usr/bin/env bash
# Runs the editor tests that need Node against the real scanmint binary, each in an isolated
# environment: a temp dir holding HOME and the XDG dirs (0700), a fresh `scanmint emulator`
# (the fake tenant), a config file pointing at it, and the emulator's Primary key in the
# environment (SCANMINT_PRIMARY_KEY*), so the daemon can mint without a log-in.
#
#   tests/editors-node.sh [unit|jetbrains|vscode|all]...     (default: all)
#
#   unit      : the VS Code extension's unit tests (editors/vscode, node --test)
#   jetbrains : tests/jetbrains/replay.test.mjs, LSP4IJ's traffic replayed against `scanmint lsp`
#   vscode    : tests/vscode/e2e.mjs, the extension in code-server + headless Chromium
# Needs scripts/setup-vscode.sh to have run (npm installs, Chromium).
#
# SCANMINT_BIN: the binary to test (default: `cargo build`, then target/debug/scanmint).
# KEEP_TMP=1 keeps the temp dirs (logs: $XDG_STATE_HOME/scanmint/, emulator.log, code-server.log).
# The last line is "N passed, M failed"; the exit code is non-zero when anything failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${SCANMINT_BIN:-}" ]]; then
  (cd "$root" && cargo build --quiet --bin scanmint) || { echo "cargo build failed"; echo "0 passed, 1 failed"; exit 1; }
  SCANMINT_BIN="$root/target/debug/scanmint"
fi
SCANMINT_BIN="$(realpath "$SCANMINT_BIN")"
export SCANMINT_BIN
[[ -x "$SCANMINT_BIN" ]] || { echo "no scanmint binary at $SCANMINT_BIN"; echo "0 passed, 1 failed"; exit 1; }

total_pass=0
total_fail=0

# Kill every process whose XDG_RUNTIME_DIR lies in this run's temp dir: the daemons that
# `scanmint lsp` spawned detached, and anything else this run started that outlived its parent.
kill_run_processes() {
  local runtime="$1" pid  # a directory prefix, ending in /
  for env in /proc/[0-9]*/environ; do
    pid="${env#/proc/}"; pid="${pid%/environ}"
    [[ "$pid" == "$$" || "$pid" == "${BASHPID:-}" ]] && continue
    if tr '\0' '\n' 2>/dev/null < "$env" | grep -qF "XDG_RUNTIME_DIR=$runtime"; then
      kill "$pid" 2>/dev/null
    fi
  done
}

# run_isolated NAME CMD...: sets up the environment, runs CMD, tears everything down.
run_isolated() {
  local name="$1"; shift
  local tmp emu_pid line
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/scanmint-$name.XXXXXX")"
  echo "== $name (temp dir $tmp)"
  (
    export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data" \
      XDG_STATE_HOME="$tmp/state" XDG_CACHE_HOME="$tmp/cache" XDG_RUNTIME_DIR="$tmp/run"
    for d in "$HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_STATE_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"; do
      mkdir -p -m 0700 "$d"
    done
    # Nothing from the caller's session: no keyring bus, no profile or config overrides.
    unset DBUS_SESSION_BUS_ADDRESS SCANMINT_PROFILE SCANMINT_CONFIG SCANMINT_STORE SCANMINT_BASE_URL \
      SCANMINT_PRIMARY_KEY_ID SCANMINT_PRIMARY_KEY CORTEX_API_KEY CORTEX_API_KEY_ID CORTEX_API_BASE_URL
    export SCANMINT_LOG="${SCANMINT_LOG:-debug}" SCANMINT_TEST_TMP="$tmp"

    "$SCANMINT_BIN" emulator > "$tmp/emulator.json" 2> "$tmp/emulator.log" &
    emu_pid=$!
    trap 'kill $emu_pid 2>/dev/null; kill_run_processes "$tmp/"' EXIT
    for _ in $(seq 1 200); do
      line="$(head -n 1 "$tmp/emulator.json" 2>/dev/null)"
      [[ "$line" == *"}"* ]] && break
      kill -0 "$emu_pid" 2>/dev/null || break
      sleep 0.1
    done
    if [[ "$line" != *"}"* ]]; then
      echo "scanmint emulator printed no JSON line; its stderr:"; cat "$tmp/emulator.log"
      echo "0 passed, 1 failed"; exit 1
    fi
    eval "$(node -e '
      const e = JSON.parse(process.argv[1]);
      const q = (s) => "\x27" + String(s).replace(/\x27/g, "\x27\\\x27\x27") + "\x27";
      for (const [k, v] of Object.entries({ SCANMINT_BASE_URL: e.base_url, SCANMINT_PRIMARY_KEY_ID: e.primary_key_id,
        SCANMINT_PRIMARY_KEY: e.primary_key, SCANMINT_SECURITY_LEVEL: e.security_level ?? "", SCANMINT_ADMIN_URL: e.admin_url ?? "" }))
        console.log(`export ${k}=${q(v ?? "")}`);' "$line")"
    mkdir -p -m 0700 "$XDG_CONFIG_HOME/scanmint"
    cat > "$XDG_CONFIG_HOME/scanmint/config.toml" <<EOF
[profile.default]
base_url = "$SCANMINT_BASE_URL"
ttl = "10m"
store = "${SCANMINT_TEST_STORE:-memory}"
EOF
    "$@"
  )
  local rc=$?
  if [[ -z "${KEEP_TMP:-}" && $rc -eq 0 ]]; then rm -rf "$tmp"; else echo "== $name: kept $tmp"; fi
  return $rc
}

# Adds a suite's counts (from its "N passed, M failed" line or node:test's summary) to the totals.
tally() {
  local log="$1" rc="$2" p f
  p="$(grep -E '^(# |ℹ )?pass [0-9]+$' "$log" | tail -1 | grep -oE '[0-9]+')"
  f="$(grep -E '^(# |ℹ )?fail [0-9]+$' "$log" | tail -1 | grep -oE '[0-9]+')"
  if [[ -z "$p" ]]; then
    read -r p f < <(grep -oE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 | sed -E 's/([0-9]+) passed, ([0-9]+) failed/\1 \2/')
  fi
  p="${p:-0}"; f="${f:-0}"
  if [[ "$rc" -ne 0 && "$f" -eq 0 ]]; then f=1; fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

suite() {
  local name="$1"; shift
  local log rc
  log="$(mktemp)"
  run_isolated "$name" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  tally "$log" "$rc"
  rm -f "$log"
}

[[ $# -gt 0 ]] || set -- all
for which in "$@"; do
  case "$which" in
    unit|all) suite vscode-unit bash -c "cd '$root/editors/vscode' && npm test --silent" ;;&
    jetbrains|all) suite jetbrains node --test --test-reporter=spec "$root/tests/jetbrains/replay.test.mjs" ;;&
    vscode|all) suite vscode node "$root/tests/vscode/e2e.mjs" ;;
    unit|jetbrains) ;;
    *) echo "usage: $0 [unit|jetbrains|vscode|all]..."; exit 2 ;;
  esac
done

echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
