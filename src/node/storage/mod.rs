//! Durable storage of one core: its shared write-ahead log (`ringraft-wal`, one log per core, every
//! shard of the core a group inside it, so one fsync covers many shards' appends) and one
//! snapshot file per shard. Rebuilds each shard's Raft state after a restart.
//!
//! Layout under `<db_root_dir>/<node_id>/`:
//! ```text
//! layout.json              {"cores": C, "shards_per_node": S}: refused if the config changes
//! core-<c>/wal/            the WAL of core c
//! core-<c>/shard-<s>.snap  latest snapshot of shard s (atomically replaced)
//! ```
//! WAL entry payload: `kind u8 (1 Normal, 2 Noop, 3 Config) | data` (the Raft entry's bytes),
//! handed to the WAL as two parts of one record so the entry's shared bytes are copied only by
//! the WAL itself.
//!
//! Snapshot file (little-endian):
//! ```text
//! magic "RRSNAP01" (8) | index u64 | term u64 | membership_len u32 | membership (Membership::encode)
//! | data_len u64 | data (KvStore::snapshot bytes) | crc32 u32 over every byte before it
//! ```
//! Written to `<name>.tmp`, fsynced, renamed over `<name>`, then the directory fsynced: a crash
//! leaves the old or the new file, never a torn one. The writeback of a large file is paced
//! (at most two [`WRITEBACK_CHUNK_BYTES`] chunks in flight, written chunks dropped from the
//! page cache), so a WAL sync on the same disk never queues behind hundreds of MB of it; a
//! locally taken snapshot's file is also held to `raft.snapshot_write_mib_per_s`.
//! A locally taken snapshot's file is streamed from the frozen store
//! ([`write_store_snapshot_file`]), so its serialized bytes are never held in memory whole.
//! The file is also where a leader reads a snapshot back to send it ([`fill_released`]): the
//! Raft log keeps only its meta once the file is durable.
//!
//! Invariant: a snapshot file is durable before the WAL is truncated or purged behind it, so a
//! restart always finds a snapshot covering everything the WAL no longer holds.
//! [`WalStorage`] is the driver's [`Storage`] over the WAL: the driver's round order (snapshot
//! file written by the caller before `install_snapshot`) keeps that invariant.
//! Owned by the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::node::config::{Config, FlushPolicy};
use crate::node::driver::{Storage, StorageError};
use crate::raft::{Entry, EntryKind, HardState, Membership, RestartState, Snapshot, SnapshotMeta};

/// Snapshot file magic.
pub const SNAPSHOT_FILE_MAGIC: &[u8; 8] = b"RRSNAP01";
/// Largest snapshot file read back.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 4 << 30;
/// Layout marker file name.
pub const LAYOUT_FILE: &str = "layout.json";

const KIND_NORMAL: u8 = 1;
const KIND_NOOP: u8 = 2;
const KIND_CONFIG: u8 = 3;

pub mod background;
mod snapshot_file;
#[cfg(test)]
mod tests;
mod writeback;

pub use snapshot_file::*;
pub use writeback::{write_atomically, WRITEBACK_CHUNK_BYTES};

/// Directory of core `core`.
pub fn core_dir(config: &Config, core: usize) -> PathBuf {
    config.data_dir().join(format!("core-{core}"))
}

/// Snapshot file of `shard` on `core`.
pub fn snapshot_path(config: &Config, core: usize, shard: u64) -> PathBuf {
    core_dir(config, core).join(format!("shard-{shard}.snap"))
}

/// Creates the data directory and checks that `cores` and `shards_per_node` match what it was
/// created with (shards live in per-core logs, so changing either would strand data).
pub fn check_layout(config: &Config) -> Result<(), String> {
    let dir = config.data_dir();
    // Durably (each new directory's parent fsynced): the layout file, the WAL and the snapshot
    // files below must not vanish with their directory after a crash on the first boot.
    ringraft_wal::segment::create_dir_durable(&dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let path = dir.join(LAYOUT_FILE);
    let want = serde_json::json!({
        "cores": config.runtime.cores,
        "shards_per_node": config.runtime.shards_per_node,
    });
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
            if found != want {
                return Err(format!(
                    "{} was created with {found}, the config now says {want}: runtime.cores and runtime.shards_per_node cannot change for an existing data directory (use a fresh db_root_dir)",
                    path.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(&path, want.to_string().as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// WAL options from the config.
pub fn wal_options(config: &Config) -> ringraft_wal::WalOptions {
    let p = &config.raft.persistence;
    ringraft_wal::WalOptions {
        segment_bytes: p.segment_bytes as usize,
        flush_policy: match p.flush_policy {
            // With syncs on the executor the node asks for each round's sync itself, once the
            // round's records are all staged (the driver's `wal_sync_plan`): an append asks for
            // none, and the workers' interval syncs what nobody asked for (deferred hard
            // states, records written outside a round).
            FlushPolicy::Immediate if p.executor_syncs() => ringraft_wal::FlushPolicy::Batch {
                threshold: u64::MAX,
                interval_ms: ringraft_wal::flush_worker::IDLE_WAKE_MS,
            },
            FlushPolicy::Immediate => ringraft_wal::FlushPolicy::Immediate,
            FlushPolicy::Batch {
                threshold,
                interval_ms,
            } => ringraft_wal::FlushPolicy::Batch {
                threshold,
                interval_ms,
            },
        },
        max_buffered_entries: p.max_buffered_entries,
        flush_workers: p.flush_workers,
        max_payload_bytes: crate::node::limits::wal_max_payload_bytes(config),
        owner_id: config.cluster.node_id,
        write_mode: p.wal_write_mode.to_wal(),
        // Bounded by config validation (at most MAX_RECYCLE_SEGMENTS).
        recycle_segments: usize::try_from(p.wal_recycle_segments)
            .unwrap_or(ringraft_wal::options::MAX_RECYCLE_SEGMENTS),
        ..ringraft_wal::WalOptions::default()
    }
}

/// Environment flag that allows WAL fault injection; without it `RINGRAFT_WAL_FAULT` is ignored.
pub const WAL_FAULT_ENABLE_ENV: &str = "RINGRAFT_WAL_FAULT_ENABLE";

/// The WAL fault injector the environment asks for: only when `RINGRAFT_WAL_FAULT_ENABLE=1` and
/// `RINGRAFT_WAL_FAULT` is set (tests and the chaos suite's disk nemesis); `None` otherwise, so
/// a production node never injects faults by accident. A spec that does not parse is an error
/// (the node refuses to start rather than run without the faults a test asked for).
pub fn wal_fault_from_env() -> Result<Option<Arc<ringraft_wal::FaultInjector>>, String> {
    if std::env::var_os(WAL_FAULT_ENABLE_ENV).as_deref() != Some(std::ffi::OsStr::new("1")) {
        return Ok(None);
    }
    match ringraft_wal::FaultInjector::from_env() {
        Ok(f) => Ok(f.map(Arc::new)),
        Err(e) => Err(format!(
            "{}: {e} (set by {WAL_FAULT_ENABLE_ENV}=1; unset both to run without faults)",
            ringraft_wal::fault::FAULT_ENV
        )),
    }
}

/// Opens the WAL of `core` under `core_dir` with the config's options (plus injected faults when
/// the environment enables them) and logs its recovery report. A log that recovery refuses
/// (corrupt bytes, or an invalid record followed by valid ones) stops the start-up with a message
/// naming the file and offset and the operator commands that inspect and repair it.
pub fn open_wal(
    config: &Config,
    core: usize,
    core_dir: &Path,
) -> Result<ringraft_wal::Wal, String> {
    let dir = core_dir.join("wal");
    let mut opts = wal_options(config);
    opts.fault = wal_fault_from_env()?;
    match ringraft_wal::Wal::open(&dir, opts) {
        Ok(wal) => {
            tracing::info!(core, dir = %dir.display(), "{}", wal.recovery_report());
            Ok(wal)
        }
        Err(
            e @ (ringraft_wal::Error::ValidAfterInvalid { .. }
            | ringraft_wal::Error::Corrupt { .. }
            | ringraft_wal::Error::TornTail { .. }
            | ringraft_wal::Error::BadMagic { .. }),
        ) => Err(format!(
            "core {core}: the WAL in {} cannot be recovered: {e}; the node refuses to start. \
             Stop and look before cutting anything: `ringraft wal inspect {}` shows what recovery \
             finds, `ringraft wal repair {}` shows what a repair would drop (add --yes to cut)",
            dir.display(),
            dir.display(),
            dir.display()
        )),
        Err(e) => Err(format!(
            "core {core}: cannot open the WAL in {}: {e}",
            dir.display()
        )),
    }
}

/// The WAL payload's first byte for an entry of `kind`.
pub fn entry_kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Config => KIND_CONFIG,
    }
}

/// Encodes a Raft entry as one WAL payload (the kind byte, then the data). The driver's
/// storage does not build it: it hands the WAL the two parts ([`ringraft_wal::Wal::append_parts`]).
pub fn entry_payload(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + e.data.len());
    out.push(entry_kind_byte(e.kind));
    out.extend_from_slice(&e.data);
    out
}

/// Decodes a WAL payload back into a Raft entry.
pub fn decode_entry(index: u64, term: u64, payload: &[u8]) -> Result<Entry, String> {
    let (kind, data) = payload
        .split_first()
        .ok_or_else(|| format!("entry {index}: empty WAL payload"))?;
    let kind = match *kind {
        KIND_NORMAL => EntryKind::Normal,
        KIND_NOOP => EntryKind::Noop,
        KIND_CONFIG => EntryKind::Config,
        k => return Err(format!("entry {index}: unknown entry kind byte {k}")),
    };
    Ok(Entry {
        index,
        term,
        kind,
        data: Arc::from(data),
    })
}

/// Converts hard states between the core's and the WAL's types.
pub fn to_wal_hard_state(hs: &HardState) -> ringraft_wal::HardState {
    ringraft_wal::HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

/// The durable state of `group` in `wal` plus its snapshot, or `None` for a group that never
/// persisted anything (a fresh start).
pub fn restart_state(
    wal: &ringraft_wal::Wal,
    group: u64,
    snapshot: Option<Snapshot>,
) -> Result<Option<RestartState>, String> {
    let hs = wal.hard_state(group);
    let first = wal.first_index(group);
    let last = wal.last_index(group);
    if hs.is_none() && snapshot.is_none() && last < first {
        return Ok(None);
    }
    let snapshot = snapshot.unwrap_or_default();
    let from = first.max(snapshot.meta.index + 1);
    if from > snapshot.meta.index + 1 && last >= from {
        return Err(format!(
            "shard {group}: the WAL starts at index {first} but the snapshot ends at {}: entries {}..{first} are missing",
            snapshot.meta.index,
            snapshot.meta.index + 1
        ));
    }
    let mut entries = Vec::new();
    if last >= from {
        let iter = wal
            .entries(group, from, last + 1)
            .map_err(|e| format!("shard {group}: cannot read WAL entries {from}..={last}: {e}"))?;
        for e in iter {
            let e = e.map_err(|e| format!("shard {group}: WAL read failed: {e}"))?;
            entries.push(decode_entry(e.index, e.term, e.payload)?);
        }
    }
    let hs = hs.unwrap_or_default();
    let last_index = entries.last().map_or(snapshot.meta.index, |e| e.index);
    Ok(Some(RestartState {
        hard_state: HardState {
            term: hs.term,
            vote: hs.vote,
            // The persisted commit may trail; it never exceeds what the log holds.
            commit: hs.commit.min(last_index).max(snapshot.meta.index),
        },
        snapshot,
        entries,
    }))
}

/// The driver's storage over one core's WAL: entries, hard states and truncations are WAL
/// records; snapshot files are written by the node's driver wrapper (off the executor thread)
/// before `install_snapshot` / `snapshot_saved` let the WAL forget what they cover.
pub struct WalStorage<'a> {
    wal: &'a mut ringraft_wal::Wal,
}

impl<'a> WalStorage<'a> {
    /// The storage over `wal`.
    pub fn new(wal: &'a mut ringraft_wal::Wal) -> WalStorage<'a> {
        WalStorage { wal }
    }
}

/// The driver's error for a failed WAL call. A write or sync failure (an I/O error, or the log
/// poisoned by an earlier one) means acknowledged durability can no longer be promised: it is
/// reported as `WAL sync failed`, the phrase operators and the fault tests look for, and stops
/// the node. Backpressure makes the caller wait for durability and retry; no space (nothing
/// written) makes it free space and retry.
pub fn wal_error(what: &str, e: ringraft_wal::Error) -> StorageError {
    match e {
        ringraft_wal::Error::Backpressure { .. } => StorageError::Backpressure,
        e if crate::node::core::is_out_of_space(&e) => {
            StorageError::NoSpace(format!("{what}: {e}"))
        }
        ringraft_wal::Error::Io { .. } | ringraft_wal::Error::Poisoned(_) => {
            StorageError::Failed(format!("WAL sync failed: {what}: {e}"))
        }
        _ => StorageError::Failed(format!("WAL {what}: {e}")),
    }
}

impl Storage for WalStorage<'_> {
    fn last_index(&self, g: u64) -> u64 {
        self.wal.last_index(g)
    }

    fn truncate(&mut self, g: u64, from: u64) -> Result<(), StorageError> {
        self.wal
            .truncate(g, from)
            .map(|_| ())
            .map_err(|e| wal_error(&format!("shard {g}: truncate at {from}"), e))
    }

    fn append(&mut self, g: u64, e: &Entry) -> Result<(), StorageError> {
        // The kind byte and the entry's shared bytes go to the WAL as the two parts of one
        // record: the WAL's copy into its stage (or map) is the only copy made here.
        self.wal
            .append_parts(g, e.index, e.term, &[&[entry_kind_byte(e.kind)], &e.data])
            .map(|_| ())
            .map_err(|err| wal_error(&format!("shard {g}: append of entry {}", e.index), err))
    }

    fn set_hard_state(&mut self, g: u64, hs: &HardState) -> Result<(), StorageError> {
        // Only the term and the vote must be durable before the round's acknowledgements: a
        // hard state that moves just the commit index asks for no sync of its own (it is made
        // durable by the next one; after a crash the commit index may trail, which Raft
        // tolerates and `restart_state` clamps).
        self.wal
            .set_hard_state_deferred(g, to_wal_hard_state(hs))
            .map(|_| ())
            .map_err(|e| wal_error(&format!("shard {g}: hard state"), e))
    }

    fn install_snapshot(&mut self, g: u64, snap: &Snapshot) -> Result<(), StorageError> {
        let first = self.wal.first_index(g);
        if self.wal.last_index(g) >= first {
            self.wal
                .truncate(g, first)
                .map_err(|e| wal_error(&format!("shard {g}: truncate for snapshot"), e))?;
        }
        if snap.meta.index > 0 {
            self.wal
                .purge(g, snap.meta.index + 1)
                .map_err(|e| wal_error(&format!("shard {g}: purge for snapshot"), e))?;
        }
        Ok(())
    }

    fn snapshot_saved(&mut self, g: u64, snap: &Snapshot) -> Result<(), StorageError> {
        self.wal
            .purge(g, snap.meta.index + 1)
            .map(|_| ())
            .map_err(|e| wal_error(&format!("shard {g}: purge after snapshot"), e))
    }

    fn ticket(&mut self) -> u64 {
        self.wal.required_lsn()
    }
}
