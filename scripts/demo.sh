#!/usr/bin/env bash
# make demo: start the local cluster with the seed scenario of Calico's
# migration guide and run status, migrate and verify on it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export KUBESIM_DIR="${KUBESIM_DIR:-$root/.kubesim}"
# cargo shows its own progress (a bar on a terminal, a line per crate
# otherwise): a cold release build takes minutes on 2 cores.
start=$(date +%s)
echo "demo: building kubectl-ippool (release; a cold build takes a few minutes)..."
cargo build --release --locked
echo "demo: built in $(( $(date +%s) - start ))s"
ippool="${CARGO_TARGET_DIR:-$root/target}/release/kubectl-ippool"
kubectl="$root/target/kubesim/kubectl"
scripts/cluster-down.sh >/dev/null 2>&1 || true
scripts/cluster-up.sh --scenario seed
trap 'scripts/cluster-down.sh >/dev/null 2>&1 || true' EXIT
export KUBECONFIG="$KUBESIM_DIR/kubeconfig"
# kubectl finds the plugin on PATH as `kubectl ippool`.
export PATH="${CARGO_TARGET_DIR:-$root/target}/release:$PATH"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step kubectl ippool status
"$kubectl" ippool status

step kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --dry-run
"$kubectl" ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --dry-run || true

echo
echo "The legacy namespace pins new pods to the old pool; drop the pin as the plan says:"
step kubectl annotate namespace legacy cni.projectcalico.org/ipv4pools-
"$kubectl" annotate namespace legacy cni.projectcalico.org/ipv4pools-

step kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --force --jobs evict --yes
"$kubectl" ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16 --force --jobs evict --yes

step kubectl ippool verify
"$kubectl" ippool verify

step kubectl ippool status
"$kubectl" ippool status

step calicoctl ipam check
DATASTORE_TYPE=kubernetes "$root/target/kubesim/calicoctl" ipam check --allow-version-mismatch
