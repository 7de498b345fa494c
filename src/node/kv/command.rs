//! The logged command: a write operation and its exactly-once session, as the bytes of a
//! normal Raft entry, plus the bounds-checked reader the store's codecs share.
//!
//! ## Command encoding (little-endian), format version 1
//! ```text
//! byte 0        format version = 1
//! byte 1        op: 1 Put, 2 Delete, 3 CasValue, 4 CasVersion, 5 Noop, 6 Txn, 7 PutLease,
//!               8 LeaseGrant, 9 LeaseKeepAlive, 10 LeaseRevoke, 11 LeaseExpire
//! bytes 2..10   client_id u64 (0 = no session)
//! bytes 10..18  seq u64
//! then per op:
//!   Put        key_len u32, key, value_len u32, value
//!   Delete     key_len u32, key
//!   CasValue   key_len u32, key, expect_present u8 (0|1), exp_len u32, expected, new_len u32, new
//!   CasVersion key_len u32, key, expected_version u64 (0 = key must be absent), new_len u32, new
//!   Noop       nothing
//!   Txn        n_compares u32, compares, n_success u32, ops, n_failure u32, ops
//!              compare: key_len u32, key, check u8 (1 absent | 2 value: len u32, value |
//!                       3 version: u64 | 4 exists: u8 0|1)
//!              op: kind u8 (1 put: key, value | 2 delete: key | 3 get: key), with u32 lengths
//!   PutLease   key_len u32, key, value_len u32, value, lease u64, ttl_ms u64 (0 = lease exists)
//!   LeaseGrant id u64, ttl_ms u64
//!   LeaseKeepAlive / LeaseRevoke   id u64
//!   LeaseExpire id u64, refreshed u64 (the index of the grant or keep-alive the leader timed)
//! ```
//! Counts of a transaction are bounded by [`MAX_TXN_COMPARES`] and [`MAX_TXN_OPS`] (checked
//! by [`Command::check_sizes`], at admission and again at apply).
//! [`Command::encoded_len`] is exact, so admission can check a write's full size before
//! encoding it; [`Command::encode`] writes into one buffer of exactly that size, and
//! [`Command::encode_shared`] into the shared buffer a Raft entry carries.

use std::mem::MaybeUninit;
use std::sync::Arc;

use ringraft_net::message as wire;
use wire::{Txn, TxnCheck, TxnCompare, TxnOp};

pub use crate::node::limits::{MAX_TXN_COMPARES, MAX_TXN_OPS};

mod bytes;
use bytes::*;
pub(crate) use bytes::{put_bytes, Reader};

/// Command format version written in byte 0.
pub const COMMAND_VERSION: u8 = 1;
/// Bytes before the op-specific part of a command.
pub const COMMAND_HEADER_BYTES: usize = 18;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS_VALUE: u8 = 3;
const OP_CAS_VERSION: u8 = 4;
const OP_NOOP: u8 = 5;
const OP_TXN: u8 = 6;
const OP_PUT_LEASE: u8 = 7;
const OP_LEASE_GRANT: u8 = 8;
const OP_LEASE_KEEPALIVE: u8 = 9;
const OP_LEASE_REVOKE: u8 = 10;
const OP_LEASE_EXPIRE: u8 = 11;

/// A write, as carried in a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Session client id (0 = no exactly-once tracking).
    pub client_id: u64,
    /// Sequence number within the client's session.
    pub seq: u64,
    /// The operation.
    pub op: WriteOp,
}

/// A write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Set `key` to `new` if its value is `expected` (`None` = the key must be absent).
    CasValue {
        /// Key.
        key: Vec<u8>,
        /// Expected current value.
        expected: Option<Vec<u8>>,
        /// New value.
        new: Vec<u8>,
    },
    /// Set `key` to `new` if its version is `expected_version` (0 = the key must be absent).
    CasVersion {
        /// Key.
        key: Vec<u8>,
        /// Expected current version.
        expected_version: u64,
        /// New value.
        new: Vec<u8>,
    },
    /// Nothing (a barrier).
    Noop,
    /// A transaction on keys of one shard.
    Txn(Txn),
    /// Set `key` to `value` attached to lease `lease` (granted first when `ttl_ms > 0`).
    PutLease {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease id.
        lease: u64,
        /// Grant the lease with this time to live first (0: it must exist).
        ttl_ms: u64,
    },
    /// Grant lease `id` for `ttl_ms`.
    LeaseGrant {
        /// Lease id.
        id: u64,
        /// Time to live.
        ttl_ms: u64,
    },
    /// Restart lease `id`'s time to live.
    LeaseKeepAlive {
        /// Lease id.
        id: u64,
    },
    /// Revoke lease `id` and delete its keys.
    LeaseRevoke {
        /// Lease id.
        id: u64,
    },
    /// The leader found lease `id` expired; applied only if the lease was not refreshed
    /// since the grant or keep-alive at index `refreshed` (a keep-alive that raced with the
    /// expiry wins).
    LeaseExpire {
        /// Lease id.
        id: u64,
        /// Index of the refresh the leader timed.
        refreshed: u64,
    },
}

impl WriteOp {
    /// The key written (none for `Noop`).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Delete { key }
            | WriteOp::CasValue { key, .. }
            | WriteOp::CasVersion { key, .. }
            | WriteOp::PutLease { key, .. } => Some(key),
            WriteOp::Txn(t) => t.keys().next(),
            WriteOp::Noop
            | WriteOp::LeaseGrant { .. }
            | WriteOp::LeaseKeepAlive { .. }
            | WriteOp::LeaseRevoke { .. }
            | WriteOp::LeaseExpire { .. } => None,
        }
    }

    /// The lease a lease operation names (it picks the shard: [`wire::lease_shard`]).
    pub fn lease(&self) -> Option<u64> {
        match self {
            WriteOp::LeaseGrant { id, .. }
            | WriteOp::LeaseKeepAlive { id }
            | WriteOp::LeaseRevoke { id }
            | WriteOp::LeaseExpire { id, .. } => Some(*id),
            WriteOp::PutLease { lease, .. } => Some(*lease),
            _ => None,
        }
    }

    /// The write of a wire operation (moves the key and values; `None` for reads), with its
    /// session.
    pub fn from_wire(op: wire::ClientOp) -> Option<(WriteOp, Option<wire::Session>)> {
        Some(match op {
            wire::ClientOp::Put {
                key,
                value,
                session,
            } => (WriteOp::Put { key, value }, session),
            wire::ClientOp::Delete { key, session } => (WriteOp::Delete { key }, session),
            wire::ClientOp::CompareAndSwap {
                key,
                expect,
                new_value,
                session,
            } => (
                match expect {
                    wire::CasExpect::Value(expected) => WriteOp::CasValue {
                        key,
                        expected,
                        new: new_value,
                    },
                    wire::CasExpect::Version(v) => WriteOp::CasVersion {
                        key,
                        expected_version: v,
                        new: new_value,
                    },
                },
                session,
            ),
            wire::ClientOp::Txn { txn, session } => (WriteOp::Txn(txn), session),
            wire::ClientOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
                session,
            } => (
                WriteOp::PutLease {
                    key,
                    value,
                    lease,
                    ttl_ms,
                },
                session,
            ),
            wire::ClientOp::LeaseGrant {
                id,
                ttl_ms,
                session,
            } => (WriteOp::LeaseGrant { id, ttl_ms }, session),
            wire::ClientOp::LeaseKeepAlive { id, session } => {
                (WriteOp::LeaseKeepAlive { id }, session)
            }
            wire::ClientOp::LeaseRevoke { id, session } => (WriteOp::LeaseRevoke { id }, session),
            wire::ClientOp::Get { .. }
            | wire::ClientOp::Scan { .. }
            | wire::ClientOp::LeaseList
            | wire::ClientOp::Watch { .. } => return None,
        })
    }

    /// The wire operation of this write with `session` (the inverse of [`WriteOp::from_wire`]);
    /// `None` for the writes only a node proposes (a no-op, a lease expiry), which clients
    /// cannot send.
    pub fn into_wire(self, session: Option<wire::Session>) -> Option<wire::ClientOp> {
        Some(match self {
            WriteOp::Put { key, value } => wire::ClientOp::Put {
                key,
                value,
                session,
            },
            WriteOp::Delete { key } => wire::ClientOp::Delete { key, session },
            WriteOp::CasValue { key, expected, new } => wire::ClientOp::CompareAndSwap {
                key,
                expect: wire::CasExpect::Value(expected),
                new_value: new,
                session,
            },
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            } => wire::ClientOp::CompareAndSwap {
                key,
                expect: wire::CasExpect::Version(expected_version),
                new_value: new,
                session,
            },
            WriteOp::Txn(txn) => wire::ClientOp::Txn { txn, session },
            WriteOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
            } => wire::ClientOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
                session,
            },
            WriteOp::LeaseGrant { id, ttl_ms } => wire::ClientOp::LeaseGrant {
                id,
                ttl_ms,
                session,
            },
            WriteOp::LeaseKeepAlive { id } => wire::ClientOp::LeaseKeepAlive { id, session },
            WriteOp::LeaseRevoke { id } => wire::ClientOp::LeaseRevoke { id, session },
            WriteOp::Noop | WriteOp::LeaseExpire { .. } => return None,
        })
    }
}

/// A decoding or validation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

impl Command {
    /// Exact length of [`Command::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        COMMAND_HEADER_BYTES
            + match &self.op {
                WriteOp::Put { key, value } => 8 + key.len() + value.len(),
                WriteOp::Delete { key } => 4 + key.len(),
                WriteOp::CasValue { key, expected, new } => {
                    13 + key.len() + expected.as_ref().map_or(0, Vec::len) + new.len()
                }
                WriteOp::CasVersion { key, new, .. } => 16 + key.len() + new.len(),
                WriteOp::Noop => 0,
                WriteOp::Txn(t) => txn_len(t),
                WriteOp::PutLease { key, value, .. } => 24 + key.len() + value.len(),
                WriteOp::LeaseGrant { .. } | WriteOp::LeaseExpire { .. } => 16,
                WriteOp::LeaseKeepAlive { .. } | WriteOp::LeaseRevoke { .. } => 8,
            }
    }

    /// Encodes the command (format in the module docs) into one buffer of exactly
    /// [`Command::encoded_len`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Encodes the command straight into the shared buffer a Raft entry carries (its
    /// `Arc<[u8]>`, which the log, the WAL append and the envelopes to followers all share):
    /// one allocation of exactly [`Command::encoded_len`] bytes and one copy of each key and
    /// value, where [`Command::encode`] then `Arc::from` would copy the whole command twice.
    pub fn encode_shared(&self) -> Arc<[u8]> {
        let len = self.encoded_len();
        let mut buf = Arc::<[u8]>::new_uninit_slice(len);
        let filled = match Arc::get_mut(&mut buf) {
            Some(dst) => {
                let mut fill = Fill {
                    buf: dst,
                    pos: 0,
                    overflow: false,
                };
                self.encode_into(&mut fill);
                !fill.overflow && fill.pos == len
            }
            // A buffer just allocated has no other owner.
            None => false,
        };
        if !filled {
            // Unreachable while `encoded_len` is exact (the codec tests check it); never hand
            // out a partly written buffer.
            return Arc::from(self.encode());
        }
        // SAFETY: `Fill` writes only at its position, front to back, and never past the end;
        // it reached `len` without an overflow, so every byte of the buffer is initialized.
        unsafe { buf.assume_init() }
    }

    fn encode_into(&self, out: &mut impl Sink) {
        out.byte(COMMAND_VERSION);
        out.byte(match self.op {
            WriteOp::Put { .. } => OP_PUT,
            WriteOp::Delete { .. } => OP_DELETE,
            WriteOp::CasValue { .. } => OP_CAS_VALUE,
            WriteOp::CasVersion { .. } => OP_CAS_VERSION,
            WriteOp::Noop => OP_NOOP,
            WriteOp::Txn(_) => OP_TXN,
            WriteOp::PutLease { .. } => OP_PUT_LEASE,
            WriteOp::LeaseGrant { .. } => OP_LEASE_GRANT,
            WriteOp::LeaseKeepAlive { .. } => OP_LEASE_KEEPALIVE,
            WriteOp::LeaseRevoke { .. } => OP_LEASE_REVOKE,
            WriteOp::LeaseExpire { .. } => OP_LEASE_EXPIRE,
        });
        out.put(&self.client_id.to_le_bytes());
        out.put(&self.seq.to_le_bytes());
        match &self.op {
            WriteOp::Put { key, value } => {
                put_slice(out, key);
                put_slice(out, value);
            }
            WriteOp::Delete { key } => put_slice(out, key),
            WriteOp::CasValue { key, expected, new } => {
                put_slice(out, key);
                out.byte(u8::from(expected.is_some()));
                put_slice(out, expected.as_deref().unwrap_or(&[]));
                put_slice(out, new);
            }
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            } => {
                put_slice(out, key);
                out.put(&expected_version.to_le_bytes());
                put_slice(out, new);
            }
            WriteOp::Noop => {}
            WriteOp::Txn(t) => encode_txn(out, t),
            WriteOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
            } => {
                put_slice(out, key);
                put_slice(out, value);
                out.put(&lease.to_le_bytes());
                out.put(&ttl_ms.to_le_bytes());
            }
            WriteOp::LeaseGrant { id, ttl_ms } => {
                out.put(&id.to_le_bytes());
                out.put(&ttl_ms.to_le_bytes());
            }
            WriteOp::LeaseKeepAlive { id } | WriteOp::LeaseRevoke { id } => {
                out.put(&id.to_le_bytes())
            }
            WriteOp::LeaseExpire { id, refreshed } => {
                out.put(&id.to_le_bytes());
                out.put(&refreshed.to_le_bytes());
            }
        }
    }

    /// Decodes a command; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Command, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != COMMAND_VERSION {
            return Err(CodecError(format!(
                "command format version {version}, this node reads {COMMAND_VERSION}"
            )));
        }
        let op_code = r.u8()?;
        let client_id = r.u64()?;
        let seq = r.u64()?;
        let op = match op_code {
            OP_PUT => WriteOp::Put {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
            },
            OP_DELETE => WriteOp::Delete {
                key: r.bytes()?.to_vec(),
            },
            OP_CAS_VALUE => {
                let key = r.bytes()?.to_vec();
                let present = r.u8()?;
                let exp = r.bytes()?;
                let expected = match present {
                    0 if exp.is_empty() => None,
                    1 => Some(exp.to_vec()),
                    _ => return Err(CodecError(format!("bad expect_present byte {present}"))),
                };
                WriteOp::CasValue {
                    key,
                    expected,
                    new: r.bytes()?.to_vec(),
                }
            }
            OP_CAS_VERSION => WriteOp::CasVersion {
                key: r.bytes()?.to_vec(),
                expected_version: r.u64()?,
                new: r.bytes()?.to_vec(),
            },
            OP_NOOP => WriteOp::Noop,
            OP_TXN => WriteOp::Txn(decode_txn(&mut r)?),
            OP_PUT_LEASE => WriteOp::PutLease {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
                lease: r.u64()?,
                ttl_ms: r.u64()?,
            },
            OP_LEASE_GRANT => WriteOp::LeaseGrant {
                id: r.u64()?,
                ttl_ms: r.u64()?,
            },
            OP_LEASE_KEEPALIVE => WriteOp::LeaseKeepAlive { id: r.u64()? },
            OP_LEASE_REVOKE => WriteOp::LeaseRevoke { id: r.u64()? },
            OP_LEASE_EXPIRE => WriteOp::LeaseExpire {
                id: r.u64()?,
                refreshed: r.u64()?,
            },
            other => return Err(CodecError(format!("unknown command op {other}"))),
        };
        r.finish()?;
        Ok(Command { client_id, seq, op })
    }

    /// The put a command's bytes hold, borrowed from them (no copy), when they hold a
    /// well-formed one: the store's path for nearly every write. `None` for anything else,
    /// which [`Command::decode`] then reads (and refuses with its errors).
    pub fn decode_put(bytes: &[u8]) -> Option<PutRef<'_>> {
        let mut r = Reader::new(bytes);
        if r.u8().ok()? != COMMAND_VERSION || r.u8().ok()? != OP_PUT {
            return None;
        }
        let put = PutRef {
            client_id: r.u64().ok()?,
            seq: r.u64().ok()?,
            key: r.bytes().ok()?,
            value: r.bytes().ok()?,
        };
        r.finish().ok()?;
        Some(put)
    }

    /// Checks the key and value sizes against `max_key` / `max_value` (the ceilings at apply,
    /// the node's admission limits before proposing).
    pub fn check_sizes(&self, max_key: usize, max_value: usize) -> Result<(), CodecError> {
        let (key, values): (&[u8], [Option<&[u8]>; 2]) = match &self.op {
            WriteOp::Txn(t) => return check_txn(t, max_key, max_value),
            WriteOp::PutLease { key, value, .. } => (key, [Some(value), None]),
            WriteOp::LeaseGrant { .. }
            | WriteOp::LeaseKeepAlive { .. }
            | WriteOp::LeaseRevoke { .. }
            | WriteOp::LeaseExpire { .. } => return Ok(()),
            WriteOp::Put { key, value } => (key, [Some(value), None]),
            WriteOp::Delete { key } => (key, [None, None]),
            WriteOp::CasValue { key, new, expected } => (key, [Some(new), expected.as_deref()]),
            WriteOp::CasVersion { key, new, .. } => (key, [Some(new), None]),
            WriteOp::Noop => return Ok(()),
        };
        check_key(key, max_key)?;
        for v in values.into_iter().flatten() {
            check_value(v, max_value)?;
        }
        Ok(())
    }
}

/// A put borrowed from its command's bytes ([`Command::decode_put`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRef<'a> {
    /// Session client id (0 = no exactly-once tracking).
    pub client_id: u64,
    /// Sequence number within the client's session.
    pub seq: u64,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

impl PutRef<'_> {
    /// [`Command::check_sizes`] of the same put: the same checks, the same errors.
    pub fn check_sizes(&self, max_key: usize, max_value: usize) -> Result<(), CodecError> {
        check_key(self.key, max_key)?;
        check_value(self.value, max_value)
    }
}

fn check_key(key: &[u8], max_key: usize) -> Result<(), CodecError> {
    if key.is_empty() || key.len() > max_key {
        return Err(CodecError(format!(
            "key of {} bytes: must be 1 to {max_key} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(v: &[u8], max_value: usize) -> Result<(), CodecError> {
    if v.len() > max_value {
        return Err(CodecError(format!(
            "value of {} bytes: the limit is {max_value}",
            v.len()
        )));
    }
    Ok(())
}

/// A transaction's counts, keys and values within the bounds.
fn check_txn(t: &Txn, max_key: usize, max_value: usize) -> Result<(), CodecError> {
    if t.compares.len() > MAX_TXN_COMPARES {
        return Err(CodecError(format!(
            "a transaction holds at most {MAX_TXN_COMPARES} compares, not {}",
            t.compares.len()
        )));
    }
    for (name, ops) in [("success", &t.success), ("failure", &t.failure)] {
        if ops.len() > MAX_TXN_OPS {
            return Err(CodecError(format!(
                "a transaction branch holds at most {MAX_TXN_OPS} ops; {name} has {}",
                ops.len()
            )));
        }
    }
    if t.success.is_empty() && t.failure.is_empty() {
        return Err(CodecError("a transaction needs at least one op".into()));
    }
    for c in &t.compares {
        check_key(&c.key, max_key)?;
        if let TxnCheck::Value(Some(v)) = &c.check {
            check_value(v, max_value)?;
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        check_key(op.key(), max_key)?;
        if let TxnOp::Put { value, .. } = op {
            check_value(value, max_value)?;
        }
    }
    Ok(())
}

fn txn_ops_len(ops: &[TxnOp]) -> usize {
    4 + ops
        .iter()
        .map(|op| match op {
            TxnOp::Put { key, value } => 9 + key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get { key } => 5 + key.len(),
        })
        .sum::<usize>()
}

fn txn_len(t: &Txn) -> usize {
    4 + t
        .compares
        .iter()
        .map(|c| {
            5 + c.key.len()
                + match &c.check {
                    TxnCheck::Value(None) => 0,
                    TxnCheck::Value(Some(v)) => 4 + v.len(),
                    TxnCheck::Version(_) => 8,
                    TxnCheck::Exists(_) => 1,
                }
        })
        .sum::<usize>()
        + txn_ops_len(&t.success)
        + txn_ops_len(&t.failure)
}

#[cfg(test)]
mod tests;
