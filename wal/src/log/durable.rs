//! The durability side of [`Wal`]: the appended and durable positions, asking for syncs,
//! waiting for them (as a future or blocking), flush reports and counters. Reads only shared
//! atomics; never blocks except [`Wal::sync`].

use crate::durability::{stats_of, Durability, DurableWait, FlushReport, Lsn, WalStats};
use crate::error::Result;
use crate::recovery::RecoveryReport;

use super::Wal;

impl Wal {
    /// Highest lsn appended (staged or in the map; not necessarily durable).
    pub fn last_lsn(&self) -> Lsn {
        self.next_lsn - 1
    }

    /// Lsn of the latest record appended that is not deferred
    /// ([`Wal::set_hard_state_deferred`]): the position a caller waits for before acting on
    /// everything it asked to be durable. At most [`Wal::last_lsn`]; a sync was asked for it
    /// (under [`crate::FlushPolicy::Immediate`]) unless the policy batches.
    pub fn required_lsn(&self) -> Lsn {
        self.required_lsn
    }

    /// Highest durable lsn (readable any time, also through [`Wal::durability`]).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable()
    }

    /// Highest durable index of `group` (`first_index - 1` when none).
    pub fn durable_index(&self, group: u64) -> u64 {
        let durable = self.shared.durable();
        self.groups
            .get(&group)
            .map_or(0, |g| g.durable_index(durable))
    }

    /// Asks for a sync of everything appended so far (whatever the policy); returns the lsn it
    /// covers. Does not wait.
    pub fn flush(&self) -> Lsn {
        self.shared.maybe_request(true);
        self.last_lsn()
    }

    /// Future resolving when `lsn` is durable; pollable by any executor, does not borrow `self`.
    pub fn wait_durable(&self, lsn: Lsn) -> DurableWait {
        self.durability().wait(lsn)
    }

    /// Flushes and blocks the calling thread until everything appended so far is durable. For
    /// plain threads and tests; an executor thread should await [`Wal::wait_durable`] instead.
    pub fn sync(&self) -> Result<()> {
        let lsn = self.flush();
        self.durability().wait_blocking(lsn)
    }

    /// Cloneable handle on the durable position (for other threads and tasks).
    pub fn durability(&self) -> Durability {
        Durability {
            shared: self.shared.clone(),
        }
    }

    /// Receiver of flush reports (one per completed or failed sync; cumulative, so dropped
    /// reports on a full channel lose nothing: `durable_lsn()` is the truth).
    pub fn flush_reports(&self) -> flume::Receiver<FlushReport> {
        self.report_rx.clone()
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        stats_of(&self.shared)
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }
}
