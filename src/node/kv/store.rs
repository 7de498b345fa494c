//! One shard's key-value store: the data (`key -> value, version`), the applied index and the
//! session table; [`KvStore::apply`] is the only way state changes.
//!
//! Application is deterministic: the same commands at the same indexes give byte-identical
//! snapshots on every replica. Every limit that changes a result is a constant of
//! [`crate::node::limits`], never a node's config. A key's version is the log index of the
//! command that last wrote it; a deleted key has no version.
//!
//! Invariants: `applied_index` only grows; a command at an index `<= applied_index` is ignored
//! (replay after restart is harmless); a command that cannot be decoded or breaks a ceiling is
//! rejected with a deterministic error and changes nothing but `applied_index`; a write with a
//! session (`client_id != 0`) is applied at most once (see [`super::session`]).
//!
//! The data is a persistent ordered map ([`imbl::OrdMap`], a B+tree whose nodes are shared
//! behind reference counts) of [`Key`]s (short ones inline in the nodes, compared a word at a
//! time; see [`super::key`]) and reference-counted values, each one allocation holding its
//! version and bytes ([`Stored`], see [`super::value`]): cloning a store is O(1) in
//! the number of keys (the session and lease tables, bounded by
//! [`crate::node::limits`], are copied), and a write after a clone copies only the nodes on its
//! path. That is how a snapshot is taken without stopping the shard: the core freezes a clone
//! at the applied index and serializes it off the executor while the live store moves on.
//!
//! A plain put (nearly every write) is read in place from its command's bytes, and overwrites
//! a value of the same length that no clone shares in its own allocation: no allocation for
//! an overwrite of the same size between snapshots.

use std::ops::Bound;

use ringraft_net::message::{self as wire, LeaseInfo, Txn, TxnCheck, TxnOp, TxnOpResult};

use super::command::{Command, PutRef, WriteOp};
use super::lease::Leases;
use super::result::ApplyResult;
use super::session::{Lookup, Sessions};
pub(super) use super::value::Stored;
use crate::node::limits::{MAX_KEY_BYTES, MAX_TXN_READ_BYTES, MAX_VALUE_BYTES};

/// A value and its version, as a read answers it (an owned copy of a [`Stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// Log index of the write that set it.
    pub version: u64,
}

/// A fault planted on purpose, to show that the simulator's checks catch a broken state
/// machine. Never set by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlantedFault {
    /// The correct state machine.
    #[default]
    None,
    /// A value-based compare-and-swap ignores its expected value and always swaps.
    CasIgnoresExpected,
}

pub(super) use super::key::Key;
use super::key::Probe;
/// The data of one shard: key -> shared value and version.
pub(super) type Data = imbl::OrdMap<Key, Stored>;

/// One shard's key-value store. `clone` shares the data (O(1) in the number of keys).
#[derive(Debug, Clone)]
pub struct KvStore {
    pub(super) data: Data,
    pub(super) applied_index: u64,
    pub(super) sessions: Sessions,
    pub(super) leases: Leases,
    /// Keys the last applied command deleted through a lease (revoke or expiry), in key
    /// order; emptied at the next apply. At most [`crate::node::limits::MAX_KEYS_PER_LEASE`].
    dropped: Vec<Vec<u8>>,
    fault: PlantedFault,
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            data: Data::new(),
            applied_index: 0,
            sessions: Sessions::new(),
            leases: Leases::default(),
            dropped: Vec::new(),
            fault: PlantedFault::None,
        }
    }

    pub(super) fn from_parts(
        data: Data,
        applied_index: u64,
        sessions: Sessions,
        leases: Leases,
    ) -> Self {
        Self {
            data,
            applied_index,
            sessions,
            leases,
            dropped: Vec::new(),
            fault: PlantedFault::None,
        }
    }

    /// The lease table.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// On the leader of term `term`: the `LeaseExpire` commands due at `now` (see
    /// [`super::lease`]).
    pub fn due_lease_expiries(&mut self, now: std::time::Instant, term: u64) -> Vec<WriteOp> {
        self.leases
            .due(now, term)
            .into_iter()
            .map(|(id, refreshed)| WriteOp::LeaseExpire { id, refreshed })
            .collect()
    }

    /// The leases with their remaining time on this node's clock.
    pub fn list_leases(&self, now: std::time::Instant) -> Vec<LeaseInfo> {
        self.leases.list(now)
    }

    /// Sets `key` to `value` at version `index` (detaching it from any lease: a plain write
    /// ends the key's lease). An existing key keeps its stored key bytes, and its stored
    /// value when nothing else shares it (no frozen snapshot holds it: the reference count is
    /// one) and the new value has the same length: the bytes are written over in place.
    /// Otherwise the key gets a new [`Stored`] (one allocation).
    fn set(&mut self, key: &[u8], value: &[u8], index: u64) {
        self.leases.detach(key);
        match self.data.get_mut(&Probe(key)) {
            Some(slot) => {
                if !slot.overwrite(value, index) {
                    *slot = Stored::new(value, index);
                }
            }
            None => {
                self.data.insert(Key::from(key), Stored::new(value, index));
            }
        }
    }

    /// Removes `key`; returns whether it existed.
    fn unset(&mut self, key: &[u8]) -> bool {
        self.leases.detach(key);
        self.data.remove(&Probe(key)).is_some()
    }

    /// Removes lease `id` and every key attached to it.
    fn drop_lease(&mut self, id: u64) -> Option<ApplyResult> {
        let l = self.leases.remove(id)?;
        let keys = l.keys.len() as u32;
        for k in l.keys {
            if self.data.remove(&Probe(&k)).is_some() {
                self.dropped.push(k);
            }
        }
        Some(ApplyResult::Lease {
            id,
            ttl_ms: l.ttl_ms,
            keys,
        })
    }

    /// Whether a transaction compare holds now.
    fn holds(&self, key: &[u8], check: &TxnCheck) -> bool {
        let cur = self.data.get(&Probe(key));
        match check {
            TxnCheck::Value(None) => cur.is_none(),
            TxnCheck::Value(Some(v)) => cur.is_some_and(|c| c.value() == &v[..]),
            TxnCheck::Version(v) => cur.map_or(0, Stored::version) == *v,
            TxnCheck::Exists(e) => cur.is_some() == *e,
        }
    }

    /// Runs a transaction at `index`: every compare, then one branch's ops in order.
    fn apply_txn(&mut self, index: u64, txn: Txn) -> ApplyResult {
        let succeeded = txn.compares.iter().all(|c| self.holds(&c.key, &c.check));
        let ops = if succeeded { txn.success } else { txn.failure };
        let mut read_bytes = 0usize;
        let results = ops
            .into_iter()
            .map(|op| match op {
                TxnOp::Put { key, value } => {
                    self.set(&key, &value, index);
                    TxnOpResult::Put { version: index }
                }
                TxnOp::Delete { key } => TxnOpResult::Deleted {
                    existed: self.unset(&key),
                },
                TxnOp::Get { key } => self.txn_read(&key, &mut read_bytes, None),
            })
            .collect();
        ApplyResult::Txn {
            succeeded,
            results,
            version: index,
        }
    }

    /// A transaction's read of `key`, carrying its value while the reads stay within
    /// [`MAX_TXN_READ_BYTES`] (and, for a retry, `want` is the version read the first time).
    fn txn_read(&self, key: &[u8], read_bytes: &mut usize, want: Option<u64>) -> TxnOpResult {
        match (self.data.get(&Probe(key)), want) {
            // A retry whose key changed since (or is gone) carries the version read only.
            (None, Some(w)) => TxnOpResult::GetOmitted { version: w },
            (Some(v), Some(w)) if w != v.version() => TxnOpResult::GetOmitted { version: w },
            (None, None) => TxnOpResult::Get(None),
            (Some(v), _) if *read_bytes + v.value().len() > MAX_TXN_READ_BYTES => {
                TxnOpResult::GetOmitted {
                    version: v.version(),
                }
            }
            (Some(v), _) => {
                *read_bytes += v.value().len();
                TxnOpResult::Get(Some(wire::Versioned {
                    value: v.value().to_vec(),
                    version: v.version(),
                }))
            }
        }
    }

    /// Plants a fault (simulator tests only).
    pub fn plant_fault(&mut self, fault: PlantedFault) {
        self.fault = fault;
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

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Reads one key (a copy of its value).
    pub fn get(&self, key: &[u8]) -> Option<Versioned> {
        self.data.get(&Probe(key)).map(Stored::to_versioned)
    }

    /// The stored form of one key (tests: telling an in-place write from a new allocation).
    #[cfg(test)]
    pub(super) fn get_stored(&self, key: &[u8]) -> Option<&Stored> {
        self.data.get(&Probe(key))
    }

    /// Keys starting with `prefix`, in order, at most `limit`.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Versioned)> {
        self.data
            .range((Bound::Included(Probe(prefix)), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.to_vec(), v.to_versioned()))
            .collect()
    }

    /// Keys in `[start, end)` (`end = None`: to the last key), in order, at most `limit`.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Versioned)> {
        let upper = match end {
            Some(e) if e <= start => return Vec::new(),
            Some(e) => Bound::Excluded(Probe(e)),
            None => Bound::Unbounded,
        };
        self.data
            .range((Bound::Included(Probe(start)), upper))
            .take(limit)
            .map(|(k, v)| (k.to_vec(), v.to_versioned()))
            .collect()
    }

    /// Applies the encoded command of the log entry at `index`. Returns `None` if the entry was
    /// applied before (`index <= applied_index`).
    pub fn apply(&mut self, index: u64, command: &[u8]) -> Option<ApplyResult> {
        if index <= self.applied_index {
            return None;
        }
        self.applied_index = index;
        self.dropped.clear();
        if let Some(put) = Command::decode_put(command) {
            if let Some(result) = self.apply_put(index, put) {
                return Some(result);
            }
        }
        Some(match Command::decode(command) {
            Ok(c) => self.apply_command(index, c),
            Err(e) => ApplyResult::Rejected(e.0),
        })
    }

    /// Takes the keys the last applied command deleted through a lease (a revoke or an
    /// expiry), in key order: what a watch reports as their deletes. Empty for any other
    /// command, and for a retried revoke answered from the session table.
    pub fn take_dropped_keys(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.dropped)
    }

    /// Marks `index` applied without a command (a Raft no-op or configuration entry).
    pub fn apply_empty(&mut self, index: u64) {
        self.dropped.clear();
        if index > self.applied_index {
            self.applied_index = index;
        }
    }

    /// A plain put read in place from its command's bytes: what [`KvStore::apply_command`]
    /// does with it, without copying its key. `None` (nothing changed) when its session has
    /// seen the sequence before: the general path answers that.
    fn apply_put(&mut self, index: u64, put: PutRef<'_>) -> Option<ApplyResult> {
        if let Err(e) = put.check_sizes(MAX_KEY_BYTES, MAX_VALUE_BYTES) {
            return Some(ApplyResult::Rejected(e.0));
        }
        let result = ApplyResult::Put { version: index };
        // The put's result is known before it is applied: its session is looked up and
        // recorded in one step, and nothing below can fail.
        if put.client_id != 0 && self.sessions.admit(put.client_id, put.seq, &result) != Lookup::New
        {
            return None;
        }
        self.set(put.key, put.value, index);
        Some(result)
    }

    fn apply_command(&mut self, index: u64, cmd: Command) -> ApplyResult {
        if let Err(e) = cmd.check_sizes(MAX_KEY_BYTES, MAX_VALUE_BYTES) {
            return ApplyResult::Rejected(e.0);
        }
        if cmd.client_id != 0 {
            match self.sessions.lookup(cmd.client_id, cmd.seq) {
                Lookup::Recorded(r) => return self.refill(r, &cmd.op),
                Lookup::Expired => return ApplyResult::SessionExpired,
                Lookup::New => {}
            }
        }
        let (client_id, seq) = (cmd.client_id, cmd.seq);
        let result = match cmd.op {
            WriteOp::Put { key, value } => {
                self.set(&key, &value, index);
                ApplyResult::Put { version: index }
            }
            WriteOp::Delete { key } => ApplyResult::Deleted {
                existed: self.unset(&key),
                version: index,
            },
            WriteOp::CasValue { key, expected, new } => {
                let current = self.data.get(&Probe(&key));
                let matches = match (&expected, current) {
                    _ if self.fault == PlantedFault::CasIgnoresExpected => true,
                    (None, None) => true,
                    (Some(e), Some(c)) => e[..] == *c.value(),
                    _ => false,
                };
                self.cas(key, matches, index, new)
            }
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            } => {
                let current = self.data.get(&Probe(&key)).map_or(0, Stored::version);
                self.cas(key, current == expected_version, index, new)
            }
            WriteOp::Noop => ApplyResult::Noop,
            WriteOp::Txn(txn) => self.apply_txn(index, txn),
            WriteOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
            } => {
                // Everything is checked before anything changes: the put and its grant are
                // one atomic step.
                let checked = if ttl_ms > 0 {
                    self.leases.check_grant(lease, ttl_ms)
                } else {
                    self.leases.check_attach(&key, lease)
                };
                match checked {
                    Err(e) => ApplyResult::Rejected(e),
                    Ok(()) => {
                        if ttl_ms > 0 {
                            self.leases.grant(lease, ttl_ms, index);
                        }
                        self.set(&key, &value, index);
                        self.leases.attach(&key, lease);
                        ApplyResult::Put { version: index }
                    }
                }
            }
            WriteOp::LeaseGrant { id, ttl_ms } => match self.leases.check_grant(id, ttl_ms) {
                Err(e) => ApplyResult::Rejected(e),
                Ok(()) => {
                    self.leases.grant(id, ttl_ms, index);
                    ApplyResult::Lease {
                        id,
                        ttl_ms,
                        keys: 0,
                    }
                }
            },
            WriteOp::LeaseKeepAlive { id } => match self.leases.refresh(id, index) {
                Some(l) => ApplyResult::Lease {
                    id,
                    ttl_ms: l.ttl_ms,
                    keys: l.keys.len() as u32,
                },
                None => ApplyResult::Rejected(format!("lease {id} not found (expired or revoked)")),
            },
            WriteOp::LeaseRevoke { id } => self.drop_lease(id).unwrap_or_else(|| {
                ApplyResult::Rejected(format!("lease {id} not found (expired or revoked)"))
            }),
            WriteOp::LeaseExpire { id, refreshed } => {
                if self
                    .leases
                    .get(id)
                    .is_some_and(|l| l.refreshed == refreshed)
                {
                    self.drop_lease(id).unwrap_or(ApplyResult::Noop)
                } else {
                    ApplyResult::Noop
                }
            }
        };
        if client_id != 0 {
            self.sessions.record(client_id, seq, &result);
        }
        result
    }

    /// A recorded failed compare-and-swap keeps only the version it saw; when the key still
    /// holds that version, its value is the one the first answer carried.
    fn refill(&self, r: ApplyResult, op: &WriteOp) -> ApplyResult {
        match (r, op.key()) {
            (
                ApplyResult::Cas {
                    swapped: false,
                    version,
                    current: None,
                },
                Some(key),
            ) if version != 0 => {
                let current = self
                    .data
                    .get(&Probe(key))
                    .filter(|v| v.version() == version)
                    .map(|v| v.value().to_vec());
                ApplyResult::Cas {
                    swapped: false,
                    version,
                    current,
                }
            }
            (
                ApplyResult::Txn {
                    succeeded,
                    results,
                    version,
                },
                _,
            ) => {
                let ops = match op {
                    WriteOp::Txn(t) if succeeded => &t.success,
                    WriteOp::Txn(t) => &t.failure,
                    _ => {
                        return ApplyResult::Txn {
                            succeeded,
                            results,
                            version,
                        }
                    }
                };
                let mut read_bytes = 0;
                // Every recorded result is answered (a retry that differs from the first
                // command still gets the first command's results).
                let results = results
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| match (r, ops.get(i)) {
                        (TxnOpResult::GetOmitted { version }, Some(TxnOp::Get { key })) => {
                            self.txn_read(key, &mut read_bytes, Some(version))
                        }
                        (r, _) => r,
                    })
                    .collect();
                ApplyResult::Txn {
                    succeeded,
                    results,
                    version,
                }
            }
            (r, _) => r,
        }
    }

    fn cas(&mut self, key: Vec<u8>, matches: bool, index: u64, new: Vec<u8>) -> ApplyResult {
        if matches {
            self.set(&key, &new, index);
            ApplyResult::Cas {
                swapped: true,
                version: index,
                current: None,
            }
        } else {
            let cur = self.data.get(&Probe(&key));
            ApplyResult::Cas {
                swapped: false,
                version: cur.map_or(0, Stored::version),
                current: cur.map(|v| v.value().to_vec()),
            }
        }
    }
}
