//! What one benchmark run measured ([`Run`]), CPU time, percentiles, the median run, several
//! writers at once, and the busy neighbour thread. Shared by the WAL and raw runs.

use std::time::Instant;

/// A nice-19 thread that spins, so no vCPU halts: on this VM an I/O completion that arrives
/// while every vCPU is halted takes up to a host timer tick (~4 ms) to be delivered. The nice
/// level keeps it from taking CPU time from the measured threads.
pub struct Neighbour {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Neighbour {
    pub fn start() -> Neighbour {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            // SAFETY: plain syscalls on the calling thread.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 19);
            }
            while !s.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Neighbour {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub process_us: f64,
    pub thread_us: f64,
}

pub fn cpu_now() -> Cpu {
    let get = |who| {
        // SAFETY: rusage is plain old data, so all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we pass; no other memory is touched.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    Cpu {
        process_us: get(libc::RUSAGE_SELF),
        thread_us: get(libc::RUSAGE_THREAD),
    }
}

#[derive(Clone, Default)]
pub struct Run {
    pub records: u64,
    pub secs: f64,
    pub wait_ns: Vec<u64>,
    pub batch_ns: Vec<u64>,
    pub cpu_process_us: f64,
    pub cpu_thread_us: f64,
    pub syncs: u64,
    pub batches: u64,
    pub roll_stalls: u64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }

    /// Records one closed-loop batch of `records` records that was durable just now: its
    /// appends began at `t0` and ended at `t1`.
    pub fn closed_batch(&mut self, t0: Instant, t1: Instant, records: usize) {
        let t2 = Instant::now();
        self.wait_ns.push((t2 - t1).as_nanos() as u64);
        self.batch_ns.push((t2 - t0).as_nanos() as u64);
        self.records += records as u64;
        self.batches += 1;
    }
}

pub fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let k = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[k] as f64 / 1000.0
}

/// `n` writers at once, each on its own file or WAL directory (three nodes on one disk): the
/// merged latencies and summed records of all writers together.
pub fn concurrent<F>(n: usize, f: F) -> Result<Run, String>
where
    F: Fn(usize) -> Result<Run, String> + Sync,
{
    let runs: Vec<Result<Run, String>> = std::thread::scope(|s| {
        let f = &f;
        let hs: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
            .collect()
    });
    let mut all = Run::default();
    for r in runs {
        let r = r?;
        all.records += r.records;
        all.secs = all.secs.max(r.secs);
        all.wait_ns.extend(r.wait_ns);
        all.batch_ns.extend(r.batch_ns);
        all.cpu_thread_us += r.cpu_thread_us;
        all.cpu_process_us = all.cpu_process_us.max(r.cpu_process_us);
        all.syncs += r.syncs;
        all.batches += r.batches;
        all.roll_stalls += r.roll_stalls;
    }
    Ok(all)
}

/// The run with the median throughput.
pub fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}
