#!/usr/bin/env bash
# Installs what scripts/dist.sh and `make dist-check` need, once per
# machine (each step checks first), from the package registries:
#   Debian: rustc-web, cargo-web and rust-web-src (Rust 1.96 with the
#           source of its standard library), libstd-rust-web-dev:arm64
#           (its prebuilt std for linux/arm64, only when DIST_PLATFORMS
#           has linux/arm64 or for check; adds dpkg's arm64
#           architecture, which the arm64 image's libc needs too)
#   PyPI:   zig (the ziglang package), the C compiler and linker of
#           every target
#   crates.io: cargo-zigbuild
# `dist-tools.sh check` adds what the emulated runs need: qemu-user-static
# and wine64 (Debian), and libc6:arm64 for the arm64 binary under qemu.
#
# Why Debian's Rust for the release builds: rustup's standard libraries for
# other targets come from a server CI machines cannot reach; Debian ships
# the std for amd64 and arm64 and the std source, from which cargo builds
# the darwin and windows std (-Zbuild-std) with the same compiler.
set -euo pipefail
tools="${DIST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-ippool/dist-tools}"
zig_version=0.17.1
zigbuild_version=0.24.1
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq "$@" > /dev/null; }
missing() { for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done; }

debs=(rustc-web cargo-web rust-web-src)
need=($(missing "${debs[@]}"))
if [ ${#need[@]} -gt 0 ]; then
  echo "dist-tools: installing ${need[*]} (Debian)"
  apt_get update
  apt_get install --no-install-recommends "${debs[@]}"
fi
# linux/arm64 (in DIST_PLATFORMS, default all; always for `check`): the
# prebuilt arm64 std, the same build as the compiler, and so dpkg's arm64
# architecture, which the arm64 image's libc comes from too.
if [ "${1:-}" = check ] || [[ " ${DIST_PLATFORMS:-linux/arm64} " == *" linux/arm64 "* ]]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "dist-tools: adding dpkg architecture arm64"
    dpkg --add-architecture arm64
    apt_get update
  fi
  want="$(dpkg-query -W -f='${Version}' "libstd-rust-web-dev:$(dpkg --print-architecture)")"
  if [ "$(dpkg-query -W -f='${Version}' libstd-rust-web-dev:arm64 2>/dev/null)" != "$want" ]; then
    echo "dist-tools: installing libstd-rust-web-dev:arm64 $want (Debian)"
    apt_get install --no-install-recommends "libstd-rust-web-dev:arm64=$want"
  fi
fi

if [ "${1:-}" = check ]; then
  need=($(missing qemu-user-static wine64 libc6:arm64))
  if [ ${#need[@]} -gt 0 ]; then
    echo "dist-tools: installing ${need[*]} (Debian)"
    apt_get install --no-install-recommends "${need[@]}"
  fi
fi

if [ ! -x "$tools/ziglang-$zig_version/ziglang/zig" ]; then
  echo "dist-tools: installing zig $zig_version (PyPI ziglang) into $tools"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$tools/ziglang-$zig_version" "ziglang==$zig_version"
fi
if ! "$tools/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $zigbuild_version\$"; then
  echo "dist-tools: installing cargo-zigbuild $zigbuild_version (crates.io) into $tools; takes a few minutes once"
  CARGO_TARGET_DIR="$tools/build" cargo install --locked --quiet "cargo-zigbuild@$zigbuild_version" --root "$tools"
fi
