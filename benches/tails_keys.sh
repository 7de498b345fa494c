#!/usr/bin/env bash
# Write tails against the number of distinct keys: for each key count, a fresh three-node
# cluster is loaded with every key (the get workload's load phase), then 100 writes in flight
# over those keys run for DURATION seconds. Prints throughput, p99/p99.9/max, and from the
# leader's /metrics the snapshots taken during the measurement (count and longest
# serialization, during which the shard serves nothing), the executor's worst probe delay, and
# the largest resident memory of a node after the run (with bytes per key).
#
# Usage: benches/tails_keys.sh [BIN...]   (default: ${CARGO_TARGET_DIR:-target}/release/ringraft)
#   With several binaries (a baseline and a candidate), each key count runs every binary in turn,
#   so drifting load on a shared box hits them alike.
# Environment: KEYS ["10000 1000000"], DURATION [15] s, BASE_PORT [19600], OUT [/tmp/tails-<stamp>].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RR_SCRIPT=tails_keys.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
case "${1:-}" in -h | --help) sed -n '2,12p' "$0"; exit 0 ;; esac
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("${CARGO_TARGET_DIR:-$ROOT/target}/release/ringraft")
KEYS=${KEYS:-"10000 1000000"}
DURATION=${DURATION:-15}
BASE_PORT=${BASE_PORT:-19600}
OUT=${OUT:-/tmp/tails-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
command -v jq >/dev/null || rr_die "jq is required"
RR_WORK=$(mktemp -d /tmp/ringraft-tails.XXXXXX)
RR_PIDS=()
save_logs() { for f in "$RR_WORK"/n*.out; do [[ -f $f ]] && cp "$f" "$OUT/last-$(basename "$f")"; done; }
RR_CLEANUP_HOOKS=(save_logs)
trap 'rr_cleanup' EXIT INT TERM

metric() { # FILE NAME: sum of the samples of NAME (no labels beyond node/core)
  awk -v n="$2" '$1 ~ "^"n"\\{" { s += $2 } END { print s + 0 }' "$1"
}
top_bucket() { # BEFORE AFTER HISTOGRAM: the smallest le whose cumulative count is the total,
  # counting only the samples taken between the two files (the largest seen in the run)
  awk -v n="$3" '
    $1 ~ "^"n"_bucket\\{" { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
      if (FILENAME == ARGV[1]) { c[le] -= $2 } else { c[le] += $2; order[++k] = le } }
    END { tot = c["+Inf"]; for (i = 1; i <= k; i++) { le = order[i]; if (!(le in seen)) { seen[le] = 1; if (c[le] >= tot && tot > 0) { print le; exit } } } print 0 }' "$1" "$2"
}

echo "| binary | distinct keys | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | snapshots | longest snapshot take on the executor ≤ s | worst executor probe delay ≤ s | max node RSS MiB (B/key) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for k in $KEYS; do
for bi in "${!BINS[@]}"; do
  RR_BIN=${BINS[$bi]}
  rm -rf "$RR_WORK"/node* "$RR_WORK"/*.toml
  rr_start_cluster "$RR_WORK" 3 "$BASE_PORT" $((BASE_PORT + 100)) 1 1 Unbound 0
  rr_wait_leaders "$RR_EP" 1 20
  "$RR_BIN" --endpoints "$RR_EP" bench get --connections 4 --inflight 100 --key-space "$k" \
    --key-size 8 --value-size 256 --total 1 --warmup 0 --no-progress --json >/dev/null ||
    echo "(loading $k keys had failures: see above; the measurement runs anyway)" >&2
  leader=$(rr_leader_of_shard0 "$RR_EP")
  for i in 1 2 3; do
    curl -s "http://127.0.0.1:$((BASE_PORT + 100 + i))/metrics" >"$OUT/b$bi.k$k.n$i.before.prom" || true
  done
  "$RR_BIN" --endpoints "$RR_EP" bench put --connections 4 --inflight 100 --key-space "$k" \
    --key-size 8 --value-size 256 --duration "$DURATION" --warmup 1 --no-progress --json \
    >"$OUT/b$bi.k$k.json"
  for i in 1 2 3; do
    curl -s "http://127.0.0.1:$((BASE_PORT + 100 + i))/metrics" >"$OUT/b$bi.k$k.n$i.after.prom" || true
  done
  rss_kb=0
  for pid in "${RR_NODE_PIDS[@]}"; do
    r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((${r:-0} > rss_kb)) && rss_kb=$r
  done
  rss="$((rss_kb / 1024)) ($((rss_kb * 1024 / k)))"
  snaps=0 worst_snap=0 worst_delay=0
  for i in 1 2 3; do
    b=$(metric "$OUT/b$bi.k$k.n$i.before.prom" ringraft_snapshot_take_seconds_count)
    a=$(metric "$OUT/b$bi.k$k.n$i.after.prom" ringraft_snapshot_take_seconds_count)
    snaps=$((snaps + a - b))
    s=$(top_bucket "$OUT/b$bi.k$k.n$i.before.prom" "$OUT/b$bi.k$k.n$i.after.prom" ringraft_snapshot_take_seconds)
    d=$(top_bucket "$OUT/b$bi.k$k.n$i.before.prom" "$OUT/b$bi.k$k.n$i.after.prom" ringraft_executor_wakeup_delay_seconds)
    worst_snap=$(awk -v x="$worst_snap" -v y="$s" 'BEGIN { print (y + 0 > x + 0) ? y : x }')
    worst_delay=$(awk -v x="$worst_delay" -v y="$d" 'BEGIN { print (y + 0 > x + 0) ? y : x }')
  done
  elections=0
  for i in 1 2 3; do
    e=$(grep -c "Became leader" "$RR_WORK/n$i.out" || true)
    elections=$((elections + e))
    cp "$RR_WORK/n$i.out" "$OUT/b$bi.k$k.n$i.out"
  done
  echo "($k keys: $elections leader election(s) won since start, load included)" >&2
  jq -r --arg bin "$RR_BIN" --arg k "$k" --arg s "$snaps" --arg ws "$worst_snap" --arg wd "$worst_delay" --arg rss "$rss" \
    '"| \($bin) | \($k) | \(.ops_per_s) | \(.p50_us) | \(.p99_us) | \(.p999_us) | \(.max_us) | \($s) (all nodes) | \($ws) | \($wd) | \($rss) |"' \
    "$OUT/b$bi.k$k.json" | tee -a "$OUT/table.md"
  rr_stop_pids
  RR_PIDS=()
done
done
echo "(leader of shard 0 in the last run: ${leader:-?}; the snapshot and delay columns count the measurement only; files in $OUT)"
