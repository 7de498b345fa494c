//! Flush workers: `flush_workers` threads that make appended records durable with group commit.
//!
//! A worker sleeps on the request channel (flume, capacity = number of workers) with a timeout
//! (`Batch`: `interval_ms`; `Immediate`: [`IDLE_WAKE_MS`] to notice shutdown), optionally
//! spinning `worker_spin_us` first. On a request or a due timer it *claims* everything published
//! so far (`appended`), writes out the staged records (`Pwrite` mode) and syncs every segment
//! holding unsynced bytes up to that point (fdatasync through the worker's own file
//! description, or msync), then advances `durable` in claim order (durability.rs), wakes the waiters and sends a [`crate::FlushReport`] back over flume. One
//! sync thus covers every record, of every group, appended before it started; records appended
//! while it runs are claimed by the next one (possibly on another worker, so syncs overlap).
//! A failed sync poisons the WAL (see `Error::Poisoned`): after a failed msync/fsync the kernel
//! may have dropped the dirty pages, so retrying could report durability falsely.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::durability::Shared;
use crate::error::{Error, Result};
use crate::options::FlushPolicy;

/// Idle wake-up period of a worker under `Immediate` (to notice shutdown).
pub const IDLE_WAKE_MS: u64 = 100;

/// The worker threads; joined on drop of the `Wal`.
pub(crate) struct FlushWorkers {
    handles: Vec<JoinHandle<()>>,
}

impl FlushWorkers {
    pub fn spawn(
        n: usize,
        shared: Arc<Shared>,
        req_rx: flume::Receiver<()>,
        spin_us: u64,
    ) -> Result<FlushWorkers> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let shared = shared.clone();
            let rx = req_rx.clone();
            let h = std::thread::Builder::new()
                .name(format!("wal-flush-{i}"))
                .spawn(move || run(&shared, &rx, spin_us, i))
                .map_err(|e| Error::io("spawn flush worker", "", e))?;
            handles.push(h);
        }
        Ok(FlushWorkers { handles })
    }

    /// Stops and joins the workers (`shutdown` must already be set on the shared state).
    pub fn join(&mut self, wake: &flume::Sender<()>) {
        for _ in 0..self.handles.len() {
            // Blocking send is fine: every worker keeps draining the channel until it exits.
            let _ = wake.send_timeout((), Duration::from_millis(IDLE_WAKE_MS));
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn run(shared: &Shared, rx: &flume::Receiver<()>, spin_us: u64, worker: usize) {
    let timeout = match shared.policy {
        FlushPolicy::Immediate => Duration::from_millis(IDLE_WAKE_MS),
        FlushPolicy::Batch { interval_ms, .. } => Duration::from_millis(interval_ms),
    };
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        if spin_us > 0 {
            let start = Instant::now();
            let spin = Duration::from_micros(spin_us);
            while rx.is_empty() && start.elapsed() < spin {
                std::hint::spin_loop();
            }
        }
        match rx.recv_timeout(timeout) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        if !shared.run_sync(worker) {
            return;
        }
    }
}
