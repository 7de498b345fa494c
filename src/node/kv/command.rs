//! The logged command: a write operation and its exactly-once session, as the bytes of a
//! normal Raft entry, plus the bounds-checked reader the store's codecs share.
//!
//! ## Command encoding (little-endian), format version 1
//! ```text
//! byte 0        format version = 1
//! byte 1        op: 1 Put, 2 Delete, 3 CasValue, 4 CasVersion, 5 Noop
//! bytes 2..10   client_id u64 (0 = no session)
//! bytes 10..18  seq u64
//! then per op:
//!   Put        key_len u32, key, value_len u32, value
//!   Delete     key_len u32, key
//!   CasValue   key_len u32, key, expect_present u8 (0|1), exp_len u32, expected, new_len u32, new
//!   CasVersion key_len u32, key, expected_version u64 (0 = key must be absent), new_len u32, new
//!   Noop       nothing
//! ```
//! [`Command::encoded_len`] is exact, so admission can check a write's full size before
//! encoding it; [`Command::encode`] writes into one buffer of exactly that size.

use ringraft_net::message as wire;

/// Command format version written in byte 0.
pub const COMMAND_VERSION: u8 = 1;
/// Bytes before the op-specific part of a command.
pub const COMMAND_HEADER_BYTES: usize = 18;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS_VALUE: u8 = 3;
const OP_CAS_VERSION: u8 = 4;
const OP_NOOP: u8 = 5;

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
}

impl WriteOp {
    /// The key written (none for `Noop`).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Delete { key }
            | WriteOp::CasValue { key, .. }
            | WriteOp::CasVersion { key, .. } => Some(key),
            WriteOp::Noop => None,
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
            wire::ClientOp::Get { .. }
            | wire::ClientOp::Scan { .. }
            | wire::ClientOp::Watch { .. } => return None,
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
            }
    }

    /// Encodes the command (format in the module docs) into one buffer of exactly
    /// [`Command::encoded_len`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(COMMAND_VERSION);
        out.push(match self.op {
            WriteOp::Put { .. } => OP_PUT,
            WriteOp::Delete { .. } => OP_DELETE,
            WriteOp::CasValue { .. } => OP_CAS_VALUE,
            WriteOp::CasVersion { .. } => OP_CAS_VERSION,
            WriteOp::Noop => OP_NOOP,
        });
        out.extend_from_slice(&self.client_id.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        match &self.op {
            WriteOp::Put { key, value } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            WriteOp::Delete { key } => put_bytes(&mut out, key),
            WriteOp::CasValue { key, expected, new } => {
                put_bytes(&mut out, key);
                out.push(u8::from(expected.is_some()));
                put_bytes(&mut out, expected.as_deref().unwrap_or(&[]));
                put_bytes(&mut out, new);
            }
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            } => {
                put_bytes(&mut out, key);
                out.extend_from_slice(&expected_version.to_le_bytes());
                put_bytes(&mut out, new);
            }
            WriteOp::Noop => {}
        }
        out
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
            other => return Err(CodecError(format!("unknown command op {other}"))),
        };
        r.finish()?;
        Ok(Command { client_id, seq, op })
    }

    /// Checks the key and value sizes against `max_key` / `max_value` (the ceilings at apply,
    /// the node's admission limits before proposing).
    pub fn check_sizes(&self, max_key: usize, max_value: usize) -> Result<(), CodecError> {
        let (key, values): (&[u8], [Option<&[u8]>; 2]) = match &self.op {
            WriteOp::Put { key, value } => (key, [Some(value), None]),
            WriteOp::Delete { key } => (key, [None, None]),
            WriteOp::CasValue { key, new, expected } => (key, [Some(new), expected.as_deref()]),
            WriteOp::CasVersion { key, new, .. } => (key, [Some(new), None]),
            WriteOp::Noop => return Ok(()),
        };
        if key.is_empty() || key.len() > max_key {
            return Err(CodecError(format!(
                "key of {} bytes: must be 1 to {max_key} bytes",
                key.len()
            )));
        }
        for v in values.into_iter().flatten() {
            if v.len() > max_value {
                return Err(CodecError(format!(
                    "value of {} bytes: the limit is {max_value}",
                    v.len()
                )));
            }
        }
        Ok(())
    }
}

/// Appends `b` with its u32 length. Lengths are bounded by the key and value ceilings (far
/// below `u32::MAX`).
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                CodecError(format!(
                    "truncated: wanted {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError(format!("bad boolean byte {b}"))),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A count that announces `n` items of at least `min_item_bytes` each: refused when the
    /// rest of the buffer cannot hold them (so a hostile count never drives an allocation).
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(CodecError(format!(
                "count {n} at offset {} does not fit the {left} bytes left",
                self.pos
            )));
        }
        Ok(n as usize)
    }

    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.pos != self.buf.len() {
            return Err(CodecError(format!(
                "{} trailing bytes after offset {}",
                self.buf.len() - self.pos,
                self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_op() -> impl Strategy<Value = WriteOp> {
        let b = || prop::collection::vec(any::<u8>(), 0..8);
        prop_oneof![
            (b(), b()).prop_map(|(key, value)| WriteOp::Put { key, value }),
            b().prop_map(|key| WriteOp::Delete { key }),
            (b(), prop::option::of(b()), b()).prop_map(|(key, expected, new)| WriteOp::CasValue {
                key,
                expected,
                new
            }),
            (b(), any::<u64>(), b()).prop_map(|(key, expected_version, new)| {
                WriteOp::CasVersion {
                    key,
                    expected_version,
                    new,
                }
            }),
            Just(WriteOp::Noop),
        ]
    }

    proptest! {
        #[test]
        fn encoded_len_is_exact_and_round_trips(op in arb_op(), c in any::<u64>(), s in any::<u64>()) {
            let cmd = Command { client_id: c, seq: s, op };
            let b = cmd.encode();
            prop_assert_eq!(b.len(), cmd.encoded_len());
            prop_assert_eq!(Command::decode(&b).unwrap(), cmd);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(&bytes);
        }
    }
}
