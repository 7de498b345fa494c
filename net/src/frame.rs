//! The frame: ringraft's unit on the wire, a fixed 32-byte header followed by one rkyv archive.
//!
//! Every message between nodes, clients and admin tools travels as one frame. This module owns
//! the header layout, its parsing and its writing; it knows nothing about sockets. Invariants:
//! a frame always starts at an offset that is a multiple of [`FRAME_ALIGN_BYTES`] within the
//! stream (the payload is zero-padded up to the next multiple), so a receive buffer that is
//! 16-aligned keeps every payload 16-aligned, which is what in-place rkyv access requires.
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//! offset size field
//! 0      4    magic            F1 52 52 46  (0xF1 'R' 'R' 'F'; the 0xF1 byte is never ASCII,
//!                                            so a frame is never mistaken for HTTP)
//! 4      2    version          frame format version, currently 1 (PROTOCOL_VERSION)
//! 6      2    kind             message kind (see message::Kind), e.g. 16 = AppendEntries
//! 8      2    flags            bit 0 RESPONSE (this frame answers `request_id`),
//!                              bit 1 ERROR (payload is an ErrorFrame); other bits must be 0
//! 10     2    reserved         must be 0
//! 12     4    payload_len      exact length of the rkyv archive in bytes, <= max_frame_bytes
//! 16     8    request_id       chosen by the requester, echoed by the response; 0 = none
//! 24     4    payload_crc32    CRC-32 (IEEE, crc32fast) of the payload_len payload bytes
//! 28     4    header_crc32     CRC-32 of header bytes 0..28 (request id and flags are not
//!                              covered by the payload CRC, so the header seals itself)
//! 32     n    payload          rkyv archive, root object at its end, 16-aligned start
//! 32+n   p    padding          p = (16 - n % 16) % 16 zero bytes
//! ```
//!
//! The whole frame is `32 + n + p` bytes, always a multiple of 16.
//!
//! # Archive format
//! The payload is an rkyv 0.8 archive with the format features pinned workspace-wide:
//! `little_endian`, `pointer_width_32` (relative pointers and lengths are 32-bit, so one
//! archive is below 4 GiB) and `aligned` (primitives at their natural alignment). A node built
//! with different features would read garbage, so they are pinned in the root `Cargo.toml`
//! and changing them requires bumping [`PROTOCOL_VERSION`].

use crate::error::DecodeError;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = [0xF1, b'R', b'R', b'F'];
/// Frame format and protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_BYTES: usize = 32;
/// Alignment of every frame start and every payload start.
pub const FRAME_ALIGN_BYTES: usize = 16;
/// Default bound on one payload (`max_frame_bytes`): 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Hard ceiling any configuration may use: the archive format has 32-bit offsets.
pub const MAX_FRAME_BYTES_CEILING: usize = 1 << 30;

/// Flag bit: this frame is a response to the request with the same `request_id`.
pub const FLAG_RESPONSE: u16 = 1 << 0;
/// Flag bit: the payload is an [`crate::message::ErrorFrame`].
pub const FLAG_ERROR: u16 = 1 << 1;
/// All flag bits this version understands.
pub const FLAGS_KNOWN: u16 = FLAG_RESPONSE | FLAG_ERROR;

const OFF_VERSION: usize = 4;
const OFF_KIND: usize = 6;
const OFF_FLAGS: usize = 8;
const OFF_RESERVED_A: usize = 10;
const OFF_PAYLOAD_LEN: usize = 12;
const OFF_REQUEST_ID: usize = 16;
const OFF_CRC: usize = 24;
const OFF_HEADER_CRC: usize = 28;

/// The decoded fixed header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame format version (must equal [`PROTOCOL_VERSION`]).
    pub version: u16,
    /// Raw message kind; see [`crate::message::Kind`].
    pub kind: u16,
    /// Flag bits, a subset of [`FLAGS_KNOWN`].
    pub flags: u16,
    /// Length of the payload in bytes (without padding).
    pub payload_len: u32,
    /// Request id: chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// CRC-32 of the payload bytes.
    pub payload_crc32: u32,
}

impl FrameHeader {
    /// Whether the RESPONSE flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// Whether the ERROR flag is set.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// Total bytes this frame occupies on the wire, header and padding included.
    pub fn frame_bytes(&self) -> usize {
        frame_bytes_for(self.payload_len as usize)
    }

    /// Writes the header into `out[..HEADER_BYTES]`.
    pub fn write_to(&self, out: &mut [u8; HEADER_BYTES]) {
        out[..4].copy_from_slice(&MAGIC);
        out[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&self.version.to_le_bytes());
        out[OFF_KIND..OFF_KIND + 2].copy_from_slice(&self.kind.to_le_bytes());
        out[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&self.flags.to_le_bytes());
        out[OFF_RESERVED_A..OFF_RESERVED_A + 2].copy_from_slice(&[0, 0]);
        out[OFF_PAYLOAD_LEN..OFF_PAYLOAD_LEN + 4].copy_from_slice(&self.payload_len.to_le_bytes());
        out[OFF_REQUEST_ID..OFF_REQUEST_ID + 8].copy_from_slice(&self.request_id.to_le_bytes());
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&self.payload_crc32.to_le_bytes());
        let hcrc = crc32fast::hash(&out[..OFF_HEADER_CRC]);
        out[OFF_HEADER_CRC..OFF_HEADER_CRC + 4].copy_from_slice(&hcrc.to_le_bytes());
    }

    /// Parses and checks a header: magic, header CRC, version, flags, reserved bytes and the
    /// length bound.
    /// The kind is checked by the decoder (it owns the kind table); the CRC once the payload is in.
    pub fn parse(bytes: &[u8; HEADER_BYTES], max_frame_bytes: usize) -> Result<Self, DecodeError> {
        if bytes[..4] != MAGIC {
            return Err(DecodeError::BadMagic {
                got: [bytes[0], bytes[1], bytes[2], bytes[3]],
            });
        }
        let expected = u32_at(bytes, OFF_HEADER_CRC);
        let actual = crc32fast::hash(&bytes[..OFF_HEADER_CRC]);
        // Not enforced under cargo-fuzz (`--cfg fuzzing`), so the fuzzer reaches the fields.
        if expected != actual && !cfg!(fuzzing) {
            return Err(DecodeError::HeaderCrcMismatch { expected, actual });
        }
        let version = u16_at(bytes, OFF_VERSION);
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let flags = u16_at(bytes, OFF_FLAGS);
        if flags & !FLAGS_KNOWN != 0 || u16_at(bytes, OFF_RESERVED_A) != 0 {
            return Err(DecodeError::BadHeader {
                reason: "unknown flag bits or non-zero reserved bytes",
            });
        }
        let payload_len = u32_at(bytes, OFF_PAYLOAD_LEN);
        if payload_len as usize > max_frame_bytes {
            return Err(DecodeError::Oversize {
                len: payload_len as u64,
                max: max_frame_bytes as u64,
            });
        }
        Ok(FrameHeader {
            version,
            kind: u16_at(bytes, OFF_KIND),
            flags,
            payload_len,
            request_id: u64::from_le_bytes(arr8(bytes, OFF_REQUEST_ID)),
            payload_crc32: u32_at(bytes, OFF_CRC),
        })
    }
}

/// Bytes a frame with a payload of `payload_len` occupies, padding included.
pub fn frame_bytes_for(payload_len: usize) -> usize {
    HEADER_BYTES + pad_to_align(payload_len)
}

/// Rounds `n` up to the next multiple of [`FRAME_ALIGN_BYTES`].
pub fn pad_to_align(n: usize) -> usize {
    n.div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

/// CRC-32 (IEEE) used for payloads.
pub fn payload_crc32(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

fn u16_at(b: &[u8; HEADER_BYTES], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8; HEADER_BYTES], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn arr8(b: &[u8; HEADER_BYTES], off: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            version: PROTOCOL_VERSION,
            kind: 16,
            flags: FLAG_RESPONSE,
            payload_len: 100,
            request_id: 0x0102_0304_0506_0708,
            payload_crc32: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn header_layout_is_byte_exact() {
        let mut b = [0u8; HEADER_BYTES];
        header().write_to(&mut b);
        assert_eq!(&b[0..4], &[0xF1, b'R', b'R', b'F']);
        assert_eq!(&b[4..6], &[1, 0]);
        assert_eq!(&b[6..8], &[16, 0]);
        assert_eq!(&b[8..10], &[1, 0]);
        assert_eq!(&b[10..12], &[0, 0]);
        assert_eq!(&b[12..16], &[100, 0, 0, 0]);
        assert_eq!(&b[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[24..28], &[0xEF, 0xBE, 0xAD, 0xDE]);
        assert_eq!(&b[28..32], &crc32fast::hash(&b[..28]).to_le_bytes());
        assert_eq!(FrameHeader::parse(&b, 1000).unwrap(), header());
        assert_eq!(header().frame_bytes(), 32 + 112);
    }

    #[test]
    fn header_rejections() {
        let mut b = [0u8; HEADER_BYTES];
        header().write_to(&mut b);
        let reseal = |b: &mut [u8; HEADER_BYTES]| {
            let c = crc32fast::hash(&b[..28]);
            b[28..32].copy_from_slice(&c.to_le_bytes());
        };
        let mut c = b;
        c[17] ^= 1; // request id, not covered by the payload CRC
        assert!(matches!(
            FrameHeader::parse(&c, 1000),
            Err(DecodeError::HeaderCrcMismatch { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&b, 99),
            Err(DecodeError::Oversize { len: 100, max: 99 })
        ));
        let mut v = b;
        v[4] = 9;
        reseal(&mut v);
        assert!(matches!(
            FrameHeader::parse(&v, 1000),
            Err(DecodeError::UnsupportedVersion { got: 9, .. })
        ));
        let mut f = b;
        f[9] = 0x80;
        reseal(&mut f);
        assert!(matches!(
            FrameHeader::parse(&f, 1000),
            Err(DecodeError::BadHeader { .. })
        ));
        let mut m = b;
        m[0] = b'G';
        assert!(matches!(
            FrameHeader::parse(&m, 1000),
            Err(DecodeError::BadMagic { .. })
        ));
    }
}
