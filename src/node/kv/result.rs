//! What applying one command produced: sent to the waiting client and, for writes with a
//! session, recorded in the session table (and so in snapshots).
//!
//! Result encoding (in snapshots): tag u8, then
//! `1 Put: version u64 | 2 Deleted: existed u8, version u64 | 3 Cas: swapped u8, version u64,
//! present u8, value_len u32, value | 4 Noop | 5 Rejected: len u32, UTF-8 | 6 SessionExpired`.
//! A recorded compare-and-swap never holds a value (`present = 0`): see [`ApplyResult::recorded`].

use super::command::{put_bytes, CodecError, Reader};
use crate::node::limits::{REJECTED_MESSAGE_MAX_BYTES, SESSION_RESULT_BYTES};

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
            t => return Err(CodecError(format!("unknown result tag {t}"))),
        })
    }
}
