#!/usr/bin/env bash
# Builds the krew archive for linux/amd64 and writes its sha256 (and the
# version) into the krew manifest.
#   DIST_PROFILE  cargo profile (release; tests use dev to save time)
#   DIST_DIR      where the archive goes (dist)
#   DIST_MANIFEST manifest to update in place (plugin.yaml)
#   DIST_TOOLS    where zig and cargo-zigbuild are installed (~/.cache/kubectl-ippool/dist-tools)
#   DIST_GLIBC    the oldest glibc the binary must run on (2.17)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${DIST_PROFILE:-release}"
out="${DIST_DIR:-$root/dist}"
manifest="${DIST_MANIFEST:-$root/plugin.yaml}"
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

target="${CARGO_TARGET_DIR:-$root/target}"

# The binary must start where admins run kubectl (RHEL 8, Ubuntu 20.04,
# Amazon Linux 2): link against glibc 2.17 with cargo-zigbuild (crates.io)
# and zig (the ziglang package on PyPI), both installed on first use into
# a cache shared by every checkout.
tools="${DIST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-ippool/dist-tools}"
glibc="${DIST_GLIBC:-2.17}"
triple=x86_64-unknown-linux-gnu
zig_version=0.17.1
zigbuild_version=0.24.1
if [ ! -x "$tools/ziglang-$zig_version/ziglang/zig" ]; then
  echo "dist: installing zig $zig_version (PyPI ziglang) into $tools"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$tools/ziglang-$zig_version" "ziglang==$zig_version"
fi
if ! "$tools/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $zigbuild_version\$"; then
  echo "dist: installing cargo-zigbuild $zigbuild_version (crates.io) into $tools; takes a few minutes once"
  CARGO_TARGET_DIR="$tools/build" cargo install --locked --quiet "cargo-zigbuild@$zigbuild_version" --root "$tools"
fi
export PATH="$tools/bin:$tools/ziglang-$zig_version/ziglang:$PATH"

if [ "$profile" = release ]; then dir=release; flags=(--release); else dir=debug; flags=(); fi
cargo zigbuild --locked "${flags[@]}" --target "$triple.$glibc"
bin="$target/$triple/$dir/kubectl-ippool"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/kubectl-ippool"
# The completion helper kubectl (1.26+) runs for `kubectl ippool <TAB>`:
# printed by the binary itself, so the two always agree.
"$bin" completion > "$stage/kubectl_complete-ippool" 2>/dev/null
chmod 0755 "$stage/kubectl_complete-ippool"
install -m 0644 LICENSE "$stage/LICENSE"
mkdir -p "$out"
archive="$out/kubectl-ippool_${version}_linux_amd64.tar.gz"
# Reproducible layout: sorted names, fixed owner and mtime, no gzip timestamp.
tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner -C "$stage" -cf - kubectl-ippool kubectl_complete-ippool LICENSE | gzip -n -9 > "$archive"
sha="$(sha256sum "$archive" | cut -d' ' -f1)"

sed -i -E \
  -e "s|^(  version: ).*|\1${version}|" \
  -e "s|^(    sha256: ).*|\1\"${sha}\"|" \
  -e "s|(releases/download/)v[^/]+/kubectl-ippool_v[^_]+_|\1${version}/kubectl-ippool_${version}_|" \
  "$manifest"
echo "dist: $archive"
echo "dist: sha256 $sha written to $manifest"
