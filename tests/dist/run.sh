#!/usr/bin/env bash
# Runs scripts/dist.sh into a temp dir and checks what a person downloading the artifacts gets:
# the four files, SHA256SUMS verifying (and catching a changed byte), a tarball that is sorted,
# owned by root, stamped with SOURCE_DATE_EPOCH and whose binary runs, the completions and the
# editor shims in it, a VSIX carrying that same binary, the LSP4IJ template in the zip, and the
# README's install commands working as written on these files.
#   tests/dist/run.sh        (SCANMINT_DIST_PROFILE defaults to debug here: reuses `cargo build`)
# KEEP_TMP=1 keeps the temp dir. The last line is "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scanmint-dist.XXXXXX")
cleanup() { [[ ${KEEP_TMP:-} == 1 ]] && echo "kept $tmp" >&2 || rm -rf "$tmp"; }
trap cleanup EXIT

passed=0
failed=0
check() { # description command...
  local what=$1
  shift
  if "$@" >"$tmp/check.out" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $what"
  else
    failed=$((failed + 1))
    echo "FAIL  $what"
    sed 's/^/      /' "$tmp/check.out" | tail -n 20
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
}

version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "scanmint"))')
sde=$(git log -1 --format=%ct)
out=$tmp/dist
name=scanmint-$version-x86_64-unknown-linux-gnu
tarball=$name.tar.gz
vsix=scanmint-$version-linux-x64.vsix
jb=scanmint-jetbrains-$version

check "scripts/dist.sh builds the artifacts" \
  env SCANMINT_DIST_PROFILE="${SCANMINT_DIST_PROFILE:-debug}" SCANMINT_DIST_DIR="$out" SOURCE_DATE_EPOCH="$sde" scripts/dist.sh
[[ -d $out ]] || finish

exactly_the_artifacts() {
  local got want
  got=$(cd "$out" && find . -mindepth 1 -printf '%P\n' | sort)
  want=$(printf '%s\n' SHA256SUMS "$jb.zip" "$tarball" "$vsix" | sort)
  [[ $got == "$want" ]] || { printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"; return 1; }
}
check "dist/ holds exactly the tarball, the VSIX, the JetBrains zip and SHA256SUMS" exactly_the_artifacts

sums_verify() {
  (cd "$out" && sha256sum -c SHA256SUMS) || return 1
  [[ $(wc -l <"$out/SHA256SUMS") -eq 3 ]] || { echo "SHA256SUMS does not list 3 files"; return 1; }
  # The same check catches one changed byte.
  mkdir -p "$tmp/tampered" && cp "$out"/* "$tmp/tampered/"
  printf 'x' | dd of="$tmp/tampered/$jb.zip" bs=1 seek=40 conv=notrunc status=none
  if (cd "$tmp/tampered" && sha256sum -c SHA256SUMS); then
    echo "sha256sum -c passed on a changed file"
    return 1
  fi
}
check "cd dist && sha256sum -c SHA256SUMS passes, and fails on a changed byte" sums_verify

mkdir -p "$tmp/x"
tar -xzf "$out/$tarball" -C "$tmp/x" 2>"$tmp/untar.err"
t=$tmp/x/$name

tar_is_reproducible() {
  # Every entry under one top directory, owned by 0/0, stamped with SOURCE_DATE_EPOCH.
  local stamp
  stamp=$(date -u -d "@$sde" '+%Y-%m-%d %H:%M:%S')
  awk -v top="$name" -v stamp="$stamp" '
    $2 != "0/0" { print "owner " $2 ": " $0; bad = 1 }
    ($4 " " $5) != stamp { print "mtime " $4 " " $5 " != " stamp ": " $0; bad = 1 }
    index($6, top) != 1 { print "outside " top ": " $0; bad = 1 }
    END { exit bad }' < <(TZ=UTC tar -tvzf "$out/$tarball" --full-time --numeric-owner) || return 1
  # Entries in sorted order (GNU tar --sort=name).
  local names
  names=$(tar -tzf "$out/$tarball")
  [[ $names == "$(LC_ALL=C sort <<<"$names")" ]] || { echo "entries are not sorted"; return 1; }
  true
}
check "the tarball is sorted, owned by 0/0 and stamped with SOURCE_DATE_EPOCH" tar_is_reproducible

binary_runs() {
  [[ -x $t/scanmint ]] || { echo "no executable $name/scanmint"; return 1; }
  [[ -x $t/scanmint-core ]] || { echo "no executable $name/scanmint-core"; return 1; }
  local v
  v=$("$t/scanmint" --version) || return 1
  [[ $v == "scanmint $version" ]] || { echo "--version said: $v"; return 1; }
}
check "the tarball's binaries run: scanmint --version says scanmint $version" binary_runs

tarball_contents() {
  local f
  for f in README.md LICENSE-MIT LICENSE-APACHE \
    completions/scanmint.bash completions/_scanmint completions/scanmint.fish \
    editors/neovim/lsp/scanmint.lua editors/neovim/plugin/scanmint.lua \
    editors/neovim/lua/scanmint/init.lua editors/neovim/lua/scanmint/health.lua \
    editors/neovim/doc/scanmint.txt editors/neovim/README.md \
    editors/jetbrains/template.json editors/jetbrains/initializationOptions.json \
    editors/jetbrains/settings.json editors/jetbrains/README.md editors/vscode/README.md; do
    [[ -s $t/$f ]] || { echo "missing or empty: $f"; return 1; }
  done
  cmp "$t/LICENSE-MIT" LICENSE-MIT && cmp "$t/LICENSE-APACHE" LICENSE-APACHE || return 1
  if tar -tzf "$out/$tarball" | grep -E 'node_modules|/target/|\.vsix$'; then
    echo "build leftovers in the tarball"
    return 1
  fi
  # Completions are what the binary prints, and the bash one parses.
  cmp "$t/completions/scanmint.bash" <("$t/scanmint" completions bash) || return 1
  bash -n "$t/completions/scanmint.bash" || return 1
  grep -q 'complete -c scanmint' "$t/completions/scanmint.fish" || return 1
  grep -q '#compdef scanmint' "$t/completions/_scanmint"
}
check "the tarball holds README, licences, completions and the editor shims" tarball_contents

vsix_bundles_binary() {
  local v=$out/$vsix
  unzip -l "$v" >/dev/null || { echo "$vsix is not a zip"; return 1; }
  unzip -p "$v" extension/package.json | python3 -c '
import json, sys
p = json.load(sys.stdin)
assert p["version"] == sys.argv[1], "package.json version %r != %r" % (p["version"], sys.argv[1])' "$version" || return 1
  # The binary inside is the release binary of this very tarball.
  local entry
  entry=$(unzip -Z1 "$v" | grep -E '(^|/)scanmint$' | head -n 1)
  [[ -n $entry ]] || { echo "no file named scanmint in the VSIX:"; unzip -Z1 "$v"; return 1; }
  cmp <(unzip -p "$v" "$entry") "$t/scanmint" || { echo "$entry differs from the tarball's binary"; return 1; }
  cmp <(unzip -p "$v" "$entry-core") "$t/scanmint-core" || { echo "$entry-core differs from the tarball's"; return 1; }
}
check "the VSIX carries package.json at $version and the same binaries as the tarball" vsix_bundles_binary

zip_holds_template() {
  local z=$out/$jb.zip f
  unzip -Z1 "$z" | sort >"$tmp/zip.list" || return 1
  printf '%s\n' "$jb/README.md" "$jb/initializationOptions.json" "$jb/settings.json" "$jb/template.json" | sort >"$tmp/zip.want"
  diff "$tmp/zip.want" "$tmp/zip.list" || return 1
  for f in template.json initializationOptions.json settings.json README.md; do
    cmp <(unzip -p "$z" "$jb/$f") "editors/jetbrains/$f" || return 1
  done
  unzip -p "$z" "$jb/template.json" | python3 -c 'import json,sys; t=json.load(sys.stdin); assert t["programArgs"]["default"] == "scanmint lsp", t'
}
check "the JetBrains zip holds the LSP4IJ template folder, as in the repository" zip_holds_template

readme_install_works() {
  # The README's first shell block after "## Install", run as written in dist/ with a fresh HOME.
  local block home=$tmp/readme-home
  block=$(awk '/^## Install/ { inst = 1 } inst && /^```sh$/ { on = 1; next } on && /^```$/ { exit } on' README.md)
  [[ -n $block ]] || { echo "no shell block in the README's Install section"; return 1; }
  grep -qF "$tarball" <<<"$block" || { echo "the README's install block does not name $tarball:"; echo "$block"; return 1; }
  mkdir -p "$home"
  (cd "$out" && HOME=$home bash -euxc "$block") || return 1
  [[ $("$home/.local/bin/scanmint" --version) == "scanmint $version" ]]
}
check "the README's install commands work as written on these artifacts" readme_install_works

readme_names_artifacts() {
  local section f link
  section=$(awk '/^## Install/ { on = 1; next } on && /^## / { exit } on' README.md)
  for f in "$vsix" "$jb.zip" "cargo install --locked scanmint"; do
    grep -qF "$f" <<<"$section" || { echo "the Install section does not name $f"; return 1; }
  done
  # Every link in it points at a file of the repository.
  while IFS= read -r link; do
    [[ $link == http* || $link == /* || $link == ../* ]] && { echo "link leaves the repository: $link"; return 1; }
    [[ -e ${link%%#*} ]] || { echo "broken link: $link"; return 1; }
  done < <(grep -oE '\]\([^)]+\)' <<<"$section" | sed -E 's/^\]\((.*)\)$/\1/')
}
check "the README's Install section names this version's artifacts and links inside the repository" readme_names_artifacts

finish
