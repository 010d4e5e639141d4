#!/usr/bin/env bash
# The VS Code test (code-server + headless Chromium) in an isolated environment.
exec "$(dirname "${BASH_SOURCE[0]}")/../editors-node.sh" vscode
