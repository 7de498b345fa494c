//! Every limit of the key-value path in one place, with the reason for each, and the one
//! function that derives what a node admits from the log's, the WAL's and the frame's limits.
//!
//! Two kinds of limit live here:
//! - **State-machine ceilings** ([`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`], the session bounds):
//!   they change what applying a command *does*, so they are constants compiled into every
//!   replica, never read from a node's config; two replicas with different configs still apply
//!   the same log to the same state.
//! - **Admission limits** ([`Admission`]): checked on the leader before a write is proposed. A
//!   write over them is refused as `TooLarge` / `InvalidRequest` (not applied, safe to retry
//!   anywhere). They are derived together so that nothing admitted can fail later: the whole
//!   encoded command fits the WAL's largest record and one frame, and is within the ceilings.

use crate::node::config::Config;
use crate::node::kv::command::COMMAND_HEADER_BYTES;

/// Largest key any replica applies. Equal to the config's upper bound for
/// `state_machine.max_key_bytes`, so every configurable admission limit is below it.
pub(crate) const MAX_KEY_BYTES: usize = crate::node::config::limits::KEY_BYTES_MAX;
/// Largest value any replica applies (the config's upper bound for
/// `state_machine.max_value_bytes`).
pub(crate) const MAX_VALUE_BYTES: usize = crate::node::config::limits::VALUE_BYTES_MAX;
/// Largest encoded command: a value-based compare-and-swap carries a key and two values.
pub(crate) const MAX_COMMAND_BYTES: usize =
    COMMAND_HEADER_BYTES + 4 + MAX_KEY_BYTES + 1 + 4 + MAX_VALUE_BYTES + 4 + MAX_VALUE_BYTES;
/// The WAL stores an entry as one kind byte followed by the command.
pub(crate) const ENTRY_KIND_BYTES: usize = 1;
/// Largest WAL record payload: one entry holding the largest command.
pub(crate) const MAX_ENTRY_PAYLOAD_BYTES: usize = MAX_COMMAND_BYTES + ENTRY_KIND_BYTES;
/// Bytes a frame and the rkyv archive of an AppendEntries need around one entry's data
/// (header, message fields, entry fields, alignment); generous on purpose.
pub(crate) const FRAME_OVERHEAD_BYTES: usize = 4 << 10;

/// Exactly-once results kept per shard (oldest evicted first). Fixed on every replica:
/// eviction changes what a retry is answered.
pub(crate) const SESSION_MAX_RESULTS: usize = 100_000;
/// Bytes of exactly-once results kept per shard (each result is charged
/// [`SESSION_RESULT_BYTES`] plus its variable part). A failed compare-and-swap records only
/// the version it saw, never the current value, so a result is small and bounded.
pub(crate) const SESSION_MAX_BYTES: usize = 16 << 20;
/// Fixed charge of one recorded result: map entries, order queue slot, result enum.
pub(crate) const SESSION_RESULT_BYTES: usize = 96;
/// Clients remembered only by a tombstone (every result evicted, highest evicted sequence
/// kept) per shard. Each costs about 48 bytes (map entry plus order queue slot), so a shard's
/// session table stays under `SESSION_MAX_BYTES + SESSION_MAX_TOMBSTONES * 48` bytes (about
/// 28 MiB). Past this the oldest
/// tombstone is dropped and the shard turns on its sequence floor: a client it has no record
/// of may then start only at sequence 1 (anything else is answered `SessionExpired`), so a
/// write is still never applied twice.
pub(crate) const SESSION_MAX_TOMBSTONES: usize = 262_144;
/// Longest reason text kept in a recorded `Rejected` result.
pub(crate) const REJECTED_MESSAGE_MAX_BYTES: usize = 200;

/// What a node admits, derived from its config, the WAL's record limit and the frame limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Largest key (`state_machine.max_key_bytes`).
    pub max_key_bytes: usize,
    /// Largest single value (`state_machine.max_value_bytes`).
    pub max_value_bytes: usize,
    /// Largest whole encoded command: the least of the ceiling, the WAL's largest record minus
    /// the entry kind byte, and the frame limit minus its overhead.
    pub max_command_bytes: usize,
}

impl Admission {
    /// The limits of a node with config `cfg`.
    pub(crate) fn from_config(cfg: &Config) -> Admission {
        let frame_room = cfg
            .network
            .max_frame_bytes
            .saturating_sub(FRAME_OVERHEAD_BYTES);
        Admission {
            max_key_bytes: cfg.state_machine.max_key_bytes.min(MAX_KEY_BYTES),
            max_value_bytes: cfg.state_machine.max_value_bytes.min(MAX_VALUE_BYTES),
            max_command_bytes: MAX_COMMAND_BYTES
                .min(wal_max_payload_bytes(cfg).saturating_sub(ENTRY_KIND_BYTES))
                .min(frame_room),
        }
    }
}

/// The WAL's largest record payload for a node with config `cfg`: one entry with the largest
/// command, but never more than half a segment (the WAL's own rule).
pub(crate) fn wal_max_payload_bytes(cfg: &Config) -> usize {
    MAX_ENTRY_PAYLOAD_BYTES.min(cfg.raft.persistence.segment_bytes as usize / 2)
}

/// Most compares in one transaction. A transaction is one command, so its total size is
/// already bounded by [`Admission::max_command_bytes`] (the log entry, the WAL record and the
/// frame); the counts bound the work of applying it on every replica (each compare or op is
/// one ordered-map lookup) and the size of its answer's list.
pub const MAX_TXN_COMPARES: usize = 64;
/// Most ops in one branch of a transaction (see [`MAX_TXN_COMPARES`]); an eighth of the frame
/// API's batch bound, because a transaction's ops run inside one apply step.
pub const MAX_TXN_OPS: usize = 128;
/// Most value bytes the reads of one transaction carry back. A get past it is answered with
/// its version only (`GetOmitted`), deterministically on every replica, so the answer (and a
/// result kept for exactly-once retries) never outgrows a frame.
pub(crate) const MAX_TXN_READ_BYTES: usize = 1 << 20;
/// Leases one shard holds at once; a grant past it is rejected (deterministically, at apply).
/// Each lease costs a map entry and its key set, so this bounds the table's memory together
/// with [`MAX_KEYS_PER_LEASE`].
pub(crate) const MAX_LEASES_PER_SHARD: usize = 100_000;
/// Keys attached to one lease at most; a put that would attach more is rejected. Bounds the
/// work of one expiry or revoke (every attached key is deleted in one apply step).
pub(crate) const MAX_KEYS_PER_LEASE: usize = 10_000;
/// Shortest lease time to live: shorter ones would expire between two expiry checks.
pub(crate) const MIN_LEASE_TTL_MS: u64 = 1_000;
/// Longest lease time to live (one year): keeps deadline arithmetic far from overflow.
pub(crate) const MAX_LEASE_TTL_MS: u64 = 365 * 24 * 3_600 * 1_000;
/// Expiries the leader proposes per shard per check; the rest wait for the next check, so a
/// mass expiry never floods the log in one burst.
pub(crate) const LEASE_EXPIRES_PER_CHECK: usize = 256;
/// How often the leader checks its leases' deadlines.
pub(crate) const LEASE_CHECK_INTERVAL_MS: u64 = 100;
/// Events of a shard's watch history kept in memory (oldest dropped first). Events are
/// produced at apply on every replica; a watch can resume from any revision still held.
pub(crate) const WATCH_HISTORY_MAX_EVENTS: usize = 16_384;
/// Bytes of a shard's watch history (each event charged its key, value and
/// [`WATCH_EVENT_OVERHEAD_BYTES`]). The newest revision is always kept, even if larger.
pub(crate) const WATCH_HISTORY_MAX_BYTES: usize = 8 << 20;
/// Fixed charge of one event: the shared allocation, two vectors' headers, numbers, the ring
/// slot.
pub(crate) const WATCH_EVENT_OVERHEAD_BYTES: usize = 96;
/// Watchers registered on one shard of one node; past it a watch is refused Busy.
pub(crate) const WATCH_MAX_PER_SHARD: usize = 1_024;
/// Batches waiting in one watcher's send queue; a watcher whose queue is full when the
/// shard has more for it is cancelled "too slow" (it resumes from its last revision).
pub(crate) const WATCH_QUEUE_MAX_BATCHES: usize = 1_024;
/// Bytes of events waiting in one watcher's send queue (charged as in the history; the
/// events are shared with the history while it keeps them). Half the history, so that a
/// watcher cancelled "too slow" usually finds what it missed still held when it resumes. A
/// new watch's backlog from the history is queued whole even past this bound; it must then
/// be read before the next change arrives.
pub(crate) const WATCH_QUEUE_MAX_BYTES: usize = WATCH_HISTORY_MAX_BYTES / 2;
/// Most events in one batch (one frame / one burst of JSON lines); a revision's events are
/// never split.
pub(crate) const WATCH_BATCH_MAX_EVENTS: usize = 512;
/// Most event bytes in one batch (a single revision may exceed it: it fits a frame, as its
/// log entry did).
pub(crate) const WATCH_BATCH_MAX_BYTES: usize = 1 << 20;
/// An idle watch gets a progress report (empty batch with the revision covered) this often;
/// it doubles as the keep-alive a client uses to tell a dead node from a quiet key.
pub(crate) const WATCH_PROGRESS_INTERVAL_MS: u64 = 1_000;
/// A watch stream whose connection cannot take more bytes (its send queue above
/// [`WATCH_CONNECTION_HIGH_WATER_BYTES`]) for this long is closed: the client is not reading.
pub(crate) const WATCH_STALL_TIMEOUT_MS: u64 = 10_000;
/// Bytes queued on a connection above which a watch stream waits before sending more.
pub(crate) const WATCH_CONNECTION_HIGH_WATER_BYTES: usize = 1 << 20;
