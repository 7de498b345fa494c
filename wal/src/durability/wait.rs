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
        match self.shared.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
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
