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
//! page cache), so a WAL sync on the same disk never queues behind hundreds of MB of it.
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

use std::fs::{File, OpenOptions};
use std::io::Write;
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
            FlushPolicy::Immediate if p.wal_executor_sync_max_entries > 0 => {
                ringraft_wal::FlushPolicy::Batch {
                    threshold: u64::MAX,
                    interval_ms: ringraft_wal::flush_worker::IDLE_WAKE_MS,
                }
            }
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

/// The head of a snapshot file (magic through the data length) for `meta` and `data_len`
/// bytes of state.
fn snapshot_file_head(meta: &SnapshotMeta, data_len: u64) -> Vec<u8> {
    let m = meta.membership.encode();
    let mut head = Vec::with_capacity(36 + m.len());
    head.extend_from_slice(SNAPSHOT_FILE_MAGIC);
    head.extend_from_slice(&meta.index.to_le_bytes());
    head.extend_from_slice(&meta.term.to_le_bytes());
    head.extend_from_slice(&(m.len() as u32).to_le_bytes());
    head.extend_from_slice(&m);
    head.extend_from_slice(&data_len.to_le_bytes());
    head
}

/// The parts of a snapshot file (format in the module docs): the head (magic through the data
/// length), the state bytes themselves (not copied) and the CRC of both.
fn snapshot_file_parts(s: &Snapshot) -> (Vec<u8>, &[u8], [u8; 4]) {
    let head = snapshot_file_head(&s.meta, s.data.len() as u64);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&s.data);
    (head, &s.data, crc.finalize().to_le_bytes())
}

/// Writes the snapshot file of the store `state` frozen at `meta.index` atomically, streaming
/// the store's bytes ([`crate::node::kv::KvStore::snapshot_to`]) straight into the file: the
/// serialized state is never held in memory, only one [`WRITEBACK_CHUNK_BYTES`] buffer. The
/// file is byte for byte what [`write_snapshot_file`] writes for the same snapshot. Returns
/// the length of the state bytes. Refused (nothing renamed) when the store's bytes do not
/// come out at the length counted first.
pub fn write_store_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta,
    state: &crate::node::kv::store::KvStore,
) -> std::io::Result<u64> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let (len, tail) = state
        .snapshot_len()
        .ok_or_else(|| invalid("snapshot length overflows".into()))?;
    let head = snapshot_file_head(meta, len as u64);
    write_streamed_atomically(path, |w| {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        w.put(&head)?;
        let mut n = 0usize;
        state.snapshot_to(&tail, &mut |b: &[u8]| {
            crc.update(b);
            n = n.saturating_add(b.len());
            w.put(b)
        })?;
        if n != len {
            return Err(invalid(format!(
                "snapshot streamed {n} bytes, {len} counted"
            )));
        }
        w.put(&crc.finalize().to_le_bytes())
    })?;
    Ok(len as u64)
}

/// Encodes a snapshot file in one buffer (format in the module docs; what
/// [`write_snapshot_file`] writes).
#[cfg(test)]
fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let (head, data, crc) = snapshot_file_parts(s);
    [&head[..], data, &crc].concat()
}

/// Writes a snapshot file atomically ([`write_atomically`]) from its parts, so the state bytes
/// are written where they are instead of being copied into one buffer first.
pub fn write_snapshot_file(path: &Path, s: &Snapshot) -> std::io::Result<()> {
    let (head, data, crc) = snapshot_file_parts(s);
    write_parts_atomically(path, &[&head, data, &crc])
}

/// Decodes a snapshot file, checking magic, lengths and CRC.
pub fn decode_snapshot(b: &[u8]) -> Result<Snapshot, String> {
    if b.len() < 8 + 8 + 8 + 4 + 8 + 4 {
        return Err(format!("{} bytes is too short for a snapshot", b.len()));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let got = crc32fast::hash(body);
    if want != got {
        return Err(format!(
            "crc mismatch: stored {want:#010x}, computed {got:#010x}"
        ));
    }
    if &body[..8] != SNAPSHOT_FILE_MAGIC {
        return Err("bad magic: not a ringraft snapshot".into());
    }
    let u64_at = |o: usize| -> Result<u64, String> {
        body.get(o..o + 8)
            .map(|s| {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_le_bytes(a)
            })
            .ok_or_else(|| format!("truncated at offset {o}"))
    };
    let index = u64_at(8)?;
    let term = u64_at(16)?;
    let mlen = body
        .get(24..28)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or("truncated membership length")?;
    let mbytes = body.get(28..28 + mlen).ok_or("truncated membership")?;
    let membership =
        Membership::decode(mbytes).map_err(|e| format!("bad membership in snapshot: {e}"))?;
    let dpos = 28 + mlen;
    let dlen = usize::try_from(u64_at(dpos)?).map_err(|_| "data length overflows")?;
    let data = body
        .get(dpos + 8..)
        .filter(|d| d.len() == dlen)
        .ok_or_else(|| format!("data length {dlen} does not match the file"))?;
    Ok(Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership,
        },
        data: Arc::from(data),
    })
}

/// Writes `bytes` to `path` atomically and durably (tmp file, fsync, rename, fsync directory).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_parts_atomically(path, &[bytes])
}

/// Bytes of a file written between two steps of its paced writeback ([`Writeback`]). The
/// device then holds at most two such chunks of the file ahead of a WAL sync: ~5 ms at the
/// ~400 MB/s of a small cloud disk, against the whole file (hundreds of MB: most of a second)
/// when the file is written in one go and synced at the end.
pub const WRITEBACK_CHUNK_BYTES: usize = 1 << 20;

/// Paced writeback of a file being written: once a chunk ([`WRITEBACK_CHUNK_BYTES`]) is
/// written its writeback starts, and the writer then waits until the chunk before it is on
/// the device and drops it from the page cache. So a large file never makes a burst of dirty
/// pages that a concurrent WAL sync on the same disk would queue behind, and it does not push
/// the node's memory out of the page cache. A step that fails (a file system without
/// `sync_file_range`) only ends the pacing: the final sync still makes the file durable.
struct Writeback {
    /// Bytes written so far.
    written: u64,
    /// Everything before this offset has had its writeback started.
    started: u64,
    /// Everything before this offset is on the device and out of the page cache.
    waited: u64,
    paced: bool,
}

impl Writeback {
    fn new() -> Writeback {
        Writeback {
            written: 0,
            started: 0,
            waited: 0,
            paced: cfg!(target_os = "linux"),
        }
    }

    /// `n` more bytes were written to `f`.
    fn wrote(&mut self, f: &File, n: usize) {
        self.written += n as u64;
        if !self.paced || self.written - self.started < WRITEBACK_CHUNK_BYTES as u64 {
            return;
        }
        let previous = self.started;
        self.paced = start_writeback(f, previous, self.written - previous).is_ok()
            && wait_writeback(f, self.waited, previous - self.waited).is_ok();
        self.started = self.written;
        self.waited = previous;
    }
}

/// Starts the writeback of `len` bytes of `f` at `offset` without waiting for it.
#[cfg(target_os = "linux")]
fn start_writeback(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    sync_range(f, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Waits until `len` bytes of `f` at `offset` are written to the device (starting what is not
/// started yet), then drops them from the page cache.
#[cfg(target_os = "linux")]
fn wait_writeback(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    sync_range(
        f,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )?;
    let (Ok(o), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Ok(());
    };
    use std::os::fd::AsRawFd;
    // Advice only: a failure changes nothing about what was written.
    // SAFETY: a plain syscall on an open descriptor that `f` owns for the whole call.
    let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), o, l, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

#[cfg(target_os = "linux")]
fn sync_range(f: &File, offset: u64, len: u64, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(o), Ok(l)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: a plain syscall on an open descriptor that `f` owns for the whole call; it
    // reads and writes no memory of this process.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), o, l, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(not(target_os = "linux"))]
fn wait_writeback(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// [`write_atomically`] of the concatenation of `parts`, with paced writeback ([`Writeback`]).
fn write_parts_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    write_streamed_atomically(path, |w| parts.iter().try_for_each(|p| w.put(p)))
}

/// A file being written in [`WRITEBACK_CHUNK_BYTES`] chunks with paced writeback: small pieces
/// are gathered in one chunk buffer, a piece of a chunk or more is written where it is.
struct ChunkWriter {
    f: File,
    buf: Vec<u8>,
    pace: Writeback,
}

impl ChunkWriter {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + b.len() > WRITEBACK_CHUNK_BYTES {
            self.flush()?;
        }
        if b.len() >= WRITEBACK_CHUNK_BYTES {
            for chunk in b.chunks(WRITEBACK_CHUNK_BYTES) {
                self.f.write_all(chunk)?;
                self.pace.wrote(&self.f, chunk.len());
            }
            return Ok(());
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.f.write_all(&self.buf)?;
            self.pace.wrote(&self.f, self.buf.len());
            self.buf.clear();
        }
        Ok(())
    }
}

/// [`write_atomically`] of the bytes `fill` puts into the writer, with paced writeback
/// ([`Writeback`]); an error from `fill` leaves the old file in place.
fn write_streamed_atomically(
    path: &Path,
    fill: impl FnOnce(&mut ChunkWriter) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = ChunkWriter {
            f,
            buf: Vec::new(),
            pace: Writeback::new(),
        };
        fill(&mut w)?;
        w.flush()?;
        w.f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `s` is a snapshot whose bytes the node released from memory (kept only in its
/// file, see [`crate::raft::Raft::release_snapshot_data`]): empty bytes at a non-zero index.
/// A real snapshot is never empty (the store's encoding has a header and a CRC).
pub fn is_released(s: &Snapshot) -> bool {
    s.meta.index > 0 && s.data.is_empty()
}

/// Gives a released snapshot ([`is_released`]) its bytes back from the snapshot file at
/// `path`. Refused when the file holds another snapshot (an older file not yet replaced, or
/// a newer one): the caller drops the message and the leader sends its snapshot again later.
pub fn fill_released(s: &mut Snapshot, path: &Path) -> Result<(), String> {
    if !is_released(s) {
        return Ok(());
    }
    match read_snapshot(path)? {
        Some(f) if f.meta.index == s.meta.index && f.meta.term == s.meta.term => {
            s.data = f.data;
            Ok(())
        }
        Some(f) => Err(format!(
            "{} holds the snapshot at {} (term {}), not the one at {} (term {})",
            path.display(),
            f.meta.index,
            f.meta.term,
            s.meta.index,
            s.meta.term
        )),
        None => Err(format!("{} does not exist", path.display())),
    }
}

/// Reads a snapshot file; `Ok(None)` if it does not exist.
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) if m.len() > MAX_SNAPSHOT_FILE_BYTES => {
            return Err(format!(
                "{}: {} bytes, more than the {MAX_SNAPSHOT_FILE_BYTES} allowed",
                path.display(),
                m.len()
            ))
        }
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    decode_snapshot(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_streamed_into_its_file_matches_the_file_of_its_bytes() {
        use crate::node::kv::{store::KvStore, Command, WriteOp};
        let mut kv = KvStore::new();
        // Past several writeback chunks, with a value over a chunk (written where it is) and
        // sessions (the tail).
        for i in 0..6_000u64 {
            let value = if i == 77 {
                vec![b'b'; WRITEBACK_CHUNK_BYTES + 3]
            } else {
                format!("value-{i:0>300}").into_bytes()
            };
            let cmd = Command {
                client_id: i % 5,
                seq: i + 1,
                op: WriteOp::Put {
                    key: format!("key-{i}").into_bytes(),
                    value,
                },
            };
            kv.apply(i + 1, &cmd.encode());
        }
        let meta = SnapshotMeta {
            index: 6_000,
            term: 4,
            membership: Membership::with_voters([1, 2, 3]),
        };
        let dir = std::env::temp_dir().join(format!("ringraft-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("shard-1.snap");
        let len = write_store_snapshot_file(&p, &meta, &kv).unwrap();
        let bytes = kv.snapshot();
        assert_eq!(len, bytes.len() as u64);
        let want = encode_snapshot(&Snapshot {
            meta: meta.clone(),
            data: Arc::from(bytes),
        });
        assert!(std::fs::read(&p).unwrap() == want, "streamed file differs");
        let back = read_snapshot(&p).unwrap().unwrap();
        assert_eq!(back.meta, meta);
        assert_eq!(
            KvStore::restore(&back.data).unwrap().snapshot(),
            kv.snapshot()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_file_round_trip_and_corruption() {
        let s = Snapshot {
            meta: SnapshotMeta {
                index: 42,
                term: 3,
                membership: Membership::with_voters([1, 2, 3]),
            },
            data: Arc::from(&b"kv-bytes"[..]),
        };
        let b = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&b).unwrap(), s);
        for i in [0, 9, 30, b.len() - 1] {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode_snapshot(&c).is_err(), "flip at {i}");
        }
        assert!(decode_snapshot(&b[..10]).is_err());
        let dir = std::env::temp_dir().join(format!("ringraft-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("shard-0.snap");
        assert_eq!(read_snapshot(&p).unwrap(), None);
        write_snapshot_file(&p, &s).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b);
        assert_eq!(read_snapshot(&p).unwrap(), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_file_of_many_writeback_chunks_reads_back_whole() {
        // Three and a half chunks of state: the paced writeback starts and waits on ranges
        // that straddle the head, the data and the trailing CRC.
        let len = WRITEBACK_CHUNK_BYTES * 7 / 2 + 13;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let s = Snapshot {
            meta: SnapshotMeta {
                index: 9,
                term: 2,
                membership: Membership::with_voters([1, 2, 3]),
            },
            data: Arc::from(data),
        };
        let dir = std::env::temp_dir().join(format!("ringraft-snap-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("shard-1.snap");
        write_snapshot_file(&p, &s).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), encode_snapshot(&s));
        assert_eq!(read_snapshot(&p).unwrap(), Some(s));
        assert!(!p.with_extension("tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_released_snapshot_gets_its_bytes_only_from_its_own_file() {
        let full = |index, term| Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership: Membership::with_voters([1, 2, 3]),
            },
            data: Arc::from(&b"state-bytes"[..]),
        };
        let released = |index, term| Snapshot {
            data: Arc::from(&[][..]),
            ..full(index, term)
        };
        let dir = std::env::temp_dir().join(format!("ringraft-snap-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("shard-2.snap");
        // No file yet, or a file of another snapshot: refused, the bytes stay empty.
        let mut s = released(20, 3);
        assert!(fill_released(&mut s, &p).is_err());
        write_snapshot_file(&p, &full(10, 3)).unwrap();
        assert!(fill_released(&mut s, &p).is_err());
        assert!(s.data.is_empty());
        write_snapshot_file(&p, &full(20, 2)).unwrap();
        assert!(fill_released(&mut s, &p).is_err(), "same index, other term");
        // Its own file: filled.
        write_snapshot_file(&p, &full(20, 3)).unwrap();
        fill_released(&mut s, &p).unwrap();
        assert_eq!(s, full(20, 3));
        // Not released (bytes held, or the empty snapshot at index 0): left alone.
        let mut held = full(7, 1);
        fill_released(&mut held, &p).unwrap();
        assert_eq!(held, full(7, 1));
        let mut empty = released(0, 0);
        fill_released(&mut empty, &p).unwrap();
        assert!(empty.data.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entry_payload_round_trip() {
        for kind in [EntryKind::Normal, EntryKind::Noop, EntryKind::Config] {
            let e = Entry {
                index: 7,
                term: 2,
                kind,
                data: Arc::from(&b"abc"[..]),
            };
            assert_eq!(decode_entry(7, 2, &entry_payload(&e)).unwrap(), e);
        }
        assert!(decode_entry(1, 1, &[]).is_err());
        assert!(decode_entry(1, 1, &[9]).is_err());
    }
}
