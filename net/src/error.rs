//! Errors of the wire protocol, each mapped to an [`ErrorKind`] that metrics count.
//!
//! [`DecodeError`] is what bad bytes from a peer produce; [`NetError`] is what the connection
//! layer (sockets, handshakes, send queues) returns. Every variant maps to exactly one
//! [`ErrorKind`], and `ErrorKind` indexes the per-kind counters in [`crate::metrics::NetMetrics`].
//! Decode errors also map to the [`ErrorCode`] sent back to the peer in an error frame.

use crate::message::ErrorCode;

/// Countable class of every protocol error. `ALL` lists them in counter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The stream ended in the middle of a frame.
    Truncated,
    /// A header announced a payload above `max_frame_bytes`.
    Oversize,
    /// The first four bytes of a frame were not the magic.
    BadMagic,
    /// Frame or handshake version not supported.
    UnsupportedVersion,
    /// Unknown flag bits or non-zero reserved bytes.
    BadHeader,
    /// The kind field names no message this build knows.
    UnknownKind,
    /// Payload CRC-32 did not match the header.
    CrcMismatch,
    /// The payload failed rkyv validation for its kind.
    InvalidArchive,
    /// A handshake was refused (other cluster, version, or no handshake first).
    HandshakeRefused,
    /// A send queue was full (backpressure).
    SendQueueFull,
    /// A socket error.
    Io,
    /// A connect, handshake or response timed out.
    Timeout,
    /// A message could not be serialized.
    Encode,
    /// The peer answered something the protocol does not allow at that point.
    Protocol,
    /// A TLS handshake failed: no or a refused certificate, a plaintext connection to a TLS
    /// listener, or a TLS protocol error.
    Tls,
}

impl ErrorKind {
    /// Number of kinds (size of the counter array).
    pub const COUNT: usize = 15;
    /// Every kind, in counter order.
    pub const ALL: [ErrorKind; Self::COUNT] = [
        ErrorKind::Truncated,
        ErrorKind::Oversize,
        ErrorKind::BadMagic,
        ErrorKind::UnsupportedVersion,
        ErrorKind::BadHeader,
        ErrorKind::UnknownKind,
        ErrorKind::CrcMismatch,
        ErrorKind::InvalidArchive,
        ErrorKind::HandshakeRefused,
        ErrorKind::SendQueueFull,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Encode,
        ErrorKind::Protocol,
        ErrorKind::Tls,
    ];

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name for metrics output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::Oversize => "oversize",
            ErrorKind::BadMagic => "bad_magic",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::UnknownKind => "unknown_kind",
            ErrorKind::CrcMismatch => "crc_mismatch",
            ErrorKind::InvalidArchive => "invalid_archive",
            ErrorKind::HandshakeRefused => "handshake_refused",
            ErrorKind::SendQueueFull => "send_queue_full",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Encode => "encode",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Tls => "tls",
        }
    }
}

/// Bad bytes from a peer. After any of these the stream's framing is lost: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The stream ended with `pending` bytes of an incomplete frame.
    #[error("stream ended inside a frame ({pending} bytes pending)")]
    Truncated {
        /// Bytes of the incomplete frame.
        pending: usize,
    },
    /// Payload length above the configured bound.
    #[error("frame payload of {len} bytes exceeds max_frame_bytes {max}")]
    Oversize {
        /// Announced payload length.
        len: u64,
        /// Configured bound.
        max: u64,
    },
    /// Not a ringraft frame.
    #[error("bad magic {got:02x?}")]
    BadMagic {
        /// The four bytes found.
        got: [u8; 4],
    },
    /// A version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    UnsupportedVersion {
        /// Version found.
        got: u16,
        /// Version spoken here.
        supported: u16,
    },
    /// Malformed header.
    #[error("bad frame header: {reason}")]
    BadHeader {
        /// What was wrong.
        reason: &'static str,
    },
    /// Unknown message kind.
    #[error("unknown message kind {kind}")]
    UnknownKind {
        /// Kind found.
        kind: u16,
    },
    /// Payload checksum mismatch.
    #[error("payload crc32 mismatch: header {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        expected: u32,
        /// CRC computed over the payload.
        actual: u32,
    },
    /// Header checksum mismatch.
    #[error("header crc32 mismatch: header {expected:#010x}, computed {actual:#010x}")]
    HeaderCrcMismatch {
        /// CRC in the header.
        expected: u32,
        /// CRC computed over header bytes 0..28.
        actual: u32,
    },
    /// The payload is not a valid archive of the kind's message type.
    #[error("invalid archive for kind {kind}: {reason}")]
    InvalidArchive {
        /// Kind of the frame.
        kind: u16,
        /// Validator's message.
        reason: String,
    },
}

impl DecodeError {
    /// Counter class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::Truncated { .. } => ErrorKind::Truncated,
            DecodeError::Oversize { .. } => ErrorKind::Oversize,
            DecodeError::BadMagic { .. } => ErrorKind::BadMagic,
            DecodeError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            DecodeError::BadHeader { .. } => ErrorKind::BadHeader,
            DecodeError::UnknownKind { .. } => ErrorKind::UnknownKind,
            DecodeError::CrcMismatch { .. } | DecodeError::HeaderCrcMismatch { .. } => {
                ErrorKind::CrcMismatch
            }
            DecodeError::InvalidArchive { .. } => ErrorKind::InvalidArchive,
        }
    }

    /// Code sent to the peer in the error frame before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Truncated { .. } => ErrorCode::Truncated,
            DecodeError::Oversize { .. } => ErrorCode::Oversize,
            DecodeError::BadMagic { .. } => ErrorCode::BadMagic,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::BadHeader { .. } => ErrorCode::BadHeader,
            DecodeError::UnknownKind { .. } => ErrorCode::UnknownKind,
            DecodeError::CrcMismatch { .. } | DecodeError::HeaderCrcMismatch { .. } => {
                ErrorCode::CrcMismatch
            }
            DecodeError::InvalidArchive { .. } => ErrorCode::InvalidArchive,
        }
    }
}

/// Errors of the connection layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer sent bad bytes.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The peer refused us (or we refused the peer) with an error frame.
    #[error("refused by peer: {code:?}: {message}")]
    Refused {
        /// Code from the error frame.
        code: ErrorCode,
        /// Human-readable reason from the error frame.
        message: String,
    },
    /// The bounded send queue is full: back off and retry.
    #[error("send queue full ({queued_frames} frames, {queued_bytes} bytes queued)")]
    SendQueueFull {
        /// Frames queued.
        queued_frames: usize,
        /// Bytes queued.
        queued_bytes: usize,
    },
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Serialization failed.
    #[error("encode: {0}")]
    Encode(String),
    /// The peer broke the protocol (e.g. an unexpected message kind at this point).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The TLS handshake failed or a certificate was refused (ours by the peer, or the
    /// peer's by us).
    #[error("tls: {0}")]
    Tls(String),
    /// The dialer reached a node other than the one it meant (its certificate, or in
    /// plaintext its handshake ack, names another node id).
    #[error("reached node {found}, expected node {expected}")]
    WrongPeer {
        /// The node id the dialer meant.
        expected: u64,
        /// The node id it reached.
        found: u64,
    },
}

impl NetError {
    /// Counter class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::Decode(d) => d.kind(),
            NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            NetError::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            NetError::Io(_) | NetError::Closed => ErrorKind::Io,
            NetError::Refused { .. } => ErrorKind::HandshakeRefused,
            NetError::SendQueueFull { .. } => ErrorKind::SendQueueFull,
            NetError::Timeout(_) => ErrorKind::Timeout,
            NetError::Encode(_) => ErrorKind::Encode,
            NetError::Protocol(_) => ErrorKind::Protocol,
            NetError::Tls(_) => ErrorKind::Tls,
            NetError::WrongPeer { .. } => ErrorKind::HandshakeRefused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_indexed_in_order() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::COUNT);
    }
}
