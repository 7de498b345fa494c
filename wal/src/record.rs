//! The record format: how one log record is laid out in a segment, encoded and verified.
//!
//! Records start at byte 64 of a segment (after the header) and follow each other with no gaps,
//! each padded to a multiple of 8 bytes. All integers are little-endian.
//!
//! ```text
//! offset  size  field
//!      0     4  payload_len  u32, bytes of payload (padding not included)
//!      4     4  crc32        crc32 (IEEE, crc32fast) over bytes 0..4, then bytes 8..total
//!                            (rest of the header, payload and zero padding): every byte of
//!                            the record except the crc field itself is covered
//!      8     8  lsn          u64, log sequence number: 1, 2, 3, ... across the whole log;
//!                            a record must carry exactly the next lsn to be valid
//!     16     8  group        u64, Raft group id
//!     24     8  term         u64, entry term (HardState: the hard state's term; else 0)
//!     32     8  index        u64, entry index (Truncate: first removed index;
//!                            Purge, Checkpoint: first index; HardState: commit index)
//!     40     1  kind         u8: 1 Entry, 2 Truncate, 3 HardState, 4 Purge, 5 Checkpoint
//!     41     7  reserved     zero
//!     48     n  payload      Entry: the entry bytes; HardState: 24 bytes (see hard_state.rs);
//!                            Checkpoint: 8 bytes, the group's last index (u64);
//!                            Truncate, Purge: empty
//!   48+n     p  padding      zero, p = (8 - (48+n) % 8) % 8
//! ```
//!
//! A position whose 48 header bytes are all zero is the end of the segment's records (segments
//! are zero-filled when prepared, and recovery zeroes a cut tail). Anything else that does not
//! verify (length out of bounds, CRC mismatch, wrong lsn, unknown kind, nonzero reserved bytes,
//! bad HardState length) is invalid; what that means (torn tail or corruption) is decided by
//! recovery.rs.

use crate::hard_state::HARD_STATE_BYTES;

/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 48;
/// Records are padded to a multiple of this.
pub const RECORD_ALIGN_BYTES: usize = 8;

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A Raft log entry of `group` at `index` with `term`.
    Entry = 1,
    /// Entries of `group` with index >= `index` are removed.
    Truncate = 2,
    /// Hard state of `group` (payload: 24 bytes).
    HardState = 3,
    /// Entries of `group` below `index` are no longer needed; first index becomes `index`.
    Purge = 4,
    /// Written for every group at the start of each segment (roll): the group's first index
    /// (`index`) and last index (payload, 8 bytes) at that moment, so a replay that starts at
    /// this segment (older ones purged) knows the group's position.
    Checkpoint = 5,
}

/// Payload bytes of a Checkpoint record.
pub const CHECKPOINT_PAYLOAD_BYTES: usize = 8;

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Entry),
            2 => Some(RecordKind::Truncate),
            3 => Some(RecordKind::HardState),
            4 => Some(RecordKind::Purge),
            5 => Some(RecordKind::Checkpoint),
            _ => None,
        }
    }
}

/// Header fields of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Log sequence number.
    pub lsn: u64,
    /// Raft group.
    pub group: u64,
    /// Term.
    pub term: u64,
    /// Index.
    pub index: u64,
    /// Kind.
    pub kind: RecordKind,
}

/// Total bytes a record with `payload_len` payload bytes occupies (header + payload + padding).
pub const fn record_bytes(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len).div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// Encodes the header (crc left zero) for `h` and `payload_len`.
fn header_bytes(h: &RecordHeader, payload_len: usize) -> [u8; RECORD_HEADER_BYTES] {
    let mut b = [0u8; RECORD_HEADER_BYTES];
    b[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    b[8..16].copy_from_slice(&h.lsn.to_le_bytes());
    b[16..24].copy_from_slice(&h.group.to_le_bytes());
    b[24..32].copy_from_slice(&h.term.to_le_bytes());
    b[32..40].copy_from_slice(&h.index.to_le_bytes());
    b[40] = h.kind as u8;
    b
}

const ZERO_PAD: [u8; RECORD_ALIGN_BYTES] = [0u8; RECORD_ALIGN_BYTES];

/// Total length of a payload given in parts (in-memory slices: the sum cannot overflow).
pub fn parts_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

/// Encodes the header with its CRC over header, `payload` and padding. The caller writes the
/// header, the payload and `record_bytes(payload.len()) - 48 - payload.len()` zero bytes.
pub fn encode_header(h: &RecordHeader, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    encode_header_parts(h, &[payload])
}

/// [`encode_header`] for a payload given as consecutive `parts` (written one after the other,
/// so the record is the same as for their concatenation).
pub fn encode_header_parts(h: &RecordHeader, parts: &[&[u8]]) -> [u8; RECORD_HEADER_BYTES] {
    let payload_len = parts_len(parts);
    let mut b = header_bytes(h, payload_len);
    let pad = record_bytes(payload_len) - RECORD_HEADER_BYTES - payload_len;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[0..4]);
    crc.update(&b[8..]);
    for p in parts {
        crc.update(p);
    }
    crc.update(&ZERO_PAD[..pad]);
    b[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    b
}

/// Result of decoding at one position.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record: its header, payload range (absolute offsets) and total length.
    Record {
        /// Header fields.
        header: RecordHeader,
        /// Offset of the payload.
        payload_off: usize,
        /// Payload length.
        payload_len: usize,
        /// Total bytes including padding.
        total: usize,
    },
    /// All-zero header: no more records here.
    End,
    /// Not a valid record; the reason in words.
    Invalid(String),
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

/// Decodes and verifies the record at `off` in `buf` (a whole segment), which must carry
/// `expected_lsn`.
pub fn decode(buf: &[u8], off: usize, expected_lsn: u64) -> Decoded {
    if off
        .checked_add(RECORD_HEADER_BYTES)
        .is_none_or(|end| end > buf.len())
    {
        // Not even a header fits: the segment is full.
        return Decoded::End;
    }
    let h = &buf[off..off + RECORD_HEADER_BYTES];
    if h.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let payload_len = u32_at(h, 0) as usize;
    let total = record_bytes(payload_len);
    if total > buf.len() - off {
        return Decoded::Invalid(format!(
            "record length {payload_len} runs past the end of the segment"
        ));
    }
    let stored_crc = u32_at(h, 4);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[off..off + 4]);
    crc.update(&buf[off + 8..off + total]);
    let actual = crc.finalize();
    if actual != stored_crc {
        return Decoded::Invalid(format!(
            "crc mismatch (stored {stored_crc:#010x}, computed {actual:#010x})"
        ));
    }
    let lsn = u64_at(h, 8);
    if lsn != expected_lsn {
        return Decoded::Invalid(format!("lsn {lsn} where lsn {expected_lsn} was expected"));
    }
    let Some(kind) = RecordKind::from_u8(h[40]) else {
        return Decoded::Invalid(format!("unknown record kind {}", h[40]));
    };
    if h[41..48].iter().any(|&b| b != 0) {
        return Decoded::Invalid("nonzero reserved header bytes".into());
    }
    let header = RecordHeader {
        lsn,
        group: u64_at(h, 16),
        term: u64_at(h, 24),
        index: u64_at(h, 32),
        kind,
    };
    let ok_len = match kind {
        RecordKind::Entry => true,
        RecordKind::HardState => payload_len == HARD_STATE_BYTES,
        RecordKind::Checkpoint => payload_len == CHECKPOINT_PAYLOAD_BYTES,
        RecordKind::Truncate | RecordKind::Purge => payload_len == 0,
    };
    if !ok_len {
        return Decoded::Invalid(format!("{kind:?} record with payload length {payload_len}"));
    }
    Decoded::Record {
        header,
        payload_off: off + RECORD_HEADER_BYTES,
        payload_len,
        total,
    }
}

/// Looks for a valid record at any 8-byte-aligned offset after `from` (exclusive) whose lsn is
/// at least `min_lsn` (a record of the current incarnation of the segment that would come
/// later in the log); returns its offset, lsn and total length. Old records left in a recycled
/// segment carry lower lsns and are not counted. Cost: one cheap field check per 8 bytes, a crc
/// only where the lsn field is plausible.
pub fn find_valid_after(buf: &[u8], from: usize, min_lsn: u64) -> Option<(usize, u64, usize)> {
    // An lsn more than this far ahead cannot belong to a record of this segment (each record
    // is at least one header long), so it is not worth a crc.
    let max_ahead = (buf.len() / RECORD_HEADER_BYTES) as u64;
    let max_lsn = min_lsn.saturating_add(max_ahead);
    let mut off = from.checked_add(RECORD_ALIGN_BYTES)?;
    off -= off % RECORD_ALIGN_BYTES;
    while off.checked_add(RECORD_HEADER_BYTES)? <= buf.len() {
        let lsn = u64_at(buf, off + 8);
        if lsn >= min_lsn && lsn <= max_lsn {
            if let Decoded::Record { total, .. } = decode(buf, off, lsn) {
                return Some((off, lsn, total));
            }
        }
        off += RECORD_ALIGN_BYTES;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buf: &mut [u8], off: usize, h: &RecordHeader, payload: &[u8]) -> usize {
        let hb = encode_header(h, payload);
        buf[off..off + RECORD_HEADER_BYTES].copy_from_slice(&hb);
        buf[off + RECORD_HEADER_BYTES..off + RECORD_HEADER_BYTES + payload.len()]
            .copy_from_slice(payload);
        record_bytes(payload.len())
    }

    #[test]
    fn sizes_are_padded() {
        assert_eq!(record_bytes(0), 48);
        assert_eq!(record_bytes(1), 56);
        assert_eq!(record_bytes(8), 56);
        assert_eq!(record_bytes(256), 304);
    }

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let mut buf = vec![0u8; 512];
        let h = RecordHeader {
            lsn: 5,
            group: 9,
            term: 3,
            index: 77,
            kind: RecordKind::Entry,
        };
        let total = put(&mut buf, 0, &h, b"hello wal");
        match decode(&buf, 0, 5) {
            Decoded::Record {
                header,
                payload_off,
                payload_len,
                total: t,
            } => {
                assert_eq!(header, h);
                assert_eq!(&buf[payload_off..payload_off + payload_len], b"hello wal");
                assert_eq!(t, total);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(decode(&buf, 0, 6), Decoded::Invalid(_)));
        assert_eq!(decode(&buf, total, 6), Decoded::End);
        for bit in 0..total * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode(&b, 0, 5), Decoded::Invalid(_)),
                "flip of bit {bit} not detected"
            );
        }
    }
}
