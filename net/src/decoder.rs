//! The frame decoder: bytes from a socket in, validated frames out, read in place.
//!
//! The decoder owns one reusable receive buffer, 16-byte aligned (rkyv's `AlignedVec<16>`).
//! The transport reads straight into [`Decoder::read_buf`] and commits with
//! [`Decoder::advance`] (or copies with [`Decoder::push`]); [`Decoder::next_frame`] then checks,
//! in this order, before anything reads the payload: magic, version, flags/reserved bytes,
//! `payload_len <= max_frame_bytes`, known kind, CRC-32 of the payload, zero padding, and rkyv
//! bytecheck validation of the archive as the kind's type. Only then does it return a
//! [`Frame`] whose [`MessageRef`] points into the buffer: no copy, no deserialization.
//!
//! Invariants: `start` and every frame start are multiples of 16 within the buffer (frames are
//! padded to 16 bytes), so every payload is 16-aligned in memory. The buffer only grows to hold
//! one whole frame (`<= 32 + max_frame_bytes + 15`) plus `min_read_bytes`, so it is bounded, and
//! shrinks back once empty if it grew past `max_idle_buffer_bytes`.
//! After an error the stream's framing is lost: the decoder stays failed and returns the same
//! error; the connection must be closed. Single owner: one decoder per connection.

use rkyv::util::AlignedVec;

use crate::error::DecodeError;
use crate::frame::{
    frame_bytes_for, payload_crc32, FrameHeader, DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES,
    MAX_FRAME_BYTES_CEILING,
};
use crate::message::{validate, Kind, MessageRef};

/// Default initial receive buffer size.
pub const DEFAULT_INITIAL_BUFFER_BYTES: usize = 64 * 1024;
/// Default minimum free space offered to one socket read.
pub const DEFAULT_MIN_READ_BYTES: usize = 16 * 1024;
/// Default size above which an emptied buffer is given back (shrunk to the initial size).
pub const DEFAULT_MAX_IDLE_BUFFER_BYTES: usize = 1024 * 1024;

/// Decoder limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest accepted payload; larger headers are rejected before the payload is read.
    pub max_frame_bytes: usize,
    /// Receive buffer size allocated up front.
    pub initial_buffer_bytes: usize,
    /// Minimum free space `read_buf` offers (compacting or growing as needed).
    pub min_read_bytes: usize,
    /// When the buffer is empty and larger than this (after a big frame), it shrinks back to
    /// `initial_buffer_bytes`, so idle connections do not pin large allocations.
    pub max_idle_buffer_bytes: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            initial_buffer_bytes: DEFAULT_INITIAL_BUFFER_BYTES,
            min_read_bytes: DEFAULT_MIN_READ_BYTES,
            max_idle_buffer_bytes: DEFAULT_MAX_IDLE_BUFFER_BYTES,
        }
    }
}

/// One validated frame, borrowed from the decoder's buffer until the next decoder call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Parsed header.
    pub header: FrameHeader,
    /// Message kind.
    pub kind: Kind,
    /// The validated archive bytes (16-aligned).
    pub payload: &'a [u8],
    /// Typed in-place view of the payload.
    pub message: MessageRef<'a>,
}

/// Incremental, validating frame decoder over a reusable aligned buffer.
#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    buf: AlignedVec<16>,
    start: usize,
    end: usize,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder with the given limits (clamped to sane ranges).
    pub fn new(cfg: DecoderConfig) -> Self {
        let cfg = DecoderConfig {
            max_frame_bytes: cfg.max_frame_bytes.min(MAX_FRAME_BYTES_CEILING),
            initial_buffer_bytes: cfg.initial_buffer_bytes.max(HEADER_BYTES),
            min_read_bytes: cfg.min_read_bytes.max(HEADER_BYTES),
            max_idle_buffer_bytes: cfg.max_idle_buffer_bytes,
        };
        let mut buf = AlignedVec::<16>::with_capacity(cfg.initial_buffer_bytes);
        buf.resize(cfg.initial_buffer_bytes, 0);
        Decoder {
            cfg,
            buf,
            start: 0,
            end: 0,
            failed: None,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending_bytes(&self) -> usize {
        self.end - self.start
    }

    /// The received bytes not yet returned as frames (e.g. the first bytes of an HTTP request
    /// that the listener hands over after sniffing).
    pub fn pending(&self) -> &[u8] {
        &self.buf.as_slice()[self.start..self.end]
    }

    /// Current receive buffer size (bounded, see module docs).
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether the decoder has failed (the connection must close).
    pub fn failed(&self) -> Option<&DecodeError> {
        self.failed.as_ref()
    }

    /// Bytes still missing for the frame at the front, as far as the header tells.
    fn bytes_needed(&self) -> usize {
        let pending = self.pending_bytes();
        if pending < HEADER_BYTES {
            return HEADER_BYTES - pending;
        }
        let mut hdr = [0u8; HEADER_BYTES];
        hdr.copy_from_slice(&self.buf.as_slice()[self.start..self.start + HEADER_BYTES]);
        match FrameHeader::parse(&hdr, self.cfg.max_frame_bytes) {
            Ok(h) if Kind::from_u16(h.kind).is_some() => h.frame_bytes().saturating_sub(pending),
            // A bad header or unknown kind fails at once: nothing more is needed.
            _ => 0,
        }
    }

    /// Whether [`Decoder::next_frame`] will return a frame or an error without more bytes.
    pub fn frame_ready(&self) -> bool {
        self.failed.is_some() || (self.pending_bytes() >= HEADER_BYTES && self.bytes_needed() == 0)
    }

    /// Free space to read socket bytes into; commit them with [`Decoder::advance`]. Always at
    /// least `min_read_bytes` and enough for the frame at the front.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let idle_max = self
                .cfg
                .max_idle_buffer_bytes
                .max(self.cfg.initial_buffer_bytes);
            if self.buf.len() > idle_max {
                let mut small = AlignedVec::<16>::with_capacity(self.cfg.initial_buffer_bytes);
                small.resize(self.cfg.initial_buffer_bytes, 0);
                self.buf = small;
            }
        }
        let want = self.cfg.min_read_bytes.max(self.bytes_needed());
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                // Frames are 16-padded, so `start` is 16-aligned and stays so at offset 0.
                self.buf.as_mut_slice().copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let need_len = self.end + want;
            if self.buf.len() < need_len {
                self.buf.resize(need_len, 0);
            }
        }
        &mut self.buf.as_mut_slice()[self.end..]
    }

    /// Commits `n` bytes written into the slice last returned by [`Decoder::read_buf`].
    pub fn advance(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "advance past the read buffer"
        );
        self.end += n;
    }

    /// Copies as much of `data` as one `read_buf` holds; returns how many bytes were taken.
    /// Call [`Decoder::next_frame`] until `None` between calls.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let spare = self.read_buf();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.advance(n);
        n
    }

    /// Call at end of stream: an incomplete frame left over is a [`DecodeError::Truncated`].
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.pending_bytes() {
            0 => Ok(()),
            pending => Err(DecodeError::Truncated { pending }),
        }
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        e
    }

    /// The next complete, validated frame; `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending = self.pending_bytes();
        if pending < HEADER_BYTES {
            return Ok(None);
        }
        let mut hdr = [0u8; HEADER_BYTES];
        hdr.copy_from_slice(&self.buf.as_slice()[self.start..self.start + HEADER_BYTES]);
        let header = match FrameHeader::parse(&hdr, self.cfg.max_frame_bytes) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e)),
        };
        let Some(kind) = Kind::from_u16(header.kind) else {
            return Err(self.fail(DecodeError::UnknownKind { kind: header.kind }));
        };
        let total = frame_bytes_for(header.payload_len as usize);
        if pending < total {
            return Ok(None);
        }
        let payload_start = self.start + HEADER_BYTES;
        let payload_end = payload_start + header.payload_len as usize;
        let frame_end = self.start + total;
        let checked = check_payload(
            &self.buf.as_slice()[payload_start..frame_end],
            header.payload_len as usize,
            header.payload_crc32,
        );
        if let Err(e) = checked {
            return Err(self.fail(e));
        }
        // Validation borrows the buffer for the returned frame; record failure separately.
        let buf = self.buf.as_slice();
        let payload = &buf[payload_start..payload_end];
        match validate(kind, payload) {
            Ok(message) => {
                self.start = frame_end;
                Ok(Some(Frame {
                    header,
                    kind,
                    payload,
                    message,
                }))
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// CRC and zero padding of `padded` (payload followed by its padding).
fn check_payload(padded: &[u8], len: usize, expected: u32) -> Result<(), DecodeError> {
    let actual = payload_crc32(&padded[..len]);
    // Under cargo-fuzz (`--cfg fuzzing`) the CRC is not enforced, so the fuzzer reaches rkyv
    // validation with arbitrary payloads instead of stopping at the checksum.
    if actual != expected && !cfg!(fuzzing) {
        return Err(DecodeError::CrcMismatch { expected, actual });
    }
    if padded[len..].iter().any(|&b| b != 0) {
        return Err(DecodeError::BadHeader {
            reason: "non-zero frame padding",
        });
    }
    Ok(())
}

/// What [`decode_stream`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSummary {
    /// Frames validated.
    pub frames: usize,
    /// The error that ended the stream, if any (including `Truncated` at the end).
    pub error: Option<DecodeError>,
}

/// Feeds `data` to a fresh decoder in chunks of `chunk_bytes` (at least 1), decodes every
/// frame, deserializes each validated message (exercising every archived field), and reports.
/// This is the fuzzing entry point (net/fuzz) and the property-test entry point: it must never
/// panic, whatever the bytes.
pub fn decode_stream(data: &[u8], cfg: DecoderConfig, chunk_bytes: usize) -> StreamSummary {
    let mut dec = Decoder::new(cfg);
    let mut summary = StreamSummary::default();
    let chunk_bytes = chunk_bytes.max(1);
    let mut rest = data;
    loop {
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    // A validated archive must always deserialize.
                    if let Err(e) = frame.message.to_owned_message() {
                        summary.error = Some(DecodeError::InvalidArchive {
                            kind: frame.header.kind,
                            reason: format!("validated but failed to deserialize: {e}"),
                        });
                        return summary;
                    }
                    summary.frames += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    summary.error = Some(e);
                    return summary;
                }
            }
        }
        if rest.is_empty() {
            break;
        }
        let take = chunk_bytes.min(rest.len());
        let n = dec.push(&rest[..take]);
        rest = &rest[n..];
    }
    if let Err(e) = dec.finish() {
        summary.error = Some(e);
    }
    summary
}
