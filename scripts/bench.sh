#!/usr/bin/env bash
# make bench: performance figures on the local cluster. Never part of `make test`.
#   1. read path, on the scale scenario (BENCH_NODES nodes, BENCH_PODS pods):
#      wall time and peak RSS of `kubectl ippool status` and `verify`, next to
#      their floor (scripts/bench-floor.sh: the same objects fetched by curl,
#      bytes thrown away, once paged and once from the watch cache) and to
#      calicoctl and kubectl; every command once per round, BENCH_RUNS rounds,
#      medians. Then the growth table: status and verify at BENCH_GROWTH pods
#      (default 1000 3000) and at BENCH_PODS, with the heap they hold once
#      everything is read (KUBECTL_IPPOOL_HEAP_REPORT, src/heap.rs) and the
#      bytes that adds per pod between sizes.
#      BENCH_KUBECONFIG: use that running cluster for BENCH_PODS instead of
#      starting one. BENCH_BASELINE: another kubectl-ippool binary, measured
#      in the same rounds (before/after).
#   2. migrate growth on the bench scenario (Deployments of BENCH_REPLICAS
#      pods, a PDB maxUnavailable 1 on each, a readiness delay) at
#      BENCH_MIGRATE_PODS pods (default BENCH_DEPLOYMENTS x BENCH_REPLICAS,
#      3000 and 10000; BENCH_MIGRATE_NODES nodes, default a node per 100
#      pods): kubesim's start-up, wall time against the lower bound the
#      budgets and readiness delays allow, the plan's estimate, requests and
#      writes per pod, the tool's peak RSS and CPU, and every PDB's floor as
#      the disruption controller counted it (scripts/pdb-floor-watch.py).
#      BENCH_MIX=1: kubesim's --bench-mix (of every 10 workloads one is a
#      StatefulSet and two are Deployments under one shared PDB, plus a
#      DaemonSet on every node).
#      BENCH_PER_NAMESPACE (default 100): workloads per namespace
#      (kubesim's --bench-per-namespace; 0 puts every workload in one).
#      BENCH_PROFILE=DIR (absolute, or from the repository root): kubesim serves
#      net/http/pprof on loopback, and DIR gets a CPU profile of BENCH_PROFILE_SECONDS
#      (default 120) from the migration's start (cpu.pprof, and its split by component,
#      shares.md), the pods once moved (pods.json, their start-up in startup.md) and the
#      API server's /metrics before and after.
# BENCH_SKIP_READ=1, BENCH_SKIP_GROWTH=1 or BENCH_SKIP_MIGRATE=1 skip a part;
# BENCH_SKIP_REFERENCES=1 leaves out the calicoctl and kubectl rows.
# Results go to stdout as Markdown tables (pasted into the README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
nodes="${BENCH_NODES:-100}"
pods="${BENCH_PODS:-10000}"
runs="${BENCH_RUNS:-5}"
growth="${BENCH_GROWTH:-1000 3000}"
deployments="${BENCH_DEPLOYMENTS:-100}"
replicas="${BENCH_REPLICAS:-10}"
delay="${BENCH_READY_DELAY:-2s}"

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
scripts/build-kubesim.sh
# BENCH_BINARY: measure that kubectl-ippool instead of building one.
[ -n "${BENCH_BINARY:-}" ] || cargo build --release --locked 2>&1 | tail -1
ippool="${BENCH_BINARY:-${CARGO_TARGET_DIR:-$root/target}/release/kubectl-ippool}"
baseline="${BENCH_BASELINE:-}"
kubectl="$root/target/kubesim/kubectl"
calicoctl="$root/target/kubesim/calicoctl"
floor="$root/scripts/bench-floor.sh"

work="$(mktemp -d)"
cleanup() { KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

start_scale() { # pods
  echo "bench: starting the scale scenario ($nodes nodes, $1 pods)..." >&2
  local t0; t0=$(date +%s)
  KUBESIM_DIR="$work/cluster" KUBESIM_TIMEOUT=1500 scripts/cluster-up.sh --scenario scale --nodes "$nodes" --pods "$1" --dataplane=false >&2
  echo "bench: cluster ready in $(( $(date +%s) - t0 ))s" >&2
  export KUBECONFIG="$work/cluster/kubeconfig" DATASTORE_TYPE=kubernetes
}

# What each verb reads (src/cluster/snapshot.rs; verify adds handles, the
# workload templates and the sandbox-failure events), as API paths.
read_paths() {
  local g=/apis/crd.projectcalico.org/v1
  "$kubectl" get --raw "$g" >/dev/null 2>&1 || g=/apis/projectcalico.org/v3
  status_paths=(/api/v1/pods "$g/ippools" "$g/ipamblocks" "$g/blockaffinities" /api/v1/nodes /api/v1/namespaces)
  verify_paths=("${status_paths[@]}" "$g/ipamhandles" /apis/apps/v1/deployments /apis/apps/v1/statefulsets
    /apis/apps/v1/daemonsets /apis/apps/v1/replicasets /apis/batch/v1/jobs
    "/api/v1/events?fieldSelector=reason%3DFailedCreatePodSandBox%2CinvolvedObject.kind%3DPod")
  "$floor" creds "$work/creds"
}

# Our binaries say on stderr how much heap they hold once everything is read.
export KUBECTL_IPPOOL_HEAP_REPORT=1

# Commands are "label|command" (run with sh -c); each round runs every
# command once, in order, so load from other processes falls on all alike.
# Prints "label|median wall s|peak RSS KiB (max over rounds)|median live heap
# bytes after the reads (0 if the command does not report it)|median CPU s
# (user + system)".
measure_rounds() {
  local i r cmds=("$@")
  for r in $(seq "$runs"); do
    for i in "${!cmds[@]}"; do
      /usr/bin/time -f "%e %M %U %S" -o "$work/t" sh -c "{ ${cmds[$i]#*|}; } >/dev/null 2>\"$work/err\"" ||
        { echo "bench: ${cmds[$i]%%|*} failed:" >&2; tail -3 "$work/err" >&2; }
      local heap; heap="$(sed -n 's/^heap: \([0-9]*\) bytes live.*/\1/p' "$work/err" | tail -1)"
      echo "$(tail -1 "$work/t") ${heap:-0}" >>"$work/r.$i"
    done
    echo "bench: round $r of $runs done" >&2
  done
  for i in "${!cmds[@]}"; do
    local mid med rss heap cpu
    mid=$(( (runs + 1) / 2 ))
    med="$(cut -d' ' -f1 "$work/r.$i" | sort -n | sed -n "${mid}p")"
    rss="$(cut -d' ' -f2 "$work/r.$i" | sort -n | tail -1)"
    heap="$(cut -d' ' -f5 "$work/r.$i" | sort -n | sed -n "${mid}p")"
    cpu="$(awk '{printf "%.2f\n", $3 + $4}' "$work/r.$i" | sort -n | sed -n "${mid}p")"
    echo "${cmds[$i]%%|*}|$med|$rss|$heap|$cpu"
    rm -f "$work/r.$i"
  done
}

q() { printf "'%s' " "$@"; }
field() { printf '%s\n' "${results[@]}" | awk -F'|' -v l="$1" -v c="$2" '$1==l{print $c}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a/b}'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN{print (a<b)?a:b}'; }

if [ "${BENCH_SKIP_READ:-0}" != 1 ]; then
growth_rows=()
if [ "${BENCH_SKIP_GROWTH:-0}" != 1 ]; then
  for n in $growth; do
    start_scale "$n"
    read_paths
    mapfile -t results < <(measure_rounds \
      "floor, cached|'$floor' cached '$work/creds' $(q "${status_paths[@]}")" "status|'$ippool' status" \
      "floor, cached (verify)|'$floor' cached '$work/creds' $(q "${verify_paths[@]}")" "verify|'$ippool' verify; true")
    growth_rows+=("$n|$(field status 2)|$(field status 3)|$(field verify 2)|$(field verify 3)|$(field 'floor, cached' 2)|$(field 'floor, cached (verify)' 2)|$(field status 4)|$(field verify 4)|$(field status 5)|$(field verify 5)")
    KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >&2
  done
fi

if [ -n "${BENCH_KUBECONFIG:-}" ]; then
  export KUBECONFIG="$BENCH_KUBECONFIG" DATASTORE_TYPE=kubernetes
else
  start_scale "$pods"
fi
read_paths
cmds=(
  "floor, paged|'$floor' paged '$work/creds' $(q "${status_paths[@]}")"
  "floor, cached|'$floor' cached '$work/creds' $(q "${status_paths[@]}")"
  "kubectl ippool status|'$ippool' status"
  "kubectl ippool status -o json|'$ippool' status -o json"
  "floor, paged (verify)|'$floor' paged '$work/creds' $(q "${verify_paths[@]}")"
  "floor, cached (verify)|'$floor' cached '$work/creds' $(q "${verify_paths[@]}")"
  "kubectl ippool verify|'$ippool' verify; true"
)
if [ -n "$baseline" ]; then
  cmds+=("kubectl ippool status (baseline)|'$baseline' status" "kubectl ippool verify (baseline)|'$baseline' verify; true")
fi
if [ "${BENCH_SKIP_REFERENCES:-0}" != 1 ]; then
  cmds+=(
    "calicoctl ipam show --show-blocks|'$calicoctl' ipam show --show-blocks --allow-version-mismatch"
    "calicoctl ipam check|'$calicoctl' ipam check --allow-version-mismatch"
    "kubectl get pods -A -o json|'$kubectl' get pods -A -o json"
  )
fi
mapfile -t results < <(measure_rounds "${cmds[@]}")
status_floor="$(min "$(field 'floor, paged' 2)" "$(field 'floor, cached' 2)")"
verify_floor="$(min "$(field 'floor, paged (verify)' 2)" "$(field 'floor, cached (verify)' 2)")"

echo
echo "### Read path: $nodes nodes, $pods pods (median of $runs rounds, peak RSS over them)"
echo
echo "Floor: the objects the verb reads (status: pods, IP pools, IPAM blocks, block affinities, nodes,"
echo "namespaces; verify adds IPAM handles, workloads and sandbox-failure events) fetched by curl,"
echo "all kinds at once, bytes thrown away: paged (limit 500) or one LIST per kind from the watch cache."
echo
echo "| command | wall (s) | CPU (s, user + system) | peak RSS (MiB) | vs the faster floor |"
echo "|---|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  IFS='|' read -r l w m _ c <<<"$r"
  case "$l" in
    floor*) vs="" ;;
    *status*) vs="$(ratio "$w" "$status_floor")" ;;
    *verify*) vs="$(ratio "$w" "$verify_floor")" ;;
    *) vs="" ;;
  esac
  case "$l" in floor*) m="" ;; *) m="$(awk -v m="$m" 'BEGIN{printf "%.1f", m/1024}')" ;; esac
  case "$l" in floor*) l="$l" ;; *) l="\`$l\`" ;; esac
  echo "| $l | $w | $c | $m | $vs |"
done
growth_rows+=("$pods|$(field 'kubectl ippool status' 2)|$(field 'kubectl ippool status' 3)|$(field 'kubectl ippool verify' 2)|$(field 'kubectl ippool verify' 3)|$(field 'floor, cached' 2)|$(field 'floor, cached (verify)' 2)|$(field 'kubectl ippool status' 4)|$(field 'kubectl ippool verify' 4)|$(field 'kubectl ippool status' 5)|$(field 'kubectl ippool verify' 5)")
[ -n "${BENCH_KUBECONFIG:-}" ] || KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >&2

echo
echo "### Growth: $nodes nodes (median of $runs rounds; per 1 000 pods: wall / (pods/1000); RSS and heap added per pod since the previous size)"
echo
echo "Heap: bytes the verb holds once everything is read (glibc's count, src/heap.rs); what it adds per pod from one size to the next is the memory each pod costs."
echo
echo "| pods | status (s) | s per 1 000 pods | vs cached floor | CPU (s) | peak RSS (MiB) | MiB added per 1 000 pods | heap (MiB) | heap bytes per pod | verify (s) | s per 1 000 pods | vs cached floor | CPU (s) | peak RSS (MiB) | MiB added per 1 000 pods | heap (MiB) | heap bytes per pod |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
prev=""
for row in "${growth_rows[@]}"; do
  IFS='|' read -r n sw sm vw vm sf vf sh vh sc vc <<<"$row"
  awk -v n="$n" -v sw="$sw" -v sm="$sm" -v vw="$vw" -v vm="$vm" -v sf="$sf" -v vf="$vf" -v sh="$sh" -v vh="$vh" \
    -v sc="$sc" -v vc="$vc" -v prev="$prev" 'BEGIN{
    split(prev, p, " "); k=n/1000
    ds = (prev=="") ? "" : sprintf("%.2f", (sm-p[2])/1024/((n-p[1])/1000));
    dv = (prev=="") ? "" : sprintf("%.2f", (vm-p[3])/1024/((n-p[1])/1000));
    hs = (prev=="" || sh==0) ? "" : sprintf("%.0f", (sh-p[4])/(n-p[1]));
    hv = (prev=="" || vh==0) ? "" : sprintf("%.0f", (vh-p[5])/(n-p[1]));
    printf "| %d | %.2f | %.3f | %.2fx | %.2f | %.1f | %s | %.1f | %s | %.2f | %.3f | %.2fx | %.2f | %.1f | %s | %.1f | %s |\n",
      n, sw, sw/k, sw/sf, sc, sm/1024, ds, sh/1048576, hs, vw, vw/k, vw/vf, vc, vm/1024, dv, vh/1048576, hv }'
  prev="$n $sm $vm $sh $vh"
done
fi

if [ "${BENCH_SKIP_MIGRATE:-0}" != 1 ]; then
  # One bench cluster per size; kubesim's nodes take 1 000 pods each, so
  # the node count grows with the size (100 pods a node, at least 3).
  sizes="${BENCH_MIGRATE_PODS:-$((deployments * replicas)) 3000 10000}"
  # BENCH_PARALLEL: a --max-parallel cap (default: none, as the tool's own default).
  par="${BENCH_PARALLEL:-}"
  per_ns="${BENCH_PER_NAMESPACE:-100}"
  flags="default flags"
  [ -z "$par" ] || flags="--max-parallel $par"
  delay_s="$(echo "$delay" | sed 's/s$//')"
  export KUBECONFIG="$work/cluster/kubeconfig"
  migrate_rows=()
  mix=()
  shape="Deployments x $replicas replicas, PDB maxUnavailable 1 each"
  if [ "${BENCH_MIX:-0}" = 1 ]; then
    mix=(--bench-mix)
    shape="workloads x $replicas replicas (--bench-mix: 1 in 10 a StatefulSet, 2 in 10 Deployments in pairs under one PDB, the rest Deployments under their own PDB, maxUnavailable 1; plus a DaemonSet, 10% at a time, no PDB)"
  fi
  if [ "$per_ns" -gt 0 ]; then shape="$shape, $per_ns workloads a namespace"; else shape="$shape, all in one namespace"; fi
  for n in $sizes; do
    deps=$(( n / replicas ))
    mnodes="${BENCH_MIGRATE_NODES:-$(( n / 100 > 3 ? n / 100 : 3 ))}"
    echo "bench: starting the bench scenario ($mnodes nodes, $deps Deployments x $replicas, ready after $delay)..." >&2
    prof=""
    pprof=()
    if [ -n "${BENCH_PROFILE:-}" ]; then
      prof="$BENCH_PROFILE/$n"
      mkdir -p "$prof"
      pport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
      pprof=(--pprof-addr "127.0.0.1:$pport")
    fi
    t0=$(date +%s)
    KUBESIM_DIR="$work/cluster" KUBESIM_TIMEOUT=2400 scripts/cluster-up.sh --scenario bench --nodes "$mnodes" --dataplane=false \
      --deployments "$deps" --replicas "$replicas" --readiness-delay "$delay" --bench-per-namespace "$per_ns" ${mix[@]+"${mix[@]}"} ${pprof[@]+"${pprof[@]}"} >&2
    started=$(( $(date +%s) - t0 ))
    echo "bench: cluster ready in ${started}s" >&2
    migrate=("$ippool" migrate --from default-ipv4-ippool --to 10.0.0.0/16 --yes --force ${par:+--max-parallel "$par"})
    # Lower bound, as the budgets allow it: each workload needs
    # ceil(pods / what its PDB allows at once) waves, workloads under one PDB
    # go one after another, every lane at once (or P at a time) within
    # --max-unavailable, and every wave waits at least the readiness delay.
    # The plan computes exactly these rounds.
    "${migrate[@]}" --dry-run -o json >"$work/plan.json" 2>"$work/plan.log" || { tail -20 "$work/plan.log" >&2; exit 1; }
    read -r rounds lanes cap < <(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["estimate"]; print(e["rounds"], e["parallel"], e.get("maxUnavailable", "-"))' "$work/plan.json")
    # The disruption controller's own count of every PDB, watched throughout.
    # A watch the server ends (an hour-long run outlives one) is started again;
    # the script counts every restart and every ERROR event it saw.
    rm -f "$work/pdb-stop"
    (
      while [ ! -e "$work/pdb-stop" ]; do
        "$kubectl" get pdb -A -w --output-watch-events -o json 2>/dev/null
        [ -e "$work/pdb-stop" ] || echo '{"type": "RESTART"}'
      done
    ) | python3 scripts/pdb-floor-watch.py >"$work/pdb.json" &
    pdbwatch=$!
    if [ -n "$prof" ]; then
      "$kubectl" get --raw /metrics >"$prof/metrics-before.txt"
      curl -s "http://127.0.0.1:$pport/debug/pprof/profile?seconds=${BENCH_PROFILE_SECONDS:-120}" -o "$prof/cpu.pprof" &
      profiler=$!
    fi
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M %U %S" -o "$work/t" "${migrate[@]}" -o json >"$work/migrate.json" 2>"$work/migrate.log" ||
      { tail -20 "$work/migrate.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    sleep 5 # let the controller's last status updates arrive
    touch "$work/pdb-stop"
    pkill -f "get pdb -A -w" || true
    wait "$pdbwatch" || true
    if [ -n "$prof" ]; then
      "$kubectl" get --raw /metrics >"$prof/metrics-after.txt"
      "$kubectl" get pods -A -o json >"$prof/pods.json"
      python3 scripts/pod-startup.py "$prof/pods.json" bench >"$prof/startup.md" || true
      wait "$profiler"
      PATH="$PATH:/usr/local/go/bin" go tool pprof -traces "$root/target/kubesim/kubesim" "$prof/cpu.pprof" 2>/dev/null |
        python3 scripts/kubesim-profile-shares.py - >"$prof/shares.md"
      cp "$work/migrate.log" "$prof/"
    fi
    row="$(python3 - "$work/migrate.json" "$work/pdb.json" "$work/t" "$t0" "$t1" "$rounds" "$delay_s" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
pdb = json.load(open(sys.argv[2]))
rss_kib, user, system = open(sys.argv[3]).read().split()[-3:]
wall = float(sys.argv[5]) - float(sys.argv[4])
rounds, delay = int(sys.argv[6]), float(sys.argv[7])
bound = rounds * delay
pods = max(summary["podsMoved"], 1)
est = summary.get("estimateSeconds")
print("|".join([
    f'{wall:.0f}', f'{bound:.0f}', f'{wall / bound:.2f}x',
    f'{summary["movingSeconds"]:.0f}', "-" if est is None else f'{est:.0f} ({est / summary["movingSeconds"]:.2f})',
    f'{summary["apiRequests"] / pods:.2f}', f'{summary["apiWrites"] / pods:.2f}',
    f'{int(rss_kib) / 1024:.0f}', f'{float(user) + float(system):.1f}',
    f'{pdb["evaluated"]}/{pdb["pdbs"]}, {pdb["floorsCrossed"]}'
    + (f' ({pdb["restarts"]} watch restarts, {pdb["errors"]} watch errors)' if pdb["restarts"] or pdb["errors"] else ''),
]))
PY
)"
    migrate_rows+=("$n|$mnodes|$started|$lanes, $cap|$row")
    echo "bench: row: ${migrate_rows[-1]}" >&2
    grep -E "API requests|Moving pods took" "$work/migrate.log" >&2 || true
    KUBESIM_DIR="$work/cluster" scripts/cluster-down.sh >&2
  done
  echo
  echo "### Migrate growth: $shape, readiness delay $delay, $flags"
  echo
  echo "Bound: the rounds the plan computes (every lane at once within --max-unavailable) x the readiness delay. Estimate: the plan's, beside the measured time moving pods (ratio). RSS and CPU: the kubectl-ippool process. PDBs: evaluated/watched by the disruption controller throughout, floors crossed."
  echo
  echo "| pods | nodes | kubesim start s | lanes, max down | migrate wall s | bound s | ratio | moving s | estimate s (ratio) | requests/pod | writes/pod | peak RSS MiB | CPU s | PDBs, floors crossed |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for r in "${migrate_rows[@]}"; do echo "| ${r//|/ | } |"; done
fi
