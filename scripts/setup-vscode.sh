#!/usr/bin/env bash
# Installs what the VS Code extension build and the editor tests need, on a fresh Debian 12
# machine, as root. Idempotent. Downloads only from the Debian archive and the npm registry.
#
#   editors/vscode/node_modules : esbuild, typescript, vscode-languageclient, @vscode/vsce
#   tests/vscode/node_modules   : code-server 4.100.3 (VS Code 1.100.3, last for Node 20), playwright-core
#   Debian                      : chromium (driven headless), libkrb5-dev + pkg-config (kerberos
#                                 module of code-server builds from source), ripgrep (seeds
#                                 @vscode/ripgrep's download cache)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_apt=()
for pkg in chromium libkrb5-dev pkg-config ripgrep; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "setup-vscode: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

command -v node >/dev/null || { echo "setup-vscode: node (20) is required" >&2; exit 1; }

# npm ci when the lock file matches, npm install otherwise (first run creates the lock file).
npm_install() {
  local dir="$1"; shift
  if [[ -f "$dir/package-lock.json" ]]; then
    (cd "$dir" && "$@" npm ci --no-audit --no-fund --foreground-scripts)
  else
    (cd "$dir" && "$@" npm install --no-audit --no-fund --foreground-scripts)
  fi
}

# --- the extension: a few dev tools, one runtime dependency (bundled by esbuild)
ext="$root/editors/vscode"
if [[ ! -x "$ext/node_modules/.bin/esbuild" || "$ext/package-lock.json" -nt "$ext/node_modules/.package-lock.json" ]]; then
  echo "setup-vscode: npm install in editors/vscode"
  npm_install "$ext" env
fi

# --- the end-to-end test: code-server + playwright-core (never `playwright`: it downloads a browser)
e2e="$root/tests/vscode"
if [[ ! -x "$e2e/node_modules/.bin/code-server" || "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]]; then
  echo "setup-vscode: npm install in tests/vscode (code-server takes a few minutes)"
  tmp="$e2e/.tmp-install"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # @vscode/ripgrep downloads ripgrep at install time: seed its cache with Debian's rg.
  tar -C /usr/bin -czf "$tmp/rg.tar.gz" rg
  for v in $(npm view @vscode/ripgrep versions --json | tr -d '[]", ' | grep '^1\.15\.'); do
    mkdir -p "$tmp/vscode-ripgrep-cache-$v"
    ln "$tmp/rg.tar.gz" "$tmp/vscode-ripgrep-cache-$v/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
  done
  npm_install "$e2e" env TMPDIR="$tmp" npm_config_yes=true npm_config_unsafe_perm=true
  rm -rf "$tmp"
fi

echo "setup-vscode: ok (chromium $(chromium --version 2>/dev/null | awk '{print $2}'), code-server $("$e2e/node_modules/.bin/code-server" --version 2>/dev/null | head -1 | awk '{print $1}'))"
