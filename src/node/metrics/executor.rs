//! Statistics of each core's glommio executor and the probe task that samples them (how late
//! a task runs, how busy the executor is, its task queues and file I/O). One per core, written
//! only by the probe task on that core. Owned by the node's metrics.

use std::sync::Arc;

use super::{CoreMetrics, Counter, FineHistogram, Gauge};

/// Task queues of one executor whose statistics are kept; a queue with a larger index is
/// counted with the last one (a node creates one or two).
pub const MAX_TASK_QUEUES: usize = 4;
/// How often an executor's probe task wakes up to measure how late it runs (its scheduling
/// delay): ten wake-ups a second cost nothing measurable.
pub const EXECUTOR_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Probes between two readings of the executor's own statistics (once a second).
pub const EXECUTOR_STATS_EVERY: u32 = 10;

/// Statistics of one core's glommio executor, accumulated by [`sample_executor`] from the
/// executor's own counters (which it resets on every reading).
#[derive(Debug, Default)]
pub struct ExecutorMetrics {
    /// Tasks polled.
    pub tasks_executed: Counter,
    /// Times the scheduler picked a task queue to run.
    pub scheduler_runs: Counter,
    /// Time spent running tasks, ns.
    pub runtime_ns: Counter,
    /// Time running tasks plus polling for I/O, ns.
    pub total_runtime_ns: Counter,
    /// Share of wall time spent running tasks over the last reading, per mille.
    pub busy_permille: Gauge,
    /// Per task queue (by queue index): time run, ns.
    pub queue_runtime_ns: [Counter; MAX_TASK_QUEUES],
    /// Per task queue: times selected to run.
    pub queue_selected: [Counter; MAX_TASK_QUEUES],
    /// File reads and writes the reactor submitted (io_uring), and their bytes.
    pub file_reads: Counter,
    /// Bytes read from files.
    pub file_bytes_read: Counter,
    /// File writes submitted.
    pub file_writes: Counter,
    /// Bytes written to files.
    pub file_bytes_written: Counter,
    /// How late the probe task ran after its timer was due: the delay a task waits for the
    /// executor, ns.
    pub wakeup_delay: FineHistogram,
}

/// Samples the running executor's statistics into `m` forever: every
/// [`EXECUTOR_PROBE_INTERVAL`] it records how late it woke up, and every
/// [`EXECUTOR_STATS_EVERY`] probes it adds the executor's counters. Spawn one per core, on
/// that core's executor.
pub async fn sample_executor(m: Arc<CoreMetrics>) {
    let ex = &m.executor;
    let mut last = std::time::Instant::now();
    let mut probes = 0u32;
    loop {
        let due = std::time::Instant::now() + EXECUTOR_PROBE_INTERVAL;
        glommio::timer::sleep(EXECUTOR_PROBE_INTERVAL).await;
        let now = std::time::Instant::now();
        ex.wakeup_delay.record_between(due, now);
        probes += 1;
        if probes < EXECUTOR_STATS_EVERY {
            continue;
        }
        probes = 0;
        let e = glommio::executor();
        let st = e.executor_stats();
        ex.tasks_executed.add(st.tasks_executed());
        ex.scheduler_runs.add(st.scheduler_runs());
        let run = st.executor_runtime().as_nanos() as u64;
        ex.runtime_ns.add(run);
        ex.total_runtime_ns
            .add(st.total_runtime().as_nanos() as u64);
        let wall = now.saturating_duration_since(last).as_nanos().max(1) as u64;
        ex.busy_permille.set(
            run.saturating_mul(1000)
                .checked_div(wall)
                .unwrap_or(0)
                .min(1000),
        );
        last = now;
        for q in e.all_task_queue_stats(Vec::new()) {
            let i = q.index().index().min(MAX_TASK_QUEUES - 1);
            ex.queue_runtime_ns[i].add(q.runtime().as_nanos() as u64);
            ex.queue_selected[i].add(q.queue_selected());
        }
        let io = e.io_stats().all_rings();
        let (reads, read_bytes) = io.file_reads();
        let (writes, write_bytes) = io.file_writes();
        ex.file_reads.add(reads);
        ex.file_bytes_read.add(read_bytes);
        ex.file_writes.add(writes);
        ex.file_bytes_written.add(write_bytes);
    }
}
