#!/usr/bin/env bash
# The in-cluster image (deploy/job.yaml) as an OCI archive, without a
# container daemon: one root filesystem per architecture holding the
# linux binary dist.sh built, the glibc it loads (from Debian's libc6 and
# libgcc-s1 for that architecture), the CA bundle and a non-root user;
# scripts/oci-layout.py writes the layout.
#   oci-image.sh OUT.tar TARGET_DIR PROFILE_DIR ARCH...   (ARCH: amd64 arm64)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$1" target="$2" dir="$3"
shift 3
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debs="${DIST_DEBS:-$target/dist-debs}"
mkdir -p "$debs"
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq install --no-install-recommends ca-certificates
fi

roots=()
for arch in "$@"; do
  case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu multiarch=x86_64-linux-gnu;;
    arm64) triple=aarch64-unknown-linux-gnu multiarch=aarch64-linux-gnu;;
    *) echo "oci-image: unknown arch $arch" >&2; exit 2;;
  esac
  bin="$target/$triple/$dir/kubectl-ippool"
  # glibc and libgcc_s as Debian ships them for this architecture.
  (cd "$debs" && for p in libc6 libgcc-s1; do
    ls "${p}_"*"_$arch.deb" >/dev/null 2>&1 || apt-get download -qq -o APT::Sandbox::User=root "$p:$arch"
  done)
  sys="$work/sys-$arch"
  for deb in "$debs"/libc6_*_"$arch".deb "$debs"/libgcc-s1_*_"$arch".deb; do dpkg-deb -x "$deb" "$sys"; done
  rootfs="$work/rootfs-$arch"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/tmp"
  install -m 0755 "$bin" "$rootfs/usr/local/bin/kubectl-ippool"
  # Only the libraries the binary names (DT_NEEDED) and its loader.
  for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    found="$(find -L "$sys" -name "$lib" -path "*/$multiarch/*" | head -1)"
    [ -n "$found" ] || { echo "oci-image: $lib ($arch) not in libc6/libgcc-s1" >&2; exit 1; }
    install -D -m 0755 "$(readlink -f "$found")" "$rootfs/lib/$multiarch/$lib"
  done
  interp="$(readelf -p .interp "$bin" 2>/dev/null | sed -n 's/^ *\[ *[0-9]*\] *//p' | head -1)"
  install -D -m 0755 "$(readlink -f "$(find -L "$sys" -name "$(basename "$interp")" | head -1)")" "$rootfs$interp"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  roots+=("$arch=$rootfs")
done
python3 "$root/scripts/oci-layout.py" "$out" "$version" "${roots[@]}"
