//! The simulator's small key-value state machine and the command encoding it applies.
//!
//! Command bytes (little-endian): `u32 client, u32 seq, u8 op (1 put, 2 delete, 3 cas),
//! u8 key, u64 value, u64 expected, u8 has_expected` — 27 bytes.
//! Snapshot bytes: `u32 count, count × (u8 key, u64 value)`, keys ascending.

use std::collections::BTreeMap;

/// A write operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// Set key to value.
    Put {
        /// Key.
        key: u8,
        /// Value.
        value: u64,
    },
    /// Remove key.
    Delete {
        /// Key.
        key: u8,
    },
    /// Set key to `new` if it currently equals `expected` (None = absent).
    Cas {
        /// Key.
        key: u8,
        /// Expected current value.
        expected: Option<u64>,
        /// New value.
        new: u64,
    },
}

/// A client command: a write op tagged with its client and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// Client id.
    pub client: u32,
    /// Per-client sequence number.
    pub seq: u32,
    /// The operation.
    pub op: WriteOp,
}

/// Encoded command length.
pub const COMMAND_LEN: usize = 27;

impl Command {
    /// Encodes as described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(COMMAND_LEN);
        b.extend_from_slice(&self.client.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        let (tag, key, value, expected) = match self.op {
            WriteOp::Put { key, value } => (1u8, key, value, None),
            WriteOp::Delete { key } => (2, key, 0, None),
            WriteOp::Cas { key, expected, new } => (3, key, new, Some(expected)),
        };
        b.push(tag);
        b.push(key);
        b.extend_from_slice(&value.to_le_bytes());
        let (has, exp) = match expected {
            Some(Some(v)) => (1u8, v),
            Some(None) => (2u8, 0),
            None => (0u8, 0),
        };
        b.extend_from_slice(&exp.to_le_bytes());
        b.push(has);
        b
    }

    /// Decodes; `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Command> {
        if b.len() != COMMAND_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let (client, seq, tag, key, value, exp, has) = (
            u32_at(0),
            u32_at(4),
            b[8],
            b[9],
            u64_at(10),
            u64_at(18),
            b[26],
        );
        let op = match (tag, has) {
            (1, 0) => WriteOp::Put { key, value },
            (2, 0) => WriteOp::Delete { key },
            (3, 1) => WriteOp::Cas {
                key,
                expected: Some(exp),
                new: value,
            },
            (3, 2) => WriteOp::Cas {
                key,
                expected: None,
                new: value,
            },
            _ => return None,
        };
        Some(Command { client, seq, op })
    }
}

/// Result of applying a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyResult {
    /// Put/delete done, or cas succeeded.
    Ok,
    /// Cas precondition failed.
    CasFailed,
    /// Not a command (no-op, config, or malformed bytes).
    Skipped,
}

/// The key-value state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<u8, u64>,
    /// Last applied log index.
    pub applied: u64,
}

impl Kv {
    /// Value of `key`.
    pub fn get(&self, key: u8) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// Applies entry `index` with payload `data` (normal entries only).
    pub fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        self.applied = index;
        let Some(cmd) = Command::decode(data) else {
            return ApplyResult::Skipped;
        };
        match cmd.op {
            WriteOp::Put { key, value } => {
                self.map.insert(key, value);
                ApplyResult::Ok
            }
            WriteOp::Delete { key } => {
                self.map.remove(&key);
                ApplyResult::Ok
            }
            WriteOp::Cas { key, expected, new } => {
                if self.map.get(&key).copied() == expected {
                    self.map.insert(key, new);
                    ApplyResult::Ok
                } else {
                    ApplyResult::CasFailed
                }
            }
        }
    }

    /// Snapshot bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + 9 * self.map.len());
        b.extend_from_slice(&(self.map.len() as u32).to_le_bytes());
        for (k, v) in &self.map {
            b.push(*k);
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Restores from snapshot bytes at `index` (empty bytes = empty map).
    pub fn restore(index: u64, b: &[u8]) -> Option<Kv> {
        let mut kv = Kv {
            map: BTreeMap::new(),
            applied: index,
        };
        if b.is_empty() {
            return Some(kv);
        }
        let n = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
        if b.len() != 4 + 9 * n {
            return None;
        }
        for i in 0..n {
            let at = 4 + 9 * i;
            kv.map.insert(
                b[at],
                u64::from_le_bytes(b[at + 1..at + 9].try_into().ok()?),
            );
        }
        Some(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_snapshot_roundtrip() {
        for op in [
            WriteOp::Put { key: 1, value: 9 },
            WriteOp::Delete { key: 2 },
            WriteOp::Cas {
                key: 3,
                expected: None,
                new: 4,
            },
            WriteOp::Cas {
                key: 3,
                expected: Some(4),
                new: 5,
            },
        ] {
            let c = Command {
                client: 7,
                seq: 8,
                op,
            };
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        assert_eq!(Command::decode(&[1, 2, 3]), None);
        let mut kv = Kv::default();
        assert_eq!(
            kv.apply(
                1,
                &Command {
                    client: 1,
                    seq: 1,
                    op: WriteOp::Put { key: 1, value: 5 }
                }
                .encode()
            ),
            ApplyResult::Ok
        );
        assert_eq!(
            kv.apply(
                2,
                &Command {
                    client: 1,
                    seq: 2,
                    op: WriteOp::Cas {
                        key: 1,
                        expected: Some(4),
                        new: 6
                    }
                }
                .encode()
            ),
            ApplyResult::CasFailed
        );
        let back = Kv::restore(2, &kv.snapshot()).unwrap();
        assert_eq!(back, kv);
        assert!(Kv::restore(0, &[1, 0, 0, 0]).is_none());
    }
}
