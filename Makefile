# ringraft — build, test, benchmark and run a local cluster.
# Every target is safe to run from a fresh checkout; `make test` is what CI runs.

CARGO        ?= cargo
RELEASE_BIN  := $(or $(CARGO_TARGET_DIR),target)/release/ringraft
SEED         ?= 1
STEPS        ?= 20000

.PHONY: all build test test-fast fmt fmt-check clippy lint bench bench-micro bench-wal bench-net bench-raft \
        sim sim-long check-histories clean

all: build

## build: release binary at target/release/ringraft
build:
	$(CARGO) build --release --bin ringraft

## test: every test of every crate (release mode: the simulator and checker are CPU-heavy)
test:
	$(CARGO) test --workspace --release

## lint: formatting and clippy, warnings are errors
fmt:
	$(CARGO) fmt --all
fmt-check:
	$(CARGO) fmt --all -- --check
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
lint: fmt-check clippy

## bench: the standard client suite on a fresh 3-node cluster, report in benches/reports/<version>/
## bench-micro: the component benchmarks (WAL, wire, Raft core, node routing), reports in benches/reports/
bench: bench-suite
bench-micro: bench-wal bench-net bench-raft bench-node

bench-wal:
	$(CARGO) run --release -p ringraft-wal --example wal_bench -- --out benches/reports/wal.md

bench-net:
	$(CARGO) run --release -p ringraft-net --example net_bench -- --out benches/reports/net.md

bench-raft:
	$(CARGO) run --release --example raft_bench -- --out benches/reports/raft.md

## sim: one seeded run of the deterministic Raft simulator (SEED=…, STEPS=…)
sim:
	$(CARGO) run --release --bin ringraft -- sim --seed $(SEED) --steps $(STEPS)

## sim-long: many more seeds than `make test` runs
sim-long:
	$(CARGO) run --release --bin ringraft -- sim --seeds 5000 --steps $(STEPS)

## check-histories: run the linearizability checker over ../shared/histories
check-histories:
	$(CARGO) test --release --test checker_histories -- --nocapture

clean:
	$(CARGO) clean
	rm -rf logs db

## ---- local cluster (the seed's three-node layout: nodes on 9081-9083, metrics on 8081-8083) ----
## start-cluster: nodes 1-3 in the background (PIDs in logs/n<i>.pid, output in logs/n<i>.out);
##   returns once a leader exists (fails after CLUSTER_WAIT_S seconds). LOG_LEVEL=… is passed on.
## stop-cluster: SIGTERM each node by its PID file and wait for it to exit.
## start-node1/2/3: one node in the foreground. join-node4/5: a learner joining the cluster.
## status: every node's /status. clean-log-db: remove logs/ and db/ (keeps the build).
CLUSTER_NODES  ?= 1 2 3
CLUSTER_WAIT_S ?= 10

.PHONY: start-cluster stop-cluster start-node1 start-node2 start-node3 join-node4 join-node5 \
        status clean-log-db

start-cluster: build
	@mkdir -p logs
	@for i in $(CLUSTER_NODES); do \
	  if [ -f logs/n$$i.pid ] && kill -0 $$(cat logs/n$$i.pid) 2>/dev/null; then \
	    echo "node $$i already running (pid $$(cat logs/n$$i.pid))"; continue; fi; \
	  CONFIG_PATH=config/n$$i.toml nohup $(RELEASE_BIN) server > logs/n$$i.out 2>&1 & \
	  echo $$! > logs/n$$i.pid; echo "node $$i started (pid $$!)"; \
	done
	@# Success only when every node of THIS cluster (the PIDs above) is alive and one of them
	@# leads: a leader reported by some other process on these ports does not count.
	@for t in $$(seq 1 $$(( $(CLUSTER_WAIT_S) * 10 ))); do \
	  for i in $(CLUSTER_NODES); do \
	    if ! kill -0 $$(cat logs/n$$i.pid) 2>/dev/null; then \
	      echo "node $$i (pid $$(cat logs/n$$i.pid)) exited; the end of logs/n$$i.out:"; \
	      tail -n 5 logs/n$$i.out; rm -f logs/n$$i.pid; \
	      echo "(another cluster on these ports? stop it first: make stop-cluster)"; exit 1; fi; \
	  done; \
	  for i in $(CLUSTER_NODES); do \
	    st=$$(curl -s -m 1 http://127.0.0.1:808$$i/status 2>/dev/null); \
	    if echo "$$st" | grep -q '"role":"Leader"'; then \
	      sleep 0.5; alive=1; \
	      for j in $(CLUSTER_NODES); do kill -0 $$(cat logs/n$$j.pid) 2>/dev/null || alive=0; done; \
	      if [ $$alive = 1 ]; then echo "leader: node $$i"; exit 0; fi; \
	    fi; \
	  done; sleep 0.1; \
	done; echo "no leader within $(CLUSTER_WAIT_S) s; see logs/n*.out and logs/*/d.log"; exit 1

stop-cluster:
	@for i in 1 2 3 4 5; do \
	  if [ -f logs/n$$i.pid ]; then \
	    pid=$$(cat logs/n$$i.pid); \
	    if kill -TERM $$pid 2>/dev/null; then \
	      for t in $$(seq 1 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	      echo "node $$i stopped (pid $$pid)"; fi; \
	    rm -f logs/n$$i.pid; \
	  fi; \
	done

start-node1 start-node2 start-node3: build
	CONFIG_PATH=config/n$(subst start-node,,$@).toml $(RELEASE_BIN) server

join-node4 join-node5: build
	CONFIG_PATH=config/n$(subst join-node,,$@).toml $(RELEASE_BIN) server

## ---- growth: 1 -> 3 without restarting node 1 (config/single.toml, single-join2/3.toml) ----
## start-single: node 1 alone (client port 9091, metrics 8091) in the background.
## join-single2/3: node 2/3 joins it as a learner, in the background. promote-single: promote
##   nodes 2 and 3 to voters (POST /promote). stop-single: stop all three by their PID files.
## 3 -> 5 is join-node4/5 and POST /promote on the seed's cluster (see the README).
.PHONY: start-single join-single2 join-single3 promote-single stop-single
start-single join-single2 join-single3: build
	@mkdir -p logs-single
	@i=$(subst join-single,,$(subst start-single,1,$@)); \
	cfg=$$( [ $$i = 1 ] && echo config/single.toml || echo config/single-join$$i.toml ); \
	if [ -f logs-single/n$$i.pid ] && kill -0 $$(cat logs-single/n$$i.pid) 2>/dev/null; then \
	  echo "node $$i already running (pid $$(cat logs-single/n$$i.pid))"; exit 0; fi; \
	CONFIG_PATH=$$cfg nohup $(RELEASE_BIN) server > logs-single/n$$i.out 2>&1 & \
	pid=$$!; echo $$pid > logs-single/n$$i.pid; \
	for t in $$(seq 1 100); do \
	  kill -0 $$pid 2>/dev/null || { echo "node $$i exited:"; tail -n 5 logs-single/n$$i.out; exit 1; }; \
	  curl -s -m 1 http://127.0.0.1:809$$i/health 2>/dev/null | grep -q '"ok"' && \
	    { echo "node $$i up (pid $$pid)"; exit 0; }; sleep 0.1; \
	done; echo "node $$i not healthy within 10 s; see logs-single/n$$i.out"; exit 1

promote-single:
	@for i in 2 3; do \
	  curl -s -m 15 -X POST http://127.0.0.1:9091/promote -d "{\"node_id\": $$i}"; echo; \
	done

stop-single:
	@for i in 1 2 3; do \
	  if [ -f logs-single/n$$i.pid ]; then pid=$$(cat logs-single/n$$i.pid); \
	    kill -TERM $$pid 2>/dev/null && { for t in $$(seq 1 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	      echo "node $$i stopped (pid $$pid)"; }; rm -f logs-single/n$$i.pid; fi; \
	done

status:
	@for i in 1 2 3 4 5; do \
	  out=$$(curl -s -m 1 http://127.0.0.1:808$$i/status 2>/dev/null) && echo "node $$i: $$out" || true; \
	done

clean-log-db:
	rm -rf logs db

## ---- local TLS cluster (config/tls/: the same ports, mutual TLS between peers, client roles) ----
## tls-certs: `ringraft certs` into config/tls/certs/ (gitignored; kept if present): CA, nodes 1-3,
##   clients admin/writer/reader, and a tokens file (mode 0600) with one random token per role.
## start-cluster-tls / stop-cluster-tls: like start-cluster / stop-cluster (stop the plaintext
##   cluster first: same ports). Try: curl --cacert config/tls/certs/ca.crt --cert
##   config/tls/certs/client-admin.crt --key config/tls/certs/client-admin.key https://127.0.0.1:9081/status
TLS_CERTS := config/tls/certs
.PHONY: tls-certs start-cluster-tls stop-cluster-tls
tls-certs: build
	@if [ -f $(TLS_CERTS)/ca.crt ]; then echo "$(TLS_CERTS)/ exists (remove it to regenerate)"; else \
	  $(RELEASE_BIN) certs --out $(TLS_CERTS) --cluster-id 1 --nodes 1,2,3 \
	    --clients admin:admin,writer:write,reader:read && \
	  ( umask 077; for r in admin write read; do \
	      echo "$$r $$r-token $$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"; \
	    done > $(TLS_CERTS)/tokens ) && chmod 600 $(TLS_CERTS)/tokens && \
	  echo "certificates and tokens in $(TLS_CERTS)/"; fi

start-cluster-tls: tls-certs
	@mkdir -p logs
	@for i in $(CLUSTER_NODES); do \
	  if [ -f logs/tls-n$$i.pid ] && kill -0 $$(cat logs/tls-n$$i.pid) 2>/dev/null; then \
	    echo "TLS node $$i already running (pid $$(cat logs/tls-n$$i.pid))"; continue; fi; \
	  CONFIG_PATH=config/tls/n$$i.toml nohup $(RELEASE_BIN) server > logs/tls-n$$i.out 2>&1 & \
	  echo $$! > logs/tls-n$$i.pid; echo "TLS node $$i started (pid $$!)"; \
	done
	@for t in $$(seq 1 $$(( $(CLUSTER_WAIT_S) * 10 ))); do \
	  for i in $(CLUSTER_NODES); do \
	    if curl -s -m 1 http://127.0.0.1:808$$i/status 2>/dev/null | grep -q '"role":"Leader"'; then \
	      echo "leader: node $$i (TLS)"; exit 0; fi; \
	  done; sleep 0.1; \
	done; echo "no leader within $(CLUSTER_WAIT_S) s; see logs/tls-n*.out and logs/tls/*/d.log"; exit 1

stop-cluster-tls:
	@for i in 1 2 3; do \
	  if [ -f logs/tls-n$$i.pid ]; then \
	    pid=$$(cat logs/tls-n$$i.pid); \
	    if kill -TERM $$pid 2>/dev/null; then \
	      for t in $$(seq 1 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	      echo "TLS node $$i stopped (pid $$pid)"; fi; \
	    rm -f logs/tls-n$$i.pid; \
	  fi; \
	done

## bench-tls: the same client workloads on a plaintext and on a mutual-TLS 3-node cluster in one
##   run (benches/tls_bench.sh), table in benches/reports/tls-node.md. Stop any running cluster first.
.PHONY: bench-tls
bench-tls: build
	RINGRAFT_BIN=$(RELEASE_BIN) benches/tls_bench.sh

## bench-node: cross-core routing cost and a write baseline on a local 3-node cluster
.PHONY: bench-node
bench-node: build
	$(CARGO) run --release --example node_bench -- --out benches/reports/node.md

## bench-suite: fresh 3-node cluster, the standard client workloads, report in
## benches/reports/<version>/ (Markdown table + latency plots)
## bench-etcd: the same, plus the same workloads against a 3-member etcd, side by side
.PHONY: bench-suite bench-etcd
bench-suite:
	benches/run_suite.sh

bench-etcd:
	benches/run_suite.sh --etcd

## ---- scaling and profiling (scripts in benches/; `benches/<script> --help` lists their settings) ----
## bench-scaling: write and read throughput per node with cores = shards_per_node = N for each N
##   of CORES (default "1 2"), ratio to linear, CPU µs per request per node; report in
##   benches/reports/scaling-<stamp>.md. SCALING_NODES=1 for a single node. With SKIP_BUILD=1 and
##   RINGRAFT_BIN=… it needs only the binary, bash, coreutils and awk.
## perf-cluster: perf with call graphs on every node of a 3-node cluster under the standard load
##   (100 DiskFirst writes in flight); flame graphs and a summary in perf_reports/<stamp>/.
## bench-scripts-test: self-test of the scripts' parsing and arithmetic (benches/test_lib.sh, < 1 s)
## bench-tails: write tails (100 in flight) against the number of distinct keys (KEYS, default
##   "10000 1000000"), for the built binary and, with BASELINE=<binary>, a baseline in turn.
.PHONY: bench-scaling perf-cluster bench-scripts-test bench-tails
bench-scaling:
	benches/scaling.sh

perf-cluster:
	benches/perf_cluster.sh

bench-scripts-test:
	benches/test_lib.sh

bench-tails: build
	benches/tails_keys.sh $(BASELINE) $${CARGO_TARGET_DIR:-target}/release/ringraft
## ---- fault suite: real processes, real faults, every history checked ----
## chaos: 60 s of mixed faults (kill, pause, partitions, restart-all, ...) against a fresh
##   3-node cluster built from config/ (own ports and work directory: it never touches the
##   cluster of start-cluster). Report in chaos_reports/<time>-seed<seed>/; exit 1 on a violation.
##   SEED=… replays a run's schedule; CHAOS_ARGS=… adds options (see `ringraft chaos --help`).
## chaos-long: 12 minutes, every nemesis (membership changes and leadership transfers included).
CHAOS_SECONDS      ?= 60
CHAOS_LONG_SECONDS ?= 720
CHAOS_ARGS         ?=
CHAOS_SEED_ARG      = $(if $(filter command line environment,$(origin SEED)),--seed $(SEED))

.PHONY: chaos chaos-long
chaos: build
	$(RELEASE_BIN) chaos --seconds $(CHAOS_SECONDS) --nemesis mixed $(CHAOS_SEED_ARG) $(CHAOS_ARGS)

chaos-long: build
	$(RELEASE_BIN) chaos --seconds $(CHAOS_LONG_SECONDS) \
	  --nemesis kill,kill-leader,pause,partition,isolate-leader,bridge,one-way,restart-all,lagging-election,transfer-leader,membership,pause-isolated,disk \
	  $(CHAOS_SEED_ARG) $(CHAOS_ARGS)
