//! Protocol sniffing: the node serves ringraft frames and HTTP (curl) on the same port, and
//! tells them apart by the first bytes of a connection.
//!
//! A frame starts with [`MAGIC`] (`F1 52 52 46`), whose first byte is not ASCII, so it can never
//! be an HTTP request line; HTTP/1.x starts with an upper-case method and a space. Pure
//! function, no I/O: the listener peeks or reads the first bytes and calls [`sniff`].

use crate::frame::MAGIC;

/// HTTP/1.x methods recognised, each followed by a space on the wire.
pub const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Bytes that always suffice for a verdict (the longest method plus its space).
pub const SNIFF_BYTES: usize = 8;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ringraft frames.
    Frame,
    /// HTTP/1.x.
    Http,
    /// Neither: refuse.
    Unknown,
    /// Too few bytes to tell yet (a prefix of a possible verdict): read more.
    Incomplete,
}

/// Classifies a connection by its first bytes.
pub fn sniff(first_bytes: &[u8]) -> Protocol {
    let n = first_bytes.len().min(MAGIC.len());
    if first_bytes[..n] == MAGIC[..n] {
        return if n == MAGIC.len() {
            Protocol::Frame
        } else {
            Protocol::Incomplete
        };
    }
    let mut prefix_of_method = false;
    for m in HTTP_METHODS {
        if first_bytes.len() >= m.len() {
            if &first_bytes[..m.len()] == m {
                return Protocol::Http;
            }
        } else if m.starts_with(first_bytes) {
            prefix_of_method = true;
        }
    }
    if prefix_of_method {
        Protocol::Incomplete
    } else {
        Protocol::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(sniff(&MAGIC), Protocol::Frame);
        assert_eq!(sniff(&[0xF1, b'R', b'R', b'F', 1, 0]), Protocol::Frame);
        assert_eq!(sniff(&[0xF1, b'R']), Protocol::Incomplete);
        assert_eq!(sniff(b""), Protocol::Incomplete);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Protocol::Http);
        assert_eq!(sniff(b"POST /put HTTP/1.1"), Protocol::Http);
        assert_eq!(sniff(b"DELETE /k"), Protocol::Http);
        assert_eq!(sniff(b"P"), Protocol::Incomplete);
        assert_eq!(sniff(b"PU"), Protocol::Incomplete);
        assert_eq!(sniff(b"GETX"), Protocol::Unknown);
        assert_eq!(sniff(b"\x16\x03\x01"), Protocol::Unknown); // TLS hello
        assert_eq!(sniff(&[0xF1, b'X', 0, 0]), Protocol::Unknown);
    }
}
