//! The node's metrics as a whole: [`NodeMetrics`] holds every core's and shard's set, sums
//! them and renders the Prometheus text exposition (version 0.0.4) and the shards' JSON for
//! /status. Only reads (relaxed loads). Owned by the node's metrics.

use std::fmt::Write as _;
use std::sync::Arc;

use super::*;

/// Selects one histogram of a core.
type HistogramField = fn(&CoreMetrics) -> &Histogram;
/// Selects one gauge of a shard.
type GaugeField = fn(&ShardGauges) -> u64;

/// Writes the bucket, sum and count lines of one fine histogram (ns, rendered in seconds).
fn render_fine(o: &mut String, name: &str, labels: &str, b: &[u64; FINE_BUCKETS], sum_ns: u64) {
    let mut cum = 0;
    for (i, c) in b.iter().enumerate() {
        cum += c;
        match FineHistogram::bound(i) {
            Some(ns) => {
                let _ = writeln!(
                    o,
                    "{name}_bucket{{{labels},le=\"{}\"}} {cum}",
                    ns as f64 / 1e9
                );
            }
            None => {
                let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
            }
        }
    }
    let _ = writeln!(o, "{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{{{labels}}} {cum}");
}

/// Every metric of a node: one [`CoreMetrics`] per core, one [`ShardGauges`] per shard.
#[derive(Debug)]
pub struct NodeMetrics {
    /// This node's id.
    pub node_id: u64,
    /// Indexed by core.
    pub cores: Vec<Arc<CoreMetrics>>,
    /// Indexed by shard.
    pub shards: Vec<Arc<ShardGauges>>,
    /// Start time, for uptime.
    pub started: std::time::Instant,
}

impl NodeMetrics {
    /// Zeroed metrics for `cores` cores and `shards` shards.
    pub fn new(node_id: u64, cores: usize, shards: usize) -> Self {
        Self {
            node_id,
            cores: (0..cores).map(|_| Arc::default()).collect(),
            shards: (0..shards).map(|_| Arc::default()).collect(),
            started: std::time::Instant::now(),
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(|c| f(c)).sum()
    }

    fn hist_sum(
        &self,
        f: impl Fn(&CoreMetrics) -> &Histogram,
    ) -> ([u64; HISTOGRAM_BUCKETS], u64, u64) {
        let mut b = [0u64; HISTOGRAM_BUCKETS];
        let (mut s, mut n) = (0, 0);
        for c in &self.cores {
            let (cb, cs, cn) = f(c).snapshot();
            for (acc, x) in b.iter_mut().zip(cb) {
                *acc += x;
            }
            s += cs;
            n += cn;
        }
        (b, s, n)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8 << 10);
        let node = self.node_id;
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{node=\"{node}\"}} {v}\n"
            );
        };
        counter(
            &mut o,
            "ringraft_proposals_total",
            "Client proposals accepted into the log.",
            self.sum(|c| c.proposals.get()),
        );
        counter(
            &mut o,
            "ringraft_entries_committed_total",
            "Log entries committed.",
            self.sum(|c| c.entries_committed.get()),
        );
        counter(
            &mut o,
            "ringraft_entries_applied_total",
            "Log entries applied to the state machine.",
            self.sum(|c| c.entries_applied.get()),
        );
        counter(
            &mut o,
            "ringraft_leader_elections_total",
            "Elections won by shards of this node.",
            self.sum(|c| c.leader_elections.get()),
        );
        counter(
            &mut o,
            "ringraft_raft_invalid_messages_total",
            "Raft messages from peers refused as invalid (no honest peer sends them).",
            self.sum(|c| c.raft_invalid_messages.get()),
        );
        counter(
            &mut o,
            "ringraft_wal_reclaim_snapshots_total",
            "Shards compacted early because they pinned the oldest WAL segments.",
            self.sum(|c| c.wal_reclaim_snapshots.get()),
        );
        counter(
            &mut o,
            "ringraft_wal_no_space_waits_total",
            "WAL writes that found no space for the next segment and waited to retry.",
            self.sum(|c| c.wal_no_space_waits.get()),
        );
        counter(
            &mut o,
            "ringraft_snapshot_chunks_refused_total",
            "Snapshot chunks from peers refused (bad offset or length, over a size bound).",
            self.sum(|c| c.snapshot_chunks_refused.get()),
        );
        counter(
            &mut o,
            "ringraft_bytes_in_total",
            "Bytes received on client and peer connections.",
            self.sum(|c| c.bytes_in.get()),
        );
        counter(
            &mut o,
            "ringraft_bytes_out_total",
            "Bytes sent on client and peer connections.",
            self.sum(|c| c.bytes_out.get()),
        );
        counter(
            &mut o,
            "ringraft_frames_in_total",
            "Frames received.",
            self.sum(|c| c.frames_in.get()),
        );
        counter(
            &mut o,
            "ringraft_frames_out_total",
            "Frames sent.",
            self.sum(|c| c.frames_out.get()),
        );
        counter(
            &mut o,
            "ringraft_connections_accepted_total",
            "Connections accepted.",
            self.sum(|c| c.connections_accepted.get()),
        );
        let _ = write!(
            o,
            "# HELP ringraft_connections_open Connections open now.\n# TYPE ringraft_connections_open gauge\nringraft_connections_open{{node=\"{node}\"}} {}\n",
            self.sum(|c| c.connections_open.get())
        );
        let _ = writeln!(o, "# HELP ringraft_reads_total Reads served, by consistency.\n# TYPE ringraft_reads_total counter");
        for (i, name) in ["linearizable", "lease", "eventual"].iter().enumerate() {
            let _ = writeln!(
                o,
                "ringraft_reads_total{{node=\"{node}\",consistency=\"{name}\"}} {}",
                self.sum(|c| c.reads[i].get())
            );
        }
        let _ = writeln!(
            o,
            "# HELP ringraft_errors_total Errors, by kind.\n# TYPE ringraft_errors_total counter"
        );
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "ringraft_errors_total{{node=\"{node}\",kind=\"{}\"}} {}",
                k.label(),
                self.sum(|c| c.errors[i].get())
            );
        }
        let hists: [(&str, &str, f64, HistogramField); 5] = [
            (
                "ringraft_commit_latency_seconds",
                "Write latency from proposal to apply.",
                1e-6,
                |c| &c.commit_latency_us,
            ),
            (
                "ringraft_read_latency_seconds",
                "Read latency.",
                1e-6,
                |c| &c.read_latency_us,
            ),
            (
                "ringraft_fsync_latency_seconds",
                "WAL sync latency.",
                1e-6,
                |c| &c.fsync_latency_us,
            ),
            (
                "ringraft_fsync_batch_entries",
                "Entries made durable by one WAL sync.",
                1.0,
                |c| &c.fsync_batch_entries,
            ),
            (
                "ringraft_snapshot_take_seconds",
                "Time the executor spent taking a shard's snapshot, its bytes built off the executor (the core serves nothing meanwhile).",
                1e-6,
                |c| &c.snapshot_take_us,
            ),
        ];
        for (name, help, scale, f) in hists {
            let (b, s, n) = self.hist_sum(f);
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut cum = 0;
            for (i, c) in b.iter().enumerate() {
                cum += c;
                if i + 1 == HISTOGRAM_BUCKETS {
                    let _ = writeln!(o, "{name}_bucket{{node=\"{node}\",le=\"+Inf\"}} {cum}");
                } else {
                    let le = (1u64 << i) as f64 * scale;
                    let _ = writeln!(o, "{name}_bucket{{node=\"{node}\",le=\"{le}\"}} {cum}");
                }
            }
            let _ = writeln!(o, "{name}_sum{{node=\"{node}\"}} {}", s as f64 * scale);
            let _ = writeln!(o, "{name}_count{{node=\"{node}\"}} {n}");
        }
        self.render_stages(&mut o);
        self.render_executors(&mut o);
        let gauges: [(&str, &str, GaugeField); 8] = [
            ("ringraft_shard_term", "Current Raft term.", |g| {
                g.term.get()
            }),
            (
                "ringraft_shard_role",
                "Role: 0 follower, 1 candidate, 2 leader, 3 learner.",
                |g| g.role.get(),
            ),
            (
                "ringraft_shard_leader_id",
                "Known leader (0 = none).",
                |g| g.leader_id.get(),
            ),
            ("ringraft_shard_commit_index", "Commit index.", |g| {
                g.commit_index.get()
            }),
            ("ringraft_shard_applied_index", "Applied index.", |g| {
                g.applied_index.get()
            }),
            ("ringraft_shard_last_index", "Last log index.", |g| {
                g.last_index.get()
            }),
            ("ringraft_shard_durable_index", "Durable WAL index.", |g| {
                g.durable_index.get()
            }),
            ("ringraft_shard_keys", "Keys in the state machine.", |g| {
                g.keys.get()
            }),
        ];
        for (name, help, f) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (i, g) in self.shards.iter().enumerate() {
                let _ = writeln!(o, "{name}{{node=\"{node}\",shard=\"{i}\"}} {}", f(g));
            }
        }
        let _ = write!(
            o,
            "# HELP ringraft_uptime_seconds Seconds since start.\n# TYPE ringraft_uptime_seconds gauge\nringraft_uptime_seconds{{node=\"{node}\"}} {}\n",
            self.started.elapsed().as_secs()
        );
        o
    }

    /// The write stages: one histogram family, `stage` labelled, summed over cores.
    fn render_stages(&self, o: &mut String) {
        let node = self.node_id;
        let name = "ringraft_write_stage_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Time a write spends in each stage (leader: received, proposed, locally durable, committed, applied, answered; follower: append received, durable, acknowledged).\n# TYPE {name} histogram"
        );
        for (stage, f) in STAGES {
            let mut b = [0u64; FINE_BUCKETS];
            let mut sum = 0u64;
            for c in &self.cores {
                let (cb, cs) = f(&c.stages).snapshot();
                for (acc, x) in b.iter_mut().zip(cb) {
                    *acc += x;
                }
                sum += cs;
            }
            render_fine(
                o,
                name,
                &format!("node=\"{node}\",stage=\"{stage}\""),
                &b,
                sum,
            );
        }
        let name = "ringraft_write_commit_before_local_durable_total";
        let _ = write!(
            o,
            "# HELP {name} Writes a follower quorum committed before the leader's own WAL sync covering them completed.\n# TYPE {name} counter\n{name}{{node=\"{node}\"}} {}\n",
            self.sum(|c| c.stages.commit_before_local_durable.get())
        );
    }

    /// Every core's executor statistics, `core` labelled.
    fn render_executors(&self, o: &mut String) {
        let node = self.node_id;
        type ExecField = fn(&ExecutorMetrics) -> u64;
        let per_core: [(&str, &str, &str, f64, ExecField); 9] = [
            ("ringraft_executor_tasks_total", "counter", "Tasks the core's executor polled.", 1.0, |e| e.tasks_executed.get()),
            ("ringraft_executor_scheduler_runs_total", "counter", "Times the executor's scheduler picked a task queue.", 1.0, |e| e.scheduler_runs.get()),
            ("ringraft_executor_runtime_seconds_total", "counter", "Time the executor spent running tasks.", 1e9, |e| e.runtime_ns.get()),
            ("ringraft_executor_total_runtime_seconds_total", "counter", "Time the executor spent running tasks and polling for I/O.", 1e9, |e| e.total_runtime_ns.get()),
            ("ringraft_executor_busy_ratio", "gauge", "Share of wall time the executor ran tasks, over the last second.", 1e3, |e| e.busy_permille.get()),
            ("ringraft_executor_file_reads_total", "counter", "File reads the executor's io_uring reactor submitted (the WAL uses its own system calls).", 1.0, |e| e.file_reads.get()),
            ("ringraft_executor_file_read_bytes_total", "counter", "Bytes of those file reads.", 1.0, |e| e.file_bytes_read.get()),
            ("ringraft_executor_file_writes_total", "counter", "File writes the executor's io_uring reactor submitted (the WAL uses its own system calls).", 1.0, |e| e.file_writes.get()),
            ("ringraft_executor_file_write_bytes_total", "counter", "Bytes of those file writes.", 1.0, |e| e.file_bytes_written.get()),
        ];
        for (name, kind, help, scale, f) in per_core {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (core, c) in self.cores.iter().enumerate() {
                let v = f(&c.executor);
                if scale == 1.0 {
                    let _ = writeln!(o, "{name}{{node=\"{node}\",core=\"{core}\"}} {v}");
                } else {
                    let _ = writeln!(
                        o,
                        "{name}{{node=\"{node}\",core=\"{core}\"}} {}",
                        v as f64 / scale
                    );
                }
            }
        }
        for (name, help, scale, pick) in [
            (
                "ringraft_task_queue_runtime_seconds_total",
                "Time each task queue of the executor ran.",
                1e9,
                0,
            ),
            (
                "ringraft_task_queue_selected_total",
                "Times each task queue was picked to run (runtime / selected = time per turn).",
                1.0,
                1,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (core, c) in self.cores.iter().enumerate() {
                for q in 0..MAX_TASK_QUEUES {
                    let v = if pick == 0 {
                        c.executor.queue_runtime_ns[q].get()
                    } else {
                        c.executor.queue_selected[q].get()
                    };
                    if v == 0 {
                        continue;
                    }
                    let _ = writeln!(
                        o,
                        "{name}{{node=\"{node}\",core=\"{core}\",queue=\"{q}\"}} {}",
                        v as f64 / scale
                    );
                }
            }
        }
        let name = "ringraft_executor_wakeup_delay_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} How late the executor's probe task ran after its timer was due: how long a ready task waits for the executor.\n# TYPE {name} histogram"
        );
        for (core, c) in self.cores.iter().enumerate() {
            let (b, sum) = c.executor.wakeup_delay.snapshot();
            render_fine(
                o,
                name,
                &format!("node=\"{node}\",core=\"{core}\""),
                &b,
                sum,
            );
        }
    }

    /// Per-shard state as JSON (for `/status`).
    pub fn shards_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.shards
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    serde_json::json!({
                        "shard": i,
                        "role": RoleGauge::name(g.role.get()),
                        "term": g.term.get(),
                        "leader_id": g.leader_id.get(),
                        "commit_index": g.commit_index.get(),
                        "applied_index": g.applied_index.get(),
                        "last_index": g.last_index.get(),
                        "durable_index": g.durable_index.get(),
                        "keys": g.keys.get(),
                    })
                })
                .collect(),
        )
    }
}
