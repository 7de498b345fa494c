//! The query string of a request target: `name=value` pairs split on `&`, percent-decoded into
//! arbitrary bytes (`+` is a space), so binary keys survive a URL. A `%` not followed by two hex
//! digits is a 400, never a guess.

use super::request::HttpError;

/// One decoded query parameter: name and value, arbitrary bytes.
pub(crate) type QueryPair = (Vec<u8>, Vec<u8>);

/// Splits a raw query (`a=1&b=%FF`) into decoded pairs; a pair without `=` has an empty value.
pub(crate) fn parse_query(raw: &str) -> Result<Vec<QueryPair>, HttpError> {
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
pub(super) fn shown(b: &[u8], n: usize) -> String {
    String::from_utf8_lossy(b).chars().take(n).collect()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`) into bytes; `None` on a `%`
/// not followed by two hex digits.
pub(crate) fn percent_decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use crate::node::http::{parse_request, HttpLimits, Parsed, Request};

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &HttpLimits::default()).unwrap() {
            Parsed::Complete(r, n) => (*r, n),
            p => panic!("not complete: {p:?}"),
        }
    }

    fn status_of(buf: &[u8]) -> u16 {
        match parse_request(buf, &HttpLimits::default()) {
            Err(e) => e.status,
            Ok(p) => panic!("{:?} accepted: {p:?}", String::from_utf8_lossy(buf)),
        }
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
}
