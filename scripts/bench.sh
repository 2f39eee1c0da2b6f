#!/usr/bin/env bash
# make bench: performance figures on the local cluster. Never part of `make test`.
#   1. read path: wall time and peak RSS of `kubectl ippool status` and
#      `verify` against `calicoctl ipam show --show-blocks`,
#      `calicoctl ipam check` and `kubectl get pods -A -o json` on the scale
#      scenario (BENCH_NODES nodes, BENCH_PODS pods).
#   2. migrate throughput on the bench scenario (BENCH_DEPLOYMENTS x
#      BENCH_REPLICAS pods, a PDB maxUnavailable 1 on each, a readiness
#      delay), against the lower bound the budgets and readiness delays allow.
# BENCH_SKIP_READ=1 or BENCH_SKIP_MIGRATE=1 runs only the other part.
# Results go to stdout as Markdown tables (pasted into the README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
nodes="${BENCH_NODES:-100}"
pods="${BENCH_PODS:-10000}"
runs="${BENCH_RUNS:-3}"
deployments="${BENCH_DEPLOYMENTS:-100}"
replicas="${BENCH_REPLICAS:-10}"
delay="${BENCH_READY_DELAY:-2s}"

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
scripts/build-kubesim.sh
cargo build --release --locked 2>&1 | tail -1
ippool="$root/target/release/kubectl-ippool"
kubectl="$root/target/kubesim/kubectl"
calicoctl="$root/target/kubesim/calicoctl"

work="$(mktemp -d)"
cleanup() { KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# median wall seconds and max RSS MiB over $runs runs
measure() {
  local label="$1"; shift
  local walls=() rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { echo "bench: $label failed:" >&2; tail -3 "$work/err" >&2; }
    read -r w m < <(tail -1 "$work/t")
    walls+=("$w"); [ "$m" -gt "$rss" ] && rss="$m"
  done
  local med
  med="$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")"
  echo "$label|$med|$((rss / 1024))"
}

if [ "${BENCH_SKIP_READ:-0}" != 1 ]; then
echo "bench: starting the scale scenario ($nodes nodes, $pods pods)..." >&2
t0=$(date +%s)
KUBESIM_DIR="$work/cluster" KUBESIM_TIMEOUT=1200 scripts/cluster-up.sh --scenario scale --nodes "$nodes" --pods "$pods" >&2
echo "bench: cluster ready in $(( $(date +%s) - t0 ))s" >&2
export KUBECONFIG="$work/cluster/kubeconfig" DATASTORE_TYPE=kubernetes

results=()
results+=("$(measure "kubectl ippool status" "$ippool" status)")
results+=("$(measure "kubectl ippool status -o json" "$ippool" status -o json)")
results+=("$(measure "calicoctl ipam show --show-blocks" "$calicoctl" ipam show --show-blocks --allow-version-mismatch)")
results+=("$(measure "kubectl get pods -A -o json" "$kubectl" get pods -A -o json)")
if "$ippool" verify --help >/dev/null 2>&1; then
  results+=("$(measure "kubectl ippool verify" sh -c "'$ippool' verify >/dev/null; true")")
fi
results+=("$(measure "calicoctl ipam check" "$calicoctl" ipam check --allow-version-mismatch)")

echo
echo "### Read path: $nodes nodes, $pods pods (median of $runs runs, peak RSS)"
echo
echo "| command | wall (s) | peak RSS (MiB) |"
echo "|---|---:|---:|"
for r in "${results[@]}"; do IFS='|' read -r l w m <<<"$r"; echo "| \`$l\` | $w | $m |"; done
base_w=$(printf '%s\n' "${results[@]}" | awk -F'|' '$1=="kubectl ippool status"{print $2}')
base_m=$(printf '%s\n' "${results[@]}" | awk -F'|' '$1=="kubectl ippool status"{print $3}')
echo
for ref in "calicoctl ipam show --show-blocks" "kubectl get pods -A -o json"; do
  read -r w m < <(printf '%s\n' "${results[@]}" | awk -F'|' -v r="$ref" '$1==r{print $2, $3}')
  awk -v a="$base_w" -v b="$w" -v c="$base_m" -v d="$m" -v r="$ref" 'BEGIN{printf "status vs %s: %.2fx the time, %.2fx the memory\n", r, a/b, c/d}'
done
KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >&2

fi

if [ "${BENCH_SKIP_MIGRATE:-0}" != 1 ]; then
  echo "bench: starting the bench scenario ($deployments Deployments x $replicas, ready after $delay)..." >&2
  export KUBECONFIG="$work/cluster/kubeconfig"
  KUBESIM_DIR="$work/cluster" KUBESIM_TIMEOUT=900 scripts/cluster-up.sh --scenario bench --deployments "$deployments" --replicas "$replicas" --readiness-delay "$delay" >&2
  par="${BENCH_PARALLEL:-8}"
  migrate=("$ippool" migrate --from default-ipv4-ippool --to 10.0.0.0/16 --yes --force --max-parallel "$par")
  # Lower bound, as the budgets allow it: each workload needs
  # ceil(pods / what its PDB allows at once) waves, workloads under one PDB
  # go one after another, P lanes at a time, and every wave waits at least
  # the readiness delay. The plan computes exactly these rounds.
  "${migrate[@]}" --dry-run -o json >"$work/plan.json" 2>"$work/plan.log" || { tail -20 "$work/plan.log" >&2; exit 1; }
  rounds="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["estimate"]["rounds"])' "$work/plan.json")"
  t0=$(date +%s.%N)
  "${migrate[@]}" >"$work/migrate.out" 2>"$work/migrate.log" || { tail -20 "$work/migrate.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo
  echo "### Migrate throughput: $deployments Deployments x $replicas replicas, PDB maxUnavailable 1 each, readiness delay $delay, --max-parallel $par"
  echo
  delay_s="$(echo "$delay" | sed 's/s$//')"
  awk -v a="$t0" -v b="$t1" -v r="$rounds" -v P="$par" -v d="$delay_s" 'BEGIN{
    lb=r*d; wall=b-a;
    printf "migrate wall time: %.1fs; lower bound the budgets allow (%d rounds on %d lanes x %ss): %.1fs; ratio %.2f\n", wall, r, P, d, lb, wall/lb }'
  grep -E "API requests" "$work/migrate.log" || true
fi
