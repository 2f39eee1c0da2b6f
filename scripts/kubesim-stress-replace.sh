#!/usr/bin/env bash
# Stress check for pod replacement (StatefulSet same-name pods) vs IPAM bookkeeping.
# Starts its own kubesim (seed scenario) in a private dir, then N times:
#   kubectl delete pods -n shop --all --wait=false
#   wait until every pod in shop is Running with an IP (and none is terminating)
#   calicoctl ipam check  -> must report 0 problems
# Usage: scripts/kubesim-stress-replace.sh [iterations=10]
# Env: KUBESIM_DIR (default: mktemp), KUBESIM_KEEP=1 keeps the cluster running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-10}"
export KUBESIM_DIR="${KUBESIM_DIR:-$(mktemp -d /tmp/kubesim-stress.XXXXXX)}"
"$root/scripts/cluster-up.sh" --scenario seed --nodes 3 >/dev/null
cleanup() { [ "${KUBESIM_KEEP:-0}" = 1 ] || "$root/scripts/cluster-down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
export KUBECONFIG="$KUBESIM_DIR/kubeconfig"
kc="$root/target/kubesim/kubectl"
cc="$root/target/kubesim/calicoctl"
fail=0
for i in $(seq 1 "$n"); do
  old="$("$kc" get pod -n shop db-0 -o jsonpath='{.metadata.uid} {.spec.nodeName}' 2>/dev/null || true)"
  "$kc" delete pods -n shop --all --wait=false >/dev/null
  deadline=$(( $(date +%s) + 90 ))
  while :; do
    # every non-finished pod Running with an IP, no deletionTimestamp, and db-0 replaced
    bad="$("$kc" get pods -n shop -o go-template='{{range .items}}{{if and (ne .status.phase "Succeeded") (ne .status.phase "Failed")}}{{if or .metadata.deletionTimestamp (ne .status.phase "Running") (not .status.podIP)}}{{.metadata.name}} {{end}}{{end}}{{end}}' 2>/dev/null || echo err)"
    new="$("$kc" get pod -n shop db-0 -o jsonpath='{.metadata.uid} {.spec.nodeName}' 2>/dev/null || true)"
    sts="$("$kc" get sts -n shop db -o jsonpath='{.status.readyReplicas}/{.spec.replicas}' 2>/dev/null || true)"
    if [ -z "$bad" ] && [ -n "$new" ] && [ "${new%% *}" != "${old%% *}" ] && [ "${sts%/*}" = "${sts#*/}" ]; then break; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "iter $i: pods not Running after 90s: $bad (sts $sts)"; fail=1; break; fi
    sleep 0.5
  done
  sleep "${KUBESIM_SETTLE:-2}" # let late delete events of the old pods run before checking
  out="$(DATASTORE_TYPE=kubernetes "$cc" ipam check 2>&1 || true)"
  probs="$(printf '%s\n' "$out" | sed -n 's/.*[Ff]ound \([0-9]*\) problems.*/\1/p' | tail -1)"
  printf 'iter %2d: db-0 %s -> %s; ipam check problems: %s\n' "$i" "${old:-?}" "${new:-?}" "${probs:-?}"
  if [ "${probs:-x}" != 0 ]; then printf '%s\n' "$out" | grep -E '^Found [1-9]|problems|^  ' | head -20; fail=1; fi
done
[ "$fail" = 0 ] && echo "kubesim-stress-replace: OK ($n iterations)" || { echo "kubesim-stress-replace: FAILED (log $KUBESIM_DIR/kubesim.log)"; exit 1; }
