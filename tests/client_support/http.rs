//! Plain HTTP/1.1 against a node, the way curl talks to it: one request per fresh loopback
//! connection (`Connection: close`), every connect and read bounded, `None` when the node could
//! not be reached or closed the connection without an answer. Also the bounded retry loop the
//! cluster tests wait with.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait for an answer (a write may wait for a quorum and an fsync).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);

/// The text of one request; `headers` are extra header lines, each ending in `\r\n`.
pub fn request_text(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
    headers: &str,
) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// (status, body) of a whole answer read to the end of its connection.
pub fn parse_answer(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    s.write_all(request_text(addr, method, target, body, "").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_answer(&raw)
}

/// The JSON body of a put of `key` = `value`.
pub fn put_body(key: &str, value: &str) -> String {
    format!(r#"{{"key": "{key}", "value": "{value}"}}"#)
}

/// `POST /put`.
pub fn put(addr: SocketAddr, key: &str, value: &str) -> Option<(u16, String)> {
    http(addr, "POST", "/put", &put_body(key, value))
}

/// `GET /get` at `consistency` (linearizable, lease or eventual).
pub fn get(addr: SocketAddr, key: &str, consistency: &str) -> Option<(u16, String)> {
    let target = format!("/get?key={key}&consistency={consistency}");
    http(addr, "GET", &target, "")
}

/// The `value` field of a get's answer.
pub fn value_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["value"].as_str().map(str::to_string)
}

/// The `/status` report of the node whose metrics port is `metrics`.
pub fn status(metrics: SocketAddr) -> Option<serde_json::Value> {
    match http(metrics, "GET", "/status", "")? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Retries `f` every 20 ms until it returns `Some` or `limit` passes.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
