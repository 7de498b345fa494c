//! The lease of a `POST /put` with `ttl_s`: the HTTP surface picks the lease's id before the
//! put is proposed (so the answer can name it) and answers `{"ok", "version", "lease"}`. With
//! a session the id is derived from `(client_id, seq)`, so a retry of the same session names
//! the lease its first attempt granted. Owned by the node's HTTP surface.

use ringraft_net::message::lease_id;
use serde_json::json;

use super::{client_response, ClientOp, ClientReply, ClientResult, Response};
use crate::node::kv::{ApplyResult, WriteOp};

/// The lease a `POST /put` with `ttl_s` grants ([`super::route`] leaves its id 0), chosen here so
/// that the answer can name it: set in `op` and returned; `None` (and `op` unchanged) for every
/// other call. The id lives in the key's shard (`shard_of`). With a session (`client_id` not 0)
/// it is derived from `(client_id, seq)`, so a retry of the same session names the lease the
/// first attempt granted (the session table answers the retry with the first result); without
/// one it is fresh.
pub(crate) fn grant_put_lease(
    op: &mut ClientOp,
    client_id: u64,
    seq: u64,
    shard_of: impl Fn(&[u8]) -> u64,
) -> Option<u64> {
    let key = granting_put_key(op)?;
    let nonce = if client_id == 0 {
        crate::node::kv::route::nonce()
    } else {
        session_nonce(client_id, seq)
    };
    let id = lease_id(shard_of(key) as u32, nonce);
    set_put_lease(op, id);
    Some(id)
}

/// Sets the lease a granting `POST /put` grants to `id` (another call: unchanged).
pub(crate) fn set_put_lease(op: &mut ClientOp, id: u64) {
    if granting_put_key(op).is_some() {
        if let ClientOp::Write(WriteOp::PutLease { lease, .. }) = op {
            *lease = id;
        }
    }
}

/// The key of a put that grants a lease whose id is not chosen yet.
fn granting_put_key(op: &ClientOp) -> Option<&[u8]> {
    match op {
        ClientOp::Write(WriteOp::PutLease {
            key,
            lease: 0,
            ttl_ms,
            ..
        }) if *ttl_ms > 0 => Some(key),
        _ => None,
    }
}

/// A nonce that only `(client_id, seq)` decides (splitmix64 of each, mixed).
fn session_nonce(client_id: u64, seq: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(client_id ^ mix(seq))
}

/// The response to a `POST /put` that granted lease `lease` ([`grant_put_lease`]): that of
/// [`client_response`], naming the lease when the put was applied.
pub(crate) fn put_lease_response(key: &[u8], lease: u64, result: &ClientResult) -> Response {
    match result {
        Ok(ClientReply::Applied(ApplyResult::Put { version })) => Response::json(
            200,
            &json!({ "ok": true, "version": version, "lease": lease }),
        ),
        _ => client_response(key, true, result),
    }
}

#[cfg(test)]
mod tests {
    use ringraft_net::message::lease_shard;

    use super::*;
    use crate::node::http::{parse_request, HttpLimits, Parsed};
    use crate::node::http_api::{route, ApiCall, ReadSettings};
    use crate::node::request::{ClientError, ClientRequest, Consistency};

    fn put(body: &str) -> ClientRequest {
        let raw = format!(
            "POST /put HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let Ok(Parsed::Complete(req, _)) = parse_request(raw.as_bytes(), &HttpLimits::default())
        else {
            panic!("unparsed: {raw}");
        };
        let reads = ReadSettings {
            default: Consistency::Lease,
            allow_override: true,
        };
        match route(&req, &reads) {
            Ok(ApiCall::Client(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    /// A put with `ttl_s` names the lease it granted: the id set in the op is the one the
    /// answer carries, in the key's shard, the same for a retry of the same session.
    #[test]
    fn a_put_with_ttl_answers_its_lease() {
        let mut c = put(r#"{"key": "k", "value": "v", "ttl_s": 5, "client_id": 7, "seq": 3}"#);
        let id = grant_put_lease(&mut c.op, c.client_id, c.seq, |_| 2).unwrap();
        assert_eq!(lease_shard(id), 2);
        match &c.op {
            ClientOp::Write(WriteOp::PutLease { lease, ttl_ms, .. }) => {
                assert_eq!((*lease, *ttl_ms), (id, 5_000));
            }
            other => panic!("{other:?}"),
        }
        let mut again = put(r#"{"key": "k", "value": "v", "ttl_s": 5, "client_id": 7, "seq": 3}"#);
        assert_eq!(grant_put_lease(&mut again.op, 7, 3, |_| 2), Some(id));
        assert_ne!(
            grant_put_lease(
                &mut put(r#"{"key": "k", "value": "v", "ttl_s": 5}"#).op,
                7,
                4,
                |_| 2
            ),
            Some(id)
        );
        let r = put_lease_response(
            b"k",
            id,
            &Ok(ClientReply::Applied(ApplyResult::Put { version: 9 })),
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (r.status, &body["lease"], &body["version"]),
            (200, &json!(id), &json!(9))
        );
        // A failure is answered as any write's failure.
        let r = put_lease_response(b"k", id, &Err(ClientError::Timeout));
        assert_eq!(r.status, 504);
    }

    /// Only a put that grants names a lease: one attaching to an existing lease, or a plain
    /// put, is left as it is.
    #[test]
    fn only_a_granting_put_picks_a_lease() {
        for body in [
            r#"{"key": "k", "value": "v", "lease": 77}"#,
            r#"{"key": "k", "value": "v"}"#,
        ] {
            let mut c = put(body);
            let before = c.op.clone();
            assert_eq!(grant_put_lease(&mut c.op, 1, 1, |_| 0), None);
            assert_eq!(c.op, before);
        }
    }
}
