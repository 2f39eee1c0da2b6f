#!/usr/bin/env bash
# make faults: the reliability suite with more crash trials.
#   tests/bad_inputs.rs  one seed cluster, a table of bad inputs: exit 2, clear error, nothing written
#   tests/faults_e2e/  SIGKILL once at every phase boundary and inside the delete step (the run
#                        pauses at the point, KUBECTL_IPPOOL_PAUSE_AT), then seeded random points or
#                        delays + resume, a concurrent
#                        pool editor, API errors and an outage through kubesim's fault proxy,
#                        Ctrl-C cleanup of the canary and of verify --probe; every migration on
#                        the realistic scenario, watched by BudgetWatch (PDB floors, Services at 0)
# FAULT_TRIALS (default 20 here; 10 in `make test`, one per kill point; fewer is refused) and
# FAULT_SEED (default: time-based, printed) are passed through. Prints every RELIABILITY line and one summed line for the README table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export FAULT_TRIALS="${FAULT_TRIALS:-20}"
scripts/build-kubesim.sh
cargo build --tests --locked 2>&1 | tail -1

log="${FAULTS_LOG:-$root/target/faults.log}"
: > "$log"
status=0
start=$(date +%s)
cargo test --locked --test bad_inputs -- --nocapture 2>&1 | tee -a "$log" | grep -E '^(test |bad inputs tried|RELIABILITY)' || status=1
cargo test --locked --test faults_e2e -- --test-threads=1 --nocapture 2>&1 | tee -a "$log" | grep -E '^(test |trial |kills per phase|crash trials took|FAULT_SEED|fault proxy|concurrent editor|run [0-9]+ failed|RELIABILITY)' || status=1
grep -qE '^test result: FAILED|^error: test failed' "$log" && status=1

echo
echo "== reliability summary ($(( $(date +%s) - start ))s, FAULT_TRIALS=$FAULT_TRIALS) =="
grep -o 'RELIABILITY.*' "$log" | awk '
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "test" && kv[1] != "seed") sum[kv[1]] += kv[2] } }
  /test=/ { for (i = 2; i <= NF; i++) if ($i ~ /^seed=/) seeds = seeds " " substr($i, 6) }
  END {
    printf "RELIABILITY trials=%d failed_trials=%d not_run=%d crashes_survived=%d faults_injected=%d reruns=%d concurrent_edits=%d interrupts_cleaned=%d bad_inputs=%d data_lost=%d pods_left_behind=%d pdb_floor_violations=%d services_at_zero=%d\n",
      sum["trials"], sum["failed_trials"], sum["not_run"], sum["crashes_survived"], sum["faults_injected"], sum["reruns"], sum["concurrent_edits"], sum["interrupts_cleaned"], sum["bad_inputs"], sum["data_lost"], sum["pods_left_behind"], sum["pdb_floor_violations"], sum["services_at_zero"]
    printf "seeds:%s\n", seeds
  }'
if [ "$status" -ne 0 ]; then
  echo "FAILED: full output in $log (replay a run with FAULT_SEED=<seed>)"
fi
exit "$status"
