#!/usr/bin/env bash
# A/B of the write path: two ringraft binaries, each on a fresh three-node cluster, alternated
# ROUNDS times (A, B, A, B, ...) so drifting load on a shared box hits both alike; each round runs
# write-1 (one write in flight) and write-100 (4 connections, 100 in flight) and records
# throughput, latency percentiles and the CPU time per write of each node (/proc/<pid>/stat,
# measured phase only). Prints every run and then the medians per binary and case.
#
# Usage: benches/ab_write.sh A_BIN B_BIN
# Environment (defaults in brackets): ROUNDS [3], DURATION [5] s measured, WARMUP [1] s,
#   BASE_PORT [19500], KEY_SPACE [10000] distinct keys, CASES ["write-1 write-100"],
#   OUT [/tmp/ab-write-<stamp>] (JSON lines, and B's --breakdown tables when B has it),
#   A_STRATEGY / B_STRATEGY [DiskFirst] the persistence strategy of each side's cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RR_SCRIPT=ab_write.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
case "${1:-}" in -h | --help | "") sed -n '2,12p' "$0"; exit 0 ;; esac
A_BIN=$1
B_BIN=${2:?two binaries}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
BASE_PORT=${BASE_PORT:-19500}
KEY_SPACE=${KEY_SPACE:-10000}
CASES=${CASES:-"write-1 write-100"}
OUT=${OUT:-/tmp/ab-write-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
command -v jq >/dev/null || rr_die "jq is required"
RR_WORK=$(mktemp -d /tmp/ringraft-ab.XXXXXX)
RR_PIDS=()
trap 'rr_cleanup' EXIT INT TERM

args_of() {
  case $1 in
    write-1) echo "put --connections 1 --inflight 1" ;;
    write-100) echo "put --connections 4 --inflight 100" ;;
    *) rr_die "unknown case $1" ;;
  esac
}

one_side() { # label binary round
  local label=$1 bin=$2 round=$3 c extra
  RR_BIN=$bin
  if [[ $label == A ]]; then STRATEGY=${A_STRATEGY:-DiskFirst}; else STRATEGY=${B_STRATEGY:-DiskFirst}; fi
  rm -rf "$RR_WORK"/node* "$RR_WORK"/*.toml
  rr_start_cluster "$RR_WORK" 3 "$BASE_PORT" $((BASE_PORT + 100)) 1 1 Unbound 0
  rr_wait_leaders "$RR_EP" 1 20
  local pids
  pids=$(IFS=,; echo "${RR_NODE_PIDS[*]}")
  for c in $CASES; do
    extra=()
    if "$bin" bench --help 2>/dev/null | grep -q -- --breakdown; then
      extra=(--breakdown "$OUT/$label.$c.$round.breakdown.md")
    fi
    local before after
    before=$(rr_cpu_us_list "${RR_NODE_PIDS[@]}")
    # shellcheck disable=SC2046
    "$bin" --endpoints "$RR_EP" bench $(args_of "$c") --key-size 8 --value-size 256 \
      --key-space "$KEY_SPACE" --duration "$DURATION" --warmup "$WARMUP" --no-progress --json \
      --cpu-pids "$pids" "${extra[@]}" >"$RR_WORK/run.json"
    after=$(rr_cpu_us_list "${RR_NODE_PIDS[@]}")
    tail -1 "$RR_WORK/run.json" | rr_split_by_node "$before" "$after" |
      jq -c --arg bin "$label" --arg case "$c" --argjson round "$round" \
        '. + {bin: $bin, case: $case, round: $round}' | tee -a "$OUT/runs.jsonl"
  done
  rr_stop_pids
  RR_PIDS=()
}

echo "== A: $A_BIN"
echo "== B: $B_BIN"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT/runs.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  one_side A "$A_BIN" "$r"
  one_side B "$B_BIN" "$r"
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | bin | runs | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | node CPU µs/write | per node |"
echo "|---|---|---|---|---|---|---|---|---|---|"
jq -s -r '
  def med(f): (map(f) | sort) as $v | $v[(($v | length) - 1) / 2 | floor];
  group_by([.case, .bin])[] |
  "| \(.[0].case) | \(.[0].bin) | \(length) | \(med(.ops_per_s)) | \(med(.p50_us)) | \(med(.p99_us)) | \(med(.p999_us)) | \(med(.max_us)) | \(med(.node_cpu_us_per_op)) | \(
     [range(0; (.[0].node_cpu_us_per_op_by_node // []) | length) as $i | med(.node_cpu_us_per_op_by_node[$i])] | map(tostring) | join(" / ")) |"
' "$OUT/runs.jsonl" | tee "$OUT/medians.md"
echo "== runs and breakdowns in $OUT"
