#!/usr/bin/env bash
# Self-test of the parsing and arithmetic in benches/lib.sh that the benchmark and profiling
# reports rest on (make bench-scripts-test): /proc/<pid>/stat CPU fields, JSON fields of a bench
# line, bash's `times`, the per-node CPU split, perf script folding, self time with callers and
# the component table. No cluster, no perf, no network; under a second.
# Prints one line per check and a closing "N passed, N failed"; exits 1 on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RR_SCRIPT=test_lib.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
RR_WORK=$(mktemp -d /tmp/ringraft-test-lib.XXXXXX)
trap 'rm -rf "$RR_WORK"' EXIT

PASS=0 FAIL=0
check() { # name expected actual
  if [[ $2 == "$3" ]]; then
    PASS=$((PASS + 1))
    echo "ok   $1"
  else
    FAIL=$((FAIL + 1))
    echo "FAIL $1"
    echo "     expected: $2"
    echo "     actual:   $3"
  fi
}

# /proc/<pid>/stat: utime 250 + stime 50, with a command name holding spaces and parentheses.
check "stat ticks with an odd command name" 300 \
  "$(rr_stat_ticks '1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0')"
check "stat ticks of a plain line" 7 \
  "$(rr_stat_ticks '42 (ringraft) R 1 42 42 0 -1 0 0 0 0 0 4 3 0 0 20 0 9 0')"
# This shell's own CPU time only grows.
a=$(rr_cpu_ticks $$)
for _ in $(seq 1 20000); do :; done
b=$(rr_cpu_ticks $$)
check "own CPU ticks do not go backwards" 1 $((b >= a ? 1 : 0))
check "a missing process reads as 0 ticks" 0 "$(rr_cpu_ticks 999999999)"

LINE='{"op":"put","consistency":"none","connections":4,"inflight":100,"total":500,"ok":498,"errors":2,"elapsed_s":2.004,"ops_per_s":248.5,"p50_us":1234.5,"p99_us":-1,"max_us":1e6,"node_cpu_us_per_op":31.2}'
check "json ok" 498 "$(rr_json_num "$LINE" ok)"
check "json ops_per_s" 248.5 "$(rr_json_num "$LINE" ops_per_s)"
check "json p50_us" 1234.5 "$(rr_json_num "$LINE" p50_us)"
check "json negative" -1 "$(rr_json_num "$LINE" p99_us)"
check "json exponent" 1e6 "$(rr_json_num "$LINE" max_us)"
check "json absent field" "" "$(rr_json_num "$LINE" p999_us)"
check "calc with variables" 12.50 "$(rr_calc 'sprintf("%.2f", a / b)' a=25 b=2)"

# Children's CPU time: a busy child adds to it once waited for.
rr_children_cpu_us
c0=$RR_CHILDREN_US
awk 'BEGIN { for (i = 0; i < 3000000; i++) x += i }' </dev/null
rr_children_cpu_us
check "children's CPU grows after a busy child" 1 $((RR_CHILDREN_US > c0 ? 1 : 0))

if command -v jq >/dev/null; then
  check "per-node split of the client's CPU figure" '[15,7.5,7.5]' \
    "$(echo '{"node_cpu_us_per_op":30}' | rr_split_by_node "100 200 300" "1100 700 800" | jq -c .node_cpu_us_per_op_by_node)"
  check "no split without the client's figure" '{"ok":1}' \
    "$(echo '{"ok":1}' | rr_split_by_node "1 2" "3 4")"
fi

# perf script output: two samples of one stack (leaf first), one of another.
cat >"$RR_WORK/script.txt" <<'EOF'
ringraft-core-0  1001 [000]   100.000001:    2004008 cpu-clock:ppp:
	    7f00aa _int_malloc+0x1a (/usr/lib/x86_64-linux-gnu/libc.so.6)
	    55bb01 ringraft::raft::core::Raft::propose+0x40 (/work/ringraft)
	    55bb02 glommio::executor::LocalExecutor::run_task_queues+0x10 (/work/ringraft)

ringraft-core-0  1001 [000]   100.002001:    2004008 cpu-clock:ppp:
	    7f00aa _int_malloc+0x1a (/usr/lib/x86_64-linux-gnu/libc.so.6)
	    55bb01 ringraft::raft::core::Raft::propose+0x44 (/work/ringraft)
	    55bb02 glommio::executor::LocalExecutor::run_task_queues+0x10 (/work/ringraft)

wal-flush-0  1003 [001]   100.003001:    2004008 cpu-clock:ppp:
	    ffffffff81 __x64_sys_msync+0x5 ([kernel.kallsyms])
	    55bb09 ringraft_wal::segment::Segment::sync+0x9 (/work/ringraft)

EOF
collapse_perf <"$RR_WORK/script.txt" | sort >"$RR_WORK/folded"
check "perf script folding" \
  "ringraft-core-0;glommio::executor::LocalExecutor::run_task_queues;ringraft::raft::core::Raft::propose;_int_malloc 2|wal-flush-0;ringraft_wal::segment::Segment::sync;__x64_sys_msync 1" \
  "$(paste -sd'|' "$RR_WORK/folded")"
# shellcheck disable=SC2016
check "top self frame and its caller" \
  '| 66.7 % | `_int_malloc` | 100 % via glommio::executor::LocalExecutor::run_task_queues → ringraft::raft::core::Raft::propose |' \
  "$(self_callers "$RR_WORK/folded" 1)"
check "components: WAL sync share and µs" '| WAL sync (msync / fdatasync) | 33.3 % | 10.0 |' \
  "$(component_table "$RR_WORK/folded" 30 | grep 'WAL sync')"
check "components: Raft core and allocator overlap" '| Raft core (ringraft::raft) | 66.7 % | 20.0 ||| allocator (malloc / free) | 66.7 % | 20.0 |' \
  "$(component_table "$RR_WORK/folded" 30 | grep -E 'Raft core|allocator' | paste -sd'|')"

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
