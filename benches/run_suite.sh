#!/usr/bin/env bash
# ringraft's standard benchmark suite (make bench-suite), and with --etcd the same workloads
# against a three-member etcd in the same run (make bench-etcd).
#
# Starts a fresh three-node ringraft cluster from config/n1.toml..n3.toml in a temporary
# directory (ports 9081-9083 and 8081-8083 must be free), runs the standard workloads with
# 8-byte keys and 256-byte values through `ringraft bench`, and writes
#   benches/reports/<version>/README.md     the table (medians of the runs, node CPU per request)
#   benches/reports/<version>/<case>.svg    latency by percentile per workload (etcd overlaid)
#   benches/reports/<version>/<case>.csv    the percentile distributions
#   benches/reports/<version>/results.jsonl every run's JSON line
# Every process it starts is tracked by PID and stopped at exit (SIGTERM, then SIGKILL).
#
# Environment: DURATION (s per run, default 10), WARMUP (s, default 2), RUNS (per case,
# default 1; the table shows the median by throughput), VERSION (report directory name),
# RINGRAFT_BIN (prebuilt binary), ETCD (etcd binary, default /usr/bin/etcd), ONLY (space-separated
# case names to run, default all). With a binary whose bench has --breakdown, every write case
# also records where the writes' time went on each node (the stage table of the median run lands
# in the report).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
WITH_ETCD=0
for arg in "$@"; do
  case "$arg" in
    --etcd) WITH_ETCD=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run_suite.sh: unknown argument $arg (use --etcd or --help)" >&2; exit 2 ;;
  esac
done

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-1}
ETCD=${ETCD:-/usr/bin/etcd}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${RINGRAFT_BIN:-$TARGET_DIR/release/ringraft}
CRATE_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo nogit)
VERSION=${VERSION:-$CRATE_VERSION-$GIT_REV}
OUT=$ROOT/benches/reports/$VERSION
WORK=$(mktemp -d /tmp/ringraft-suite.XXXXXX)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
PIDS=()

command -v jq >/dev/null || { echo "run_suite.sh: jq is required" >&2; exit 2; }

stop_pids() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() { stop_pids; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -z "${RINGRAFT_BIN:-}" ]]; then
  echo "== building ringraft (release)"
  (cd "$ROOT" && cargo build --release --bin ringraft)
fi
[[ -x "$BIN" ]] || { echo "run_suite.sh: no binary at $BIN" >&2; exit 2; }
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

# ---------------------------------------------------------------- ringraft cluster
for p in 9081 9082 9083 8081 8082 8083; do
  port_free "$p" || { echo "run_suite.sh: port $p is in use (a cluster running? make stop-cluster)" >&2; exit 2; }
done
echo "== starting a fresh 3-node ringraft cluster in $WORK"
NODE_PIDS=()
for i in 1 2 3; do
  (cd "$WORK" && exec "$BIN" server --config "$ROOT/config/n$i.toml" >"$WORK/n$i.out" 2>&1) &
  PIDS+=($!); NODE_PIDS+=($!)
done
EP=127.0.0.1:9081,127.0.0.1:9082,127.0.0.1:9083
for t in $(seq 1 100); do
  if "$BIN" --endpoints "$EP" status --json 2>/dev/null | jq -e '.shards | length > 0 and all(.leader != null)' >/dev/null; then
    break
  fi
  [[ $t == 100 ]] && { echo "run_suite.sh: no leader within 20 s; see $WORK/n*.out" >&2; cat "$WORK"/n*.out >&2; exit 1; }
  sleep 0.2
done
LEADER=$("$BIN" --endpoints "$EP" status --json | jq -r '.shards[0].leader_address')
HAS_BREAKDOWN=0
if "$BIN" bench --help 2>/dev/null | grep -q -- --breakdown; then HAS_BREAKDOWN=1; fi
CPU_PIDS=$(IFS=,; echo "${NODE_PIDS[*]}")
echo "   leader of shard 0: $LEADER"

# case name | ringraft bench arguments | etcd load arguments
CASES=(
  "write-1|put --connections 1 --inflight 1|--op put --connections 1 --inflight 1 --endpoints @LEADER@"
  "write-100|put --connections 4 --inflight 100|--op put --connections 10 --inflight 100"
  "read-linearizable|get --consistency linearizable --connections 4 --inflight 100|--op get --consistency linearizable --connections 10 --inflight 100"
  "read-lease|get --consistency lease --connections 4 --inflight 100|--op get --consistency serializable --connections 10 --inflight 100"
  "read-eventual|get --consistency eventual --connections 4 --inflight 100|--op get --consistency serializable --connections 10 --inflight 100"
  "hot-key|hot-key --consistency linearizable --connections 4 --inflight 100|--op hot-key --consistency linearizable --connections 10 --inflight 100"
)

median_line() { # file: JSON lines -> the line with the median ops_per_s
  jq -s -c 'sort_by(.ops_per_s) | .[(length - 1) / 2 | floor]' "$1"
}

for c in "${CASES[@]}"; do
  IFS='|' read -r name rargs _ <<<"$c"
  : > "$WORK/$name.ringraft.jsonl"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  for r in $(seq 1 "$RUNS"); do
    echo "== ringraft $name (run $r/$RUNS)"
    extra=()
    if [[ $name == write-* && $HAS_BREAKDOWN == 1 ]]; then
      extra=(--breakdown "$WORK/$name.breakdown.$r.md")
    fi
    cpu_before=$(rr_cpu_us_list "${NODE_PIDS[@]}")
    # shellcheck disable=SC2086
    "$BIN" --endpoints "$EP" bench $rargs --key-size 8 --value-size 256 \
      --duration "$DURATION" --warmup "$WARMUP" --no-progress --json --cpu-pids "$CPU_PIDS" \
      --percentiles "$WORK/$name.ringraft.$r.csv" "${extra[@]}" >"$WORK/run.json"
    cpu_after=$(rr_cpu_us_list "${NODE_PIDS[@]}")
    tail -1 "$WORK/run.json" | rr_split_by_node "$cpu_before" "$cpu_after" | tee -a "$WORK/$name.ringraft.jsonl"
  done
  line=$(median_line "$WORK/$name.ringraft.jsonl")
  echo "$line" | jq -c --arg case "$name" --arg system ringraft '. + {case: $case, system: $system}' >> "$OUT/results.jsonl"
  best=$(jq -s -r 'to_entries | sort_by(.value.ops_per_s) | .[(length - 1) / 2 | floor].key + 1' "$WORK/$name.ringraft.jsonl")
  cp "$WORK/$name.ringraft.$best.csv" "$OUT/$name.ringraft.csv"
  if [[ -f "$WORK/$name.breakdown.$best.md" ]]; then
    cp "$WORK/$name.breakdown.$best.md" "$OUT/$name.breakdown.md"
  fi
done
stop_pids

# ---------------------------------------------------------------- etcd cluster
if [[ $WITH_ETCD == 1 ]]; then
  ETCD_LOAD=$ROOT/benches/etcd/target/release/ringraft-etcd-load
  if [[ ! -x "$ETCD" ]]; then
    echo "run_suite.sh: etcd not installed ($ETCD); apt-get install -y etcd-server — skipping etcd" >&2
    WITH_ETCD=0
  else
    echo "== building the etcd load client (benches/etcd)"
    # Its own target directory, where ETCD_LOAD is looked for, whatever CARGO_TARGET_DIR says.
    (cd "$ROOT/benches/etcd" && CARGO_TARGET_DIR="$ROOT/benches/etcd/target" cargo build --release)
    for p in 23791 23792 23793 23801 23802 23803; do
      port_free "$p" || { echo "run_suite.sh: port $p is in use (etcd running?)" >&2; exit 2; }
    done
    echo "== starting a fresh 3-member etcd in $WORK/etcd"
    CL="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
    ETCD_PIDS=()
    for i in 1 2 3; do
      "$ETCD" --name e$i --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls http://127.0.0.1:2379$i --advertise-client-urls http://127.0.0.1:2379$i \
        --listen-peer-urls http://127.0.0.1:2380$i --initial-advertise-peer-urls http://127.0.0.1:2380$i \
        --initial-cluster "$CL" --initial-cluster-token ringraft-suite --initial-cluster-state new \
        --logger zap --log-outputs "$WORK/etcd-e$i.log" >"$WORK/etcd-e$i.out" 2>&1 &
      PIDS+=($!); ETCD_PIDS+=($!)
    done
    EEP=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
    ECTL="etcdctl --endpoints=$EEP"
    for t in $(seq 1 100); do
      ETCDCTL_API=3 $ECTL endpoint health >/dev/null 2>&1 && break
      [[ $t == 100 ]] && { echo "run_suite.sh: etcd did not become healthy" >&2; exit 1; }
      sleep 0.2
    done
    ELEADER=$(ETCDCTL_API=3 $ECTL endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint' | sed 's#http://##' | head -1)
    ECPU=$(IFS=,; echo "${ETCD_PIDS[*]}")
    for c in "${CASES[@]}"; do
      IFS='|' read -r name _ eargs <<<"$c"
      if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
      eargs=${eargs//@LEADER@/$ELEADER}
      [[ $eargs == *--endpoints* ]] || eargs="$eargs --endpoints $EEP"
      : > "$WORK/$name.etcd.jsonl"
      for r in $(seq 1 "$RUNS"); do
        echo "== etcd $name (run $r/$RUNS)"
        cpu_before=$(rr_cpu_us_list "${ETCD_PIDS[@]}")
        # shellcheck disable=SC2086
        "$ETCD_LOAD" $eargs --key-size 8 --value-size 256 --duration "$DURATION" --warmup "$WARMUP" \
          --percentiles "$WORK/$name.etcd.$r.csv" --cpu-pids "$ECPU" >"$WORK/run.json"
        cpu_after=$(rr_cpu_us_list "${ETCD_PIDS[@]}")
        tail -1 "$WORK/run.json" | rr_split_by_node "$cpu_before" "$cpu_after" | tee -a "$WORK/$name.etcd.jsonl"
      done
      line=$(median_line "$WORK/$name.etcd.jsonl")
      echo "$line" | jq -c --arg case "$name" --arg system etcd '. + {case: $case, system: $system}' >> "$OUT/results.jsonl"
      best=$(jq -s -r 'to_entries | sort_by(.value.ops_per_s) | .[(length - 1) / 2 | floor].key + 1' "$WORK/$name.etcd.jsonl")
      cp "$WORK/$name.etcd.$best.csv" "$OUT/$name.etcd.csv"
    done
    stop_pids
  fi
fi

# ---------------------------------------------------------------- report
echo "== writing $OUT"
RUN_CASES=()
for c in "${CASES[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  RUN_CASES+=("$c")
done
CASES=("${RUN_CASES[@]}")
for c in "${CASES[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  args=(--svg "$OUT/$name.svg" --title "$name: latency by percentile" --plot-series "ringraft=$OUT/$name.ringraft.csv")
  [[ -f "$OUT/$name.etcd.csv" ]] && args+=(--plot-series "etcd=$OUT/$name.etcd.csv")
  "$BIN" bench "${args[@]}"
done
{
  echo "# ringraft benchmark suite — $VERSION"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, 3 nodes and the client on loopback, DiskFirst, 8-byte keys,"
  echo "256-byte values, ${DURATION} s measured after ${WARMUP} s warmup, median of $RUNS run(s) by throughput."
  echo "Closed loop; latencies in µs from hdrhistogram. Node CPU = CPU time of all three server"
  echo "processes together per successful request during the measurement (at low request rates"
  echo "it is dominated by idle work: heartbeats, ticks). Per node: that figure split over the"
  echo "processes by each one's share of the CPU time (/proc/<pid>/stat) it used during the whole run,"
  echo "warmup included."
  echo "Load average when the suite started:"
  echo "$LOAD_AT_START (anything above 0 means other work shared the 2 cores)."
  echo
  echo "| case | system | consistency | conns | in flight | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors | node CPU µs/op | per node (1 / 2 / 3) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r '"| \(.case) | \(.system) | \(.consistency) | \(.connections) | \(.inflight) | \(.ops_per_s) | \(.p50_us) | \(.p90_us) | \(.p99_us) | \(.p999_us) | \(.max_us) | \(.errors) | \(.node_cpu_us_per_op // "—") | \(.node_cpu_us_per_op_by_node // [] | map(tostring) | join(" / ") | if . == "" then "—" else . end) |"' "$OUT/results.jsonl"
  if [[ $WITH_ETCD == 1 ]]; then
    echo
    echo "## ringraft / etcd (same run)"
    echo
    echo "ringraft's lease and eventual reads are compared with etcd's serializable reads."
    echo
    echo "| case | throughput ratio | p50 ratio (etcd / ringraft) | p99 ratio (etcd / ringraft) | CPU per op ratio (etcd / ringraft) |"
    echo "|---|---|---|---|---|"
    jq -s -r 'group_by(.case)[] | select(length == 2) | (map(select(.system == "ringraft"))[0]) as $r | (map(select(.system == "etcd"))[0]) as $e
      | "| \($r.case) | \(($r.ops_per_s / $e.ops_per_s * 100 | round) / 100)× | \(($e.p50_us / $r.p50_us * 100 | round) / 100)× | \(($e.p99_us / $r.p99_us * 100 | round) / 100)× | \(if ($r.node_cpu_us_per_op // 0) > 0 and ($e.node_cpu_us_per_op // 0) > 0 then (($e.node_cpu_us_per_op / $r.node_cpu_us_per_op * 100 | round) / 100 | tostring) + "×" else "—" end) |"' "$OUT/results.jsonl"
  fi
  echo
  echo "## Design targets (issue 6) against this run"
  echo
  jq -s -r '
    def get($c): map(select(.case == $c and .system == "ringraft"))[0];
    (get("write-1") | select(. != null) | "- one client, one write in flight: p50 \(.p50_us) µs (target ≤ 350 µs)"),
    (get("write-100") | select(. != null) | "- 100 in flight: \(.ops_per_s) writes/s (target ≥ 80,000)"),
    (get("read-linearizable") | select(. != null) | "- linearizable reads: \(.ops_per_s)/s (target ≥ 150,000)"),
    (get("read-lease") | select(. != null) | "- lease reads: \(.ops_per_s)/s (target ≥ 250,000)"),
    (get("write-100") | select(. != null) | "- CPU per write, all nodes: \(.node_cpu_us_per_op) µs (target ≤ 15 µs); per node: \(.node_cpu_us_per_op_by_node // [] | map(tostring) | join(" / ")) µs")' "$OUT/results.jsonl"
  echo
  for c in "${CASES[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    [[ -f "$OUT/$name.breakdown.md" ]] || continue
    echo "## Where a write's time goes: $name (median run)"
    echo
    echo "Each node's stage histograms (/metrics) read before and after the measured phase; leader:"
    echo "received → proposed → locally durable / committed → applied → answered; followers: append"
    echo "received → durable → acknowledged. The leader sends its entries before its own WAL sync, so"
    echo "proposed → committed is near the slower of its sync and a follower's round trip, not their sum."
    echo
    cat "$OUT/$name.breakdown.md"
    echo
  done
  echo "## Latency by percentile"
  echo
  for c in "${CASES[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    echo "### $name"
    echo
    echo "![$name]($name.svg)"
    echo
  done
} > "$OUT/README.md"
echo "== done: $OUT/README.md"
