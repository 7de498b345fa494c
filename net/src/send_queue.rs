//! The frame encoder and the bounded per-connection send queue that batches frames into one write.
//!
//! [`encode_frame`] appends one complete frame (header, rkyv payload serialized in place right
//! after it, zero padding) to a 16-aligned buffer: the payload is never copied after
//! serialization. A [`SendQueue`] is one connection's outgoing buffer: producers `push` frames
//! (many requests in flight, each with its own request id), the writer takes the whole buffer
//! with [`SendQueue::take_batch`] and hands it to the socket as ONE write, then gives the
//! allocation back with [`SendQueue::recycle`] (double buffering, no steady-state allocation).
//!
//! Bounds: at most `max_queued_frames` frames and `max_queued_bytes` bytes wait in the queue
//! (a frame is admitted while the queue is below the byte bound, so the queue can exceed it by
//! at most one frame, itself bounded by `max_frame_bytes`). A full queue is
//! [`NetError::SendQueueFull`]: backpressure for the caller. Error frames sent before closing
//! use [`SendQueue::push_error`], which may use a small reserve above the bounds so a refusal
//! can always be reported. Owned by one connection; not shared across threads.

/// The 16-aligned buffer frames are encoded into (re-exported for callers that encode ahead).
pub use rkyv::util::AlignedVec;

use crate::error::NetError;
use crate::frame::{
    pad_to_align, payload_crc32, FrameHeader, DEFAULT_MAX_FRAME_BYTES, FLAG_ERROR, FLAG_RESPONSE,
    FRAME_ALIGN_BYTES, HEADER_BYTES, PROTOCOL_VERSION,
};
use crate::message::{Encode, ErrorFrame, Kind, Message};

/// Default bound on queued bytes per connection: 4 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Default bound on queued frames per connection.
pub const DEFAULT_MAX_QUEUED_FRAMES: usize = 4096;
/// Extra frames allowed above the bound for error frames sent before closing.
pub const ERROR_FRAME_RESERVE_FRAMES: usize = 4;
/// A written batch buffer is kept for reuse unless its capacity exceeds this many times
/// `max_queued_bytes` (a one-off huge frame should not pin its allocation).
pub const SPARE_BUFFER_KEEP_FACTOR: usize = 2;

/// Send queue bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQueueConfig {
    /// Bytes that may wait (see module docs for the one-frame overshoot).
    pub max_queued_bytes: usize,
    /// Frames that may wait.
    pub max_queued_frames: usize,
    /// Largest payload this side sends (must not exceed the peer's `max_frame_bytes`).
    pub max_frame_bytes: usize,
}

impl Default for SendQueueConfig {
    fn default() -> Self {
        SendQueueConfig {
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_queued_frames: DEFAULT_MAX_QUEUED_FRAMES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// Appends one frame carrying `msg` to `out` (whose length must be a multiple of 16) and
/// returns the frame's size in bytes. On error `out` is left as it was.
pub fn encode_frame<M: Encode>(
    out: &mut AlignedVec<16>,
    flags: u16,
    request_id: u64,
    msg: &M,
    max_frame_bytes: usize,
) -> Result<usize, NetError> {
    encode_frame_with(out, M::KIND, flags, request_id, max_frame_bytes, |o| {
        msg.encode_into(o)
    })
}

/// Appends one frame carrying an owned [`Message`] of any kind (see [`encode_frame`]).
pub fn encode_message_frame(
    out: &mut AlignedVec<16>,
    flags: u16,
    request_id: u64,
    msg: &Message,
    max_frame_bytes: usize,
) -> Result<usize, NetError> {
    encode_frame_with(out, msg.kind(), flags, request_id, max_frame_bytes, |o| {
        msg.encode_into(o)
    })
}

/// Appends one frame whose payload `serialize` writes right after the header.
fn encode_frame_with(
    out: &mut AlignedVec<16>,
    kind: Kind,
    flags: u16,
    request_id: u64,
    max_frame_bytes: usize,
    serialize: impl FnOnce(&mut AlignedVec<16>) -> Result<(), rkyv::rancor::Error>,
) -> Result<usize, NetError> {
    let frame_start = out.len();
    assert!(
        frame_start.is_multiple_of(FRAME_ALIGN_BYTES),
        "frame must start 16-aligned"
    );
    out.resize(frame_start + HEADER_BYTES, 0);
    let payload_start = out.len();
    if let Err(e) = serialize(out) {
        out.resize(frame_start, 0);
        return Err(NetError::Encode(e.to_string()));
    }
    let payload_len = out.len() - payload_start;
    if payload_len > max_frame_bytes {
        out.resize(frame_start, 0);
        return Err(NetError::Encode(format!(
            "{kind:?} payload of {payload_len} bytes exceeds max_frame_bytes {max_frame_bytes}"
        )));
    }
    let crc = payload_crc32(&out.as_slice()[payload_start..]);
    out.resize(payload_start + pad_to_align(payload_len), 0);
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        kind: kind.as_u16(),
        flags,
        payload_len: payload_len as u32,
        request_id,
        payload_crc32: crc,
    };
    let mut hdr = [0u8; HEADER_BYTES];
    header.write_to(&mut hdr);
    out.as_mut_slice()[frame_start..payload_start].copy_from_slice(&hdr);
    Ok(out.len() - frame_start)
}

/// One connection's bounded outgoing frame buffer.
#[derive(Debug)]
pub struct SendQueue {
    cfg: SendQueueConfig,
    active: AlignedVec<16>,
    spare: Option<AlignedVec<16>>,
    frames: usize,
    closed: bool,
}

impl SendQueue {
    /// An empty queue.
    pub fn new(cfg: SendQueueConfig) -> Self {
        SendQueue {
            cfg,
            active: AlignedVec::new(),
            spare: Some(AlignedVec::new()),
            frames: 0,
            closed: false,
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &SendQueueConfig {
        &self.cfg
    }

    /// Frames waiting.
    pub fn queued_frames(&self) -> usize {
        self.frames
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.active.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Whether [`SendQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Refuses further pushes (frames already queued may still be taken).
    pub fn close(&mut self) {
        self.closed = true;
    }

    fn full(&self) -> bool {
        self.frames >= self.cfg.max_queued_frames || self.active.len() >= self.cfg.max_queued_bytes
    }

    /// Refuses a new frame on a closed queue or one at its bounds (backpressure).
    fn admit(&self) -> Result<(), NetError> {
        if self.closed {
            return Err(NetError::Closed);
        }
        if self.full() {
            return Err(NetError::SendQueueFull {
                queued_frames: self.frames,
                queued_bytes: self.active.len(),
            });
        }
        Ok(())
    }

    /// Queues a request (`request_id` chosen by the caller; 0 = no response expected).
    pub fn push_request<M: Encode>(&mut self, request_id: u64, msg: &M) -> Result<usize, NetError> {
        self.push(0, request_id, msg)
    }

    /// Queues the response to `request_id`.
    pub fn push_response<M: Encode>(
        &mut self,
        request_id: u64,
        msg: &M,
    ) -> Result<usize, NetError> {
        self.push(FLAG_RESPONSE, request_id, msg)
    }

    /// Queues a frame with explicit flags, honouring the bounds.
    pub fn push<M: Encode>(
        &mut self,
        flags: u16,
        request_id: u64,
        msg: &M,
    ) -> Result<usize, NetError> {
        self.push_with(|out, max| encode_frame(out, flags, request_id, msg, max))
    }

    /// Queues an owned [`Message`] of any kind with explicit flags, honouring the bounds.
    pub fn push_message(
        &mut self,
        flags: u16,
        request_id: u64,
        msg: &Message,
    ) -> Result<usize, NetError> {
        self.push_with(|out, max| encode_message_frame(out, flags, request_id, msg, max))
    }

    /// Queues one frame already encoded by [`encode_frame`] (or [`encode_message_frame`]),
    /// byte for byte: a message sent alike to several peers is encoded once and copied into
    /// each queue. The bytes must be exactly one frame whose header parses and whose payload
    /// fits this queue's frame bound; anything else is refused as [`NetError::Encode`] and
    /// leaves the queue as it was. The payload's checksum is not recomputed.
    pub fn push_encoded(&mut self, frame: &[u8]) -> Result<usize, NetError> {
        self.admit()?;
        let bad = |why: String| Err(NetError::Encode(format!("pre-encoded frame: {why}")));
        let Some(head) = frame.first_chunk::<HEADER_BYTES>() else {
            return bad(format!("{} bytes, shorter than a header", frame.len()));
        };
        let header = match FrameHeader::parse(head, self.cfg.max_frame_bytes) {
            Ok(h) => h,
            Err(e) => return bad(e.to_string()),
        };
        if header.frame_bytes() != frame.len() {
            return bad(format!(
                "{} bytes where its header makes {}",
                frame.len(),
                header.frame_bytes()
            ));
        }
        self.active.extend_from_slice(frame);
        self.frames += 1;
        Ok(frame.len())
    }

    /// Admits one frame under the bounds, then `encode`s it into the active buffer (with the
    /// frame bound) and counts it.
    fn push_with(
        &mut self,
        encode: impl FnOnce(&mut AlignedVec<16>, usize) -> Result<usize, NetError>,
    ) -> Result<usize, NetError> {
        self.admit()?;
        let n = encode(&mut self.active, self.cfg.max_frame_bytes)?;
        self.frames += 1;
        Ok(n)
    }

    /// Queues an error frame (flags RESPONSE|ERROR), allowed a small reserve above the bounds so
    /// a refusal or a bad-input report can be sent even when the queue is full.
    pub fn push_error(&mut self, request_id: u64, err: &ErrorFrame) -> Result<usize, NetError> {
        if self.frames >= self.cfg.max_queued_frames + ERROR_FRAME_RESERVE_FRAMES {
            return Err(NetError::SendQueueFull {
                queued_frames: self.frames,
                queued_bytes: self.active.len(),
            });
        }
        let n = encode_frame(
            &mut self.active,
            FLAG_RESPONSE | FLAG_ERROR,
            request_id,
            err,
            self.cfg.max_frame_bytes,
        )?;
        self.frames += 1;
        Ok(n)
    }

    /// Takes every queued frame as one contiguous buffer for a single write, or `None` if empty.
    /// Return the buffer with [`SendQueue::recycle`] after writing it.
    pub fn take_batch(&mut self) -> Option<AlignedVec<16>> {
        if self.frames == 0 {
            return None;
        }
        let next = self.spare.take().unwrap_or_default();
        self.frames = 0;
        Some(std::mem::replace(&mut self.active, next))
    }

    /// Gives a written batch buffer back for reuse.
    pub fn recycle(&mut self, mut buf: AlignedVec<16>) {
        buf.clear();
        // Keep the larger allocation; drop buffers grown far past the byte bound.
        if buf.capacity() <= SPARE_BUFFER_KEEP_FACTOR.saturating_mul(self.cfg.max_queued_bytes) {
            self.spare = Some(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Decoder, DecoderConfig};
    use crate::message::{MessageRef, Ping};

    fn ping(n: u64, len: usize) -> Ping {
        Ping {
            nonce: n,
            data: vec![n as u8; len],
        }
    }

    #[test]
    fn batch_decodes_in_order_with_request_ids() {
        let mut q = SendQueue::new(SendQueueConfig::default());
        for i in 0..10 {
            q.push_request(100 + i, &ping(i, i as usize * 7)).unwrap();
        }
        assert_eq!(q.queued_frames(), 10);
        let batch = q.take_batch().unwrap();
        assert!(q.is_empty());
        assert_eq!(batch.len() % 16, 0);
        let mut dec = Decoder::new(DecoderConfig::default());
        assert_eq!(dec.push(batch.as_slice()), batch.len());
        for i in 0..10u64 {
            let f = dec.next_frame().unwrap().unwrap();
            assert_eq!(f.header.request_id, 100 + i);
            assert_eq!(f.payload.as_ptr() as usize % 16, 0);
            match f.message {
                MessageRef::Ping(p) => {
                    assert_eq!(p.nonce.to_native(), i);
                    assert_eq!(p.data.len(), i as usize * 7);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(dec.next_frame().unwrap().is_none());
        q.recycle(batch);
    }

    #[test]
    fn bounds_give_backpressure() {
        let mut q = SendQueue::new(SendQueueConfig {
            max_queued_bytes: 1 << 20,
            max_queued_frames: 3,
            max_frame_bytes: 1024,
        });
        for i in 0..3 {
            q.push_request(i, &ping(i, 8)).unwrap();
        }
        assert!(matches!(
            q.push_request(9, &ping(9, 8)),
            Err(NetError::SendQueueFull {
                queued_frames: 3,
                ..
            })
        ));
        // Error frames still fit in the reserve.
        q.push_error(
            0,
            &ErrorFrame {
                code: crate::message::ErrorCode::Oversize,
                message: "x".into(),
            },
        )
        .unwrap();
        // Oversize payload is refused and leaves the buffer intact.
        let before = q.queued_bytes();
        let _ = q.take_batch();
        assert!(matches!(
            q.push_request(1, &ping(1, 4096)),
            Err(NetError::Encode(_))
        ));
        assert_eq!(q.queued_bytes(), 0);
        assert!(before > 0);
        q.close();
        assert!(matches!(
            q.push_request(1, &ping(1, 1)),
            Err(NetError::Closed)
        ));
    }

    #[test]
    fn owned_messages_encode_like_typed_ones() {
        let mut a = SendQueue::new(SendQueueConfig::default());
        let mut b = SendQueue::new(SendQueueConfig::default());
        a.push(FLAG_RESPONSE, 3, &ping(3, 20)).unwrap();
        b.push_message(FLAG_RESPONSE, 3, &Message::Ping(ping(3, 20)))
            .unwrap();
        assert_eq!(
            a.take_batch().unwrap().as_slice(),
            b.take_batch().unwrap().as_slice()
        );
    }

    #[test]
    fn pre_encoded_frames_are_queued_byte_for_byte() {
        use crate::message::{AppendEntriesRef, EntryKind, EntryRef};
        let payloads: [&[u8]; 2] = [b"first", &[7u8; 300]];
        let msg = AppendEntriesRef {
            group: 3,
            term: 9,
            leader: 1,
            prev_index: 40,
            prev_term: 8,
            commit: 39,
            entries: payloads.iter().enumerate().map(|(i, p)| EntryRef {
                term: 9,
                index: 41 + i as u64,
                kind: EntryKind::Normal,
                payload: p,
            }),
        };
        let mut once = AlignedVec::<16>::new();
        encode_frame(&mut once, 0, 0, &msg, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let mut q = SendQueue::new(SendQueueConfig::default());
        q.push(0, 0, &msg).unwrap();
        q.push_encoded(once.as_slice()).unwrap();
        q.push_encoded(once.as_slice()).unwrap();
        assert_eq!(q.queued_frames(), 3);
        let batch = q.take_batch().unwrap();
        assert_eq!(&batch.as_slice()[..once.len()], once.as_slice());
        let mut dec = Decoder::new(DecoderConfig::default());
        assert_eq!(dec.push(batch.as_slice()), batch.len());
        for _ in 0..3 {
            let f = dec.next_frame().unwrap().unwrap();
            let MessageRef::AppendEntries(a) = f.message else {
                panic!("wrong kind {:?}", f.kind)
            };
            assert_eq!(a.prev_index.to_native(), 40);
            let got: Vec<_> = a
                .entry_payloads()
                .map(|(_, i, _, p)| (i, p.to_vec()))
                .collect();
            assert_eq!(got, vec![(41, b"first".to_vec()), (42, vec![7u8; 300])]);
        }
        assert!(dec.next_frame().unwrap().is_none());
    }

    #[test]
    fn pre_encoded_bytes_that_are_not_one_frame_are_refused() {
        let mut one = AlignedVec::<16>::new();
        encode_frame(&mut one, 0, 5, &ping(5, 100), DEFAULT_MAX_FRAME_BYTES).unwrap();
        let f = one.as_slice();
        let mut q = SendQueue::new(SendQueueConfig::default());
        let mut bad_magic = f.to_vec();
        bad_magic[0] = b'G';
        let mut two = f.to_vec();
        two.extend_from_slice(f);
        for bytes in [&f[..16], &f[..f.len() - 16], &two[..], &bad_magic[..]] {
            assert!(
                matches!(q.push_encoded(bytes), Err(NetError::Encode(_))),
                "{} bytes accepted",
                bytes.len()
            );
            assert_eq!((q.queued_frames(), q.queued_bytes()), (0, 0));
        }
        // A whole frame, but over a queue's frame bound.
        let mut small = SendQueue::new(SendQueueConfig {
            max_frame_bytes: 64,
            ..SendQueueConfig::default()
        });
        assert!(matches!(small.push_encoded(f), Err(NetError::Encode(_))));
        assert_eq!(small.queued_frames(), 0);
        assert_eq!(q.push_encoded(f).unwrap(), f.len());
        assert_eq!(q.queued_frames(), 1);
        q.close();
        assert!(matches!(q.push_encoded(f), Err(NetError::Closed)));
    }

    #[test]
    fn byte_bound_applies() {
        let mut q = SendQueue::new(SendQueueConfig {
            max_queued_bytes: 1000,
            max_queued_frames: 1000,
            max_frame_bytes: 4096,
        });
        let mut n = 0;
        while q.push_request(n, &ping(n, 300)).is_ok() {
            n += 1;
        }
        assert!(q.queued_bytes() >= 1000);
        assert!(q.queued_bytes() < 1000 + 400);
    }
}
