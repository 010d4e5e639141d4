#!/usr/bin/env bash
# Builds every release artifact into dist/ (or $SCANMINT_DIST_DIR), so a person can install
# scanmint without building it:
#   scanmint-<version>-x86_64-unknown-linux-gnu.tar.gz  binary, README, licences, shell
#                                                        completions, the editor shims
#   scanmint-<version>-linux-x64.vsix                    the VS Code extension bundling the binary
#                                                        (made by editors/vscode/package-vsix.sh)
#   scanmint-jetbrains-<version>.zip                     the LSP4IJ template folder
#   SHA256SUMS                                           check with: cd dist && sha256sum -c SHA256SUMS
#
# SCANMINT_DIST_PROFILE=release (default) or debug: the cargo profile of the binary (tests use
# debug to reuse their build, without its debug info). SCANMINT_DIST_DIR: where (default dist/).
# Archives are reproducible for a given commit and binary: sorted entries, owner 0, mtimes
# fixed at SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
  echo "dist.sh: $*" >&2
  exit 1
}

profile=${SCANMINT_DIST_PROFILE:-release}
case $profile in
  release) build_flags=(--release) ;;
  debug) build_flags=() ;;
  *) die "SCANMINT_DIST_PROFILE is release or debug, not '$profile'" ;;
esac
out=${SCANMINT_DIST_DIR:-$root/dist}
vsix_script=editors/vscode/package-vsix.sh

# Fail before a long release build when a piece is missing.
[[ -x $vsix_script ]] || die "$vsix_script is missing or not executable: it builds the VS Code extension (VSIX) with the bundled binary; no artifacts were made"

version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "scanmint"))')
[[ -n $version ]] || die "no version for scanmint in Cargo.toml"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
target=x86_64-unknown-linux-gnu
[[ $(uname -m) == x86_64 && $(uname -s) == Linux ]] || die "builds $target artifacts only, on $target"

echo "==> scanmint $version ($profile build, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) into $out"
cargo build --locked --bin scanmint --bin scanmint-core "${build_flags[@]}"
bin=$root/target/$profile/scanmint
"$bin" --version | grep -qxF "scanmint $version" || die "$bin --version does not say scanmint $version"

mkdir -p "$out"
rm -rf "$out/.stage" "$out/SHA256SUMS" "$out"/scanmint-*"$version"*
stage=$out/.stage
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"
if [[ $profile == debug ]]; then
  # The release profile strips already; a debug binary's debug info (4/5 of it) only slows the
  # test down. The tarball and the VSIX get this same file.
  strip --strip-debug -o "$stage/scanmint" "$bin"
  strip --strip-debug -o "$stage/scanmint-core" "$bin-core"
  bin=$stage/scanmint
fi

# The files of a directory that git knows or would add (nothing ignored: no node_modules).
copy_tree() { # dir dest
  local f
  while IFS= read -r f; do
    [[ -f $f ]] || continue
    mkdir -p "$2/$(dirname "$f")"
    cp -p "$f" "$2/$f"
  done < <(git ls-files --cached --others --exclude-standard -- "$1")
}

# A tree of regular files and directories, normalised: fixed mtimes, no group/other write.
normalise() { # dir
  chmod -R u+rwX,go+rX,go-w "$1"
  find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# --- the binary tarball ------------------------------------------------------------------
name=scanmint-$version-$target
tree=$stage/$name
mkdir -p "$tree/completions"
# The launcher and, next to it, the core it hands every command but a scan's launch to.
install -m 0755 "$bin" "$tree/scanmint"
install -m 0755 "$bin-core" "$tree/scanmint-core"
cp README.md LICENSE-MIT LICENSE-APACHE "$tree/"
"$bin" completions bash >"$tree/completions/scanmint.bash"
"$bin" completions zsh >"$tree/completions/_scanmint"
"$bin" completions fish >"$tree/completions/scanmint.fish"
copy_tree editors/neovim "$tree"
copy_tree editors/jetbrains "$tree"
mkdir -p "$tree/editors/vscode"
cp editors/vscode/README.md "$tree/editors/vscode/README.md"
normalise "$tree"
tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$stage" -cf - "$name" | gzip -n >"$out/$name.tar.gz"
echo "    $name.tar.gz"

# --- the VS Code extension, bundling the same binary -----------------------------------------
vsix=scanmint-$version-linux-x64.vsix
"$vsix_script" "$bin" "$out/$vsix" || die "$vsix_script failed"
[[ -s $out/$vsix ]] || die "$vsix_script made no $out/$vsix"
echo "    $vsix"

# --- the JetBrains (LSP4IJ) template ---------------------------------------------------------
jb=scanmint-jetbrains-$version
copy_tree editors/jetbrains "$stage/jb"
mv "$stage/jb/editors/jetbrains" "$stage/$jb"
normalise "$stage/$jb"
python3 - "$stage" "$jb" "$out/$jb.zip" <<'EOF'
# A zip with sorted entries and fixed timestamps (zip(1) stores local times and extra fields).
import os, sys, time, zipfile
stage, top, dest = sys.argv[1:]
stamp = time.gmtime(max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800))[:6]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, dirs, files in sorted(os.walk(os.path.join(stage, top))):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            info = zipfile.ZipInfo(os.path.relpath(path, stage), stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as fh:
                z.writestr(info, fh.read())
EOF
echo "    $jb.zip"

# --- checksums ------------------------------------------------------------------------------
(cd "$out" && sha256sum "$name.tar.gz" "$vsix" "$jb.zip" >SHA256SUMS)
echo "    SHA256SUMS"
(cd "$out" && sha256sum --quiet -c SHA256SUMS)
echo "==> done: $out"
