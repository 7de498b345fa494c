//! One HTTP/1.1 request parsed from the start of a byte buffer: the head by `httparse` (at most
//! `max_header_bytes` and [`MAX_HEADERS`] headers, else 431), the body by the length rules of
//! `framing` (413 before the body when it is declared too large), and the exact number of
//! bytes used, so pipelined requests that follow are parsed next. Sans-I/O and panic-free on
//! any input; allocates only for a request it accepts.

use super::framing::{body_length, expects_continue, keep_alive};
use super::query::{parse_query, percent_decode, shown, QueryPair};
use super::response::Response;
use super::{HttpLimits, MAX_HEADERS};

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method as sent (a token; the router matches upper-case names).
    pub(crate) method: String,
    /// The request target exactly as sent (path and query, still encoded).
    pub(crate) target: String,
    /// Path without the query, percent-decoded (not UTF-8 bytes shown as U+FFFD).
    pub(crate) path: String,
    /// Query parameters in order, percent-decoded (`+` is a space); arbitrary bytes.
    pub(crate) query: Vec<QueryPair>,
    /// Headers (names lower-cased; values not UTF-8 shown with U+FFFD).
    pub(crate) headers: Vec<(String, String)>,
    /// Body bytes.
    pub(crate) body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
}

impl Request {
    /// First query parameter named `name` (decoded bytes).
    pub(crate) fn query_param(&self, name: &str) -> Option<&[u8]> {
        self.query
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// First header named `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be parsed: the status to answer with and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    /// Status code (400, 411, 413, 417, 431, 505).
    pub(crate) status: u16,
    /// Human-readable reason.
    pub(crate) message: String,
}

impl HttpError {
    pub(super) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The error as a JSON response that closes the connection (after a framing error the
    /// position of the next request is unknown).
    pub(crate) fn to_response(&self) -> Response {
        let mut r = Response::error(self.status, &self.message);
        r.close = true;
        r
    }
}

/// The result of feeding bytes to the parser.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole request and the number of bytes it used.
    Complete(Box<Request>, usize),
    /// More bytes are needed; `expect_continue` is set once the head is complete, the body is
    /// not, and the client asked for `100 Continue`.
    Partial {
        /// Send [`CONTINUE_RESPONSE`](super::CONTINUE_RESPONSE) now (once per request).
        expect_continue: bool,
    },
}

/// Parses one request from the start of `buf`.
pub(crate) fn parse_request(buf: &[u8], limits: &HttpLimits) -> Result<Parsed, HttpError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::http::HttpLimits;
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

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse_request(&bytes, &lim());
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
