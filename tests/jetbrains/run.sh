#!/usr/bin/env bash
# The LSP4IJ replay test (stands in for a JetBrains IDE) in an isolated environment.
exec "$(dirname "${BASH_SOURCE[0]}")/../editors-node.sh" jetbrains
