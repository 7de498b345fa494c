//! WAL space reclaim of one core. The core's shards share one write-ahead log, and the log
//! frees space from its oldest segment only: a quiet shard that never reaches its snapshot
//! threshold keeps its few old entries, and with them every later segment, alive however much
//! the busy shards compact, until the disk fills. So once the log holds more than
//! [`reclaim_bound`] segments, the driver asks the WAL which shards pin the oldest ones
//! ([`ringraft_wal::Wal::pins`]) and compacts them early: an in-memory snapshot at the applied
//! index, whose file the driver writes (durably) before the WAL purges behind it, exactly as a
//! threshold snapshot. Compacting was chosen over rewriting the pinned records forward: it
//! reuses the snapshot path that crash recovery already relies on, costs one snapshot of a
//! small (quiet) shard, and needs no new record kind whose replay would have to tell a moved
//! entry from a re-appended one.
//!
//! Also here: a WAL write that found no space ([`is_out_of_space`]: ENOSPC preparing the next
//! segment, or the segment bound reached) wrote nothing, so the driver waits and retries it
//! ([`wait_for_space`]) instead of stopping the core; meanwhile proposals back up into the
//! Raft core's uncommitted bound and clients get Busy.
//!
//! Invariant: a shard is compacted only at its applied index and only past its last snapshot;
//! the WAL forgets nothing before the snapshot file covering it is durable. Owned by the core.

use super::*;
use crate::node::driver::SnapshotTaken;

/// Live WAL segments of a core beyond which the shards pinning the oldest ones are compacted
/// early. 32 segments are 2 GiB at the default 64 MiB segment: several times the log a busy
/// shard keeps between two threshold snapshots, far below the WAL's `max_segments` (where it
/// refuses appends) and a small part of a data disk.
pub const RECLAIM_AFTER_SEGMENTS: usize = 32;
/// Shards compacted early per driver round: each is serialized and written by the snapshot
/// writer, so few at a time keep its queue and the disk traffic short; the next rounds take
/// the next ones.
pub const RECLAIM_SNAPSHOTS_PER_ROUND: usize = 2;
/// Pause before a WAL write that found no space is retried (the operator frees space, or a
/// compaction frees segments meanwhile).
pub const NO_SPACE_RETRY: Duration = Duration::from_millis(50);
/// Least time between two warnings about a WAL waiting for space on one core.
pub const NO_SPACE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The segment count past which pinning shards are compacted for a WAL of at most
/// `max_segments` live segments (half of it when that is lower than the constant).
pub fn reclaim_bound(max_segments: usize) -> usize {
    RECLAIM_AFTER_SEGMENTS.min(max_segments / 2).max(1)
}

/// The shards to compact now, at most [`RECLAIM_SNAPSHOTS_PER_ROUND`], oldest pin first:
/// those among `pins` whose applied index reaches their oldest pinned entry (a snapshot then
/// releases at least that entry) and lies past their last snapshot (else there is nothing new
/// to compact). `state(g)` is the shard's (applied index, last snapshot index).
pub fn reclaim_plan(
    pins: &[ringraft_wal::SegmentPin],
    state: impl Fn(GroupId) -> Option<(u64, u64)>,
) -> Vec<GroupId> {
    pins.iter()
        .filter(|p| {
            state(p.group).is_some_and(|(applied, snap)| applied >= p.first_index && applied > snap)
        })
        .map(|p| p.group)
        .take(RECLAIM_SNAPSHOTS_PER_ROUND)
        .collect()
}

/// True for a WAL error that wrote nothing and may go away: no space for the next segment, or
/// the live-segment bound reached.
pub fn is_out_of_space(e: &ringraft_wal::Error) -> bool {
    e.is_no_space() || matches!(e, ringraft_wal::Error::LogFull { .. })
}

impl CoreState {
    /// When the WAL holds more than [`reclaim_bound`] segments: takes snapshots of the shards
    /// pinning the oldest ones (those without one already waiting for its file) and returns
    /// them for the snapshot writer, which builds and writes each and then purges the WAL
    /// behind it.
    pub(super) fn reclaim_wal(&mut self) -> Vec<SnapshotTaken> {
        let live = self.wal.segment_count();
        let bound = reclaim_bound(storage::wal_options(&self.cfg).max_segments);
        if live <= bound {
            return Vec::new();
        }
        // Deletions that were waiting for durability first.
        if let Err(e) = self.wal.reclaim() {
            debug!("WAL reclaim: {e}");
        }
        let pins = self.wal.pins(live - bound);
        let plan = reclaim_plan(&pins, |g| {
            if self.snapshots.is_pending(g) {
                return None;
            }
            let applied = self.shards.get(&g)?.kv.applied_index();
            let raft = self.multi.group(g)?;
            Some((applied, raft.snapshot().map_or(0, |s| s.meta.index)))
        });
        let out: Vec<SnapshotTaken> = {
            let (mut d, _, _) = super::driver::parts(self);
            plan.into_iter()
                .filter_map(|g| d.take_snapshot(g))
                .collect()
        };
        for w in &out {
            info!(
                shard = w.group,
                index = w.state.applied_index(),
                wal_segments = live,
                "compacting a shard early: it pins the oldest WAL segments"
            );
            self.metrics.wal_reclaim_snapshots.inc();
        }
        out
    }
}

thread_local! {
    /// When this core last warned about waiting for WAL space.
    static NO_SPACE_LOGGED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// A WAL write found no space (`e`, nothing written): compacts the shards pinning the oldest
/// segments (their files written now), lets the WAL delete what it can, and waits
/// [`NO_SPACE_RETRY`] before the caller retries.
pub(super) async fn wait_for_space(st: &Rc<RefCell<CoreState>>, e: &str) -> Result<(), String> {
    let now = Instant::now();
    let due = NO_SPACE_LOGGED.with(|c| {
        let due = c
            .get()
            .is_none_or(|t| now.saturating_duration_since(t) >= NO_SPACE_LOG_INTERVAL);
        if due {
            c.set(Some(now));
        }
        due
    });
    let writes = {
        let mut s = st.borrow_mut();
        if due {
            warn!(
                core = s.core,
                wal_segments = s.wal.segment_count(),
                "WAL has no space for its next segment ({e}); writes wait and are retried, clients get Busy meanwhile"
            );
        }
        s.metrics.wal_no_space_waits.inc();
        if let Err(e) = s.wal.reclaim() {
            debug!("WAL reclaim: {e}");
        }
        s.reclaim_wal()
    };
    super::snapshot_writer::queue_snapshots(st, writes).await;
    super::snapshot_writer::wait_snapshot_writes(st).await;
    glommio::timer::sleep(NO_SPACE_RETRY).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_wal::SegmentPin;

    fn pin(group: GroupId, seq: u64, first_index: u64) -> SegmentPin {
        SegmentPin {
            group,
            seq,
            first_index,
            last_index: first_index + 1,
        }
    }

    #[test]
    fn the_plan_compacts_pinning_shards_that_a_snapshot_releases() {
        let pins = [pin(4, 1, 10), pin(2, 1, 5), pin(9, 2, 50), pin(1, 3, 7)];
        // (applied, last snapshot) per shard.
        let state = |g| match g {
            4 => Some((12, 0)),  // applied past its oldest entry: compact
            2 => Some((4, 0)),   // its oldest entry is not applied yet: a snapshot frees nothing
            9 => Some((60, 60)), // nothing applied since its last snapshot
            1 => Some((8, 3)),   // compact
            _ => None,
        };
        assert_eq!(reclaim_plan(&pins, state), vec![4, 1]);
        // At most RECLAIM_SNAPSHOTS_PER_ROUND per round, oldest pins first.
        let many: Vec<SegmentPin> = (0..10).map(|g| pin(g, 1 + g, 1)).collect();
        let plan = reclaim_plan(&many, |_| Some((5, 0)));
        assert_eq!(plan.len(), RECLAIM_SNAPSHOTS_PER_ROUND);
        assert_eq!(plan, vec![0, 1]);
        assert!(reclaim_plan(&many, |_| None).is_empty());
    }

    #[test]
    fn the_bound_stays_below_the_wal_segment_limit() {
        assert_eq!(
            reclaim_bound(ringraft_wal::options::DEFAULT_MAX_SEGMENTS),
            RECLAIM_AFTER_SEGMENTS
        );
        assert_eq!(reclaim_bound(10), 5);
        assert_eq!(reclaim_bound(2), 1);
    }

    #[test]
    fn only_errors_that_wrote_nothing_and_may_pass_are_waited_out() {
        let enospc = ringraft_wal::Error::Io {
            op: "fallocate",
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let eio = ringraft_wal::Error::Io {
            op: "fdatasync",
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(is_out_of_space(&enospc));
        assert!(is_out_of_space(&ringraft_wal::Error::LogFull {
            segments: 9
        }));
        assert!(!is_out_of_space(&eio));
        assert!(!is_out_of_space(&ringraft_wal::Error::Poisoned("x".into())));
    }
}
