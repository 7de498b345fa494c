//! Fault injection in the file layer, for tests: a shared counter of upcoming failures per
//! operation. The production code asks the injector (when one is configured) before each
//! segment preparation and each sync; with no injector configured the checks cost one branch.
//! Owned by the `wal` crate; used by its tests to prove that I/O errors come back as errors.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters of failures to inject. Each counter is decremented when it fires.
#[derive(Debug, Default)]
pub struct FaultInjector {
    prepare_enospc: AtomicU32,
    sync_eio: AtomicU32,
}

impl FaultInjector {
    /// A fresh injector that injects nothing.
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Fail the next `n` segment preparations with ENOSPC.
    pub fn fail_prepares_enospc(&self, n: u32) {
        self.prepare_enospc.store(n, Ordering::SeqCst);
    }

    /// Fail the next `n` syncs (msync) with EIO.
    pub fn fail_syncs_eio(&self, n: u32) {
        self.sync_eio.store(n, Ordering::SeqCst);
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn check_prepare(&self) -> io::Result<()> {
        if Self::take(&self.prepare_enospc) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    pub(crate) fn check_sync(&self) -> io::Result<()> {
        if Self::take(&self.sync_eio) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}
