#!/usr/bin/env bash
# Stops the kubesim started by cluster-up.sh (pid file) and removes its directory.
set -euo pipefail
dir="${KUBESIM_DIR:-.kubesim}"
if [ -f "$dir/kubesim.pid" ]; then
  pid="$(cat "$dir/kubesim.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster-down: pid $pid did not stop after 20s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
fi
# Network namespaces of --dataplane: kubesim removes them on exit; after a SIGKILL they remain.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$root/target/kubesim/kubesim" ] && [ -d /run/netns ]; then
  "$root/target/kubesim/kubesim" sweep --dir "$dir" || true
fi
rm -rf "$dir"
echo "cluster-down: stopped and removed $dir"
