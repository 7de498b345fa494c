//! The store's snapshot format: everything a replica needs to continue exactly where the
//! snapshot was taken (data, applied index, the whole session table), checksummed.
//!
//! ## Snapshot encoding (little-endian), format version 3 (version 2: the same without leases)
//! ```text
//! magic "RRKV" (4) | version u32 = 3 | applied_index u64 | key_count u64
//! key_count x ( key_len u32 | key | value_len u32 | value | version u64 )
//! session_count u64 | session_count x ( client_id u64 | seq u64 | result )
//! mark_count u64 | mark_count x ( client_id u64 | evicted_below u64 )
//! tombstone_count u64 | tombstone_count x ( client_id u64 | evicted_below u64 | live u8 )
//! floor u8
//! leases (version 3, see [`super::lease::Leases::encode`])
//! crc32 u32 over every byte before it
//! ```
//! Results are encoded as in [`super::result`]. Every count is checked against the bytes left
//! before anything is allocated for it.

use std::sync::Arc;

use super::command::{CodecError, Reader};
use super::lease::Leases;
use super::session::Sessions;
use super::store::{Data, Key, KvStore, Stored};

/// Snapshot magic.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"RRKV";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 3;
/// The previous format (no lease table), still read.
const SNAPSHOT_VERSION_NO_LEASES: u32 = 2;
/// Smallest snapshot: magic, version, applied index, four counts, floor, crc.
const MIN_SNAPSHOT_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 8 + 8 + 1 + 4;

impl KvStore {
    /// The whole state as bytes (format in the module docs).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.snapshot_to(&self.snapshot_tail(), &mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// The snapshot's tail: the session and lease tables (small), encoded.
    fn snapshot_tail(&self) -> Vec<u8> {
        let mut tail = Vec::new();
        self.sessions.encode(&mut tail);
        self.leases.encode(&mut tail);
        tail
    }

    /// The length of [`KvStore::snapshot`]'s bytes and their tail (the session and lease
    /// tables, small, encoded here once), counted without building the bytes; `None` when the
    /// length overflows.
    pub fn snapshot_len(&self) -> Option<(usize, Vec<u8>)> {
        let tail = self.snapshot_tail();
        let head = 4 + 4 + 8 + 8;
        let entries = self.data.iter().try_fold(0usize, |n, (k, v)| {
            n.checked_add(4 + k.len() + 4 + v.value().len() + 8)
        })?;
        let len = entries.checked_add(head + tail.len() + 4)?;
        Some((len, tail))
    }

    /// Streams [`KvStore::snapshot`]'s bytes to `sink` piece by piece, in order, never holding
    /// more than one key's piece: `tail` is [`KvStore::snapshot_len`]'s. So a snapshot of a
    /// large state is written to its file without its serialized copy in memory. Stops at the
    /// sink's first error.
    pub fn snapshot_to<E>(
        &self,
        tail: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |b: &[u8]| {
            crc.update(b);
            sink(b)
        };
        put(SNAPSHOT_MAGIC)?;
        put(&SNAPSHOT_VERSION.to_le_bytes())?;
        put(&self.applied_index.to_le_bytes())?;
        put(&(self.data.len() as u64).to_le_bytes())?;
        for (k, v) in &self.data {
            put(&(k.len() as u32).to_le_bytes())?;
            put(k)?;
            put(&(v.value().len() as u32).to_le_bytes())?;
            put(v.value())?;
            put(&v.version().to_le_bytes())?;
        }
        put(tail)?;
        sink(&crc.finalize().to_le_bytes())
    }

    /// [`KvStore::snapshot`]'s bytes built in place in one shared buffer of their exact size:
    /// no buffer regrown while encoding and no copy into the shared one afterwards. The length
    /// is counted in a first pass over the (frozen) store, then the bytes are written in a
    /// second.
    pub fn snapshot_shared(&self) -> Arc<[u8]> {
        let Some((len, tail)) = self.snapshot_len() else {
            return Arc::from(self.snapshot());
        };
        let shared = Arc::<[u8]>::new_zeroed_slice(len);
        // SAFETY: every byte of the buffer is zero, a valid `u8`.
        let mut shared: Arc<[u8]> = unsafe { shared.assume_init() };
        let Some(buf) = Arc::get_mut(&mut shared) else {
            // A fresh Arc is never shared; build the bytes the plain way if it somehow is.
            return Arc::from(self.snapshot());
        };
        // A piece that would not fit the counted length stops the encoding: the count was
        // wrong, and the bytes are built the plain way instead.
        let mut pos = 0usize;
        let written = self.snapshot_to(&tail, &mut |b: &[u8]| -> Result<(), ()> {
            let dst = buf.get_mut(pos..pos.saturating_add(b.len())).ok_or(())?;
            dst.copy_from_slice(b);
            pos += b.len();
            Ok(())
        });
        if written.is_err() || pos != len {
            return Arc::from(self.snapshot());
        }
        shared
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes, checking magic, version and CRC.
    pub fn restore(bytes: &[u8]) -> Result<KvStore, CodecError> {
        if bytes.len() < MIN_SNAPSHOT_BYTES {
            return Err(CodecError(format!(
                "snapshot of {} bytes is too short",
                bytes.len()
            )));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let mut crc_arr = [0u8; 4];
        crc_arr.copy_from_slice(crc_bytes);
        let want = u32::from_le_bytes(crc_arr);
        let got = crc32fast::hash(body);
        if want != got {
            return Err(CodecError(format!(
                "snapshot crc mismatch: stored {want:#010x}, computed {got:#010x}"
            )));
        }
        let mut r = Reader::new(body);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(CodecError("snapshot magic is not RRKV".into()));
        }
        let version = r.u32()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_NO_LEASES {
            return Err(CodecError(format!(
                "snapshot format version {version}, this node reads {SNAPSHOT_VERSION}"
            )));
        }
        let applied_index = r.u64()?;
        let n = r.count(16)?;
        let mut data = Data::new();
        for _ in 0..n {
            let k = Key::from(r.bytes()?);
            let value = r.bytes()?;
            let version = r.u64()?;
            data.insert(k, Stored::new(value, version));
        }
        let sessions = Sessions::decode(&mut r)?;
        let leases = if version == SNAPSHOT_VERSION {
            Leases::decode(&mut r)?
        } else {
            Leases::default()
        };
        for id in leases.ids() {
            let attached_missing = leases
                .get(id)
                .is_some_and(|l| l.keys.iter().any(|k| !data.contains_key(&k[..])));
            if attached_missing {
                return Err(CodecError(format!(
                    "lease {id} holds a key the snapshot does not have"
                )));
            }
        }
        r.finish()?;
        Ok(KvStore::from_parts(data, applied_index, sessions, leases))
    }
}
