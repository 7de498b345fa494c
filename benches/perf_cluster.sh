#!/usr/bin/env bash
# Profiles a local three-node cluster under the standard load (make perf-cluster): every node is
# sampled with call graphs by Linux perf while `ringraft bench` drives it, and each node's samples
# become a flame graph.
#
# Writes perf_reports/<UTC stamp>/:
#   node<i>.svg       flame graph of node i (inferno), all its threads; the title names its role
#   node<i>.folded    the collapsed stacks the graph is drawn from (inferno-diff-folded compares
#                     two runs; collapsed by a small awk script when inferno is missing)
#   summary.md        the load and its result, per node: samples, CPU per thread, the top
#                     self-time symbols (perf report --no-children)
#   bench.json        the benchmark's JSON line (throughput while profiled: perf costs some)
#
# Tools: perf (installed with apt-get when missing: Debian's linux-perf, else linux-tools) and
# inferno (inferno-collapse-perf, inferno-flamegraph; from PATH, else `cargo install inferno` into
# $TOOLS_DIR). Without perf the script stops with a message; without inferno and cargo it still
# writes the folded stacks and the summaries, without flame graphs.
#
# The release profile carries line tables, not frame pointers, so stacks are unwound from DWARF
# (CALL_GRAPH=dwarf, the default; CALL_GRAPH=fp only helps with a frame-pointer build).
#
# Environment (defaults in brackets):
#   WORKLOAD ["put --connections 4 --inflight 100"]   `ringraft bench` arguments of the load
#   PERF_SECONDS [10]     sampled seconds (the load runs WARMUP + PERF_SECONDS + 2)
#   WARMUP [3]            seconds of load before sampling starts
#   FREQ [499]            samples per second per thread
#   CALL_GRAPH [dwarf]    dwarf | fp | lbr; DWARF_STACK [16384] bytes of stack copied per sample
#   PERF_CORES [1]        runtime.cores = shards_per_node of each node
#   PLACEMENT [Unbound], SPIN_US [0], BASE_PORT [19300]
#   RINGRAFT_BIN [${CARGO_TARGET_DIR:-target}/release/ringraft], SKIP_BUILD [0]
#   OUT_DIR [perf_reports], TOOLS_DIR [${CARGO_TARGET_DIR:-target}/tools], KEEP_PERF_DATA [0]
#   TOP [15]              symbols per node in the summary
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RR_SCRIPT=perf_cluster.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

case "${1:-}" in
  -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
  "") ;;
  *) rr_die "unknown argument $1 (settings are environment variables; see --help)" ;;
esac

WORKLOAD=${WORKLOAD:-"put --connections 4 --inflight 100"}
PERF_SECONDS=${PERF_SECONDS:-10}
WARMUP=${WARMUP:-3}
FREQ=${FREQ:-499}
CALL_GRAPH=${CALL_GRAPH:-dwarf}
DWARF_STACK=${DWARF_STACK:-16384}
PERF_CORES=${PERF_CORES:-1}
PLACEMENT=${PLACEMENT:-Unbound}
SPIN_US=${SPIN_US:-0}
BASE_PORT=${BASE_PORT:-19300}
TOP=${TOP:-15}
KEEP_PERF_DATA=${KEEP_PERF_DATA:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS_DIR=${TOOLS_DIR:-$TARGET_DIR/tools}
RR_BIN=${RINGRAFT_BIN:-$TARGET_DIR/release/ringraft}
NODES=3

for v in PERF_SECONDS WARMUP FREQ PERF_CORES DWARF_STACK TOP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || rr_die "$v: \"${!v}\" is not a whole number"
done
case $CALL_GRAPH in
  dwarf) CG="dwarf,$DWARF_STACK" ;;
  fp | lbr) CG=$CALL_GRAPH ;;
  *) rr_die "CALL_GRAPH: dwarf, fp or lbr" ;;
esac

# ------------------------------------------------------------------ tools
perf_works() { perf record -q -o "$1" -- true >/dev/null 2>&1; }
PROBE=$(mktemp /tmp/ringraft-perf-probe.XXXXXX)
rm_probe() { rm -f "$PROBE" "$PROBE.old"; }
RR_CLEANUP_HOOKS+=(rm_probe)
trap rr_cleanup EXIT INT TERM
if ! command -v perf >/dev/null || ! perf_works "$PROBE"; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    rr_log "perf missing or not working; installing it with apt-get"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "linux-tools-$(uname -r)" linux-tools-common >/dev/null 2>&1 ||
      true
  fi
  if ! command -v perf >/dev/null; then
    rr_die "perf is not installed and could not be installed (Debian: apt-get install linux-perf; Ubuntu: linux-tools-\$(uname -r)); no profile taken"
  fi
  if ! perf_works "$PROBE"; then
    rr_die "perf is installed but cannot record here (kernel.perf_event_paranoid = $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?'); run as root or lower it: sysctl kernel.perf_event_paranoid=1); no profile taken"
  fi
fi

HAVE_INFERNO=1
if ! command -v inferno-collapse-perf >/dev/null || ! command -v inferno-flamegraph >/dev/null; then
  export PATH="$TOOLS_DIR/bin:$PATH"
  if ! [[ -x $TOOLS_DIR/bin/inferno-collapse-perf && -x $TOOLS_DIR/bin/inferno-flamegraph ]]; then
    if command -v cargo >/dev/null; then
      rr_log "installing inferno into $TOOLS_DIR (cargo install, once)"
      CARGO_TARGET_DIR="$TARGET_DIR/tools-build" cargo install inferno --locked --root "$TOOLS_DIR" \
        --no-default-features --features cli,multithreaded || HAVE_INFERNO=0
    else
      HAVE_INFERNO=0
    fi
  fi
fi
if [[ $HAVE_INFERNO == 0 ]]; then
  echo "$RR_SCRIPT: inferno is not available (cargo install inferno); writing summaries without flame graphs" >&2
fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  rr_log "building ringraft (release); SKIP_BUILD=1 skips this"
  (cd "$ROOT" && cargo build --release --bin ringraft)
fi
[[ -x $RR_BIN ]] || rr_die "no binary at $RR_BIN (set RINGRAFT_BIN, or build: cargo build --release)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT_DIR:-$ROOT/perf_reports}/$STAMP
mkdir -p "$OUT"
RR_WORK=$(mktemp -d /tmp/ringraft-perf.XXXXXX)
rm_work() { rm -rf "$RR_WORK"; }
RR_CLEANUP_HOOKS+=(rm_work)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ cluster and load
rr_log "starting $NODES nodes ($PERF_CORES core(s), $PERF_CORES shard(s) each) in $RR_WORK"
rr_start_cluster "$RR_WORK" "$NODES" "$BASE_PORT" $((BASE_PORT + 100)) "$PERF_CORES" "$PERF_CORES" "$PLACEMENT" "$SPIN_US"
rr_wait_leaders "$RR_EP" "$PERF_CORES" 30
LEADER_ADDR=$(rr_leader_of_shard0 "$RR_EP")
LEADER=$((${LEADER_ADDR##*:} - BASE_PORT))
rr_log "leader of shard 0: node $LEADER ($LEADER_ADDR)"

LOAD_S=$((WARMUP + PERF_SECONDS + 2))
# shellcheck disable=SC2086
"$RR_BIN" --endpoints "$RR_EP" bench $WORKLOAD --key-size 8 --value-size 256 \
  --duration "$LOAD_S" --warmup 0 --no-progress --json \
  --cpu-pids "$(
    IFS=,
    echo "${RR_NODE_PIDS[*]}"
  )" >"$OUT/bench.json" 2>"$RR_WORK/bench.err" &
BENCH_PID=$!
RR_PIDS+=("$BENCH_PID")
sleep "$WARMUP"
kill -0 "$BENCH_PID" 2>/dev/null || rr_die "the load stopped early: $(cat "$RR_WORK/bench.err")"

US_PER_OP=()
rr_log "recording every node for $PERF_SECONDS s (perf record -F $FREQ --call-graph $CG)"
PERF_PIDS=()
for i in $(seq 1 "$NODES"); do
  pid=${RR_NODE_PIDS[i - 1]}
  perf record -q -F "$FREQ" -g --call-graph "$CG" -p "$pid" -o "$RR_WORK/node$i.data" \
    -- sleep "$PERF_SECONDS" >"$RR_WORK/perf$i.out" 2>&1 &
  PERF_PIDS+=($!)
done
read -r -a CPU_BEFORE <<<"$(rr_cpu_us_list "${RR_NODE_PIDS[@]}")"
for p in "${PERF_PIDS[@]}"; do wait "$p" || true; done
read -r -a CPU_AFTER <<<"$(rr_cpu_us_list "${RR_NODE_PIDS[@]}")"
BENCH_RC=0
wait "$BENCH_PID" || BENCH_RC=$?
# Reaped: no longer ours to signal.
RR_PIDS=("${RR_NODE_PIDS[@]}")
if ((BENCH_RC != 0)); then rr_die "the load failed: $(cat "$RR_WORK/bench.err")"; fi
rr_stop_pids
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_LINE=$(tail -1 "$OUT/bench.json")

# ------------------------------------------------------------------ reports
SUMMARY=$OUT/summary.md
{
  echo "# perf-cluster — $STAMP"
  echo
  echo "$("$RR_BIN" --version 2>/dev/null), $(nproc) CPUs, $NODES nodes ($PERF_CORES core(s) and shard(s) each,"
  echo "placement $PLACEMENT) and the client on loopback, DiskFirst. Load: \`ringraft bench $WORKLOAD\`"
  echo "(8-byte keys, 256-byte values) for $LOAD_S s; sampled $PERF_SECONDS s after $WARMUP s at $FREQ Hz per thread with"
  echo "call graphs ($CG). Load average at start: $LOAD_START; at end: $LOAD_END."
  echo
  echo "Load while profiled (whole run, perf's own cost included): $(rr_json_num "$BENCH_LINE" ops_per_s) ops/s,"
  echo "p50 $(rr_json_num "$BENCH_LINE" p50_us) µs, p99 $(rr_json_num "$BENCH_LINE" p99_us) µs, errors $(rr_json_num "$BENCH_LINE" errors),"
  echo "node CPU $(rr_json_num "$BENCH_LINE" node_cpu_us_per_op) µs per request (all nodes)."
  echo
  echo "CPU µs per request of a node = its CPU time during sampling / (the run's ops/s × $PERF_SECONDS s)."
  echo
  echo "| node | role (shard 0) | CPU during sampling (s) | CPU µs per request | samples |"
  echo "|---|---|---|---|---|"
} >"$SUMMARY"

for i in $(seq 1 "$NODES"); do
  role=follower
  if ((i == LEADER)); then role=leader; fi
  data=$RR_WORK/node$i.data
  cpu_s=$(rr_calc 'sprintf("%.2f", (a - b) / 1e6)' a="${CPU_AFTER[i - 1]}" b="${CPU_BEFORE[i - 1]}")
  if [[ ! -s $data ]]; then
    echo "| $i | $role | $cpu_s | — | no data: $(tr '\n' ' ' <"$RR_WORK/perf$i.out") |" >>"$SUMMARY"
    continue
  fi
  rr_log "node $i ($role): perf report$([[ $HAVE_INFERNO == 1 ]] && echo ' and flame graph')"
  perf report -i "$data" --no-children --sort comm --stdio -g none --percent-limit 1 \
    >"$RR_WORK/node$i.comm.raw" 2>/dev/null || true
  samples=$(sed -n "s/^# Samples: \([^ ]*\) *of event '\([^']*\)'.*/\1 (\2)/p" "$RR_WORK/node$i.comm.raw" | head -1)
  grep -v '^#' "$RR_WORK/node$i.comm.raw" | sed '/^$/d' >"$RR_WORK/node$i.comm" || true
  perf report -i "$data" --no-children --sort dso --stdio -g none --percent-limit 1 2>/dev/null |
    grep -v '^#' | sed '/^$/d' >"$RR_WORK/node$i.dso" || true
  perf report -i "$data" --no-children --sort sym --stdio -g none --no-inline 2>/dev/null |
    grep -v '^#' | sed '/^$/d' | head -n "$TOP" >"$RR_WORK/node$i.top" || true
  US_PER_OP[i]=$(rr_calc 'sprintf("%.1f", (o > 0) ? (a - b) / (o * s) : 0)' a="${CPU_AFTER[i - 1]}" \
    b="${CPU_BEFORE[i - 1]}" o="$(rr_json_num "$BENCH_LINE" ops_per_s)" s="$PERF_SECONDS")
  echo "| $i | $role | $cpu_s | ${US_PER_OP[i]} | ${samples:-?} |" >>"$SUMMARY"
  if [[ $HAVE_INFERNO == 1 ]]; then
    perf script -i "$data" --no-inline 2>/dev/null | inferno-collapse-perf >"$OUT/node$i.folded"
    inferno-flamegraph --title "ringraft node $i ($role of shard 0): $WORKLOAD" \
      <"$OUT/node$i.folded" >"$OUT/node$i.svg"
  else
    perf script -i "$data" --no-inline 2>/dev/null | collapse_perf >"$OUT/node$i.folded"
  fi
  if [[ $KEEP_PERF_DATA == 1 ]]; then cp "$data" "$OUT/node$i.perf.data"; fi
done

{
  for i in $(seq 1 "$NODES"); do
    role=follower
    if ((i == LEADER)); then role=leader; fi
    echo
    echo "## node $i ($role of shard 0)"
    echo
    if [[ -s $RR_WORK/node$i.comm ]]; then
      echo "Self time by thread:"
      echo
      echo '```'
      cat "$RR_WORK/node$i.comm"
      echo '```'
      echo
    fi
    if [[ -s $RR_WORK/node$i.dso ]]; then
      echo "Self time by binary (kernel, ringraft, libc):"
      echo
      echo '```'
      cat "$RR_WORK/node$i.dso"
      echo '```'
      echo
    fi
    if [[ -s $OUT/node$i.folded ]]; then
      echo "Where the CPU goes (inclusive: a sample counts for each component on its stack; µs per request"
      echo "= share × ${US_PER_OP[i]} µs):"
      echo
      echo "| component | share of samples | µs per request |"
      echo "|---|---|---|"
      component_table "$OUT/node$i.folded" "${US_PER_OP[i]}"
      echo
    fi
    if [[ -s $OUT/node$i.folded ]]; then
      echo "Top 10 self-time frames and the callers they were reached through (from the flame graph's"
      echo "stacks; inlined functions are folded into their callers):"
      echo
      echo "| self | frame | callers |"
      echo "|---|---|---|"
      self_callers "$OUT/node$i.folded" 10
      echo
    fi
    if [[ -s $RR_WORK/node$i.top ]]; then
      echo "Top $TOP self-time symbols (all threads):"
      echo
      echo '```'
      cat "$RR_WORK/node$i.top"
      echo '```'
    fi
    if [[ -s $OUT/node$i.svg ]]; then
      echo
      echo "Flame graph: [node$i.svg](node$i.svg)"
    fi
  done
} >>"$SUMMARY"
echo
cat "$SUMMARY"
rr_log "flame graphs and summary in $OUT"
