//! The header rules that say where a request's body ends and what the client expects: the
//! body length (`Content-Length` only; duplicates, transfer codings and non-decimal values are
//! refused, since two parties disagreeing on a body's end is how requests are smuggled), the
//! connection's persistence, and `Expect: 100-continue`. Pure functions over parsed headers,
//! used by the request parser and by the response reader.

use super::query::shown;
use super::request::HttpError;
use super::HttpLimits;

/// How the body of a request is framed, from its headers.
pub(super) fn body_length(
    headers: &[httparse::Header<'_>],
    limits: &HttpLimits,
) -> Result<usize, HttpError> {
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
pub(super) fn keep_alive(minor: u8, headers: &[httparse::Header<'_>]) -> bool {
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
pub(super) fn expects_continue(
    minor: u8,
    headers: &[httparse::Header<'_>],
) -> Result<bool, HttpError> {
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
