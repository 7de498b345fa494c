//! The snapshot file of one shard: its byte format (see the parent module), writing it from
//! a snapshot's bytes or streamed from a frozen store, reading and decoding it, and giving a
//! snapshot whose bytes the Raft log released its bytes back from the file. Files are
//! written through [`super::writeback`], atomically and with paced writeback.

use super::writeback::*;
use super::*;

/// The head of a snapshot file (magic through the data length) for `meta` and `data_len`
/// bytes of state.
pub(super) fn snapshot_file_head(meta: &SnapshotMeta, data_len: u64) -> Vec<u8> {
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
pub(super) fn snapshot_file_parts(s: &Snapshot) -> (Vec<u8>, &[u8], [u8; 4]) {
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
/// come out at the length counted first. Written at most `rate` bytes a second (0: no limit),
/// so that a large state's file does not crowd WAL syncs out of the device.
pub fn write_store_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta,
    state: &crate::node::kv::store::KvStore,
    rate: u64,
) -> std::io::Result<u64> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let (len, tail) = state
        .snapshot_len()
        .ok_or_else(|| invalid("snapshot length overflows".into()))?;
    let head = snapshot_file_head(meta, len as u64);
    write_streamed_atomically(path, rate, |w| {
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
pub(super) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
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
