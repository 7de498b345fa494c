//! The 64-byte segment header (layout in the parent module's docs): encoding and the checked
//! decoding of bytes read from disk. An all-zero header is a spare; anything else must carry
//! the magic, a supported version and a valid CRC, or decoding names the file and the fault.

use std::path::Path;

use crate::error::{Error, Result};

/// Segment magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRAFTWAL";
/// Format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// Decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number.
    pub seq: u64,
    /// First lsn.
    pub first_lsn: u64,
    /// Owner id.
    pub owner_id: u64,
    /// File size.
    pub segment_bytes: u64,
}

impl SegmentHeader {
    /// Encodes to 64 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.owner_id.to_le_bytes());
        b[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes 64 bytes; `Ok(None)` for an all-zero (spare) header.
    pub fn decode(b: &[u8], path: &Path) -> Result<Option<SegmentHeader>> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: format!("file of {} bytes is shorter than a header", b.len()),
            });
        }
        let b = &b[..SEGMENT_HEADER_BYTES];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != SEGMENT_MAGIC {
            return Err(Error::BadMagic {
                path: path.into(),
                found: magic,
            });
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = u32::from_le_bytes([b[60], b[61], b[62], b[63]]);
        let actual = crc32fast::hash(&b[0..60]);
        if stored != actual {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: format!(
                    "segment header crc mismatch (stored {stored:#010x}, computed {actual:#010x})"
                ),
            });
        }
        let hb = u16::from_le_bytes([b[10], b[11]]) as usize;
        if hb != SEGMENT_HEADER_BYTES {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 10,
                reason: format!("header_bytes {hb}, expected {SEGMENT_HEADER_BYTES}"),
            });
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Some(SegmentHeader {
            seq: word(16),
            first_lsn: word(24),
            owner_id: word(32),
            segment_bytes: word(40),
        }))
    }
}
