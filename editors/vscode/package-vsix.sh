#!/usr/bin/env bash
# Packages the platform-specific VS Code extension that bundles the scanmint binary, as ruff and
# biome ship theirs: the binary sits at bin/scanmint (0755) inside the extension, with the
# scanmint-core it runs next to it (taken from beside BINARY), where the
# extension looks after scanmint.path and before PATH. scripts/dist.sh calls it; keep the interface.
#
#   editors/vscode/package-vsix.sh BINARY OUT.vsix      (e.g. dist/scanmint-0.1.0-linux-x64.vsix)
#
# VSCE_TARGET overrides the target platform (default: this machine's, e.g. linux-x64).
# Needs editors/vscode/node_modules (scripts/setup-vscode.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
die() { echo "package-vsix: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: $0 BINARY OUT.vsix"
binary="$1"
out="$2"
[[ -f "$binary" && -x "$binary" ]] || die "$binary is not an executable file"
core="$(dirname "$binary")/scanmint-core"
[[ -f "$core" && -x "$core" ]] || die "$core (the launcher's core, next to it) is not an executable file"
version="$("$binary" --version)" || die "$binary --version failed"
[[ "$version" == "scanmint "* ]] || die "$binary --version says \"${version%%$'\n'*}\", not scanmint"
[[ "$out" == *.vsix ]] || die "$out: the output name must end in .vsix"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

if [[ -n "${VSCE_TARGET:-}" ]]; then
  target="$VSCE_TARGET"
else
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) target=linux-x64 ;;
    Linux-aarch64) target=linux-arm64 ;;
    Darwin-x86_64) target=darwin-x64 ;;
    Darwin-arm64) target=darwin-arm64 ;;
    *) die "unknown platform $(uname -s)-$(uname -m): set VSCE_TARGET" ;;
  esac
fi

(cd "$here" && node build.mjs --production)

# A staging copy, so that the binary never lands in the source tree.
stage="$(mktemp -d "${TMPDIR:-/tmp}/scanmint-vsix.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dist" "$stage/images" "$stage/bin"
cp "$here/package.json" "$here/README.md" "$here/CHANGELOG.md" "$here/LICENSE" "$here/.vscodeignore" "$stage/"
cp "$here/dist/extension.js" "$stage/dist/"
cp "$here/images/icon.png" "$stage/images/"
# build.mjs --production copied the licence texts from the repository root (or said they are missing).
for f in LICENSE-MIT LICENSE-APACHE; do
  [[ -f "$root/$f" ]] && cp "$root/$f" "$stage/"
done
install -m 0755 "$binary" "$stage/bin/scanmint"
install -m 0755 "$core" "$stage/bin/scanmint-core"

(cd "$stage" && "$here/node_modules/.bin/vsce" package --no-dependencies --target "$target" -o "$out") >&2
echo "$out"
