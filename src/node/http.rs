//! A small, strict HTTP/1.1 request parser and response writer for the operator surface (the
//! seed's `curl` commands) and the metrics port. No framework: sans-I/O functions over byte
//! buffers, so the same code serves the client port (after the first bytes were sniffed as HTTP)
//! and the metrics port, and is tested without sockets.
//!
//! Supported: request line `METHOD SP target SP HTTP/1.x`, headers, a body framed by
//! `Content-Length`, keep-alive (HTTP/1.1 default, `Connection: close` honoured; HTTP/1.0 closes
//! unless `Connection: keep-alive`), `Expect: 100-continue` (answered by the caller with
//! [`CONTINUE_RESPONSE`]). Not supported and refused with a clear status: chunked request bodies
//! (411), bodies over the limit (413), heads over the limit (431), anything malformed (400).
//! Invariants: the parser never reads past `max_header_bytes + max_body_bytes` of one request and
//! never panics on any input.
//! Owned by the node (issue 6).

use std::fmt::Write as _;

/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Interim response sent to a client that asked `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The methods the parser accepts (anything else is 405 from the router, 400 here if not a token).
pub const KNOWN_METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];

/// Size limits (from `[network] http_max_header_bytes`, `http_max_body_bytes`).
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
            max_header_bytes: 8 << 10,
            max_body_bytes: 1 << 20,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method.
    pub method: String,
    /// The request target exactly as sent (path and query, still encoded).
    pub target: String,
    /// Path without the query, percent-decoded.
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// Headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// First query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
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
    /// Status code (400, 411, 413, 431, 505).
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

    /// The error as a JSON response that closes the connection.
    pub fn to_response(&self) -> Response {
        let mut r = Response::json(self.status, &error_json(&self.message));
        r.close = true;
        r
    }
}

/// The result of feeding bytes to the parser.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request and the number of bytes it used.
    Complete(Box<Request>, usize),
    /// More bytes are needed; `expect_continue` is set once the head is complete and the client
    /// asked for `100 Continue`.
    Partial {
        /// Send [`CONTINUE_RESPONSE`] now.
        expect_continue: bool,
    },
}

/// Parses one request from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &HttpLimits) -> Result<Parsed, HttpError> {
    let head_end = match find_head_end(buf, limits.max_header_bytes) {
        Some(e) => e,
        None if buf.len() >= limits.max_header_bytes => {
            return Err(HttpError::new(
                431,
                format!("request head larger than {} bytes", limits.max_header_bytes),
            ))
        }
        None => {
            return Ok(Parsed::Partial {
                expect_continue: false,
            })
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::new(400, "request head is not valid UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => {
            return Err(HttpError::new(
                400,
                format!("malformed request line {:?}", truncate(request_line, 80)),
            ))
        }
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::new(
            400,
            format!("malformed method {:?}", truncate(method, 16)),
        ));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v => {
            return Err(HttpError::new(
                505,
                format!(
                    "unsupported version {:?}, this server speaks HTTP/1.0 and HTTP/1.1",
                    truncate(v, 16)
                ),
            ))
        }
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::new(
                431,
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::new(
                400,
                format!("malformed header line {:?}", truncate(line, 80)),
            ));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HttpError::new(
                400,
                format!("malformed header name {:?}", truncate(name, 40)),
            ));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if let Some(te) = find("transfer-encoding") {
        return Err(HttpError::new(
            411,
            format!("transfer-encoding {te:?} is not supported; send Content-Length"),
        ));
    }
    let body_len = match find("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            HttpError::new(
                400,
                format!("content-length {:?} is not a number", truncate(v, 24)),
            )
        })?,
    };
    if body_len > limits.max_body_bytes {
        return Err(HttpError::new(
            413,
            format!(
                "body of {body_len} bytes, the limit is {}",
                limits.max_body_bytes
            ),
        ));
    }
    let body_start = head_end + 4;
    if buf.len() < body_start + body_len {
        let expect_continue =
            find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        return Ok(Parsed::Partial { expect_continue });
    }
    let connection = find("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => !http10,
    };
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(HttpError::new(
            400,
            format!(
                "request target {:?} must start with /",
                truncate(target, 80)
            ),
        ));
    }
    let path = percent_decode(raw_path, false).ok_or_else(|| {
        HttpError::new(
            400,
            format!("bad percent-encoding in path {:?}", truncate(raw_path, 80)),
        )
    })?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || {
            HttpError::new(
                400,
                format!("bad percent-encoding in query {:?}", truncate(pair, 80)),
            )
        };
        query.push((
            percent_decode(k, true).ok_or_else(bad)?,
            percent_decode(v, true).ok_or_else(bad)?,
        ));
    }
    Ok(Parsed::Complete(
        Box::new(Request {
            method: method.to_string(),
            target: target.to_string(),
            path,
            query,
            headers,
            body: buf[body_start..body_start + body_len].to_vec(),
            keep_alive,
        }),
        body_start + body_len,
    ))
}

fn find_head_end(buf: &[u8], max: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(max)];
    window.windows(4).position(|w| w == b"\r\n\r\n")
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Decodes `%XX` escapes (and `+` as space in queries); `None` on a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
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
    String::from_utf8(out).ok()
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Extra headers (e.g. `Location` on a redirect).
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

    /// A plain-text response.
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
        Self::json(status, &error_json(message))
    }

    /// Serializes status line, headers and body (HTTP/1.1, always with Content-Length).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut head = String::with_capacity(128);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str(if self.close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn error_json(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
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
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Whether the first bytes of a connection look like an HTTP request line.
pub fn looks_like_http(first: &[u8]) -> bool {
    KNOWN_METHODS.iter().any(|m| {
        let m = m.as_bytes();
        let n = first.len().min(m.len() + 1);
        n > 0 && (first[..n] == [m, b" "].concat()[..n])
    })
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

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &lim()).unwrap() {
            Parsed::Complete(r, n) => (*r, n),
            p => panic!("not complete: {p:?}"),
        }
    }

    #[test]
    fn parses_the_seed_put() {
        let body = br#"{"key": "test-key", "value": "test-value"}"#;
        let req = format!(
            "POST /put HTTP/1.1\r\nHost: localhost:9081\r\nUser-Agent: curl/8\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut buf = req.into_bytes();
        buf.extend_from_slice(body);
        buf.extend_from_slice(b"GET /x HTTP/1.1\r\n\r\n");
        let (r, used) = complete(&buf);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/put");
        assert_eq!(r.body, body);
        assert!(r.keep_alive);
        assert_eq!(r.header("content-type"), Some("application/json"));
        // Pipelined second request.
        let (r2, _) = complete(&buf[used..]);
        assert_eq!(r2.path, "/x");
    }

    #[test]
    fn parses_query_with_escapes() {
        let (r, _) =
            complete(b"GET /get?key=test%20key&consistency=linearizable&x=a+b HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/get");
        assert_eq!(r.query_param("key"), Some("test key"));
        assert_eq!(r.query_param("consistency"), Some("linearizable"));
        assert_eq!(r.query_param("x"), Some("a b"));
        assert_eq!(r.query_param("nope"), None);
    }

    #[test]
    fn partial_until_complete() {
        let full = b"POST /put HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.len() {
            assert!(
                matches!(
                    parse_request(&full[..cut], &lim()).unwrap(),
                    Parsed::Partial { .. }
                ),
                "cut {cut}"
            );
        }
        assert!(matches!(
            parse_request(full, &lim()).unwrap(),
            Parsed::Complete(_, n) if n == full.len()
        ));
    }

    #[test]
    fn expect_continue_is_reported() {
        let p = parse_request(
            b"POST /put HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            &lim(),
        )
        .unwrap();
        assert_eq!(
            p,
            Parsed::Partial {
                expect_continue: true
            }
        );
    }

    #[test]
    fn connection_semantics() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn malformed_requests_get_clear_errors() {
        let cases: [(&[u8], u16, &str); 9] = [
            (b"GARBAGE\r\n\r\n", 400, "request line"),
            (b"GET /x HTTP/2.0\r\n\r\n", 505, "version"),
            (b"get /x HTTP/1.1\r\n\r\n", 400, "method"),
            (b"GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400, "header"),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                400,
                "content-length",
            ),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
                413,
                "limit",
            ),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
                "Content-Length",
            ),
            (b"GET x HTTP/1.1\r\n\r\n", 400, "start with /"),
            (b"GET /a%zz HTTP/1.1\r\n\r\n", 400, "percent"),
        ];
        for (input, status, needle) in cases {
            let e = parse_request(input, &lim()).unwrap_err();
            assert_eq!(
                e.status,
                status,
                "{:?}: {e:?}",
                String::from_utf8_lossy(input)
            );
            assert!(e.message.contains(needle), "{e:?}");
        }
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(600));
        assert_eq!(
            parse_request(big.as_bytes(), &lim()).unwrap_err().status,
            431
        );
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let l = HttpLimits {
            max_header_bytes: 4096,
            max_body_bytes: 1,
        };
        assert_eq!(parse_request(req.as_bytes(), &l).unwrap_err().status, 431);
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        Response::json(200, &serde_json::json!({"ok": true})).write_to(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 11\r\n"));
        assert!(s.ends_with("\r\n\r\n{\"ok\":true}"));
        let mut out = Vec::new();
        HttpError::new(400, "bad \"thing\"")
            .to_response()
            .write_to(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("400 Bad Request") && s.contains("Connection: close"));
        assert!(s.contains(r#"{"error":"bad \"thing\""}"#));
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_http(b"GET /"));
        assert!(looks_like_http(b"POST /put"));
        assert!(looks_like_http(b"PO"));
        assert!(!looks_like_http(b"RRF\x01"));
        assert!(!looks_like_http(b""));
        assert!(!looks_like_http(b"GETX"));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse_request(&bytes, &lim());
        }

        #[test]
        fn never_panics_on_http_like(head in "[A-Z]{1,6} /[a-z%0-9?=&+]{0,20} HTTP/1\\.[01]\r\n([A-Za-z-]{1,10}: [ -~]{0,20}\r\n){0,5}\r\n") {
            let _ = parse_request(head.as_bytes(), &lim());
        }
    }
}
