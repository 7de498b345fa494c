# ringraft — build, test, benchmark and run a local cluster.
# Every target is safe to run from a fresh checkout; `make test` is what CI runs.

CARGO        ?= cargo
RELEASE_BIN  := target/release/ringraft
SEED         ?= 1
STEPS        ?= 20000

.PHONY: all build test test-fast fmt fmt-check clippy lint bench bench-wal bench-net bench-raft \
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

## bench: every benchmark; each writes its report under benches/reports/
bench: bench-wal bench-net bench-raft

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
