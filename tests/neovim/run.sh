#!/usr/bin/env bash
# Headless-Neovim tests for editors/neovim against a real scanmint daemon and emulator.
#   tests/neovim/run.sh [test_name ...]     (default: every tests/neovim/test_*.lua)
# Binary: $SCANMINT_BIN or target/debug/scanmint. Neovim: $NVIM or .venv/bin/nvim
# (scripts/setup-neovim.sh). KEEP_TMP=1 keeps the temp dir (logs) for inspection.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

bin=$(realpath -e "${SCANMINT_BIN:-target/debug/scanmint}") || {
  echo "no scanmint binary: cargo build, or set SCANMINT_BIN" >&2
  exit 2
}
nvim=${NVIM:-$root/.venv/bin/nvim}
[[ -x $nvim ]] || {
  echo "no $nvim: run scripts/setup-neovim.sh" >&2
  exit 2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scanmint-nvim.XXXXXX")
emu_pid=

# Processes (daemons) started with a runtime dir inside $tmp.
daemon_pids() {
  local env_file pid
  for env_file in /proc/[0-9]*/environ; do
    pid=${env_file#/proc/}
    pid=${pid%/environ}
    [[ $pid == "$$" ]] && continue
    if tr '\0' '\n' 2>/dev/null <"$env_file" | grep -qxF -e "XDG_RUNTIME_DIR=$tmp/run" -e "XDG_RUNTIME_DIR=$tmp/login/run"; then
      echo "$pid"
    fi
  done
}

cleanup() {
  local status=$?
  [[ -n $emu_pid ]] && kill "$emu_pid" 2>/dev/null || true
  local pids
  pids=$(daemon_pids || true)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  pkill -f -- "$tmp" 2>/dev/null || true
  sleep 0.2
  pids=$(daemon_pids || true)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  if [[ ${KEEP_TMP:-} == 1 || $status -ne 0 ]]; then
    echo "logs kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# Isolated user directories: Neovim and the daemon write nothing outside $tmp.
setup_dirs() { # prefix
  mkdir -p "$1"/{config,data,state,cache,run,home}
  chmod 700 "$1/run"
  export XDG_CONFIG_HOME=$1/config XDG_DATA_HOME=$1/data XDG_STATE_HOME=$1/state
  export XDG_CACHE_HOME=$1/cache XDG_RUNTIME_DIR=$1/run HOME=$1/home
}
setup_dirs "$tmp"
# Keep the tests away from the user's own keychain.
unset DBUS_SESSION_BUS_ADDRESS SCANMINT_PROFILE
export SCANMINT_BIN=$bin SCANMINT_TEST_TMP=$tmp

# The fake tenant: one JSON line on stdout, then it serves until killed.
"$bin" emulator >"$tmp/emulator.json" 2>"$tmp/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do
  [[ $(wc -l <"$tmp/emulator.json") -ge 1 ]] && break
  kill -0 "$emu_pid" 2>/dev/null || break
  sleep 0.1
done
emu=$(head -n 1 "$tmp/emulator.json")
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v)' "$emu" "$1"; }
if ! base_url=$(field base_url 2>/dev/null); then
  echo "scanmint emulator printed no JSON line (got: '$emu'); its stderr:" >&2
  cat "$tmp/emulator.log" >&2
  exit 1
fi
export SCANMINT_TEST_BASE_URL=$base_url
export SCANMINT_TEST_KEY_ID=$(field primary_key_id)
export SCANMINT_TEST_KEY=$(field primary_key)
export SCANMINT_TEST_LEVEL=$(field security_level)
export SCANMINT_TEST_ADMIN_URL=$(field admin_url)

write_config() { # config dir
  mkdir -p "$1/scanmint"
  printf '[profile.default]\nbase_url = "%s"\nttl = "10m"\n' "$SCANMINT_TEST_BASE_URL" >"$1/scanmint/config.toml"
}
write_config "$XDG_CONFIG_HOME"

# The daemon's Primary key comes from the environment (storage "env")...
export SCANMINT_BASE_URL=$SCANMINT_TEST_BASE_URL
export SCANMINT_PRIMARY_KEY_ID=$SCANMINT_TEST_KEY_ID
export SCANMINT_PRIMARY_KEY=$SCANMINT_TEST_KEY
export SCANMINT_SECURITY_LEVEL=$SCANMINT_TEST_LEVEL

passed=0
failed=0

run_test() { # name
  local name=$1 log=$tmp/$1.out rc=0
  echo "== $name"
  (
    # ...except for the log-in test: its own daemon, never given a key.
    if [[ $name == test_login ]]; then
      setup_dirs "$tmp/login"
      write_config "$XDG_CONFIG_HOME"
      unset SCANMINT_BASE_URL SCANMINT_PRIMARY_KEY_ID SCANMINT_PRIMARY_KEY SCANMINT_SECURITY_LEVEL
    fi
    exec timeout 60 "$nvim" --headless --clean --cmd 'set rtp^=editors/neovim' -l "tests/neovim/$name.lua"
  ) >"$log" 2>&1 || rc=$?
  grep -v '^RESULT ' "$log" | sed 's/^/   /' || true
  local result
  result=$(grep -E '^RESULT [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [[ -z $result ]]; then
    echo "   FAIL  $name did not finish (exit code $rc)"
    failed=$((failed + 1))
    return
  fi
  read -r _ p _ f _ <<<"$result"
  passed=$((passed + p))
  failed=$((failed + f))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    echo "   FAIL  $name exited $rc"
    failed=$((failed + 1))
  fi
}

if [[ $# -gt 0 ]]; then
  tests=("$@")
else
  tests=()
  for t in tests/neovim/test_*.lua; do tests+=("$(basename "$t" .lua)"); done
fi
for t in "${tests[@]}"; do run_test "${t%.lua}"; done

if [[ $failed -ne 0 ]]; then
  for f in "$tmp"/state/scanmint/* "$tmp"/login/state/scanmint/*; do
    [[ -f $f ]] || continue
    echo "-- tail of $f" >&2
    tail -n 30 "$f" >&2
  done
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
