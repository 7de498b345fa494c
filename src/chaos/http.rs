//! A tiny HTTP/1.1 client over `std::net::TcpStream` for the node's JSON API (one request per
//! connection, `Connection: close`): enough for the suite's register workload and for polling
//! `/status`, with bounded time (connect and whole-exchange timeouts) and a bounded response
//! size. Owned by the fault suite.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response read (the API's answers are small JSON objects).
pub const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutcome {
    /// The request was never sent (the connect failed): it surely had no effect.
    NotSent(String),
    /// Sent, but no complete answer came (timeout, reset): a write may or may not apply.
    NoAnswer(String),
    /// A complete answer: status and body.
    Answer(u16, String),
}

/// Sends one request to `addr` and reads the answer within `timeout`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: Option<&str>,
    timeout: Duration,
) -> HttpOutcome {
    let started = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(1))) {
        Ok(s) => s,
        Err(e) => return HttpOutcome::NotSent(format!("connect {addr}: {e}")),
    };
    let _ = s.set_nodelay(true);
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.set_write_timeout(Some(timeout));
    if let Err(e) = s.write_all(req.as_bytes()) {
        return HttpOutcome::NoAnswer(format!("send to {addr}: {e}"));
    }
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return HttpOutcome::NoAnswer(format!("no answer from {addr} within {timeout:?}"));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > RESPONSE_BYTES_MAX {
                    return HttpOutcome::NoAnswer(format!("answer from {addr} too large"));
                }
                if let Some(done) = complete(&buf) {
                    return done;
                }
            }
            Err(e) => return HttpOutcome::NoAnswer(format!("read from {addr}: {e}")),
        }
    }
    complete(&buf)
        .unwrap_or_else(|| HttpOutcome::NoAnswer(format!("{addr} closed before a complete answer")))
}

/// The answer, once `raw` holds the head and `Content-Length` bytes of body (or the connection
/// closed after the head when no length is given).
fn complete(raw: &[u8]) -> Option<HttpOutcome> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse::<u16>().ok()?;
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())?;
    let body = raw.get(end + 4..)?;
    if body.len() < len {
        return None;
    }
    Some(HttpOutcome::Answer(
        status,
        String::from_utf8_lossy(&body[..len]).into_owned(),
    ))
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_complete_only_with_their_body() {
        assert_eq!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}"),
            None
        );
        assert_eq!(
            complete(b"HTTP/1.1 503 X\r\ncontent-length: 2\r\n\r\n{}"),
            Some(HttpOutcome::Answer(503, "{}".into()))
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(
            request(addr, "GET", "/status", None, Duration::from_millis(200)),
            HttpOutcome::NotSent(_)
        ));
    }
}
