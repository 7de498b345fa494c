//! The per-shard key-value state machine: put, get, delete, compare-and-swap (on value or on
//! version), prefix and range scans, snapshots, and a bounded exactly-once session table.
//!
//! Every write reaches the state machine as an encoded [`Command`] inside a committed log entry and
//! is applied with [`KvStore::apply`] at that entry's index. Application is deterministic: the same
//! commands at the same indexes give byte-identical snapshots on every replica. Each key carries a
//! version, the log index of the command that last wrote it; a deleted key has no version.
//!
//! Invariants: `applied_index` only grows; a command at an index `<= applied_index` is ignored
//! (replay after restart is harmless); a command that cannot be decoded or breaks a size limit is
//! rejected with a deterministic error and changes nothing but `applied_index`.
//!
//! Exactly-once: a write with `client_id != 0` is recorded as `(client_id, seq) -> first result`.
//! Applying the same pair again returns the recorded result without touching the data. The table
//! holds at most `session_capacity` results, evicted oldest first; per client the highest evicted
//! seq is remembered while the client still has results in the table, and a retry at or below it
//! (whose result is gone) gets [`ApplyResult::SessionExpired`] instead of a second application.
//!
//! ## Command encoding (little-endian), version 1
//! ```text
//! byte 0        format version = 1
//! byte 1        op: 1 Put, 2 Delete, 3 CasValue, 4 CasVersion, 5 Noop
//! bytes 2..10   client_id u64 (0 = no session)
//! bytes 10..18  seq u64
//! then per op:
//!   Put        key_len u32, key, value_len u32, value
//!   Delete     key_len u32, key
//! ApplyResult (in snapshots): tag u8 then 1 Put: version u64 | 2 Deleted: existed u8, version u64
//!   | 3 Cas: swapped u8, version u64, present u8, value_len u32, value | 4 Noop
//!   | 5 Rejected: len u32, UTF-8 message | 6 SessionExpired
//!   CasValue   key_len u32, key, expect_present u8 (0|1), exp_len u32, expected, new_len u32, new
//!   CasVersion key_len u32, key, expected_version u64 (0 = key must be absent), new_len u32, new
//!   Noop       nothing
//! ```
//! ## Snapshot encoding (little-endian)
//! ```text
//! magic "RRKV" (4) | version u32 = 1 | applied_index u64 | key_count u64
//! key_count x ( key_len u32 | key | value_len u32 | value | version u64 )
//! session_count u64
//! session_count x ( client_id u64 | seq u64 | result (see ApplyResult::encode) )
//! watermark_count u64 | watermark_count x ( client_id u64 | evicted_below u64 = highest evicted seq + 1 )
//! crc32 u32 over every byte before it
//! ```
//! Owned by the node (issue 6).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;

/// Command format version written in byte 0.
pub const COMMAND_VERSION: u8 = 1;
/// Bytes before the op-specific part of a command.
pub const COMMAND_HEADER_BYTES: usize = 18;
/// Snapshot magic.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"RRKV";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS_VALUE: u8 = 3;
const OP_CAS_VERSION: u8 = 4;
const OP_NOOP: u8 = 5;

/// Size limits of the store (from `[state_machine]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Largest key.
    pub max_key_bytes: usize,
    /// Largest value.
    pub max_value_bytes: usize,
    /// Session results kept.
    pub session_capacity: usize,
    /// Most pairs a scan returns.
    pub max_scan_results: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            session_capacity: 100_000,
            max_scan_results: 10_000,
        }
    }
}

/// A write, as carried in a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Session client id (0 = no exactly-once tracking).
    pub client_id: u64,
    /// Sequence number within the client's session.
    pub seq: u64,
    /// The operation.
    pub op: Op,
}

/// A write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
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
    /// Nothing (a leader's no-op, or a barrier).
    Noop,
}

/// The outcome of applying one command; recorded in the session table and sent to the client.
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
        /// The current value when the swap did not happen (None = absent).
        current: Option<Vec<u8>>,
    },
    /// A no-op.
    Noop,
    /// The command was invalid (deterministic; nothing changed).
    Rejected(String),
    /// A retry of a write whose recorded result was evicted from the session table.
    SessionExpired,
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
    /// Encodes the command (format in the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMMAND_HEADER_BYTES + self.payload_len_hint());
        out.push(COMMAND_VERSION);
        out.push(match self.op {
            Op::Put { .. } => OP_PUT,
            Op::Delete { .. } => OP_DELETE,
            Op::CasValue { .. } => OP_CAS_VALUE,
            Op::CasVersion { .. } => OP_CAS_VERSION,
            Op::Noop => OP_NOOP,
        });
        out.extend_from_slice(&self.client_id.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        match &self.op {
            Op::Put { key, value } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Op::Delete { key } => put_bytes(&mut out, key),
            Op::CasValue { key, expected, new } => {
                put_bytes(&mut out, key);
                out.push(u8::from(expected.is_some()));
                put_bytes(&mut out, expected.as_deref().unwrap_or(&[]));
                put_bytes(&mut out, new);
            }
            Op::CasVersion {
                key,
                expected_version,
                new,
            } => {
                put_bytes(&mut out, key);
                out.extend_from_slice(&expected_version.to_le_bytes());
                put_bytes(&mut out, new);
            }
            Op::Noop => {}
        }
        out
    }

    fn payload_len_hint(&self) -> usize {
        match &self.op {
            Op::Put { key, value } => 8 + key.len() + value.len(),
            Op::Delete { key } => 4 + key.len(),
            Op::CasValue { key, expected, new } => {
                13 + key.len() + expected.as_ref().map_or(0, Vec::len) + new.len()
            }
            Op::CasVersion { key, new, .. } => 16 + key.len() + new.len(),
            Op::Noop => 0,
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
            OP_PUT => Op::Put {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
            },
            OP_DELETE => Op::Delete {
                key: r.bytes()?.to_vec(),
            },
            OP_CAS_VALUE => {
                let key = r.bytes()?.to_vec();
                let present = r.u8()?;
                let exp = r.bytes()?.to_vec();
                let expected = match present {
                    0 if exp.is_empty() => None,
                    1 => Some(exp),
                    _ => return Err(CodecError(format!("bad expect_present byte {present}"))),
                };
                Op::CasValue {
                    key,
                    expected,
                    new: r.bytes()?.to_vec(),
                }
            }
            OP_CAS_VERSION => Op::CasVersion {
                key: r.bytes()?.to_vec(),
                expected_version: r.u64()?,
                new: r.bytes()?.to_vec(),
            },
            OP_NOOP => Op::Noop,
            other => return Err(CodecError(format!("unknown command op {other}"))),
        };
        r.finish()?;
        Ok(Command { client_id, seq, op })
    }

    /// Checks the size limits; a proposal failing this is refused before it reaches the log.
    pub fn validate(&self, limits: &KvLimits) -> Result<(), CodecError> {
        let (key, value) = match &self.op {
            Op::Put { key, value } => (key, Some(value)),
            Op::Delete { key } => (key, None),
            Op::CasValue { key, new, expected } => {
                if let Some(e) = expected {
                    check_value(e, limits)?;
                }
                (key, Some(new))
            }
            Op::CasVersion { key, new, .. } => (key, Some(new)),
            Op::Noop => return Ok(()),
        };
        if key.is_empty() || key.len() > limits.max_key_bytes {
            return Err(CodecError(format!(
                "key of {} bytes: must be 1 to {} bytes",
                key.len(),
                limits.max_key_bytes
            )));
        }
        if let Some(v) = value {
            check_value(v, limits)?;
        }
        Ok(())
    }
}

fn check_value(v: &[u8], limits: &KvLimits) -> Result<(), CodecError> {
    if v.len() > limits.max_value_bytes {
        return Err(CodecError(format!(
            "value of {} bytes: the limit is {}",
            v.len(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

impl ApplyResult {
    /// Appends the result's encoding: tag u8, then fields (used in snapshots).
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

    fn decode(r: &mut Reader<'_>) -> Result<ApplyResult, CodecError> {
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
                let cur = r.bytes()?.to_vec();
                ApplyResult::Cas {
                    swapped,
                    version,
                    current: present.then_some(cur),
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

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// Log index of the write that set it.
    pub version: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ClientSession {
    results: BTreeMap<u64, ApplyResult>,
    /// One past the highest evicted seq (0 = nothing evicted).
    evicted_below: u64,
}

/// One shard's key-value store.
#[derive(Debug, Clone)]
pub struct KvStore {
    data: BTreeMap<Vec<u8>, Versioned>,
    applied_index: u64,
    sessions: HashMap<u64, ClientSession>,
    /// (client_id, seq) in insertion order, for oldest-first eviction.
    session_order: VecDeque<(u64, u64)>,
    limits: KvLimits,
}

impl KvStore {
    /// An empty store.
    pub fn new(limits: KvLimits) -> Self {
        Self {
            data: BTreeMap::new(),
            applied_index: 0,
            sessions: HashMap::new(),
            session_order: VecDeque::new(),
            limits,
        }
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Session results currently kept.
    pub fn session_len(&self) -> usize {
        self.session_order.len()
    }

    /// The limits in force.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.data.get(key)
    }

    /// Keys starting with `prefix`, in order, at most `limit` (capped by `max_scan_results`).
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Versioned)> {
        let limit = limit.min(self.limits.max_scan_results);
        self.data
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys in `[start, end)` (`end = None`: to the last key), in order, at most `limit`.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Versioned)> {
        let limit = limit.min(self.limits.max_scan_results);
        let upper = match end {
            Some(e) if e <= start => return Vec::new(),
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        self.data
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Applies the encoded command of the log entry at `index`. Returns `None` if the entry was
    /// applied before (`index <= applied_index`).
    pub fn apply(&mut self, index: u64, command: &[u8]) -> Option<ApplyResult> {
        if index <= self.applied_index {
            return None;
        }
        self.applied_index = index;
        let cmd = match Command::decode(command) {
            Ok(c) => c,
            Err(e) => return Some(ApplyResult::Rejected(e.0)),
        };
        Some(self.apply_command(index, cmd))
    }

    /// Marks `index` applied without a command (a Raft no-op or configuration entry).
    pub fn apply_empty(&mut self, index: u64) {
        if index > self.applied_index {
            self.applied_index = index;
        }
    }

    fn apply_command(&mut self, index: u64, cmd: Command) -> ApplyResult {
        if let Err(e) = cmd.validate(&self.limits) {
            return ApplyResult::Rejected(e.0);
        }
        if cmd.client_id != 0 {
            if let Some(s) = self.sessions.get(&cmd.client_id) {
                if let Some(r) = s.results.get(&cmd.seq) {
                    return r.clone();
                }
                if cmd.seq < s.evicted_below {
                    return ApplyResult::SessionExpired;
                }
            }
        }
        let result = match cmd.op {
            Op::Put { key, value } => {
                self.data.insert(
                    key,
                    Versioned {
                        value,
                        version: index,
                    },
                );
                ApplyResult::Put { version: index }
            }
            Op::Delete { key } => ApplyResult::Deleted {
                existed: self.data.remove(&key).is_some(),
                version: index,
            },
            Op::CasValue { key, expected, new } => {
                let current = self.data.get(&key);
                let matches = match (&expected, current) {
                    (None, None) => true,
                    (Some(e), Some(c)) => *e == c.value,
                    _ => false,
                };
                self.cas(key, matches, index, new)
            }
            Op::CasVersion {
                key,
                expected_version,
                new,
            } => {
                let current = self.data.get(&key).map_or(0, |v| v.version);
                self.cas(key, current == expected_version, index, new)
            }
            Op::Noop => ApplyResult::Noop,
        };
        if cmd.client_id != 0 {
            self.record_session(cmd.client_id, cmd.seq, result.clone());
        }
        result
    }

    fn cas(&mut self, key: Vec<u8>, matches: bool, index: u64, new: Vec<u8>) -> ApplyResult {
        if matches {
            self.data.insert(
                key,
                Versioned {
                    value: new,
                    version: index,
                },
            );
            ApplyResult::Cas {
                swapped: true,
                version: index,
                current: None,
            }
        } else {
            let cur = self.data.get(&key);
            ApplyResult::Cas {
                swapped: false,
                version: cur.map_or(0, |v| v.version),
                current: cur.map(|v| v.value.clone()),
            }
        }
    }

    fn record_session(&mut self, client_id: u64, seq: u64, result: ApplyResult) {
        self.sessions
            .entry(client_id)
            .or_default()
            .results
            .insert(seq, result);
        self.session_order.push_back((client_id, seq));
        while self.session_order.len() > self.limits.session_capacity {
            let Some((c, s)) = self.session_order.pop_front() else {
                break;
            };
            if let Some(sess) = self.sessions.get_mut(&c) {
                sess.results.remove(&s);
                sess.evicted_below = sess.evicted_below.max(s.saturating_add(1));
                if sess.results.is_empty() {
                    self.sessions.remove(&c);
                }
            }
        }
    }

    /// The whole state as bytes (format in the module docs).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.applied_index.to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        for (k, v) in &self.data {
            put_bytes(&mut out, k);
            put_bytes(&mut out, &v.value);
            out.extend_from_slice(&v.version.to_le_bytes());
        }
        out.extend_from_slice(&(self.session_order.len() as u64).to_le_bytes());
        for (c, s) in &self.session_order {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            match self.sessions.get(c).and_then(|x| x.results.get(s)) {
                Some(r) => r.encode(&mut out),
                None => ApplyResult::SessionExpired.encode(&mut out),
            }
        }
        let mut marks: Vec<(u64, u64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.evicted_below > 0)
            .map(|(c, s)| (*c, s.evicted_below))
            .collect();
        marks.sort_unstable();
        out.extend_from_slice(&(marks.len() as u64).to_le_bytes());
        for (c, s) in marks {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes, checking magic, version and CRC.
    pub fn restore(bytes: &[u8], limits: KvLimits) -> Result<KvStore, CodecError> {
        if bytes.len() < 4 + 4 + 8 + 8 + 8 + 8 + 4 {
            return Err(CodecError(format!(
                "snapshot of {} bytes is too short",
                bytes.len()
            )));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let mut crc_arr = [0u8; 4];
        crc_arr.copy_from_slice(crc_bytes);
        let want = u32::from_le_bytes(crc_arr);
        let got = crc32fast::hash(body);
        if want != got {
            return Err(CodecError(format!(
                "snapshot crc mismatch: stored {want:#010x}, computed {got:#010x}"
            )));
        }
        let mut r = Reader::new(body);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(CodecError("snapshot magic is not RRKV".into()));
        }
        let version = r.u32()?;
        if version != SNAPSHOT_VERSION {
            return Err(CodecError(format!(
                "snapshot format version {version}, this node reads {SNAPSHOT_VERSION}"
            )));
        }
        let mut kv = KvStore::new(limits);
        kv.applied_index = r.u64()?;
        let n = r.u64()?;
        for _ in 0..n {
            let k = r.bytes()?.to_vec();
            let v = r.bytes()?.to_vec();
            let version = r.u64()?;
            kv.data.insert(k, Versioned { value: v, version });
        }
        let n = r.u64()?;
        for _ in 0..n {
            let c = r.u64()?;
            let s = r.u64()?;
            let res = ApplyResult::decode(&mut r)?;
            kv.sessions.entry(c).or_default().results.insert(s, res);
            kv.session_order.push_back((c, s));
        }
        let n = r.u64()?;
        for _ in 0..n {
            let c = r.u64()?;
            let s = r.u64()?;
            kv.sessions.entry(c).or_default().evicted_below = s;
        }
        r.finish()?;
        Ok(kv)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths are bounded by the validated key/value limits (far below u32::MAX).
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
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

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError(format!("bad boolean byte {b}"))),
        }
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn finish(&self) -> Result<(), CodecError> {
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

    fn put(c: u64, s: u64, k: &str, v: &str) -> Vec<u8> {
        Command {
            client_id: c,
            seq: s,
            op: Op::Put {
                key: k.into(),
                value: v.into(),
            },
        }
        .encode()
    }

    fn small() -> KvLimits {
        KvLimits {
            max_key_bytes: 16,
            max_value_bytes: 32,
            session_capacity: 4,
            max_scan_results: 100,
        }
    }

    #[test]
    fn put_get_delete_versions() {
        let mut kv = KvStore::new(KvLimits::default());
        assert_eq!(
            kv.apply(1, &put(0, 0, "a", "1")),
            Some(ApplyResult::Put { version: 1 })
        );
        assert_eq!(kv.get(b"a").unwrap().version, 1);
        kv.apply(2, &put(0, 0, "a", "2"));
        assert_eq!(
            kv.get(b"a"),
            Some(&Versioned {
                value: b"2".to_vec(),
                version: 2
            })
        );
        let del = Command {
            client_id: 0,
            seq: 0,
            op: Op::Delete { key: b"a".to_vec() },
        }
        .encode();
        assert_eq!(
            kv.apply(3, &del),
            Some(ApplyResult::Deleted {
                existed: true,
                version: 3
            })
        );
        assert_eq!(
            kv.apply(4, &del),
            Some(ApplyResult::Deleted {
                existed: false,
                version: 4
            })
        );
        assert!(kv.get(b"a").is_none());
        assert_eq!(kv.applied_index(), 4);
        // Replays are ignored.
        assert_eq!(kv.apply(2, &put(0, 0, "a", "x")), None);
        assert!(kv.get(b"a").is_none());
    }

    #[test]
    fn cas_on_value_and_version() {
        let mut kv = KvStore::new(KvLimits::default());
        let cas_v = |exp: Option<&str>, new: &str| {
            Command {
                client_id: 0,
                seq: 0,
                op: Op::CasValue {
                    key: b"k".to_vec(),
                    expected: exp.map(|e| e.as_bytes().to_vec()),
                    new: new.into(),
                },
            }
            .encode()
        };
        let r = kv.apply(1, &cas_v(None, "a")).unwrap();
        assert!(matches!(
            r,
            ApplyResult::Cas {
                swapped: true,
                version: 1,
                ..
            }
        ));
        let r = kv.apply(2, &cas_v(None, "b")).unwrap();
        assert_eq!(
            r,
            ApplyResult::Cas {
                swapped: false,
                version: 1,
                current: Some(b"a".to_vec())
            }
        );
        let r = kv.apply(3, &cas_v(Some("a"), "c")).unwrap();
        assert!(matches!(
            r,
            ApplyResult::Cas {
                swapped: true,
                version: 3,
                ..
            }
        ));
        let cas_ver = |v: u64, new: &str| {
            Command {
                client_id: 0,
                seq: 0,
                op: Op::CasVersion {
                    key: b"k".to_vec(),
                    expected_version: v,
                    new: new.into(),
                },
            }
            .encode()
        };
        let r = kv.apply(4, &cas_ver(1, "d")).unwrap();
        assert!(matches!(
            r,
            ApplyResult::Cas {
                swapped: false,
                version: 3,
                ..
            }
        ));
        let r = kv.apply(5, &cas_ver(3, "d")).unwrap();
        assert!(matches!(
            r,
            ApplyResult::Cas {
                swapped: true,
                version: 5,
                ..
            }
        ));
        assert_eq!(kv.get(b"k").unwrap().value, b"d");
        let r = kv.apply(6, &cas_ver(0, "e")).unwrap();
        assert!(matches!(r, ApplyResult::Cas { swapped: false, .. }));
    }

    #[test]
    fn scans() {
        let mut kv = KvStore::new(KvLimits::default());
        for (i, k) in ["a1", "a2", "b1", "a3", "c"].iter().enumerate() {
            kv.apply(i as u64 + 1, &put(0, 0, k, "v"));
        }
        let keys = |v: Vec<(Vec<u8>, Versioned)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(kv.scan_prefix(b"a", 10)), ["a1", "a2", "a3"]);
        assert_eq!(keys(kv.scan_prefix(b"a", 2)), ["a1", "a2"]);
        assert_eq!(
            keys(kv.scan_range(b"a2", Some(b"c"), 10)),
            ["a2", "a3", "b1"]
        );
        assert_eq!(keys(kv.scan_range(b"b", None, 10)), ["b1", "c"]);
        assert!(kv.scan_range(b"c", Some(b"a"), 10).is_empty());
    }

    #[test]
    fn exactly_once_and_bounded_sessions() {
        let mut kv = KvStore::new(small());
        assert_eq!(
            kv.apply(1, &put(7, 1, "k", "v1")),
            Some(ApplyResult::Put { version: 1 })
        );
        kv.apply(2, &put(0, 0, "k", "other"));
        // A retry of (7, 1) returns the first result and does not overwrite.
        assert_eq!(
            kv.apply(3, &put(7, 1, "k", "v1")),
            Some(ApplyResult::Put { version: 1 })
        );
        assert_eq!(kv.get(b"k").unwrap().value, b"other");
        for s in 2..=6 {
            kv.apply(3 + s, &put(7, s, "k", "x"));
        }
        assert_eq!(kv.session_len(), 4);
        // seq 1 and 2 were evicted: a retry is refused, not applied twice.
        let before = kv.get(b"k").cloned();
        assert_eq!(
            kv.apply(20, &put(7, 2, "k", "again")),
            Some(ApplyResult::SessionExpired)
        );
        assert_eq!(kv.get(b"k").cloned(), before);
    }

    #[test]
    fn invalid_commands_are_rejected_deterministically() {
        let mut kv = KvStore::new(small());
        assert!(matches!(
            kv.apply(1, &[9, 9]),
            Some(ApplyResult::Rejected(_))
        ));
        let r = kv.apply(2, &put(0, 0, "a-key-longer-than-sixteen", "v"));
        assert!(matches!(r, Some(ApplyResult::Rejected(m)) if m.contains("key")));
        assert!(kv.is_empty());
        assert_eq!(kv.applied_index(), 2);
        let mut enc = put(0, 0, "a", "b");
        enc.push(0);
        assert!(Command::decode(&enc).unwrap_err().0.contains("trailing"));
        assert!(Command::decode(&enc[..5])
            .unwrap_err()
            .0
            .contains("truncated"));
    }

    #[test]
    fn corrupt_snapshot_is_refused() {
        let mut kv = KvStore::new(small());
        kv.apply(1, &put(1, 1, "a", "b"));
        let mut snap = kv.snapshot();
        snap[10] ^= 1;
        assert!(KvStore::restore(&snap, small())
            .unwrap_err()
            .0
            .contains("crc"));
        assert!(KvStore::restore(&snap[..8], small()).is_err());
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let key = prop::collection::vec(b'a'..=b'd', 1..3);
        let val = prop::collection::vec(any::<u8>(), 0..4);
        prop_oneof![
            (key.clone(), val.clone()).prop_map(|(key, value)| Op::Put { key, value }),
            key.clone().prop_map(|key| Op::Delete { key }),
            (key.clone(), prop::option::of(val.clone()), val.clone())
                .prop_map(|(key, expected, new)| Op::CasValue { key, expected, new }),
            (key, 0u64..20, val).prop_map(|(key, expected_version, new)| Op::CasVersion {
                key,
                expected_version,
                new
            }),
            Just(Op::Noop),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_simple_model(ops in prop::collection::vec((arb_op(), 0u64..3, 0u64..6), 1..80)) {
            let mut kv = KvStore::new(KvLimits { session_capacity: 1000, ..KvLimits::default() });
            let mut model: std::collections::HashMap<Vec<u8>, (Vec<u8>, u64)> = Default::default();
            let mut seen: std::collections::HashMap<(u64, u64), ApplyResult> = Default::default();
            for (i, (op, client, seq)) in ops.into_iter().enumerate() {
                let index = i as u64 + 1;
                let cmd = Command { client_id: client, seq, op: op.clone() };
                prop_assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd.clone());
                let got = kv.apply(index, &cmd.encode()).unwrap();
                if client != 0 {
                    if let Some(first) = seen.get(&(client, seq)) {
                        prop_assert_eq!(&got, first);
                        continue;
                    }
                }
                let want = match op {
                    Op::Put { key, value } => { model.insert(key, (value, index)); ApplyResult::Put { version: index } }
                    Op::Delete { key } => ApplyResult::Deleted { existed: model.remove(&key).is_some(), version: index },
                    Op::CasValue { key, expected, new } => {
                        let cur = model.get(&key).cloned();
                        if cur.as_ref().map(|c| &c.0) == expected.as_ref() {
                            model.insert(key, (new, index));
                            ApplyResult::Cas { swapped: true, version: index, current: None }
                        } else {
                            ApplyResult::Cas { swapped: false, version: cur.as_ref().map_or(0, |c| c.1), current: cur.map(|c| c.0) }
                        }
                    }
                    Op::CasVersion { key, expected_version, new } => {
                        let cur = model.get(&key).cloned();
                        if cur.as_ref().map_or(0, |c| c.1) == expected_version {
                            model.insert(key, (new, index));
                            ApplyResult::Cas { swapped: true, version: index, current: None }
                        } else {
                            ApplyResult::Cas { swapped: false, version: cur.as_ref().map_or(0, |c| c.1), current: cur.map(|c| c.0) }
                        }
                    }
                    Op::Noop => ApplyResult::Noop,
                };
                prop_assert_eq!(&got, &want);
                if client != 0 { seen.insert((client, seq), want); }
            }
            prop_assert_eq!(kv.len(), model.len());
            for (k, (v, ver)) in &model {
                let got = kv.get(k).unwrap();
                prop_assert_eq!(&got.value, v);
                prop_assert_eq!(got.version, *ver);
            }
        }

        #[test]
        fn snapshot_round_trip_and_determinism(ops in prop::collection::vec((arb_op(), 0u64..3, 0u64..10), 0..60)) {
            let mut a = KvStore::new(small());
            let mut b = KvStore::new(small());
            for (i, (op, client, seq)) in ops.iter().enumerate() {
                let enc = Command { client_id: *client, seq: *seq, op: op.clone() }.encode();
                let ra = a.apply(i as u64 + 1, &enc);
                let rb = b.apply(i as u64 + 1, &enc);
                prop_assert_eq!(ra, rb);
            }
            let snap = a.snapshot();
            prop_assert_eq!(&snap, &b.snapshot());
            let restored = KvStore::restore(&snap, small()).unwrap();
            prop_assert_eq!(&restored.snapshot(), &snap);
            prop_assert_eq!(restored.applied_index(), a.applied_index());
            // The restored store keeps behaving identically, sessions included.
            let mut a2 = a.clone();
            let mut r2 = restored;
            for (i, (op, client, seq)) in ops.iter().enumerate() {
                let enc = Command { client_id: *client, seq: *seq, op: op.clone() }.encode();
                let idx = 1000 + i as u64;
                prop_assert_eq!(a2.apply(idx, &enc), r2.apply(idx, &enc));
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(&bytes);
            let _ = KvStore::restore(&bytes, small());
        }
    }
}
