#!/usr/bin/env bash
# Builds the krew archive for linux/amd64 and writes its sha256 (and the
# version) into the krew manifest.
#   DIST_PROFILE  cargo profile (release; tests use dev to save time)
#   DIST_DIR      where the archive goes (dist)
#   DIST_MANIFEST manifest to update in place (plugin.yaml)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${DIST_PROFILE:-release}"
out="${DIST_DIR:-$root/dist}"
manifest="${DIST_MANIFEST:-$root/plugin.yaml}"
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

target="${CARGO_TARGET_DIR:-$root/target}"
if [ "$profile" = release ]; then cargo build --release --locked; bin="$target/release/kubectl-ippool"
else cargo build --locked; bin="$target/debug/kubectl-ippool"; fi

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
