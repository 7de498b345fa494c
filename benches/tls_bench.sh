#!/usr/bin/env bash
# TLS cost, measured: the same client workloads on a fresh plaintext 3-node cluster and on a
# fresh mutual-TLS 3-node cluster (certificates from `ringraft certs`), one after the other in
# the same run on the same machine, through `ringraft bench` (frame protocol; under TLS with an
# admin client certificate). Writes benches/reports/tls-node.md (median of RUNS runs per case).
#
# Settings (environment): RUNS (default 3), DURATION seconds per run (default 5), WARMUP
# (default 1), RINGRAFT_BIN (prebuilt binary; otherwise `cargo build --release`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${RINGRAFT_BIN:-$TARGET_DIR/release/ringraft}
OUT=$ROOT/benches/reports/tls-node.md
WORK=$(mktemp -d /tmp/ringraft-tls-bench.XXXXXX)
PIDS=()

stop_pids() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap 'stop_pids; rm -rf "$WORK"' EXIT

if [[ -z "${RINGRAFT_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release --bin ringraft)
fi
"$BIN" certs --out "$WORK/certs" --cluster-id 1 --nodes 1,2,3 --clients bench:admin >/dev/null

EP=127.0.0.1:9081,127.0.0.1:9082,127.0.0.1:9083
start_cluster() { # mode: plain | tls
  local mode=$1
  rm -rf "$WORK/db" "$WORK/logs"
  for i in 1 2 3; do
    sed -e "s#^db_root_dir = .*#db_root_dir = \"$WORK/db\"#" \
        -e "s#^log_dir = .*#log_dir = \"$WORK/logs\"#" "$ROOT/config/n$i.toml" >"$WORK/n$i.toml"
    if [[ $mode == tls ]]; then
      printf '\n[security]\nca_file = "%s"\ncert_file = "%s"\nkey_file = "%s"\n' \
        "$WORK/certs/ca.crt" "$WORK/certs/node-$i.crt" "$WORK/certs/node-$i.key" >>"$WORK/n$i.toml"
    fi
    "$BIN" server --config "$WORK/n$i.toml" >"$WORK/n$i.$mode.out" 2>&1 &
    PIDS+=($!)
  done
  for t in $(seq 1 100); do
    if curl -s -m 1 http://127.0.0.1:8081/status http://127.0.0.1:8082/status \
        http://127.0.0.1:8083/status 2>/dev/null | grep -q '"role":"Leader"'; then
      return 0
    fi
    [[ $t == 100 ]] && { echo "tls_bench.sh: no leader ($mode)" >&2; cat "$WORK"/n*."$mode".out >&2; exit 1; }
    sleep 0.2
  done
}

CASES=(
  "write-1|put --connections 1 --inflight 1"
  "write-100|put --connections 4 --inflight 100"
  "read-linearizable-100|get --consistency linearizable --connections 4 --inflight 100"
)

# Plaintext and TLS alternate run by run (a fresh cluster each time), so drift in the machine's
# load hits both alike.
for r in $(seq 1 "$RUNS"); do
  for mode in plain tls; do
    start_cluster "$mode"
    if [[ $mode == tls ]]; then
      export RINGRAFT_TLS_CA=$WORK/certs/ca.crt RINGRAFT_TLS_CERT=$WORK/certs/client-bench.crt \
        RINGRAFT_TLS_KEY=$WORK/certs/client-bench.key
    fi
    for c in "${CASES[@]}"; do
      IFS='|' read -r name args <<<"$c"
      echo "== $mode $name (run $r/$RUNS)"
      # shellcheck disable=SC2086
      "$BIN" --endpoints "$EP" bench $args --key-size 8 --value-size 256 --duration "$DURATION" \
        --warmup "$WARMUP" --no-progress --json | tail -1 >>"$WORK/$name.$mode.jsonl"
    done
    unset RINGRAFT_TLS_CA RINGRAFT_TLS_CERT RINGRAFT_TLS_KEY
    stop_pids
  done
done

declare -A RESULT
for c in "${CASES[@]}"; do
  IFS='|' read -r name _ <<<"$c"
  for mode in plain tls; do
    RESULT[$name.$mode]=$(jq -s -r 'sort_by(.ops_per_s) | .[(length - 1) / 2 | floor]
      | "\(.ops_per_s | floor) | \(.p50_us | floor) | \(.p99_us | floor)"' "$WORK/$name.$mode.jsonl")
  done
done

{
  echo "# TLS cost (benches/tls_bench.sh, make bench-tls)"
  echo
  echo "Same machine, same run: fresh plaintext and mutual-TLS 3-node clusters, alternating run by run;"
  echo "8-byte keys, 256-byte values, DiskFirst, median of $RUNS runs of ${DURATION} s."
  echo "Date: $(date -u +%Y-%m-%dT%H:%MZ), host: $(nproc) cores."
  echo
  echo "| case | plaintext ops/s | p50 µs | p99 µs | TLS ops/s | p50 µs | p99 µs |"
  echo "|---|---|---|---|---|---|---|"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name _ <<<"$c"
    echo "| $name | ${RESULT[$name.plain]} | ${RESULT[$name.tls]} |"
  done
} | tee "$OUT"
