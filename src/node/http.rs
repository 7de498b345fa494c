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
//! Owned by the node's HTTP surface.

/// Most headers in one request. curl sends 4–6, browsers and proxies about 20; 64 leaves room
/// for any honest client while the parser's header table (64 × 32 bytes) stays on the stack.
pub const MAX_HEADERS: usize = 64;
/// Default bound of one request head (`[network] http_max_header_bytes`): the request line plus
/// headers of any API call fit in well under 1 KiB; 8 KiB is what common servers allow.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 8 << 10;
/// Default bound of one request body (`[network] http_max_body_bytes`): above the largest key
/// plus value the state machine accepts, with room for JSON escaping.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Interim response sent to a client that asked `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus headers plus the blank line.
    pub max_header_bytes: usize,
    /// Body.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// One decoded query parameter: name and value, arbitrary bytes.
pub type QueryPair = (Vec<u8>, Vec<u8>);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method as sent (a token; the router matches upper-case names).
    pub method: String,
    /// The request target exactly as sent (path and query, still encoded).
    pub target: String,
    /// Path without the query, percent-decoded (not UTF-8 bytes shown as U+FFFD).
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space); arbitrary bytes.
    pub query: Vec<QueryPair>,
    /// Headers (names lower-cased; values not UTF-8 shown with U+FFFD).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// First query parameter named `name` (decoded bytes).
    pub fn query_param(&self, name: &str) -> Option<&[u8]> {
        self.query
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// First header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be parsed: the status to answer with and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// Status code (400, 411, 413, 417, 431, 505).
    pub status: u16,
    /// Human-readable reason.
    pub message: String,
}

impl HttpError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The error as a JSON response that closes the connection (after a framing error the
    /// position of the next request is unknown).
    pub fn to_response(&self) -> Response {
        let mut r = Response::error(self.status, &self.message);
        r.close = true;
        r
    }
}

/// The result of feeding bytes to the parser.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request and the number of bytes it used.
    Complete(Box<Request>, usize),
    /// More bytes are needed; `expect_continue` is set once the head is complete, the body is
    /// not, and the client asked for `100 Continue`.
    Partial {
        /// Send [`CONTINUE_RESPONSE`] now (once per request).
        expect_continue: bool,
    },
}

/// How the body of a request is framed, from its headers.
fn body_length(headers: &[httparse::Header<'_>], limits: &HttpLimits) -> Result<usize, HttpError> {
    let named = |n: &'static str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
            .collect()
    };
    let te = named("transfer-encoding");
    let cl = named("content-length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(HttpError::new(
                400,
                "both Transfer-Encoding and Content-Length: ambiguous framing, send only Content-Length",
            ));
        }
        return Err(match te.as_slice() {
            [v] if v.trim_ascii().eq_ignore_ascii_case(b"chunked") => HttpError::new(
                411,
                "chunked request bodies are not supported; send Content-Length",
            ),
            _ => HttpError::new(
                400,
                format!(
                    "unsupported Transfer-Encoding {:?}; send Content-Length",
                    shown(&te.join(&b","[..]), 40)
                ),
            ),
        });
    }
    let value = match cl.as_slice() {
        [] => return Ok(0),
        [v] => v.trim_ascii(),
        _ => {
            return Err(HttpError::new(
                400,
                format!(
                    "{} Content-Length headers: ambiguous framing, send exactly one",
                    cl.len()
                ),
            ))
        }
    };
    let bad = || {
        HttpError::new(
            400,
            format!(
                "Content-Length {:?} is not a decimal number of bytes",
                shown(value, 24)
            ),
        )
    };
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for d in value {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or_else(bad)?;
    }
    match usize::try_from(n) {
        Ok(n) if n <= limits.max_body_bytes => Ok(n),
        _ => Err(HttpError::new(
            413,
            format!(
                "body of {n} bytes, the limit is {} (network.http_max_body_bytes)",
                limits.max_body_bytes
            ),
        )),
    }
}

/// Whether the connection stays open, from the version and the `Connection` tokens.
fn keep_alive(minor: u8, headers: &[httparse::Header<'_>]) -> bool {
    let mut close = false;
    let mut keep = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for token in h.value.split(|&b| b == b',') {
            let t = token.trim_ascii();
            close |= t.eq_ignore_ascii_case(b"close");
            keep |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (minor >= 1 || keep)
}

/// Whether the client waits for `100 Continue` (HTTP/1.1 only; HTTP/1.0 clients never do).
fn expects_continue(minor: u8, headers: &[httparse::Header<'_>]) -> Result<bool, HttpError> {
    let mut expect = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("expect"))
    {
        if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
            return Err(HttpError::new(
                417,
                format!(
                    "expectation {:?} is not supported (only 100-continue)",
                    shown(h.value, 40)
                ),
            ));
        }
        expect = minor >= 1;
    }
    Ok(expect)
}

/// Parses one request from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &HttpLimits) -> Result<Parsed, HttpError> {
    let partial = Ok(Parsed::Partial {
        expect_continue: false,
    });
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let too_large = || {
        HttpError::new(
            431,
            format!(
                "request head larger than {} bytes (network.http_max_header_bytes)",
                limits.max_header_bytes
            ),
        )
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut slots);
    let head_len = match head.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(too_large())
        }
        Ok(httparse::Status::Partial) => return partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                431,
                format!("more than {MAX_HEADERS} request headers"),
            ))
        }
        Err(httparse::Error::Version) if names_a_version(window) => {
            return Err(HttpError::new(
                505,
                "unsupported HTTP version; this server speaks HTTP/1.0 and HTTP/1.1",
            ))
        }
        Err(e) => {
            return Err(HttpError::new(
                400,
                format!(
                    "malformed request head ({e}) near {:?}",
                    shown(&window[..window.len().min(80)], 80)
                ),
            ))
        }
    };
    let (Some(method), Some(target), Some(minor)) = (head.method, head.path, head.version) else {
        // A complete parse always sets all three; answer rather than trust it.
        return Err(HttpError::new(400, "incomplete request line"));
    };
    let headers: &[httparse::Header<'_>] = head.headers;
    let body_len = body_length(headers, limits)?;
    let expect_continue = expects_continue(minor, headers)?;
    let Some(end) = head_len.checked_add(body_len) else {
        return Err(HttpError::new(413, "body length overflows"));
    };
    if buf.len() < end {
        return Ok(Parsed::Partial { expect_continue });
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(HttpError::new(
            400,
            format!(
                "request target {:?} must start with /",
                shown(target.as_bytes(), 80)
            ),
        ));
    }
    let path = percent_decode(raw_path.as_bytes(), false).ok_or_else(|| {
        HttpError::new(
            400,
            format!(
                "bad percent-encoding in path {:?}",
                shown(raw_path.as_bytes(), 80)
            ),
        )
    })?;
    Ok(Parsed::Complete(
        Box::new(Request {
            method: method.to_string(),
            target: target.to_string(),
            path: String::from_utf8_lossy(&path).into_owned(),
            query: parse_query(raw_query)?,
            headers: headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: buf[head_len..end].to_vec(),
            keep_alive: keep_alive(minor, headers),
        }),
        end,
    ))
}

/// Whether the request line is three words, the last an `HTTP/` version (so a version error
/// is an unsupported version, not a malformed line).
fn names_a_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let words: Vec<&[u8]> = line.trim_ascii_end().split(|&b| b == b' ').collect();
    matches!(words.as_slice(), [_, _, v] if v.starts_with(b"HTTP/"))
}

/// Splits a raw query (`a=1&b=%FF`) into decoded pairs; a pair without `=` has an empty value.
pub fn parse_query(raw: &str) -> Result<Vec<QueryPair>, HttpError> {
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || {
            HttpError::new(
                400,
                format!(
                    "bad percent-encoding in query {:?}",
                    shown(pair.as_bytes(), 80)
                ),
            )
        };
        out.push((
            percent_decode(k.as_bytes(), true).ok_or_else(bad)?,
            percent_decode(v.as_bytes(), true).ok_or_else(bad)?,
        ));
    }
    Ok(out)
}

/// Text for a message: at most `n` characters, invalid UTF-8 shown as U+FFFD.
fn shown(b: &[u8], n: usize) -> String {
    String::from_utf8_lossy(b).chars().take(n).collect()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`) into bytes; `None` on a `%`
/// not followed by two hex digits.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'%' => {
                let (&hi, &lo) = (s.get(i + 1)?, s.get(i + 2)?);
                out.push(hex(hi)? << 4 | hex(lo)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Extra headers (e.g. `Retry-After`); a value with a control character is not written.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            close: false,
        }
    }

    /// A response with a body of another type.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
            close: false,
        }
    }

    /// A JSON error `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    /// Writes status line, Content-Type, Content-Length, the extra headers, Connection and —
    /// unless `head_only` (the answer to a HEAD request) — the body. Content-Length is always
    /// the body's length, so a HEAD answer describes the GET answer.
    pub fn write_to(&self, out: &mut Vec<u8>, head_only: bool) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            if !v.bytes().any(|b| b.is_ascii_control()) {
                let _ = write!(out, "{k}: {v}\r\n");
            }
        }
        out.extend_from_slice(if self.close {
            b"Connection: close\r\n\r\n"
        } else {
            b"Connection: keep-alive\r\n\r\n"
        });
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Writes a request with a JSON body (used to forward a call to the leader).
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
}

/// A parsed response (of a forwarded request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type, when it is one this node sends.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// Parses a whole response framed by `Content-Length` (the only framing this node writes);
/// `Ok(None)`: more bytes are needed.
pub fn parse_response(buf: &[u8], max_body: usize) -> Result<Option<ParsedResponse>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut slots);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= DEFAULT_MAX_HEAD_BYTES => {
            return Err(format!("response head over {DEFAULT_MAX_HEAD_BYTES} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let Some(status) = head.code else {
        return Err("response without a status".into());
    };
    let limits = HttpLimits {
        max_header_bytes: DEFAULT_MAX_HEAD_BYTES,
        max_body_bytes: max_body,
    };
    let headers: &[httparse::Header<'_>] = head.headers;
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        return Err("response without Content-Length".into());
    }
    let len = body_length(headers, &limits).map_err(|e| e.message)?;
    let content_type = match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value)
    {
        Some(b"text/plain; version=0.0.4") => "text/plain; version=0.0.4",
        _ => "application/json",
    };
    let Some(end) = head_len.checked_add(len) else {
        return Err("response body length overflows".into());
    };
    Ok(buf.get(head_len..end).map(|body| ParsedResponse {
        status,
        content_type,
        body: body.to_vec(),
    }))
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> HttpLimits {
        HttpLimits {
            max_header_bytes: 512,
            max_body_bytes: 64,
        }
    }

    fn parse(buf: &[u8]) -> Result<Parsed, HttpError> {
        parse_request(buf, &lim())
    }

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse(buf).unwrap() {
            Parsed::Complete(r, n) => (*r, n),
            p => panic!("not complete: {p:?}"),
        }
    }

    fn status_of(buf: &[u8]) -> u16 {
        match parse(buf) {
            Err(e) => e.status,
            Ok(p) => panic!("{:?} accepted: {p:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// The bytes curl 8 sends for the seed's `curl -X POST …/put -H … -d '…'`.
    fn curl_put(body: &str) -> Vec<u8> {
        format!(
            "POST /put HTTP/1.1\r\nHost: localhost:9081\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn parses_the_seed_put() {
        let body = r#"{"key": "test-key", "value": "test-value"}"#;
        let buf = curl_put(body);
        let (r, used) = complete(&buf);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/put"));
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(used, buf.len());
        assert!(r.keep_alive);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn head_over_limit_is_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(600));
        assert_eq!(status_of(big.as_bytes()), 431);
        // Still incomplete at the limit: no need to see the end to refuse.
        assert_eq!(status_of(&big.as_bytes()[..512]), 431);
        assert!(matches!(
            parse(&big.as_bytes()[..511]),
            Ok(Parsed::Partial { .. })
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let roomy = HttpLimits {
            max_header_bytes: 4096,
            max_body_bytes: 1,
        };
        let e = parse_request(req.as_bytes(), &roomy).unwrap_err();
        assert_eq!(e.status, 431, "{e:?}");
        let few: String = (0..MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{few}\r\n");
        assert!(matches!(
            parse_request(req.as_bytes(), &roomy),
            Ok(Parsed::Complete(..))
        ));
    }

    #[test]
    fn duplicate_content_length_is_400() {
        for (a, b) in [("3", "3"), ("3", "4")] {
            let req = format!(
                "POST /put HTTP/1.1\r\nContent-Length: {a}\r\ncontent-length: {b}\r\n\r\nabcd"
            );
            assert_eq!(status_of(req.as_bytes()), 400, "{a} {b}");
        }
        // A list in one header is not a number either.
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"),
            400
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_400() {
        assert_eq!(
            status_of(
                b"POST /put HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status_of(
                b"POST /put HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
            ),
            400
        );
    }

    #[test]
    fn unsupported_transfer_encoding_is_refused() {
        for te in ["gzip", "chunked, gzip", "identity", "gzip, chunked"] {
            let req = format!("POST /put HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status_of(req.as_bytes()), 400, "{te}");
        }
        assert_eq!(
            status_of(
                b"POST /put HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
    }

    #[test]
    fn bad_content_length_is_400() {
        for v in [
            "abc",
            "-1",
            "+5",
            "0x10",
            "5 5",
            "1.0",
            "",
            "18446744073709551616",
            "99999999999999999999999999",
        ] {
            let req = format!("POST /put HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(status_of(req.as_bytes()), 400, "{v:?}");
        }
        // Largest u64: a number, just too large a body.
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            413
        );
    }

    #[test]
    fn body_over_limit_is_413_before_the_body_arrives() {
        // Only the head is here; the body limit is 64.
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nContent-Length: 65\r\n\r\n"),
            413
        );
        assert!(matches!(
            parse(b"POST /put HTTP/1.1\r\nContent-Length: 64\r\n\r\n"),
            Ok(Parsed::Partial { .. })
        ));
    }

    #[test]
    fn pipelined_requests_respect_the_body_boundary() {
        let mut buf = curl_put(r#"{"key":"a","value":"1"}"#);
        // The second body starts with what looks like a request line: it must stay body.
        let second = "GET /x HTTP/1.1\r\n\r\n";
        buf.extend_from_slice(
            format!(
                "POST /put HTTP/1.1\r\nContent-Length: {}\r\n\r\n{second}",
                second.len()
            )
            .as_bytes(),
        );
        buf.extend_from_slice(b"GET /get?key=a HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut got = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let (r, used) = complete(&buf[at..]);
            got.push((r.path.clone(), r.body.clone(), r.keep_alive));
            at += used;
        }
        assert_eq!(
            got,
            vec![
                (
                    "/put".to_string(),
                    br#"{"key":"a","value":"1"}"#.to_vec(),
                    true
                ),
                ("/put".to_string(), second.as_bytes().to_vec(), true),
                ("/get".to_string(), Vec::new(), false),
            ]
        );
        // Fed byte by byte, every prefix short of a whole request is partial.
        let first_len = curl_put(r#"{"key":"a","value":"1"}"#).len();
        for cut in 0..first_len {
            assert!(
                matches!(parse(&buf[..cut]), Ok(Parsed::Partial { .. })),
                "cut {cut}"
            );
        }
        assert!(matches!(parse(&buf[..first_len]), Ok(Parsed::Complete(_, n)) if n == first_len));
    }

    #[test]
    fn query_percent_decoding_gives_arbitrary_bytes() {
        let (r, _) = complete(
            b"GET /get?key=%FF%00a%2B+b&consistency=linearizable&k%3D1=v%26w&empty&x=a=b HTTP/1.1\r\n\r\n",
        );
        assert_eq!(r.path, "/get");
        assert_eq!(
            r.query_param("key"),
            Some(&[0xff, 0, b'a', b'+', b' ', b'b'][..])
        );
        assert_eq!(r.query_param("consistency"), Some(&b"linearizable"[..]));
        assert_eq!(r.query_param("k=1"), Some(&b"v&w"[..]));
        assert_eq!(r.query_param("empty"), Some(&b""[..]));
        assert_eq!(r.query_param("x"), Some(&b"a=b"[..]));
        assert_eq!(r.query_param("nope"), None);
        let (r, _) = complete(b"GET /g%65t?key=%e2%82%ac HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/get");
        assert_eq!(r.query_param("key"), Some("€".as_bytes()));
        for bad in ["%", "%4", "%zz", "%g0", "a%2"] {
            let req = format!("GET /get?key={bad} HTTP/1.1\r\n\r\n");
            assert_eq!(status_of(req.as_bytes()), 400, "{bad}");
        }
        assert_eq!(status_of(b"GET /a%zz HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn expect_continue_is_reported_once_the_head_is_complete() {
        let head = b"POST /put HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            parse(&head[..head.len() - 1]).unwrap(),
            Parsed::Partial {
                expect_continue: false
            }
        );
        assert_eq!(
            parse(head).unwrap(),
            Parsed::Partial {
                expect_continue: true
            }
        );
        let mut full = head.to_vec();
        full.extend_from_slice(b"hello");
        assert_eq!(complete(&full).0.body, b"hello");
        // Too large: refused at once, so the client never sends the body.
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n"),
            413
        );
        assert_eq!(
            status_of(b"POST /put HTTP/1.1\r\nExpect: coffee\r\nContent-Length: 5\r\n\r\n"),
            417
        );
        // An HTTP/1.0 client does not wait for 100 Continue.
        assert_eq!(
            parse(b"POST /put HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                .unwrap(),
            Parsed::Partial {
                expect_continue: false
            }
        );
    }

    #[test]
    fn connection_semantics() {
        let ka = |raw: &[u8]| complete(raw).0.keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: TE, Close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn malformed_requests_get_clear_errors() {
        let cases: [(&[u8], u16); 6] = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /x HTTP/2.0\r\n\r\n", 505),
            (b"GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n", 400),
            (b"GET x HTTP/1.1\r\n\r\n", 400),
            (b"GET /x y HTTP/1.1\r\n\r\n", 400),
        ];
        for (input, status) in cases {
            assert_eq!(
                status_of(input),
                status,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn one_writer_for_responses() {
        let mut out = Vec::new();
        let mut r = Response::json(200, &serde_json::json!({"ok": true}));
        r.headers.push(("Retry-After", "1".into()));
        r.headers.push(("X-Injected", "a\r\nSet-Cookie: x".into()));
        r.write_to(&mut out, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nRetry-After: 1\r\nConnection: keep-alive\r\n\r\n{\"ok\":true}"
        );
        let mut out = Vec::new();
        r.write_to(&mut out, true);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("Content-Length: 11\r\nRetry-After: 1\r\nConnection: keep-alive\r\n\r\n"));
        let mut out = Vec::new();
        HttpError::new(431, "bad \"thing\"")
            .to_response()
            .write_to(&mut out, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with(r#"{"error":"bad \"thing\""}"#));
    }

    #[test]
    fn forwarded_round_trip() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "POST",
            "/put",
            "127.0.0.1:9082",
            &[("x-ringraft-forwarded", "1")],
            b"{}",
        );
        let (r, n) = complete(&out);
        assert_eq!(n, out.len());
        assert_eq!(r.header("x-ringraft-forwarded"), Some("1"));
        assert_eq!(r.body, b"{}");
        let mut resp = Vec::new();
        Response::json(504, &serde_json::json!({"outcome": "unknown"})).write_to(&mut resp, false);
        for cut in 0..resp.len() {
            assert_eq!(parse_response(&resp[..cut], 1 << 10), Ok(None), "cut {cut}");
        }
        let p = parse_response(&resp, 1 << 10).unwrap().unwrap();
        assert_eq!(p.status, 504);
        assert_eq!(p.body, br#"{"outcome":"unknown"}"#);
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n", 10).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 10).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse_request(&bytes, &lim());
            let _ = parse_response(&bytes, 64);
        }

        #[test]
        fn never_panics_on_http_like(head in "[A-Z]{1,6} /[a-z%0-9?=&+]{0,20} HTTP/1\\.[01]\r\n([A-Za-z-]{1,10}: [ -~]{0,20}\r\n){0,5}\r\n") {
            let _ = parse_request(head.as_bytes(), &lim());
        }

        /// Any split of two pipelined requests parses to the same two requests.
        #[test]
        fn pipelining_is_split_independent(body in "[ -~]{0,40}", cut in 0usize..200) {
            let mut buf = curl_put(&body);
            let first = buf.len();
            buf.extend_from_slice(b"GET /status HTTP/1.1\r\n\r\n");
            let cut = cut.min(buf.len());
            match parse(&buf[..cut]).unwrap() {
                Parsed::Complete(r, n) => {
                    prop_assert!(cut >= first);
                    prop_assert_eq!(n, first);
                    prop_assert_eq!(r.body, body.as_bytes());
                }
                Parsed::Partial { .. } => prop_assert!(cut < first),
            }
        }
    }
}
