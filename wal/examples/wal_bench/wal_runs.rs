//! The WAL's own runs: closed loop (append a batch, wait until durable) in either write mode,
//! optionally spinning, and open loop (pipelined: a waiter thread times each batch while the
//! appender goes on). Each run uses a fresh directory and removes it.

use std::path::Path;
use std::time::{Duration, Instant};

use ringraft_wal::{FlushPolicy, Wal, WalOptions, WriteMode};

use crate::measure::{cpu_now, Cpu, Run};
use crate::{GROUPS, PAYLOAD_BYTES};

/// Batches appended and made durable before a closed-loop run starts measuring.
const WARMUP_BATCHES: usize = 20;
/// Backpressure bound of the pipelined runs.
const PIPELINE_MAX_BUFFERED: u64 = 200_000;
/// Batches in flight between the pipelined appender and its latency waiter.
const PIPELINE_QUEUE_BATCHES: usize = 1 << 16;
/// Worker spin of the *spin* configuration (µs).
const SPIN_WORKER_US: u64 = 150;
/// Waiter spin of the *spin* configuration (µs).
const SPIN_WAIT_US: u64 = 400;

pub fn wal_run(
    dir: &Path,
    batch: usize,
    secs: f64,
    spin: bool,
    mode: WriteMode,
) -> Result<Run, String> {
    let _ = std::fs::remove_dir_all(dir);
    let opts = WalOptions {
        write_mode: mode,
        flush_policy: if batch == 1 {
            FlushPolicy::Immediate
        } else {
            FlushPolicy::Batch {
                threshold: batch as u64,
                interval_ms: 1000,
            }
        },
        max_buffered_entries: 1 << 20,
        flush_workers: if spin { 1 } else { 2 },
        worker_spin_us: if spin { SPIN_WORKER_US } else { 0 },
        wait_spin_us: if spin { SPIN_WAIT_US } else { 0 },
        ..WalOptions::default()
    };
    let mut wal = Wal::open(dir, opts).map_err(|e| e.to_string())?;
    let durability = wal.durability();
    let mut records = Records::new();
    // Warm up: one segment roll's worth is not needed, a few batches are.
    for _ in 0..WARMUP_BATCHES {
        let lsn = records.append(&mut wal, batch)?;
        wal.flush();
        durability.wait_blocking(lsn).map_err(|e| e.to_string())?;
    }
    let mut run = Run::default();
    let start = Start::now(&wal);
    let limit = Duration::from_secs_f64(secs);
    while start.at.elapsed() < limit {
        let t0 = Instant::now();
        let lsn = records.append(&mut wal, batch)?;
        wal.flush();
        let t1 = Instant::now();
        durability.wait_blocking(lsn).map_err(|e| e.to_string())?;
        run.closed_batch(t0, t1, batch);
    }
    run.secs = start.at.elapsed().as_secs_f64();
    start.cpu_into(&mut run);
    start.wal_into(&mut run, &wal);
    close(wal, dir);
    Ok(run)
}

/// Closed loop of single records (pwrite mode), each made durable by the appending thread
/// itself ([`ringraft_wal::Durability::sync_here`]): the same work as a flush worker's sync
/// without the two thread hand-offs (worker woken, appender woken back).
pub fn wal_here_run(dir: &Path, secs: f64) -> Result<Run, String> {
    let _ = std::fs::remove_dir_all(dir);
    let mut wal = Wal::open(dir, caller_sync_options()).map_err(|e| e.to_string())?;
    let durability = wal.durability();
    let mut records = Records::new();
    let mut one = |wal: &mut Wal| -> Result<(Instant, Instant), String> {
        let t0 = Instant::now();
        records.append(wal, 1)?;
        let t1 = Instant::now();
        durability.sync_here().map_err(|e| e.to_string())?;
        Ok((t0, t1))
    };
    for _ in 0..WARMUP_BATCHES {
        one(&mut wal)?;
    }
    let mut run = Run::default();
    let start = Start::now(&wal);
    let limit = Duration::from_secs_f64(secs);
    while start.at.elapsed() < limit {
        let (t0, t1) = one(&mut wal)?;
        run.closed_batch(t0, t1, 1);
    }
    run.secs = start.at.elapsed().as_secs_f64();
    start.cpu_into(&mut run);
    start.wal_into(&mut run, &wal);
    close(wal, dir);
    Ok(run)
}

/// Open loop: the appender never waits for its own batches; it appends batches of `batch`
/// records back to back (a sync is requested at each batch end by the Batch policy) and a
/// waiter thread measures, per batch, the time from its last append to durable. Only
/// backpressure (`max_buffered_entries`) makes the appender wait.
pub fn wal_pipelined_run(dir: &Path, batch: usize, secs: f64) -> Result<Run, String> {
    let _ = std::fs::remove_dir_all(dir);
    let opts = WalOptions {
        flush_policy: FlushPolicy::Batch {
            threshold: batch as u64,
            interval_ms: 1000,
        },
        max_buffered_entries: PIPELINE_MAX_BUFFERED,
        ..WalOptions::default()
    };
    let mut wal = Wal::open(dir, opts).map_err(|e| e.to_string())?;
    let payload = vec![0xA5u8; PAYLOAD_BYTES];
    let durability = wal.durability();
    let (tx, rx) = flume::bounded::<(u64, Instant)>(PIPELINE_QUEUE_BATCHES);
    let d2 = durability.clone();
    let waiter = std::thread::spawn(move || -> Result<Vec<u64>, String> {
        let mut lat = Vec::new();
        for (lsn, t) in rx.iter() {
            d2.wait_blocking(lsn).map_err(|e| e.to_string())?;
            lat.push(t.elapsed().as_nanos() as u64);
        }
        Ok(lat)
    });
    let mut next = [1u64; GROUPS as usize];
    let mut k = 0u64;
    let mut run = Run::default();
    let start = Start::now(&wal);
    let limit = Duration::from_secs_f64(secs);
    while start.at.elapsed() < limit {
        let mut lsn = 0;
        let mut n = 0;
        while n < batch {
            let g = k % GROUPS;
            match wal.append(g, next[g as usize], 1, &payload) {
                Ok(l) => {
                    lsn = l;
                    next[g as usize] += 1;
                    k += 1;
                    n += 1;
                }
                Err(ringraft_wal::Error::Backpressure { .. }) => {
                    let want = durability.durable_lsn() + 1;
                    durability.wait_blocking(want).map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        tx.send((lsn, Instant::now())).map_err(|e| e.to_string())?;
        run.records += batch as u64;
        run.batches += 1;
    }
    let last = wal.flush();
    durability.wait_blocking(last).map_err(|e| e.to_string())?;
    run.secs = start.at.elapsed().as_secs_f64();
    start.cpu_into(&mut run);
    drop(tx);
    run.wait_ns = waiter.join().map_err(|_| "waiter panicked".to_string())??;
    run.batch_ns = run.wait_ns.clone();
    start.wal_into(&mut run, &wal);
    close(wal, dir);
    Ok(run)
}

/// Closed loop of single records (pwrite mode) on a glommio executor on the calling thread,
/// each made durable by the appending task itself with its fdatasync submitted through the
/// executor's io_uring ([`ringraft_wal::Durability::sync_with`]): no flush worker, and the
/// thread is free for other tasks while the disk syncs (the node's
/// `wal_executor_sync = "io_uring"`).
pub fn wal_uring_run(dir: &Path, secs: f64) -> Result<Run, String> {
    let _ = std::fs::remove_dir_all(dir);
    let dir_owned = dir.to_path_buf();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .map_err(|e| e.to_string())?;
    ex.run(async move {
        let dir = dir_owned.as_path();
        let mut wal = Wal::open(dir, caller_sync_options()).map_err(|e| e.to_string())?;
        let durability = wal.durability();
        let mut records = Records::new();
        let mut one = async |wal: &mut Wal| -> Result<(Instant, Instant), String> {
            let t0 = Instant::now();
            records.append(wal, 1)?;
            let t1 = Instant::now();
            durability
                .sync_with(ringraft_wal::ring::fdatasync)
                .await
                .map_err(|e| e.to_string())?;
            Ok((t0, t1))
        };
        for _ in 0..WARMUP_BATCHES {
            one(&mut wal).await?;
        }
        let mut run = Run::default();
        let start = Start::now(&wal);
        let limit = Duration::from_secs_f64(secs);
        while start.at.elapsed() < limit {
            let (t0, t1) = one(&mut wal).await?;
            run.closed_batch(t0, t1, 1);
        }
        run.secs = start.at.elapsed().as_secs_f64();
        start.cpu_into(&mut run);
        start.wal_into(&mut run, &wal);
        close(wal, dir);
        Ok(run)
    })
}

/// Options of the runs whose appender makes its records durable itself: appends ask for no
/// sync, and the flush workers' interval never comes during a run.
fn caller_sync_options() -> WalOptions {
    WalOptions {
        flush_policy: FlushPolicy::Batch {
            threshold: u64::MAX,
            interval_ms: ringraft_wal::options::MAX_BATCH_INTERVAL_MS,
        },
        max_buffered_entries: 1 << 20,
        ..WalOptions::default()
    }
}

/// The records a run appends: `PAYLOAD_BYTES` each, round-robin over `GROUPS` groups, each
/// group's indexes consecutive from 1.
struct Records {
    payload: Vec<u8>,
    next: [u64; GROUPS as usize],
    count: u64,
}

impl Records {
    fn new() -> Records {
        Records {
            payload: vec![0xA5u8; PAYLOAD_BYTES],
            next: [1; GROUPS as usize],
            count: 0,
        }
    }

    /// Appends the next `n` records; returns the last one's lsn.
    fn append(&mut self, wal: &mut Wal, n: usize) -> Result<u64, String> {
        let mut lsn = 0;
        for _ in 0..n {
            let g = self.count % GROUPS;
            self.count += 1;
            lsn = wal
                .append(g, self.next[g as usize], 1, &self.payload)
                .map_err(|e| e.to_string())?;
            self.next[g as usize] += 1;
        }
        Ok(lsn)
    }
}

/// Where a measured run starts: the WAL's sync count, the CPU times and the clock.
struct Start {
    syncs: u64,
    cpu: Cpu,
    at: Instant,
}

impl Start {
    fn now(wal: &Wal) -> Start {
        Start {
            syncs: wal.stats().syncs,
            cpu: cpu_now(),
            at: Instant::now(),
        }
    }

    /// Puts the CPU time used since the start (until now) into `run`.
    fn cpu_into(&self, run: &mut Run) {
        let now = cpu_now();
        run.cpu_process_us = now.process_us - self.cpu.process_us;
        run.cpu_thread_us = now.thread_us - self.cpu.thread_us;
    }

    /// Puts the syncs since the start and the roll stalls of `wal` into `run`.
    fn wal_into(&self, run: &mut Run, wal: &Wal) {
        run.syncs = wal.stats().syncs - self.syncs;
        run.roll_stalls = wal.stats().roll_stalls;
    }
}

/// Closes the WAL and removes its directory.
fn close(wal: Wal, dir: &Path) {
    drop(wal);
    let _ = std::fs::remove_dir_all(dir);
}
