//! What applying one command produced: sent to the waiting client and, for writes with a
//! session, recorded in the session table (and so in snapshots).
//!
//! Result encoding (in snapshots): tag u8, then
//! `1 Put: version u64 | 2 Deleted: existed u8, version u64 | 3 Cas: swapped u8, version u64,
//! present u8, value_len u32, value | 4 Noop | 5 Rejected: len u32, UTF-8 | 6 SessionExpired |
//! 7 Txn: succeeded u8, version u64, n u32, n x (1 Put: version u64 | 2 Deleted: existed u8 |
//! 3 Get absent | 4 Get: value_len u32, value, version u64 | 5 GetOmitted: version u64) |
//! 8 Lease: id u64, ttl_ms u64, keys u32`.
//! A recorded compare-and-swap never holds a value (`present = 0`): see [`ApplyResult::recorded`].

use ringraft_net::message::{TxnOpResult, Versioned};

use super::command::{put_bytes, CodecError, Reader};
use crate::node::limits::{MAX_TXN_OPS, REJECTED_MESSAGE_MAX_BYTES, SESSION_RESULT_BYTES};

/// Bytes charged to the session table per kept transaction op result.
const TXN_RESULT_BYTES: usize = 24;

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// Put applied: the key's new version.
    Put {
        /// New version (= the entry's index).
        version: u64,
    },
    /// Delete applied.
    Deleted {
        /// Whether the key existed.
        existed: bool,
        /// Index of the delete.
        version: u64,
    },
    /// A compare-and-swap.
    Cas {
        /// Whether the swap happened.
        swapped: bool,
        /// The key's version after the command (0 = absent).
        version: u64,
        /// The current value when the swap did not happen and the key exists. Present in the
        /// answer to the first application; a recorded result keeps only the version.
        current: Option<Vec<u8>>,
    },
    /// A no-op.
    Noop,
    /// The command was invalid (deterministic; nothing changed).
    Rejected(String),
    /// A retry of a write whose recorded result was evicted from the session table: it may
    /// have been applied once; it is not applied again.
    SessionExpired,
    /// A transaction ran.
    Txn {
        /// Whether every compare held (the success branch ran).
        succeeded: bool,
        /// Results of the branch's ops, in order.
        results: Vec<TxnOpResult>,
        /// The transaction's log index.
        version: u64,
    },
    /// A lease was granted, kept alive, revoked or expired.
    Lease {
        /// Lease id.
        id: u64,
        /// Its time to live.
        ttl_ms: u64,
        /// Keys attached (revoke / expiry: keys deleted).
        keys: u32,
    },
}

impl ApplyResult {
    /// The form kept in the session table: a failed compare-and-swap drops the current value
    /// (a client could otherwise pin a whole value per failing request on every replica); a
    /// rejection keeps at most [`REJECTED_MESSAGE_MAX_BYTES`] of its reason.
    pub fn recorded(&self) -> ApplyResult {
        match self {
            ApplyResult::Cas {
                swapped, version, ..
            } => ApplyResult::Cas {
                swapped: *swapped,
                version: *version,
                current: None,
            },
            // A transaction's reads keep only their versions (like a failed compare-and-swap):
            // a retry is refilled from the store while the key still has that version.
            ApplyResult::Txn {
                succeeded,
                results,
                version,
            } => ApplyResult::Txn {
                succeeded: *succeeded,
                version: *version,
                results: results
                    .iter()
                    .map(|r| match r {
                        TxnOpResult::Get(Some(v)) => TxnOpResult::GetOmitted { version: v.version },
                        other => other.clone(),
                    })
                    .collect(),
            },
            ApplyResult::Rejected(m) if m.len() > REJECTED_MESSAGE_MAX_BYTES => {
                let mut end = REJECTED_MESSAGE_MAX_BYTES;
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                ApplyResult::Rejected(m[..end].to_string())
            }
            other => other.clone(),
        }
    }

    /// Bytes charged to the session table for keeping this result.
    pub fn charge(&self) -> usize {
        SESSION_RESULT_BYTES
            + match self {
                ApplyResult::Rejected(m) => m.len(),
                ApplyResult::Cas { current, .. } => current.as_ref().map_or(0, Vec::len),
                ApplyResult::Txn { results, .. } => {
                    results.len() * TXN_RESULT_BYTES
                        + results
                            .iter()
                            .map(|r| match r {
                                TxnOpResult::Get(Some(v)) => v.value.len(),
                                _ => 0,
                            })
                            .sum::<usize>()
                }
                _ => 0,
            }
    }

    /// Appends the result's encoding (module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ApplyResult::Put { version } => {
                out.push(1);
                out.extend_from_slice(&version.to_le_bytes());
            }
            ApplyResult::Deleted { existed, version } => {
                out.push(2);
                out.push(u8::from(*existed));
                out.extend_from_slice(&version.to_le_bytes());
            }
            ApplyResult::Cas {
                swapped,
                version,
                current,
            } => {
                out.push(3);
                out.push(u8::from(*swapped));
                out.extend_from_slice(&version.to_le_bytes());
                out.push(u8::from(current.is_some()));
                put_bytes(out, current.as_deref().unwrap_or(&[]));
            }
            ApplyResult::Noop => out.push(4),
            ApplyResult::Rejected(msg) => {
                out.push(5);
                put_bytes(out, msg.as_bytes());
            }
            ApplyResult::SessionExpired => out.push(6),
            ApplyResult::Txn {
                succeeded,
                results,
                version,
            } => {
                out.push(7);
                out.push(u8::from(*succeeded));
                out.extend_from_slice(&version.to_le_bytes());
                // Bounded by MAX_TXN_OPS.
                out.extend_from_slice(&(results.len() as u32).to_le_bytes());
                for r in results {
                    match r {
                        TxnOpResult::Put { version } => {
                            out.push(1);
                            out.extend_from_slice(&version.to_le_bytes());
                        }
                        TxnOpResult::Deleted { existed } => {
                            out.push(2);
                            out.push(u8::from(*existed));
                        }
                        TxnOpResult::Get(None) => out.push(3),
                        TxnOpResult::Get(Some(v)) => {
                            out.push(4);
                            put_bytes(out, &v.value);
                            out.extend_from_slice(&v.version.to_le_bytes());
                        }
                        TxnOpResult::GetOmitted { version } => {
                            out.push(5);
                            out.extend_from_slice(&version.to_le_bytes());
                        }
                    }
                }
            }
            ApplyResult::Lease { id, ttl_ms, keys } => {
                out.push(8);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&ttl_ms.to_le_bytes());
                out.extend_from_slice(&keys.to_le_bytes());
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ApplyResult, CodecError> {
        Ok(match r.u8()? {
            1 => ApplyResult::Put { version: r.u64()? },
            2 => ApplyResult::Deleted {
                existed: r.bool()?,
                version: r.u64()?,
            },
            3 => {
                let swapped = r.bool()?;
                let version = r.u64()?;
                let present = r.bool()?;
                let cur = r.bytes()?;
                ApplyResult::Cas {
                    swapped,
                    version,
                    current: present.then(|| cur.to_vec()),
                }
            }
            4 => ApplyResult::Noop,
            5 => ApplyResult::Rejected(
                String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| CodecError("rejected message is not UTF-8".into()))?,
            ),
            6 => ApplyResult::SessionExpired,
            7 => {
                let succeeded = r.bool()?;
                let version = r.u64()?;
                let n = r.u32()? as usize;
                if n > MAX_TXN_OPS || n > r.left() {
                    return Err(CodecError(format!("transaction result of {n} ops")));
                }
                let mut results = Vec::with_capacity(n);
                for _ in 0..n {
                    results.push(match r.u8()? {
                        1 => TxnOpResult::Put { version: r.u64()? },
                        2 => TxnOpResult::Deleted { existed: r.bool()? },
                        3 => TxnOpResult::Get(None),
                        4 => TxnOpResult::Get(Some(Versioned {
                            value: r.bytes()?.to_vec(),
                            version: r.u64()?,
                        })),
                        5 => TxnOpResult::GetOmitted { version: r.u64()? },
                        t => return Err(CodecError(format!("unknown txn result tag {t}"))),
                    });
                }
                ApplyResult::Txn {
                    succeeded,
                    results,
                    version,
                }
            }
            8 => ApplyResult::Lease {
                id: r.u64()?,
                ttl_ms: r.u64()?,
                keys: r.u32()?,
            },
            t => return Err(CodecError(format!("unknown result tag {t}"))),
        })
    }
}
