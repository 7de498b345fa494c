//! A core's background worker: one plain thread at a lowered scheduling priority that runs the
//! core's bulk snapshot work (streaming a frozen store into its snapshot file, freeing the old
//! stores and snapshot bytes) one job at a time, in the order they were handed over.
//!
//! Why a thread of its own rather than glommio's blocking pool: serializing a large state takes
//! a core's worth of CPU for seconds, and at the default priority the scheduler shares the CPU
//! evenly between it and the executors, so every executor on a busy machine runs late while it
//! lasts (replicas take their snapshots at about the same log index, so on a shared machine the
//! three of them compete at once). At [`BACKGROUND_NICE`] the scheduler gives the executors
//! the CPU whenever they can run, and the worker the rest. The worker may use any CPU of the
//! process (it does not inherit a pinned executor's affinity), so the idle ones serve it.
//!
//! Invariants: jobs run in order, one at a time; the thread ends once every handle is dropped
//! and the jobs queued before that have run. At most [`MAX_BACKGROUND_JOBS`] jobs wait. The
//! priority is lowered once, for the thread's whole life, so a later job never runs at a higher
//! one (an unprivileged thread cannot raise its priority back). Owned by the core's snapshot
//! writer.

use std::io;

/// Nice value of a background worker thread (19, the lowest priority of the normal
/// scheduler): it gets the CPU the executors leave idle, and only a sliver while they run.
pub const BACKGROUND_NICE: i32 = 19;

/// Most jobs waiting for a background worker: each shard has at most a few snapshot jobs and
/// frees waiting, so the bound is reached only with thousands of shards on one core; then the
/// caller waits for room.
pub const MAX_BACKGROUND_JOBS: usize = 1_024;

type Job = Box<dyn FnOnce() + Send>;

/// Handle on a background worker thread; cloning it shares the thread.
#[derive(Clone)]
pub struct BackgroundWorker {
    tx: flume::Sender<Job>,
}

impl BackgroundWorker {
    /// Starts a worker thread named `name` at nice `nice` (never above the priority the
    /// process already runs at). Lowering the priority or widening the affinity can fail (a
    /// restricted container): the worker then runs as it is, and says so in the log.
    pub fn start(name: &str, nice: i32) -> io::Result<BackgroundWorker> {
        let (tx, rx) = flume::bounded::<Job>(MAX_BACKGROUND_JOBS);
        let name = name.to_string();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = set_own_nice(nice) {
                    tracing::warn!(thread = %name, "cannot lower the priority to nice {nice}: {e}");
                }
                if let Err(e) = widen_affinity() {
                    tracing::debug!(thread = %name, "CPU affinity left as inherited: {e}");
                }
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(BackgroundWorker { tx })
    }

    /// Runs `f` on the worker and returns its result; `None` when the worker thread is gone
    /// (it panicked), and then `f` did not run to completion.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done_tx, done_rx) = flume::bounded(1);
        let job: Job = Box::new(move || {
            let _ = done_tx.send(f());
        });
        self.tx.send_async(job).await.ok()?;
        done_rx.recv_async().await.ok()
    }

    /// Drops `v` on the worker (freeing a large structure walks all of it); dropped by the
    /// caller instead when the worker is gone.
    pub async fn drop_later<T: Send + 'static>(&self, v: T) {
        if let Err(flume::SendError(job)) = self.tx.send_async(Box::new(move || drop(v))).await {
            drop(job);
        }
    }
}

/// Sets the calling thread's nice value (Linux: a thread's own priority, not the process's).
#[cfg(target_os = "linux")]
pub fn set_own_nice(nice: i32) -> io::Result<()> {
    let nice = nice.max(own_nice()?);
    // SAFETY: plain syscalls on the calling thread; no memory is passed.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
pub fn own_nice() -> io::Result<i32> {
    // SAFETY: plain syscalls on the calling thread. getpriority may legitimately return -1,
    // so errno is cleared first and checked after.
    unsafe {
        *libc::__errno_location() = 0;
        let tid = libc::gettid();
        let n = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if n == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n)
    }
}

/// Lets the calling thread run on every CPU the process's main thread may use (a thread
/// started from a pinned executor inherits that executor's single CPU).
#[cfg(target_os = "linux")]
fn widen_affinity() -> io::Result<()> {
    // SAFETY: `set` is a plain bit set, zero-initialised, of the size passed; both calls only
    // read or write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::sched_setaffinity(0, size, &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn set_own_nice(_: i32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(target_os = "linux"))]
pub fn own_nice() -> io::Result<i32> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(target_os = "linux"))]
fn widen_affinity() -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_worker_runs_jobs_in_order_on_its_own_low_priority_thread() {
        let caller_nice = own_nice().unwrap();
        let w = BackgroundWorker::start("ringraft-bg-test", BACKGROUND_NICE).unwrap();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        let (nice, name, order) = ex.run(async move {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            for i in 0..5 {
                let seen = seen.clone();
                w.drop_later(DropsInto(i, seen)).await;
            }
            let (nice, name) = w
                .run(|| {
                    let name = std::thread::current().name().map(str::to_string);
                    (own_nice().unwrap(), name)
                })
                .await
                .unwrap();
            let order = seen.lock().unwrap().clone();
            (nice, name, order)
        });
        assert_eq!(nice, BACKGROUND_NICE.max(caller_nice));
        assert_eq!(name.as_deref(), Some("ringraft-bg-test"));
        // Jobs ran in the order they were handed over, each before the next was answered.
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        // Only the worker thread's priority changed.
        assert_eq!(own_nice().unwrap(), caller_nice);
    }

    /// Pushes its number into the shared list when dropped.
    struct DropsInto(u32, std::sync::Arc<std::sync::Mutex<Vec<u32>>>);

    impl Drop for DropsInto {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
}
