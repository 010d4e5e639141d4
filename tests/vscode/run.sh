#!/usr/bin/env bash
# The VS Code extension: its unit tests, then the real VS Code test (code-server + headless
# Chromium), each in an isolated environment. See tests/editors-node.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../editors-node.sh" unit vscode
