#!/usr/bin/env bash
# Headless-Neovim tests for editors/neovim against a real scanmint daemon and emulator.
#   tests/neovim/run.sh [test_name ...]     (default: every tests/neovim/test_*.lua)
# Binary: $SCANMINT_BIN or target/debug/scanmint. Neovim: $NVIM or .venv/bin/nvim
# (scripts/setup-neovim.sh). KEEP_TMP=1 keeps the temp dir (logs) for inspection.
# SCANMINT_EMULATOR_ARGS: extra flags for `scanmint emulator` (default none: the tenant's real
# 10 requests/s limit applies, as it does for users).
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
emu_pids=()
# Keyring entries are filed under this service name: unique to the run.
export SCANMINT_KEYRING_SERVICE=scanmint-nvim-test-${tmp##*.}

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

# The daemon's keyutils tier files keys in the per-user persistent keyring, which outlives
# the run: drop what this run stored (its service name is unique to the run). A session
# keyring of our own makes those keys ours to invalidate.
purge_keyring() {
  command -v keyctl >/dev/null || return 0
  # shellcheck disable=SC2016 # expanded by the inner bash
  keyctl session - bash -c '
    ring=$(keyctl get_persistent @s) || exit 0
    for id in $(keyctl rlist "$ring"); do
      case $(keyctl rdescribe "$id" 2>/dev/null) in
        *"@$1") keyctl invalidate "$id" ;;
      esac
    done' _ "$SCANMINT_KEYRING_SERVICE" >/dev/null 2>&1 || true
}

cleanup() {
  local status=$?
  [[ ${#emu_pids[@]} -gt 0 ]] && kill "${emu_pids[@]}" 2>/dev/null || true
  local pids
  pids=$(daemon_pids || true)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  pkill -f -- "$tmp" 2>/dev/null || true
  sleep 0.2
  pids=$(daemon_pids || true)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  purge_keyring
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
# Keep the tests away from the user's own keychain and settings.
unset DBUS_SESSION_BUS_ADDRESS SCANMINT_PROFILE SCANMINT_CONFIG SCANMINT_STORE
export SCANMINT_BIN=$bin SCANMINT_TEST_TMP=$tmp

# Start a fake tenant (one JSON line on stdout, then it serves until killed) and export its
# details as SCANMINT_TEST_*. Each isolated daemon gets its own tenant: two ledgers for one
# user@host on one tenant would reconcile (revoke) each other's keys.
start_emulator() { # dir
  mkdir -p "$1"
  # shellcheck disable=SC2086 # SCANMINT_EMULATOR_ARGS: extra flags, word-split on purpose
  "$bin" emulator ${SCANMINT_EMULATOR_ARGS:-} >"$1/emulator.json" 2>"$1/emulator.log" &
  emu_pids+=("$!")
}
load_emulator() { # dir
  local out=$1/emulator.json emu
  for _ in $(seq 100); do
    [[ $(wc -l <"$out") -ge 1 ]] && break
    sleep 0.1
  done
  emu=$(head -n 1 "$out")
  field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$emu" "$1"; }
  if ! SCANMINT_TEST_BASE_URL=$(field base_url 2>/dev/null); then
    echo "scanmint emulator printed no JSON line (got: '$emu'); its stderr:" >&2
    cat "$1/emulator.log" >&2
    exit 1
  fi
  export SCANMINT_TEST_BASE_URL
  export SCANMINT_TEST_KEY_ID=$(field primary_key_id)
  export SCANMINT_TEST_KEY=$(field primary_key)
  export SCANMINT_TEST_LEVEL=$(field security_level)
  export SCANMINT_TEST_ADMIN_URL=$(field admin_url)
}

write_config() { # config dir
  mkdir -p "$1/scanmint"
  printf '[profile.default]\nbase_url = "%s"\nttl = "10m"\n' "$SCANMINT_TEST_BASE_URL" >"$1/scanmint/config.toml"
}
start_emulator "$tmp"
start_emulator "$tmp/login" # for test_login
load_emulator "$tmp"
write_config "$XDG_CONFIG_HOME"

# The daemon's Primary key comes from the environment (storage "env")...
export SCANMINT_BASE_URL=$SCANMINT_TEST_BASE_URL
export SCANMINT_PRIMARY_KEY_ID=$SCANMINT_TEST_KEY_ID
export SCANMINT_PRIMARY_KEY=$SCANMINT_TEST_KEY
export SCANMINT_PRIMARY_SECURITY_LEVEL=$SCANMINT_TEST_LEVEL

# A session keyring of its own for each Neovim (and the daemon it spawns), as on a desktop
# login; without one they share the user-session keyring with every other process of the user.
session=()
command -v keyctl >/dev/null && session=(keyctl session -)

passed=0
failed=0

run_test() { # name
  local name=$1 log=$tmp/$1.out rc=0
  echo "== $name"
  (
    # ...except for the log-in test: its own daemon, never given a key.
    if [[ $name == test_login ]]; then
      setup_dirs "$tmp/login"
      load_emulator "$tmp/login"
      write_config "$XDG_CONFIG_HOME"
      unset SCANMINT_BASE_URL SCANMINT_PRIMARY_KEY_ID SCANMINT_PRIMARY_KEY SCANMINT_PRIMARY_SECURITY_LEVEL
    fi
    # ...and the remote test: the shim on a "remote" (own dirs, no Primary key) reaching the
    # workstation's daemon through its restricted socket, as `ssh -R` would forward it.
    if [[ $name == test_remote ]]; then
      "$bin" status >/dev/null
      export SCANMINT_SOCKET=$XDG_RUNTIME_DIR/scanmint/remote-v1.sock
      setup_dirs "$tmp/remote"
      unset SCANMINT_BASE_URL SCANMINT_PRIMARY_KEY_ID SCANMINT_PRIMARY_KEY SCANMINT_PRIMARY_SECURITY_LEVEL
    fi
    exec "${session[@]}" timeout 60 "$nvim" --headless --clean --cmd 'set rtp^=editors/neovim' -l "tests/neovim/$name.lua"
  ) >"$log" 2>&1 || rc=$?
  grep -v -e '^RESULT ' -e '^Joined session keyring' "$log" | sed 's/^/   /' || true
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
  for f in "$tmp"/state/scanmint/*.log "$tmp"/login/state/scanmint/*.log; do
    [[ -f $f ]] || continue
    echo "-- tail of $f" >&2
    tail -n 30 "$f" >&2
  done
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
