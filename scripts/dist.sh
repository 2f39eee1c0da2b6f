#!/usr/bin/env bash
# Builds one krew archive per platform and the in-cluster image, and writes
# the krew manifest's platform entries (uri, sha256, files, bin) from the
# archives built.
#   DIST_PLATFORMS os/arch list (linux/amd64 linux/arm64 darwin/amd64
#                  darwin/arm64 windows/amd64)
#   DIST_IMAGE     1: also the OCI image of the linux platforms in the list
#                  (dist/kubectl-ippool_<version>_image.oci.tar); 0: not
#   DIST_PROFILE   cargo profile (release; `make test` uses dist-check)
#   DIST_DIR       where the archives go (dist)
#   DIST_MANIFEST  manifest to rewrite (plugin.yaml)
#   DIST_TOOLS     where zig and cargo-zigbuild live (scripts/dist-tools.sh)
#   DIST_GLIBC     the oldest glibc the linux binaries must run on (2.17)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${DIST_PROFILE:-release}"
out="${DIST_DIR:-$root/dist}"
manifest="${DIST_MANIFEST:-$root/plugin.yaml}"
platforms="${DIST_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64}"
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
target="${CARGO_TARGET_DIR:-$root/target}"
tools="${DIST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-ippool/dist-tools}"
glibc="${DIST_GLIBC:-2.17}"
repo_url=https://github.com/kubectl-ippool/kubectl-ippool

scripts/dist-tools.sh

# Every target with one compiler, Debian's Rust (see dist-tools.sh), and
# zig as C compiler and linker. The linux binaries link against glibc 2.17
# (RHEL 7/8, Amazon Linux 2, Ubuntu 20.04 all start them) rather than musl:
# the same libc and allocator as the binary `make bench` measures, and
# glibc's resolver for kubeconfig host names.
export PATH="$tools/bin:$tools/ziglang-0.17.1/ziglang:/usr/bin:$PATH"
export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
unset RUSTUP_TOOLCHAIN
# cargo's -Zbuild-std (the std of darwin and windows, from Debian's
# rust-web-src) is a nightly flag: allowed on this stable compiler this way.
export RUSTC_BOOTSTRAP=1
stubs="$target/dist-stubs"
rm -rf "$stubs" && mkdir -p "$stubs/lib"
# Debian's compiler asks mingw's stack protector library for every windows
# link (its mingw gcc needs it); zig's mingw has none and Rust code never
# calls it: empty archives satisfy the -l.
printf '!<arch>\n' > "$stubs/lib/libssp.a"
cp "$stubs/lib/libssp.a" "$stubs/lib/libssp_nonshared.a"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-Lnative=$stubs/lib"
case " $platforms " in *darwin/*)
  python3 scripts/macos-stubs.py "$stubs/frameworks"
  export CARGO_TARGET_X86_64_APPLE_DARWIN_RUSTFLAGS="-Clink-arg=-F$stubs/frameworks"
  export CARGO_TARGET_AARCH64_APPLE_DARWIN_RUSTFLAGS="-Clink-arg=-F$stubs/frameworks"
  ;;
esac

case "$profile" in release) dir=release;; dev) dir=debug;; *) dir="$profile";; esac
mkdir -p "$out"
stage_root="$(mktemp -d)"
trap 'rm -rf "$stage_root"' EXIT
entries="$stage_root/entries.yaml"
: > "$entries"

# The completion helper kubectl (1.26+) runs for `kubectl ippool <TAB>`:
# on unix printed by the binary itself, so the two always agree (by the
# linux/amd64 binary, the one that runs here; built first); on Windows,
# where kubectl finds kubectl_complete-ippool by PATHEXT, a .cmd doing the
# same.
write_windows_helper() {
  printf '@echo off\r\nrem Completes `kubectl ippool ...`: kubectl (1.26+) runs this, found on PATH,\r\nrem with the words after `ippool`. Copy it next to kubectl-ippool.exe.\r\nkubectl-ippool __complete %%*\r\n' > "$1"
}

build() { # os/arch
  local start
  case "$1" in
    linux/amd64) triple=x86_64-unknown-linux-gnu; zig_target="$triple.$glibc"; std=();;
    linux/arm64) triple=aarch64-unknown-linux-gnu; zig_target="$triple.$glibc"; std=();;
    darwin/amd64) triple=x86_64-apple-darwin; zig_target="$triple"; std=(-Zbuild-std=std,panic_abort);;
    darwin/arm64) triple=aarch64-apple-darwin; zig_target="$triple"; std=(-Zbuild-std=std,panic_abort);;
    windows/amd64) triple=x86_64-pc-windows-gnu; zig_target="$triple"; std=(-Zbuild-std=std,panic_abort);;
    *) echo "dist: unknown platform $1" >&2; exit 2;;
  esac
  start=$(date +%s)
  cargo zigbuild --locked --profile "$profile" --target "$zig_target" "${std[@]}"
  echo "dist: $1 built in $(( $(date +%s) - start ))s"
}
unix_helper="$stage_root/kubectl_complete-ippool"
case " $platforms " in *" linux/"*|*" darwin/"*)
  build linux/amd64
  "$target/x86_64-unknown-linux-gnu/$dir/kubectl-ippool" completion > "$unix_helper" 2>/dev/null
  ;;
esac

for platform in $platforms; do
  os="${platform%/*}" arch="${platform#*/}"
  # linux/amd64 was built above, for the helper.
  case "$platform" in linux/amd64) triple=x86_64-unknown-linux-gnu;; *) build "$platform";; esac
  exe=kubectl-ippool helper=kubectl_complete-ippool
  if [ "$os" = windows ]; then exe=kubectl-ippool.exe helper=kubectl_complete-ippool.cmd; fi
  stage="$stage_root/$os-$arch"
  mkdir -p "$stage"
  install -m 0755 "$target/$triple/$dir/$exe" "$stage/$exe"
  if [ "$os" = windows ]; then
    write_windows_helper "$stage/$helper"
  else
    cp "$unix_helper" "$stage/$helper"
  fi
  chmod 0755 "$stage/$helper"
  install -m 0644 LICENSE "$stage/LICENSE"
  files=("$exe" "$helper" LICENSE)
  if [ "$os" = windows ]; then
    name="kubectl-ippool_${version}_${os}_${arch}.zip"
    # Reproducible: fixed order and timestamps (python's zipfile, no extra tool).
    python3 - "$out/$name" "$stage" "${files[@]}" <<'EOF'
import sys, zipfile, pathlib
archive, stage, names = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for n in sorted(names):
        info = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, (stage / n).read_bytes())
EOF
  else
    name="kubectl-ippool_${version}_${os}_${arch}.tar.gz"
    # Reproducible layout: sorted names, fixed owner and mtime, no gzip timestamp.
    tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner -C "$stage" -cf - "${files[@]}" | gzip -n -9 > "$out/$name"
  fi
  sha="$(sha256sum "$out/$name" | cut -d' ' -f1)"
  {
    printf '  - selector:\n      matchLabels:\n        os: %s\n        arch: %s\n' "$os" "$arch"
    printf '    uri: %s/releases/download/%s/%s\n' "$repo_url" "$version" "$name"
    printf '    sha256: "%s"\n    files:\n' "$sha"
    for f in "${files[@]}"; do printf '    - from: %s\n      to: .\n' "$f"; done
    printf '    bin: %s\n' "$exe"
  } >> "$entries"
  echo "dist: $out/$name sha256 $sha"
done

# The manifest: everything up to `platforms:` kept, the version set, the
# platform entries replaced by those of the archives just built.
head_lines="$(grep -n '^  platforms:' "$manifest" | cut -d: -f1)"
{
  head -n "$head_lines" "$manifest" | sed -E "s|^(  version: ).*|\1${version}|"
  cat "$entries"
} > "$stage_root/manifest.yaml"
cp "$stage_root/manifest.yaml" "$manifest"
echo "dist: $manifest has $(grep -c '^  - selector:' "$manifest") platforms"

if [ "${DIST_IMAGE:-1}" = 1 ]; then
  arches=()
  for platform in $platforms; do case "$platform" in linux/*) arches+=("${platform#linux/}");; esac; done
  if [ ${#arches[@]} -gt 0 ]; then
    scripts/oci-image.sh "$out/kubectl-ippool_${version}_image.oci.tar" "$target" "$dir" "${arches[@]}"
  fi
fi
