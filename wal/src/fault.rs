//! Fault injection in the file layer, for tests and the chaos suite: failing syncs, short
//! writes, ENOSPC on writes and on segment preparation. Nothing is injected unless a
//! [`FaultInjector`] is put into `WalOptions::fault` explicitly; with none configured each check
//! costs one branch. A node enables one only when its operator (or test) asks for it, e.g. from
//! the `RINGRAFT_WAL_FAULT` variable through [`FaultInjector::from_env`] behind an explicit
//! flag; the WAL itself never reads the environment. Owned by the `wal` crate.
//!
//! Each fault is a [`Trigger`]: "fail the next n operations" and/or "let n operations succeed,
//! then fail every later one" (sticky, like a disk that died). Spec syntax (comma-separated
//! `key=value`): `fsync_fail_after=N`, `fsync_fail_next=N`, `short_write_after=N`,
//! `short_write_next=N`, `enospc_after=N`, `enospc_next=N`, `prepare_enospc=N`,
//! `prepare_enospc_after=N` (N segment preparations succeed, later ones fail with ENOSPC),
//! `prepare_enospc_for=N` (with `_after`: only N of them fail, then space is back),
//! `sync_fail_delay_ms=N` (a failing sync sleeps this long first, so that concurrent syncs on
//! other workers finish meanwhile).

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Environment variable a node may read (only behind an explicit flag) for a fault spec.
pub const FAULT_ENV: &str = "RINGRAFT_WAL_FAULT";
/// Largest injected delay (keeps a misconfigured test from hanging).
pub const MAX_FAULT_DELAY_MS: u64 = 60_000;

const DISABLED: u64 = u64::MAX;

/// One kind of injected failure.
#[derive(Debug)]
pub struct Trigger {
    fail_next: AtomicU32,
    ok_budget: AtomicU64,
    /// Failures left once `ok_budget` ran out (`DISABLED`: fail for ever); at 0 the trigger
    /// disarms (a disk that was full and got space back).
    fail_for: AtomicU64,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            fail_next: AtomicU32::new(0),
            ok_budget: AtomicU64::new(DISABLED),
            fail_for: AtomicU64::new(DISABLED),
        }
    }
}

impl Trigger {
    /// Fail the next `n` operations (then succeed again).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Let `n` more operations succeed, then fail every later one.
    pub fn fail_after(&self, n: u64) {
        self.ok_budget.store(n.min(DISABLED - 1), Ordering::SeqCst);
    }

    /// Once the `fail_after` budget is spent, fail only the next `n` operations, then succeed
    /// again (instead of failing for ever).
    pub fn fail_for(&self, n: u64) {
        self.fail_for.store(n.min(DISABLED - 1), Ordering::SeqCst);
    }

    /// Whether this operation fails.
    fn fire(&self) -> bool {
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return true;
        }
        let r = self
            .ok_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                DISABLED | 0 => None,
                b => Some(b - 1),
            });
        if !matches!(r, Err(0)) {
            return false;
        }
        let left = self
            .fail_for
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                DISABLED | 0 => None,
                n => Some(n - 1),
            });
        match left {
            Ok(1) => {
                // The last failure of the window: disarm.
                self.ok_budget.store(DISABLED, Ordering::SeqCst);
                true
            }
            Ok(_) | Err(DISABLED) => true,
            Err(_) => false,
        }
    }
}

/// What the write path is told to do with one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// Write normally.
    None,
    /// Write the first half of the bytes, then report EIO.
    Short,
    /// Write nothing and report ENOSPC.
    NoSpace,
}

/// Failures to inject, shared (`Arc`) between the test and the WAL's threads.
#[derive(Debug, Default)]
pub struct FaultInjector {
    /// Segment preparation (fallocate) fails with ENOSPC.
    pub prepare_enospc: Trigger,
    /// A sync (fdatasync or msync) fails with EIO.
    pub sync_eio: Trigger,
    /// A record write (pwrite) writes half its bytes, then fails with EIO.
    pub short_write: Trigger,
    /// A record write (pwrite) fails with ENOSPC.
    pub write_enospc: Trigger,
    sync_fail_delay_ms: AtomicU64,
}

impl FaultInjector {
    /// A fresh injector that injects nothing.
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Fail the next `n` segment preparations with ENOSPC.
    pub fn fail_prepares_enospc(&self, n: u32) {
        self.prepare_enospc.fail_next(n);
    }

    /// Fail the next `n` syncs with EIO.
    pub fn fail_syncs_eio(&self, n: u32) {
        self.sync_eio.fail_next(n);
    }

    /// A failing sync sleeps `ms` before it reports its error.
    pub fn delay_failing_syncs_ms(&self, ms: u64) {
        self.sync_fail_delay_ms
            .store(ms.min(MAX_FAULT_DELAY_MS), Ordering::SeqCst);
    }

    /// Parses a spec (see the module docs), e.g. `"fsync_fail_after=100"`.
    pub fn from_spec(spec: &str) -> Result<FaultInjector, String> {
        let f = FaultInjector::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("fault spec item {part:?} is not key=value"))?;
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|e| format!("fault spec {k}: {v:?}: {e}"))?;
            let n32 = || u32::try_from(n).map_err(|_| format!("fault spec {k}: {n} too large"));
            match k.trim() {
                "fsync_fail_after" => f.sync_eio.fail_after(n),
                "fsync_fail_next" => f.sync_eio.fail_next(n32()?),
                "short_write_after" => f.short_write.fail_after(n),
                "short_write_next" => f.short_write.fail_next(n32()?),
                "enospc_after" => f.write_enospc.fail_after(n),
                "enospc_next" => f.write_enospc.fail_next(n32()?),
                "prepare_enospc" => f.prepare_enospc.fail_next(n32()?),
                "prepare_enospc_after" => f.prepare_enospc.fail_after(n),
                "prepare_enospc_for" => f.prepare_enospc.fail_for(n),
                "sync_fail_delay_ms" => f.delay_failing_syncs_ms(n),
                other => return Err(format!("unknown fault spec key {other:?}")),
            }
        }
        Ok(f)
    }

    /// Reads [`FAULT_ENV`]: `Ok(None)` when unset. Call only when the operator asked for
    /// fault injection explicitly.
    pub fn from_env() -> Result<Option<FaultInjector>, String> {
        match std::env::var(FAULT_ENV) {
            Ok(spec) => FaultInjector::from_spec(&spec).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(format!("{FAULT_ENV}: {e}")),
        }
    }

    pub(crate) fn check_prepare(&self) -> io::Result<()> {
        if self.prepare_enospc.fire() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    pub(crate) fn check_sync(&self) -> io::Result<()> {
        if self.sync_eio.fire() {
            let ms = self.sync_fail_delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    pub(crate) fn check_write(&self) -> WriteFault {
        if self.write_enospc.fire() {
            WriteFault::NoSpace
        } else if self.short_write.fire() {
            WriteFault::Short
        } else {
            WriteFault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_and_spec() {
        let f = FaultInjector::from_spec("fsync_fail_after=2, short_write_next=1").unwrap();
        assert!(f.check_sync().is_ok());
        assert!(f.check_sync().is_ok());
        assert!(f.check_sync().is_err());
        assert!(f.check_sync().is_err(), "fail_after is sticky");
        assert_eq!(f.check_write(), WriteFault::Short);
        assert_eq!(f.check_write(), WriteFault::None);
        assert!(FaultInjector::from_spec("nonsense=1").is_err());
        assert!(FaultInjector::from_spec("fsync_fail_after").is_err());
        assert!(FaultInjector::new().check_prepare().is_ok());
        // A full disk that gets space back: 2 preparations succeed, 3 fail, then all succeed.
        let f = FaultInjector::from_spec("prepare_enospc_after=2,prepare_enospc_for=3").unwrap();
        let got: Vec<bool> = (0..8).map(|_| f.check_prepare().is_ok()).collect();
        assert_eq!(got, [true, true, false, false, false, true, true, true]);
    }
}
