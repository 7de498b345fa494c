//! [`Durability`], the public cloneable handle on the durable position, and [`DurableWait`],
//! the future that resolves once an lsn is durable (its waker is woken from a flush worker
//! thread, so any executor can poll it). Both only read and register with [`Shared`]; a
//! dropped wait deregisters its waker, so the waiter registry stays bounded by live waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::{Lsn, Shared};
use crate::error::{Error, Result};

/// Cloneable, thread-safe handle on the WAL's durable position.
#[derive(Clone)]
pub struct Durability {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

impl Durability {
    /// Highest lsn durable on disk.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable()
    }

    /// Highest lsn appended (in the map, maybe not yet durable).
    pub fn appended_lsn(&self) -> Lsn {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Asks for a sync of everything appended so far, whatever the policy.
    pub fn flush(&self) {
        self.shared.maybe_request(true);
    }

    /// Claims everything published so far and makes it durable on the calling thread (the
    /// stage written out and fdatasynced through a file description of its own), with no flush
    /// worker woken and no thread woken back: it blocks the calling thread for the write and
    /// the sync. Nothing is done when a sync in flight already covers everything published;
    /// await [`Durability::wait`] afterwards either way. Fails (and the log is poisoned) when
    /// the write or the sync fails, or when the log already is poisoned.
    pub fn sync_here(&self) -> Result<()> {
        self.shared.run_sync(self.shared.caller_slot);
        self.shared.check_poisoned()
    }

    /// Like [`Durability::sync_here`], but each segment's fdatasync is the caller's future
    /// `fdatasync(fd)`, so an async caller keeps running while the disk syncs (e.g. a glommio
    /// executor submits it through its io_uring): claims everything published so far (a ticket
    /// in the same order as the flush workers' syncs), writes out the stage and any segment
    /// header on the calling thread (page-cache copies), then awaits `fdatasync(fd)` for each
    /// segment holding claimed records, oldest first, on the caller slot's own file
    /// description, and completes the claim. `fd` stays open until the future it was passed
    /// to resolves or is dropped; the callee must not close it (`dup` it for an I/O layer that
    /// takes ownership). The fdatasync must really be one (started after this call, covering
    /// the whole file's data): durability is published on its `Ok`.
    ///
    /// Nothing is done when a sync in flight already covers everything published; await
    /// [`Durability::wait`] afterwards either way. Fails (and the log is poisoned) when the
    /// write or a sync fails, or when the log already is poisoned; a sync with an earlier
    /// ticket that failed is never masked by this one's success. Dropping the future after it
    /// claimed a sync and before it finished poisons the log, as nobody can tell whether the
    /// abandoned sync would have succeeded. `Mmap` mode: the msyncs run on the calling thread.
    pub async fn sync_with<F, Fut>(&self, fdatasync: F) -> Result<()>
    where
        F: FnMut(std::os::fd::RawFd) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        self.shared.run_sync_with(fdatasync).await;
        self.shared.check_poisoned()
    }

    /// Counters (syncs, failures, syncs claimed by callers, ...).
    pub fn stats(&self) -> super::WalStats {
        super::stats_of(&self.shared)
    }

    /// A future that resolves once `lsn` is durable (or with the error that prevents it). Any
    /// executor can poll it; it is woken from a flush worker thread. It does not borrow the
    /// `Wal`, so the owner keeps appending while it waits.
    pub fn wait(&self, lsn: Lsn) -> DurableWait {
        DurableWait {
            shared: self.shared.clone(),
            lsn,
            id: None,
        }
    }

    /// Blocks the calling thread until `lsn` is durable (spinning `wait_spin_us` first).
    pub fn wait_blocking(&self, lsn: Lsn) -> Result<()> {
        self.wait_blocking_timeout(lsn, None)
            .unwrap_or(Err(Error::Closed))
    }

    /// Like `wait_blocking` with an upper bound; `None` when the time ran out.
    pub fn wait_blocking_timeout(&self, lsn: Lsn, timeout: Option<Duration>) -> Option<Result<()>> {
        let start = Instant::now();
        if self.shared.wait_spin_us > 0 {
            let spin = Duration::from_micros(self.shared.wait_spin_us);
            while start.elapsed() < spin {
                if let Some(r) = self.shared.check(lsn) {
                    return Some(r);
                }
                std::hint::spin_loop();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = self.wait(lsn);
        loop {
            if let Poll::Ready(r) = Pin::new(&mut fut).poll(&mut cx) {
                return Some(r);
            }
            match timeout {
                None => std::thread::park(),
                Some(t) => {
                    let left = t.checked_sub(start.elapsed())?;
                    std::thread::park_timeout(left);
                }
            }
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Future returned by [`Durability::wait`] / [`crate::Wal::wait_durable`].
pub struct DurableWait {
    shared: Arc<Shared>,
    lsn: Lsn,
    id: Option<u64>,
}

impl Future for DurableWait {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let r = this.shared.poll_lsn(this.lsn, &mut this.id, cx.waker());
        if r.is_ready() {
            this.shared.forget(this.lsn, this.id.take());
        }
        r
    }
}

impl Drop for DurableWait {
    fn drop(&mut self) {
        self.shared.forget(self.lsn, self.id);
    }
}
