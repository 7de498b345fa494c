//! HTTP/1.1 framing for the operator surface (the seed's `curl` commands) and the metrics port:
//! request heads are parsed by `httparse`, bodies are framed by `Content-Length` only, responses
//! are written by one writer ([`Response::write_to`]). Sans-I/O functions over byte buffers, so
//! the client port (after the listener sniffed HTTP) and the metrics port share this code and it
//! is tested without sockets; the connection loop lives in `http_server`.
//!
//! Framing rules (RFC 9112 §6, strict where leniency would let two parties disagree on where a
//! request ends — the root of request smuggling):
//! - the head (request line, headers, blank line) is at most `max_head_bytes` and
//!   [`MAX_HEADERS`] headers, else 431 — answered, never a reset;
//! - `Transfer-Encoding` together with `Content-Length` is 400; `Transfer-Encoding: chunked`
//!   alone is 411 (send a length); any other transfer coding is 400;
//! - more than one `Content-Length` header is 400, even with equal values (RFC 9110 §8.6 lets a
//!   recipient either reject or collapse them; rejecting is the simpler invariant: one header,
//!   one length); a value that is not plain decimal digits or does not fit in 64 bits is 400;
//! - a declared body over `max_body_bytes` is 413 as soon as the head is complete, before any
//!   of the body is read;
//! - `Expect: 100-continue` (HTTP/1.1) is reported once the head is complete and the body is not,
//!   so the caller sends [`CONTINUE_RESPONSE`]; any other expectation is 417;
//! - a complete request reports exactly how many bytes it used, so pipelined requests that follow
//!   in the same buffer are parsed next, byte for byte.
//!
//! Invariants: the parser looks at no more than `max_head_bytes + max_body_bytes` of one request,
//! allocates only for a request it accepts, and never panics on any input.
//!
//! One concept per file: [`request`] parses a request (head with `httparse`, body framed by
//! the length rules of [`framing`]), [`query`] decodes the query string, [`response`] writes
//! answers and reads them back (test clients). The connection loop lives in `http_server`, the
//! routes in `http_api`.
//! Owned by the node's HTTP surface.

mod framing;
pub(crate) mod query;
pub(crate) mod request;
pub(crate) mod response;

pub(crate) use request::{parse_request, Parsed, Request};
pub use response::{parse_response, reason, write_request, ParsedResponse, Response};

/// Most headers in one request. curl sends 4–6, browsers and proxies about 20; 64 leaves room
/// for any honest client while the parser's header table (64 × 32 bytes) stays on the stack.
pub(crate) const MAX_HEADERS: usize = 64;
/// Default bound of one request head (`[network] http_max_header_bytes`): the request line plus
/// headers of any API call fit in well under 1 KiB; 8 KiB is what common servers allow.
pub(crate) const DEFAULT_MAX_HEAD_BYTES: usize = 8 << 10;
/// Default bound of one request body (`[network] http_max_body_bytes`): above the largest key
/// plus value the state machine accepts, with room for JSON escaping.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Interim response sent to a client that asked `Expect: 100-continue`.
pub(crate) const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpLimits {
    /// Request line plus headers plus the blank line.
    pub(crate) max_header_bytes: usize,
    /// Body.
    pub(crate) max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
