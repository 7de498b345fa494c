//! Answers: one writer for every response ([`Response::write_to`]: status line, Content-Type,
//! Content-Length always the body's length, extra headers without control characters,
//! Connection), the reason phrases, and a reader of such answers ([`parse_response`]) for test
//! clients and tools, framed by the same length rules as requests.

use super::framing::body_length;
use super::{HttpLimits, DEFAULT_MAX_HEAD_BYTES, MAX_HEADERS};

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Content-Type.
    pub(crate) content_type: &'static str,
    /// Extra headers (e.g. `Retry-After`); a value with a control character is not written.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Body.
    pub(crate) body: Vec<u8>,
    /// Close the connection after writing.
    pub(crate) close: bool,
}

impl Response {
    /// A JSON response.
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            close: false,
        }
    }

    /// A response with a body of another type.
    pub(crate) fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
            close: false,
        }
    }

    /// A JSON error `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    /// Writes status line, Content-Type, Content-Length, the extra headers, Connection and —
    /// unless `head_only` (the answer to a HEAD request) — the body. Content-Length is always
    /// the body's length, so a HEAD answer describes the GET answer.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>, head_only: bool) {
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

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type, when it is one this node sends.
    pub(crate) content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// Writes a request for `target` with a JSON `body` (what the CLI sends to a node's HTTP API):
/// the body framed by Content-Length, `extra` headers, and `Connection: close`.
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
    use crate::node::http::request::HttpError;
    use proptest::prelude::*;

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
    fn answers_read_back_byte_for_byte() {
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
            let _ = parse_response(&bytes, 64);
        }
    }
}
