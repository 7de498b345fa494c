//! Which shard a write goes to, checked before it is proposed: a key's shard, a lease's shard
//! (named by its id), or — for a transaction — the one shard all its keys share. Refusals
//! are `InvalidRequest` (not applied) with a message that says which keys went where and how
//! to co-locate them (hash tags: a key containing `{tag}` hashes only `tag`, see
//! [`crate::node::runtime::shard_of_key`]). Also fills a lease id left 0 by the requester
//! with a fresh id in the right shard. Used by the node's request path; the client computes
//! the same mapping with the same function.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use ringraft_net::message::{lease_id, lease_shard, ClientError};

use super::command::WriteOp;
use crate::node::runtime::shard_of_key;

/// Keys listed per shard in a cross-shard refusal (the message stays short).
const KEYS_SHOWN_PER_SHARD: usize = 4;

/// A fresh nonce for a lease id (std's per-process random hasher keys, mixed with the clock).
pub(crate) fn nonce() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn show(k: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(k))
}

/// The shard of write `op` among `shards`; `asked` is the shard the requester named (a
/// mismatch is `WrongShard`). A lease id of 0 in a grant (or a put that grants) is replaced
/// by a fresh id in `asked` (grant) or in the key's shard (put).
pub fn route_write(
    op: &mut WriteOp,
    asked: Option<usize>,
    shards: usize,
) -> Result<usize, ClientError> {
    let shards = shards.max(1);
    let g = match op {
        WriteOp::LeaseGrant { id, .. } if *id == 0 => {
            let g = asked.unwrap_or(0);
            if g >= shards {
                return Err(ClientError::WrongShard { shard: g as u32 });
            }
            *id = lease_id(g as u32, nonce());
            return Ok(g);
        }
        WriteOp::PutLease {
            key, lease, ttl_ms, ..
        } => {
            let g = shard_of_key(key, shards);
            if *lease == 0 && *ttl_ms > 0 {
                *lease = lease_id(g as u32, nonce());
            }
            let ls = lease_shard(*lease) as usize;
            if ls != g {
                return Err(ClientError::InvalidRequest(format!(
                    "key {} maps to shard {g}, but lease {} lives in shard {ls}: a lease holds \
                     keys of its own shard only; grant the lease for this key's shard (`ringraft \
                     lease grant TTL --key KEY`) or give the keys a common hash tag ({{tag}})",
                    show(key),
                    *lease
                )));
            }
            g
        }
        WriteOp::LeaseGrant { id, .. }
        | WriteOp::LeaseKeepAlive { id }
        | WriteOp::LeaseRevoke { id }
        | WriteOp::LeaseExpire { id, .. } => {
            let g = lease_shard(*id) as usize;
            if g >= shards {
                return Err(ClientError::InvalidRequest(format!(
                    "lease {id} names shard {g}, but the cluster has {shards} shards"
                )));
            }
            g
        }
        WriteOp::Txn(t) => {
            let mut by_shard: BTreeMap<usize, Vec<&[u8]>> = BTreeMap::new();
            for k in t.keys() {
                let v = by_shard.entry(shard_of_key(k, shards)).or_default();
                if !v.contains(&k) {
                    v.push(k);
                }
            }
            if by_shard.len() > 1 {
                let parts: Vec<String> = by_shard
                    .iter()
                    .map(|(s, keys)| {
                        let mut shown: Vec<String> = keys
                            .iter()
                            .take(KEYS_SHOWN_PER_SHARD)
                            .map(|k| show(k))
                            .collect();
                        if keys.len() > KEYS_SHOWN_PER_SHARD {
                            shown.push(format!("and {} more", keys.len() - KEYS_SHOWN_PER_SHARD));
                        }
                        format!("shard {s}: {}", shown.join(", "))
                    })
                    .collect();
                return Err(ClientError::InvalidRequest(format!(
                    "a transaction's keys must live in one shard; they map to {} shards ({}). \
                     Co-locate them with a hash tag: keys containing the same {{tag}} hash only \
                     the tag, so \"{{acct}}:alice\" and \"{{acct}}:bob\" share a shard",
                    by_shard.len(),
                    parts.join("; ")
                )));
            }
            by_shard.keys().next().copied().unwrap_or(0)
        }
        other => shard_of_key(other.key().unwrap_or(&[]), shards),
    };
    match asked {
        Some(s) if s != g => Err(ClientError::WrongShard { shard: g as u32 }),
        _ => Ok(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::message::{Txn, TxnOp};

    fn txn(keys: &[&str]) -> WriteOp {
        WriteOp::Txn(Txn {
            compares: vec![],
            success: keys
                .iter()
                .map(|k| TxnOp::Put {
                    key: k.as_bytes().to_vec(),
                    value: vec![],
                })
                .collect(),
            failure: vec![],
        })
    }

    #[test]
    fn a_transaction_across_shards_is_refused_with_the_keys_per_shard() {
        let (a, b) = (0..100)
            .map(|i| format!("k{i}"))
            .try_fold(None::<String>, |first, k| match first {
                None => Ok(Some(k)),
                Some(f) if shard_of_key(f.as_bytes(), 4) != shard_of_key(k.as_bytes(), 4) => {
                    Err((f, k))
                }
                Some(f) => Ok(Some(f)),
            })
            .unwrap_err();
        let e = route_write(&mut txn(&[&a, &b]), None, 4).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(&format!("{a:?}")) && m.contains(&format!("{b:?}")),
            "{m}"
        );
        assert!(m.contains("hash tag"), "{m}");
        assert_eq!(e.class(), ringraft_net::message::ErrorClass::NotApplied);
        // The same keys behind one hash tag share a shard.
        let (ta, tb) = (format!("{{t}}{a}"), format!("{{t}}{b}"));
        let g = route_write(&mut txn(&[&ta, &tb]), None, 4).unwrap();
        assert_eq!(g, shard_of_key(b"t", 4));
    }

    #[test]
    fn lease_ids_name_their_shard() {
        let mut grant = WriteOp::LeaseGrant {
            id: 0,
            ttl_ms: 5_000,
        };
        assert_eq!(route_write(&mut grant, Some(2), 4), Ok(2));
        let WriteOp::LeaseGrant { id, .. } = grant else {
            unreachable!()
        };
        assert_eq!(lease_shard(id), 2);
        assert_ne!(id, 0);
        assert_eq!(
            route_write(&mut WriteOp::LeaseKeepAlive { id }, None, 4),
            Ok(2)
        );
        assert!(route_write(&mut WriteOp::LeaseKeepAlive { id: lease_id(9, 1) }, None, 4).is_err());
        let mut put = WriteOp::PutLease {
            key: b"x".to_vec(),
            value: vec![],
            lease: 0,
            ttl_ms: 5_000,
        };
        let g = route_write(&mut put, None, 4).unwrap();
        assert_eq!(g, shard_of_key(b"x", 4));
        let WriteOp::PutLease { lease, .. } = put else {
            unreachable!()
        };
        assert_eq!(lease_shard(lease) as usize, g);
    }
}
