#!/usr/bin/env bash
# Core scaling (make bench-scaling): for each value N of CORES, a fresh local cluster whose nodes
# run N cores and N shards each (runtime.cores = runtime.shards_per_node = N), write and read
# throughput under a load that grows with N, and the ratio to linear scaling.
#
# For each N: per-node configs in a temporary work directory (own ports, own data), the nodes
# started from the release binary, a wait until every shard has a leader, then two measurements
# through `ringraft bench` (8-byte keys, 256-byte values, the key space spread over the shards by
# the key hash): DiskFirst puts, then reads (lease by default). Each node's CPU time is read from
# /proc/<pid>/stat just before and after each measured run and divided by the successful
# requests: CPU µs per request per node. Then the cluster is stopped by PID.
# Prints the table and writes it to benches/reports/scaling-<UTC stamp>.md.
#
# Ratio to linear = ops/s(N) / (ops/s(first value) × N / first value); with CORES starting at 1
# that is ops/s(N) / (N × ops/s(1)).
#
# Needs bash, coreutils and awk; no jq, curl or Rust toolchain when SKIP_BUILD=1 and RINGRAFT_BIN
# point at a prebuilt binary.
#
# Environment (defaults in brackets):
#   CORES ["1 2"]            core counts to measure, any list ("1 2 4 8 16")
#   SCALING_NODES [3]        nodes per cluster (1: a single node, its own quorum)
#   DURATION [5]             measured seconds per run; WARMUP [2] unmeasured seconds before it
#   READ_CONSISTENCY [lease] linearizable | lease | eventual
#   CONNS_PER_CORE [4], INFLIGHT_PER_CORE [100]   load per core of each node (totals = × N)
#   BENCH_CLIENTS [auto]     parallel `ringraft bench` processes (auto: ceil(N / 2)); one client
#                            process runs on one thread, so a large N needs several
#   KEY_SPACE [10000]        distinct keys
#   PLACEMENT [auto]         Pinned | Unbound | auto (Pinned when SCALING_NODES × max(CORES) fits
#                            in the machine's CPUs, else Unbound; decided once for the whole list)
#   SPIN_US [0]              runtime.spin_before_park_us
#   FLUSH_WORKERS [1]        raft.persistence.flush_workers
#   BASE_PORT [19100]        nodes on BASE_PORT+i, metrics on BASE_PORT+100+i
#   RINGRAFT_BIN             the binary [${CARGO_TARGET_DIR:-target}/release/ringraft]
#   SKIP_BUILD [0]           1: do not run cargo build
#   REPORT_DIR [benches/reports]   KEEP_WORK [0]: 1 keeps the work directories (logs, data)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RR_SCRIPT=scaling.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

case "${1:-}" in
  -h | --help) sed -n '2,37p' "$0"; exit 0 ;;
  "") ;;
  *) rr_die "unknown argument $1 (settings are environment variables; see --help)" ;;
esac

CORES=${CORES:-"1 2"}
NODES=${SCALING_NODES:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
READ_CONSISTENCY=${READ_CONSISTENCY:-lease}
CONNS_PER_CORE=${CONNS_PER_CORE:-4}
INFLIGHT_PER_CORE=${INFLIGHT_PER_CORE:-100}
BENCH_CLIENTS=${BENCH_CLIENTS:-auto}
KEY_SPACE=${KEY_SPACE:-10000}
PLACEMENT=${PLACEMENT:-auto}
SPIN_US=${SPIN_US:-0}
BASE_PORT=${BASE_PORT:-19100}
REPORT_DIR=${REPORT_DIR:-$ROOT/benches/reports}
KEEP_WORK=${KEEP_WORK:-0}
RR_BIN=${RINGRAFT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ringraft}

for n in $CORES; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || rr_die "CORES: \"$n\" is not a positive whole number"
done
[[ $NODES =~ ^[1-9][0-9]*$ ]] || rr_die "SCALING_NODES: \"$NODES\" is not a positive whole number"
((NODES < 100)) || rr_die "SCALING_NODES: at most 99 (ports BASE_PORT+1 ..)"
case $READ_CONSISTENCY in linearizable | lease | eventual) ;; *) rr_die "READ_CONSISTENCY: linearizable, lease or eventual" ;; esac

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  rr_log "building ringraft (release); SKIP_BUILD=1 skips this"
  (cd "$ROOT" && cargo build --release --bin ringraft)
fi
[[ -x $RR_BIN ]] || rr_die "no binary at $RR_BIN (set RINGRAFT_BIN, or build: cargo build --release)"

CPUS=$(nproc)
MAX_CORES=0
for n in $CORES; do if ((n > MAX_CORES)); then MAX_CORES=$n; fi; done
if [[ $PLACEMENT == auto ]]; then
  if ((NODES * MAX_CORES <= CPUS)); then PLACEMENT=Pinned; else PLACEMENT=Unbound; fi
fi
case $PLACEMENT in Pinned | Unbound) ;; *) rr_die "PLACEMENT: Pinned, Unbound or auto" ;; esac
if [[ $PLACEMENT == Pinned ]] && ((NODES * MAX_CORES > CPUS)); then
  rr_die "PLACEMENT=Pinned needs SCALING_NODES × max(CORES) = $((NODES * MAX_CORES)) CPUs; this machine has $CPUS"
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT=$REPORT_DIR/scaling-$STAMP.md
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
VERSION=$("$RR_BIN" --version 2>/dev/null || echo unknown)
mkdir -p "$REPORT_DIR"

WORKS=()
remove_work() { if [[ $KEEP_WORK != 1 ]]; then rm -rf "${WORKS[@]}"; fi; }
RR_CLEANUP_HOOKS+=(remove_work)
trap rr_cleanup EXIT INT TERM

ROWS=()
BASE_CORES="" BASE_W="" BASE_R=""
for n in $CORES; do
  RR_WORK=$(mktemp -d /tmp/ringraft-scaling.XXXXXX)
  WORKS+=("$RR_WORK")
  conns=$((CONNS_PER_CORE * n))
  inflight=$((INFLIGHT_PER_CORE * n))
  if [[ $BENCH_CLIENTS == auto ]]; then clients=$(((n + 1) / 2)); else clients=$BENCH_CLIENTS; fi
  if ((clients > conns)); then clients=$conns; fi
  rr_log "cores=$n: $NODES node(s), $n shard(s) each, $PLACEMENT, $conns connections, $inflight in flight, $clients client process(es) — $RR_WORK"
  rr_start_cluster "$RR_WORK" "$NODES" "$BASE_PORT" $((BASE_PORT + 100)) "$n" "$n" "$PLACEMENT" "$SPIN_US"
  rr_wait_leaders "$RR_EP" "$n" 30

  common=(--key-size 8 --value-size 256 --key-space "$KEY_SPACE" --connections "$conns" --inflight "$inflight")
  rr_measure "write" "$clients" "$DURATION" "$WARMUP" -- put "${common[@]}"
  w_ops=$RR_OPS w_p50=$RR_P50 w_p99=$RR_P99 w_err=$RR_ERR w_cpu=$RR_CPU_NODE w_sum=$RR_CPU_SUM
  w_cl="$RR_CLIENT_CPU ($RR_CLIENT_BUSY)"
  rr_log "   write: $w_ops ops/s, p50 $w_p50 µs, p99 $w_p99 µs, CPU µs/write per node: $w_cpu (sum $w_sum; client's own count: ${RR_CPU_BENCH:-?}); client CPU µs/op $w_cl"
  rr_measure "read" "$clients" "$DURATION" "$WARMUP" -- get --consistency "$READ_CONSISTENCY" "${common[@]}"
  r_ops=$RR_OPS r_p50=$RR_P50 r_p99=$RR_P99 r_err=$RR_ERR r_cpu=$RR_CPU_NODE r_sum=$RR_CPU_SUM
  r_cl="$RR_CLIENT_CPU ($RR_CLIENT_BUSY)"
  rr_log "   read:  $r_ops ops/s, p50 $r_p50 µs, p99 $r_p99 µs, CPU µs/read per node: $r_cpu (sum $r_sum; client's own count: ${RR_CPU_BENCH:-?}); client CPU µs/op $r_cl"
  rr_stop_pids

  if [[ -z $BASE_CORES ]]; then BASE_CORES=$n BASE_W=$w_ops BASE_R=$r_ops; fi
  w_ratio=$(rr_calc 'sprintf("%.2f", b > 0 ? o / (b * n / c) : 0)' o="$w_ops" b="$BASE_W" n="$n" c="$BASE_CORES")
  r_ratio=$(rr_calc 'sprintf("%.2f", b > 0 ? o / (b * n / c) : 0)' o="$r_ops" b="$BASE_R" n="$n" c="$BASE_CORES")
  ROWS+=("| $n | $clients | $w_ops | $w_ratio | $w_p50 / $w_p99 | ${w_cpu// / \/ } | $w_sum | $w_cl | $r_ops | $r_ratio | $r_p50 / $r_p99 | ${r_cpu// / \/ } | $r_sum | $r_cl | $w_err / $r_err |")
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# Core scaling — $STAMP"
  echo
  echo "$VERSION, $CPUS CPUs, $NODES node(s) and the client(s) on loopback, DiskFirst (Immediate flush),"
  echo "8-byte keys, 256-byte values, $KEY_SPACE keys spread over the shards, cores = shards_per_node = N"
  echo "per node, placement $PLACEMENT, spin_before_park_us $SPIN_US. Per N: $CONNS_PER_CORE × N connections"
  echo "and $INFLIGHT_PER_CORE × N requests in flight (closed loop), split over the client processes of the"
  echo "clients column (BENCH_CLIENTS=$BENCH_CLIENTS); ${DURATION} s measured after ${WARMUP} s warmup; reads are $READ_CONSISTENCY."
  echo "ops/s is the sum over the client processes; p50 / p99 (µs) the highest of them. Ratio = ops/s"
  echo "over linear scaling from the first row. CPU = utime + stime of each node process (node 1 / 2 / …,"
  echo "from /proc/<pid>/stat, 1/$RR_CLK_TCK s resolution) during the measured run per successful request,"
  echo "and the sum over the nodes. Client CPU: all client processes together per request, and (busy) their"
  echo "CPU time over clients × wall time: near 1.00 the clients, not the nodes, limit the throughput (raise"
  echo "BENCH_CLIENTS). Load average at start: $LOAD_START; at end: $LOAD_END"
  echo "(above 0 at the start: other work shared the machine, and the figures are noisy)."
  echo
  echo "| cores | clients | write ops/s | write ratio | write p50 / p99 µs | CPU µs/write per node | CPU µs/write sum | client CPU µs/write (busy) | read ops/s | read ratio | read p50 / p99 µs | CPU µs/read per node | CPU µs/read sum | client CPU µs/read (busy) | errors w / r |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Command: \`CORES=\"$CORES\" SCALING_NODES=$NODES DURATION=$DURATION WARMUP=$WARMUP READ_CONSISTENCY=$READ_CONSISTENCY PLACEMENT=$PLACEMENT benches/scaling.sh\`"
} >"$REPORT"
echo
cat "$REPORT"
echo
rr_log "report: $REPORT"
