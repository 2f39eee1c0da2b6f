#!/usr/bin/env bash
# Builds the kubesim test cluster (tools/kubesim) into target/kubesim/:
#   kubesim   - one-process Kubernetes + Calico IPAM test cluster
#   calicoctl - github.com/projectcalico/calico/calicoctl/calicoctl (same module graph)
#   kubectl   - k8s.io/kubernetes/cmd/kubectl (same module graph)
# Skips the build when every binary is newer than every file in tools/kubesim.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/tools/kubesim"
out="$root/target/kubesim"
bins=(kubesim calicoctl kubectl)

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin "$HOME/go/bin"; do [ -x "$d/go" ] && PATH="$d:$PATH"; done
fi
command -v go >/dev/null 2>&1 || { echo "build-kubesim: go not found" >&2; exit 1; }

# kubesim --dataplane runs kube-proxy in nftables mode, which needs the nft command.
if ! command -v nft >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "build-kubesim: installing nftables (nft) for kubesim --dataplane"
    DEBIAN_FRONTEND=noninteractive apt-get install -y nftables >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y nftables >/dev/null 2>&1; } ||
      echo "build-kubesim: could not install nftables; kubesim --dataplane will not start" >&2
  else
    echo "build-kubesim: nft not found (apt-get install -y nftables); kubesim --dataplane needs it" >&2
  fi
fi

uptodate=1
for b in "${bins[@]}"; do
  if [ ! -x "$out/$b" ] || [ -n "$(find "$src" -type f -newer "$out/$b" -print -quit)" ]; then
    uptodate=0
    break
  fi
done
if [ "$uptodate" = 1 ] && [ "${KUBESIM_FORCE_BUILD:-0}" != 1 ]; then
  echo "build-kubesim: up to date ($out)"
  exit 0
fi

export GOTOOLCHAIN=local
export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0
# go.sum (committed) pins every module; the checksum database is not reachable from every machine.
export GOSUMDB="${GOSUMDB:-off}"
start=$(date +%s)
mkdir -p "$out"
cd "$src"
echo "build-kubesim: $(go version); building (modules are fetched as needed)"
echo "build-kubesim: a cold build takes a while on 2 cores..."
go build -trimpath -ldflags='-s -w' -o "$out/" \
  . github.com/projectcalico/calico/calicoctl/calicoctl k8s.io/kubernetes/cmd/kubectl
# go build names the main package of this module after its directory already (kubesim).
for b in "${bins[@]}"; do touch "$out/$b"; done
end=$(date +%s)
echo "build-kubesim: built ${bins[*]} in $out in $((end - start))s"
