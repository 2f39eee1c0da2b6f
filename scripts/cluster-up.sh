#!/usr/bin/env bash
# Starts the kubesim test cluster in the background and waits until it is ready.
# Usage: scripts/cluster-up.sh [kubesim flags...]   e.g. --scenario kops --nodes 5
# Env: KUBESIM_DIR (default .kubesim), KUBESIM_TIMEOUT (seconds, default 120),
#      KUBESIM_BIN (binary to run, default target/kubesim/kubesim).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build-kubesim.sh"
dir="${KUBESIM_DIR:-.kubesim}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
timeout="${KUBESIM_TIMEOUT:-120}"
if [ -f "$dir/kubesim.pid" ] && kill -0 "$(cat "$dir/kubesim.pid")" 2>/dev/null; then
  echo "cluster-up: kubesim already running (pid $(cat "$dir/kubesim.pid")); run scripts/cluster-down.sh first" >&2
  exit 1
fi
rm -f "$dir/ready" "$dir/kubesim.pid"
start=$(date +%s.%N)
nohup "${KUBESIM_BIN:-$root/target/kubesim/kubesim}" --dir "$dir" "$@" >"$dir/kubesim.log" 2>&1 </dev/null &
pid=$!
echo "cluster-up: kubesim pid $pid, log $dir/kubesim.log"
deadline=$(( $(date +%s) + timeout ))
while [ ! -f "$dir/ready" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "cluster-up: kubesim exited before becoming ready; last log lines:" >&2
    tail -n 30 "$dir/kubesim.log" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "cluster-up: not ready after ${timeout}s; last log lines:" >&2
    tail -n 30 "$dir/kubesim.log" >&2
    exit 1
  fi
  sleep 0.2
done
end=$(date +%s.%N)
printf 'cluster-up: ready in %.1fs\n' "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end-$start)")"
echo "export KUBECONFIG=$dir/kubeconfig"
echo "# kubectl:   $root/target/kubesim/kubectl get pods -A"
echo "# calicoctl: DATASTORE_TYPE=kubernetes KUBECONFIG=$dir/kubeconfig $root/target/kubesim/calicoctl ipam check"
