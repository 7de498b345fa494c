//! The exactly-once session table of one shard: `(client_id, seq) -> first result`, bounded by
//! count ([`SESSION_MAX_RESULTS`]) and bytes ([`SESSION_MAX_BYTES`]), with tombstones.
//!
//! Results are evicted oldest first (in the order they were recorded, which is log order, so
//! every replica evicts the same ones). Evicting a result raises its client's *tombstone*: one
//! past the highest evicted sequence. A retry at or below the tombstone whose result is gone is
//! answered [`Lookup::Expired`] (the write may have been applied once; it is never applied
//! again). Evicting a client's *last* result keeps the tombstone: the client moves to the
//! tombstone table, bounded by [`SESSION_MAX_TOMBSTONES`] (oldest dropped first). Once a
//! tombstone has been dropped the shard turns on its *sequence floor*: a client it has no
//! record of is accepted only at sequence 1 (a fresh client's first write); any other
//! sequence is answered `Expired`. The one case the bounds cannot cover is a retry of a
//! client's very first write arriving after its result *and* its tombstone were evicted
//! (more than `SESSION_MAX_RESULTS` newer results and `SESSION_MAX_TOMBSTONES` newer
//! tombstones since) — far beyond any client's retry deadline.
//!
//! Memory ceiling per shard: [`crate::node::limits::SESSION_MAX_TOMBSTONES`].
//!
//! The tables are persistent structures ([`imbl`]): cloning the table (a snapshot being taken)
//! is O(1) however many results it keeps, and a record after a clone copies only what it
//! touches. A client's results are a queue in sequence order: a client's writes are recorded
//! in increasing sequence, so recording one appends it, evicting the oldest takes the front,
//! and a new sequence is told from a retry by the last one kept, with no search.
//!
//! Client ids are hashed with [`ClientHash`], one keyed multiply (the ids come from clients:
//! the key is random per process, so colliding ids cannot be chosen from outside). A plain
//! write's session is looked up and recorded in one step ([`Sessions::admit`]). No hash
//! map's order ever reaches a snapshot or a result (encoding sorts), so replicas with
//! different keys stay byte-identical.

use std::hash::{BuildHasher, Hasher};

use imbl::shared_ptr::DefaultSharedPtr;
use imbl::{GenericHashMap, Vector};

use super::command::{CodecError, Reader};
use super::result::ApplyResult;
use crate::node::limits::{
    SESSION_MAX_BYTES, SESSION_MAX_RESULTS, SESSION_MAX_TOMBSTONES, SESSION_RESULT_BYTES,
};

/// A hash map keyed by client id, hashed with [`ClientHash`].
type ClientMap<V> = GenericHashMap<u64, V, ClientHash, DefaultSharedPtr>;

/// Builds the hasher of client ids: a folded 64x64->128-bit multiply of the id with two
/// per-process random keys (the mixing step of foldhash and ahash's fallback). SipHash,
/// the standard map's default, cost several times more per write for the same protection
/// against chosen collisions. Ids are hashed with `write_u64`; any other input is folded in
/// eight bytes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHash {
    k0: u64,
    k1: u64,
}

impl Default for ClientHash {
    fn default() -> Self {
        // The standard library's per-process random keys, drawn once.
        static KEYS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let &(k0, k1) = KEYS.get_or_init(|| {
            let s = std::collections::hash_map::RandomState::new();
            (s.hash_one(0x5e55_1045u64), s.hash_one(0x00c1_1e47u64) | 1)
        });
        ClientHash { k0, k1 }
    }
}

impl BuildHasher for ClientHash {
    type Hasher = ClientHasher;
    fn build_hasher(&self) -> ClientHasher {
        ClientHasher {
            k1: self.k1,
            h: self.k0,
        }
    }
}

/// The hasher [`ClientHash`] builds.
#[derive(Debug, Clone, Copy)]
pub struct ClientHasher {
    k1: u64,
    h: u64,
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for ClientHasher {
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.h = fold_mul(self.h ^ x, self.k1);
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w) ^ ((c.len() as u64) << 59));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.h
    }
}

/// What the table knows about a `(client_id, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Applied before: this is its recorded result.
    Recorded(ApplyResult),
    /// Its result (if it was applied) was evicted: answer "session expired", apply nothing.
    Expired,
    /// Never seen: apply it.
    New,
}

/// A recorded result as the table keeps it: the results of plain writes (a put, a delete, a
/// compare-and-swap in its recorded form) inline in 16 bytes, any other boxed. The queue of
/// a client's results is pushed and popped on every write: smaller entries move and allocate
/// less, and a snapshot's copy-on-write copies less. It stands for exactly the result it was
/// made from ([`Kept::with`]), so the encoding is the same as the result's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    Put(u64),
    Deleted { existed: bool, version: u64 },
    Cas { swapped: bool, version: u64 },
    Other(Box<ApplyResult>),
}

const _: () = assert!(std::mem::size_of::<(u64, Kept)>() <= 24);

impl Kept {
    fn new(r: ApplyResult) -> Kept {
        match r {
            ApplyResult::Put { version } => Kept::Put(version),
            ApplyResult::Deleted { existed, version } => Kept::Deleted { existed, version },
            ApplyResult::Cas {
                swapped,
                version,
                current: None,
            } => Kept::Cas { swapped, version },
            r => Kept::Other(Box::new(r)),
        }
    }

    /// Calls `f` with the result this stands for (without copying a boxed one).
    fn with<R>(&self, f: impl FnOnce(&ApplyResult) -> R) -> R {
        match self {
            Kept::Other(r) => f(r),
            inline => f(&inline.to_result()),
        }
    }

    /// The result this stands for.
    fn to_result(&self) -> ApplyResult {
        match *self {
            Kept::Put(version) => ApplyResult::Put { version },
            Kept::Deleted { existed, version } => ApplyResult::Deleted { existed, version },
            Kept::Cas { swapped, version } => ApplyResult::Cas {
                swapped,
                version,
                current: None,
            },
            Kept::Other(ref r) => (**r).clone(),
        }
    }

    /// Bytes charged for it: the result's charge (an inline one has no variable part).
    fn charge(&self) -> usize {
        match self {
            Kept::Other(r) => r.charge(),
            _ => SESSION_RESULT_BYTES,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ClientSession {
    /// `(seq, result)`, sorted by seq with no seq twice.
    results: Vector<(u64, Kept)>,
    /// One past the highest evicted seq (0 = nothing evicted).
    evicted_below: u64,
}

impl ClientSession {
    /// Where `seq` is (`Ok`) or would go (`Err`) in `results`; a seq above the last one kept
    /// (every new write) is answered without a search.
    fn position(&self, seq: u64) -> Result<usize, usize> {
        match self.results.back() {
            Some(&(last, _)) if seq <= last => {}
            _ => return Err(self.results.len()),
        }
        self.results.binary_search_by(|(q, _)| q.cmp(&seq))
    }

    /// Appends the result of `seq`, above every seq kept (the caller checked).
    fn push(&mut self, seq: u64, r: Kept) {
        self.results.push_back((seq, r));
    }

    /// The result recorded for `seq`.
    fn get(&self, seq: u64) -> Option<&Kept> {
        let i = self.position(seq).ok()?;
        self.results.get(i).map(|(_, r)| r)
    }

    /// Records `r` for `seq`; returns the result it replaced.
    fn insert(&mut self, seq: u64, r: Kept) -> Option<Kept> {
        match self.position(seq) {
            Ok(i) => self
                .results
                .get_mut(i)
                .map(|slot| std::mem::replace(&mut slot.1, r)),
            Err(i) if i == self.results.len() => {
                self.push(seq, r);
                None
            }
            Err(i) => {
                self.results.insert(i, (seq, r));
                None
            }
        }
    }

    /// Removes the result of `seq` (the oldest kept, in the usual order: the front).
    fn remove(&mut self, seq: u64) -> Option<Kept> {
        if self.results.front().is_some_and(|(q, _)| *q == seq) {
            self.results.pop_front().map(|(_, r)| r)
        } else {
            let i = self.position(seq).ok()?;
            Some(self.results.remove(i).1)
        }
    }
}

/// The session table (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    clients: ClientMap<ClientSession>,
    /// (client_id, seq) in record order, for oldest-first eviction.
    order: Vector<(u64, u64)>,
    /// Bytes charged for the kept results.
    bytes: usize,
    /// Clients with no kept result: their tombstone.
    tombstones: ClientMap<u64>,
    /// (client_id, tombstone) in creation order; an entry is stale once the client has a kept
    /// result again or a newer tombstone.
    tomb_order: Vector<(u64, u64)>,
    /// Set once a tombstone was dropped.
    floor: bool,
    /// Test-only overrides of the bounds (results, bytes, tombstones).
    bounds: Option<(usize, usize, usize)>,
}

impl Sessions {
    /// An empty table with the bounds of [`crate::node::limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table with smaller bounds (tests exercising eviction cheaply).
    #[cfg(test)]
    pub fn with_bounds(results: usize, bytes: usize, tombstones: usize) -> Self {
        Sessions {
            bounds: Some((results, bytes, tombstones)),
            ..Self::default()
        }
    }

    /// Sets smaller bounds on a table (one restored from a snapshot, which carries none).
    #[cfg(test)]
    pub fn set_bounds_for_tests(&mut self, results: usize, bytes: usize, tombstones: usize) {
        self.bounds = Some((results, bytes, tombstones));
    }

    fn limits(&self) -> (usize, usize, usize) {
        self.bounds.unwrap_or((
            SESSION_MAX_RESULTS,
            SESSION_MAX_BYTES,
            SESSION_MAX_TOMBSTONES,
        ))
    }

    /// Results kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no result is kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes charged for the kept results.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Clients remembered only by their tombstone.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// What is known about `(client, seq)`.
    pub fn lookup(&self, client: u64, seq: u64) -> Lookup {
        if let Some(s) = self.clients.get(&client) {
            if let Some(r) = s.get(seq) {
                return Lookup::Recorded(r.to_result());
            }
            return if seq < s.evicted_below {
                Lookup::Expired
            } else {
                Lookup::New
            };
        }
        match self.tombstones.get(&client) {
            Some(&below) if seq < below => Lookup::Expired,
            Some(_) => Lookup::New,
            None if self.floor && seq > 1 => Lookup::Expired,
            None => Lookup::New,
        }
    }

    /// [`Sessions::lookup`], and when it answers [`Lookup::New`], [`Sessions::record`] of
    /// `result` as well: for a write whose result is known before it is applied (a plain
    /// put). A client with kept results is found and recorded with one hash; nothing changes
    /// unless the answer is `New`.
    pub fn admit(&mut self, client: u64, seq: u64, result: &ApplyResult) -> Lookup {
        let Some(s) = self.clients.get_mut(&client) else {
            let found = self.lookup(client, seq);
            if found == Lookup::New {
                self.record(client, seq, result);
            }
            return found;
        };
        match s.position(seq) {
            Ok(i) => {
                return s
                    .results
                    .get(i)
                    .map_or(Lookup::Expired, |(_, r)| Lookup::Recorded(r.to_result()));
            }
            Err(_) if seq < s.evicted_below => return Lookup::Expired,
            Err(_) => {}
        }
        // A client with kept results has no tombstone (recording takes it over). The seq is
        // not kept, so recording it adds one result.
        let r = Kept::new(result.recorded());
        self.bytes += r.charge();
        s.insert(seq, r);
        self.order.push_back((client, seq));
        self.evict_over_bounds();
        Lookup::New
    }

    /// Records the first result of `(client, seq)` (in its recorded form), then evicts the
    /// oldest results while over the count or byte bound.
    pub fn record(&mut self, client: u64, seq: u64, result: &ApplyResult) {
        let r = Kept::new(result.recorded());
        let charge = r.charge();
        // Most shards keep no tombstone: skip hashing the client for them.
        let tomb = if self.tombstones.is_empty() {
            0
        } else {
            self.tombstones.remove(&client).unwrap_or(0)
        };
        let s = self.clients.entry(client).or_default();
        s.evicted_below = s.evicted_below.max(tomb);
        if let Some(old) = s.insert(seq, r) {
            // Not reached through `KvStore` (a recorded seq is answered, not re-applied); keep
            // the accounting right anyway.
            self.bytes = self.bytes.saturating_sub(old.charge());
        } else {
            self.order.push_back((client, seq));
        }
        self.bytes += charge;
        self.evict_over_bounds();
    }

    /// Evicts the oldest results while over the count or byte bound.
    fn evict_over_bounds(&mut self) {
        let (max_results, max_bytes, _) = self.limits();
        while self.order.len() > max_results || (self.bytes > max_bytes && self.order.len() > 1) {
            let Some((c, q)) = self.order.pop_front() else {
                break;
            };
            self.evict(c, q);
        }
    }

    fn evict(&mut self, client: u64, seq: u64) {
        let Some(s) = self.clients.get_mut(&client) else {
            return;
        };
        if let Some(r) = s.remove(seq) {
            self.bytes = self.bytes.saturating_sub(r.charge());
        }
        s.evicted_below = s.evicted_below.max(seq.saturating_add(1));
        if s.results.is_empty() {
            let below = s.evicted_below;
            self.clients.remove(&client);
            self.add_tombstone(client, below);
        }
    }

    fn add_tombstone(&mut self, client: u64, below: u64) {
        self.tombstones.insert(client, below);
        self.tomb_order.push_back((client, below));
        let (_, _, max_tombs) = self.limits();
        while self.tomb_order.len() > max_tombs {
            let Some((c, b)) = self.tomb_order.pop_front() else {
                break;
            };
            if self.tombstones.get(&c) == Some(&b) {
                self.tombstones.remove(&c);
                self.floor = true;
            }
        }
    }

    /// Appends the table's encoding (see [`super::snapshot`]).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.order.len() as u64).to_le_bytes());
        // Each client's results are met in `order` oldest first, which is their queue's
        // order: a cursor per client finds each one without a search (it searches when a
        // client recorded out of sequence order). The cursors are only looked up, never
        // iterated, so the hash map's order cannot reach the bytes.
        let mut cursors: std::collections::HashMap<u64, usize, ClientHash> =
            std::collections::HashMap::with_hasher(ClientHash::default());
        for (c, s) in &self.order {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            let found = self.clients.get(c).and_then(|x| {
                let cur = cursors.entry(*c).or_insert(0);
                let i = match x.results.get(*cur) {
                    Some((q, _)) if q == s => *cur,
                    _ => x.position(*s).ok()?,
                };
                *cur = i + 1;
                x.results.get(i).map(|(_, r)| r)
            });
            match found {
                Some(r) => r.with(|r| r.encode(out)),
                None => ApplyResult::SessionExpired.encode(out),
            }
        }
        let mut marks: Vec<(u64, u64)> = self
            .clients
            .iter()
            .filter(|(_, s)| s.evicted_below > 0)
            .map(|(c, s)| (*c, s.evicted_below))
            .collect();
        marks.sort_unstable();
        out.extend_from_slice(&(marks.len() as u64).to_le_bytes());
        for (c, b) in marks {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.extend_from_slice(&(self.tomb_order.len() as u64).to_le_bytes());
        for (c, b) in &self.tomb_order {
            let live = self.tombstones.get(c) == Some(b);
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
            out.push(u8::from(live));
        }
        out.push(u8::from(self.floor));
    }

    /// Reads what [`Sessions::encode`] wrote.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Sessions, CodecError> {
        let mut t = Sessions::new();
        let n = r.count(17)?;
        for _ in 0..n {
            let c = r.u64()?;
            let s = r.u64()?;
            let res = Kept::new(ApplyResult::decode(r)?);
            t.bytes += res.charge();
            if t.clients.entry(c).or_default().insert(s, res).is_some() {
                return Err(CodecError(format!("session ({c}, {s}) recorded twice")));
            }
            t.order.push_back((c, s));
        }
        let n = r.count(16)?;
        for _ in 0..n {
            let c = r.u64()?;
            let b = r.u64()?;
            t.clients.entry(c).or_default().evicted_below = b;
        }
        let n = r.count(17)?;
        for _ in 0..n {
            let c = r.u64()?;
            let b = r.u64()?;
            if r.bool()? {
                t.tombstones.insert(c, b);
            }
            t.tomb_order.push_back((c, b));
        }
        t.floor = r.bool()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: u64) -> ApplyResult {
        ApplyResult::Put { version: v }
    }

    #[test]
    fn evicting_a_clients_last_result_keeps_its_tombstone() {
        let mut t = Sessions::with_bounds(2, usize::MAX, 100);
        t.record(7, 1, &put(1));
        t.record(8, 1, &put(2));
        t.record(8, 2, &put(3)); // evicts (7, 1): client 7 has no result left
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(7, 1), Lookup::Expired);
        assert_eq!(t.lookup(7, 2), Lookup::New);
        assert_eq!(t.tombstones(), 1);
        // The client comes back: its tombstone follows it.
        t.record(7, 5, &put(4));
        assert_eq!(t.lookup(7, 1), Lookup::Expired);
        assert_eq!(t.lookup(7, 5), Lookup::Recorded(put(4)));
        assert_eq!(t.tombstones(), 0);
    }

    #[test]
    fn bytes_bound_evicts_and_a_failed_cas_keeps_no_value() {
        let big = ApplyResult::Cas {
            swapped: false,
            version: 3,
            current: Some(vec![0; 1 << 20]),
        };
        let mut t = Sessions::new();
        for seq in 1..=1_000 {
            t.record(1, seq, &big);
        }
        assert!(t.bytes() <= 1_000 * crate::node::limits::SESSION_RESULT_BYTES);
        let mut t = Sessions::with_bounds(usize::MAX, 10 * 200, 100);
        for seq in 1..=100 {
            t.record(1, seq, &ApplyResult::Rejected("x".repeat(100)));
        }
        assert!(t.bytes() <= 10 * 200, "{}", t.bytes());
        assert_eq!(t.lookup(1, 1), Lookup::Expired);
        assert!(matches!(t.lookup(1, 100), Lookup::Recorded(_)));
    }

    #[test]
    fn dropped_tombstones_turn_on_the_sequence_floor() {
        let mut t = Sessions::with_bounds(1, usize::MAX, 2);
        for c in 1..=5 {
            t.record(c, 3, &put(c));
        }
        // Clients 1..=4 were evicted; only 2 tombstones are kept (3 and 4).
        assert_eq!(t.tombstones(), 2);
        assert_eq!(t.lookup(1, 3), Lookup::Expired, "dropped tombstone: floor");
        assert_eq!(t.lookup(1, 2), Lookup::Expired);
        assert_eq!(t.lookup(3, 3), Lookup::Expired);
        assert_eq!(t.lookup(99, 1), Lookup::New, "a fresh client starts at 1");
        assert_eq!(t.lookup(99, 2), Lookup::Expired);
    }

    #[test]
    fn results_recorded_out_of_sequence_order_are_found_evicted_and_encoded() {
        let mut t = Sessions::with_bounds(3, usize::MAX, 100);
        t.record(1, 5, &put(1));
        t.record(1, 3, &put(2));
        t.record(1, 4, &put(3));
        assert_eq!(t.lookup(1, 3), Lookup::Recorded(put(2)));
        assert_eq!(t.lookup(1, 4), Lookup::Recorded(put(3)));
        assert_eq!(t.lookup(1, 5), Lookup::Recorded(put(1)));
        assert_eq!(t.lookup(1, 6), Lookup::New);
        // Evicts (1, 5), the oldest recorded though not the lowest sequence kept.
        t.record(1, 9, &put(4));
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(1, 5), Lookup::Expired);
        assert_eq!(t.lookup(1, 3), Lookup::Recorded(put(2)));
        assert_eq!(t.lookup(1, 9), Lookup::Recorded(put(4)));
        assert_eq!(t.lookup(1, 7), Lookup::New);
        let back = encode_decode(&t);
        assert_eq!(back, t);
        assert_eq!(back.lookup(1, 4), Lookup::Recorded(put(3)));
    }

    #[test]
    fn evicting_a_clients_highest_sequence_keeps_its_lower_ones_answered() {
        let mut t = Sessions::with_bounds(3, usize::MAX, 100);
        t.record(1, 5, &put(1));
        t.record(1, 3, &put(2));
        t.record(1, 4, &put(3));
        // Evicts (1, 5): the oldest recorded and the highest sequence client 1 keeps.
        assert_eq!(t.admit(2, 1, &put(4)), Lookup::New);
        assert_eq!(t.lookup(1, 5), Lookup::Expired);
        assert_eq!(t.admit(1, 4, &put(9)), Lookup::Recorded(put(3)));
        assert_eq!(t.admit(1, 3, &put(9)), Lookup::Recorded(put(2)));
        // Its next write lands above the ones kept, and is found again.
        assert_eq!(t.admit(1, 6, &put(5)), Lookup::New);
        assert_eq!(t.admit(1, 6, &put(9)), Lookup::Recorded(put(5)));
        assert_eq!(t.lookup(1, 3), Lookup::Expired);
        assert_eq!(encode_decode(&t), t);
    }

    #[test]
    fn every_kind_of_result_is_answered_and_encoded_as_recorded() {
        let results = vec![
            put(7),
            ApplyResult::Deleted {
                existed: true,
                version: 8,
            },
            ApplyResult::Deleted {
                existed: false,
                version: 9,
            },
            ApplyResult::Cas {
                swapped: true,
                version: 10,
                current: None,
            },
            ApplyResult::Cas {
                swapped: false,
                version: 11,
                current: Some(b"now".to_vec()),
            },
            ApplyResult::Noop,
            ApplyResult::Rejected("no".into()),
            ApplyResult::SessionExpired,
            ApplyResult::Txn {
                succeeded: true,
                results: vec![ringraft_net::message::TxnOpResult::Put { version: 12 }],
                version: 12,
            },
            ApplyResult::Lease {
                id: 3,
                ttl_ms: 1000,
                keys: 2,
            },
        ];
        let mut t = Sessions::new();
        // What the encoding must hold: each result's own encoding, in record order.
        let mut want = (results.len() as u64).to_le_bytes().to_vec();
        let mut charged = 0;
        for (i, r) in results.iter().enumerate() {
            let seq = i as u64 + 1;
            t.record(1, seq, r);
            want.extend_from_slice(&1u64.to_le_bytes());
            want.extend_from_slice(&seq.to_le_bytes());
            r.recorded().encode(&mut want);
            charged += r.recorded().charge();
        }
        for (i, r) in results.iter().enumerate() {
            let seq = i as u64 + 1;
            assert_eq!(t.lookup(1, seq), Lookup::Recorded(r.recorded()), "{r:?}");
        }
        assert_eq!(t.bytes(), charged);
        let mut got = Vec::new();
        t.encode(&mut got);
        assert_eq!(got[..want.len()], want[..]);
        assert_eq!(encode_decode(&t), t);
    }

    /// A table with small bounds hashing client ids with the given keys.
    fn keyed(k0: u64, k1: u64) -> Sessions {
        let h = ClientHash { k0, k1: k1 | 1 };
        Sessions {
            clients: ClientMap::with_hasher(h),
            tombstones: ClientMap::with_hasher(h),
            ..Sessions::with_bounds(6, 40 * 6, 3)
        }
    }

    proptest::proptest! {
        /// `admit` is `lookup` then (when new) `record`, and what a table encodes does not
        /// depend on its hasher's keys.
        #[test]
        fn admit_is_lookup_then_record_and_encoding_ignores_hash_keys(
            ops in proptest::collection::vec((0u64..12, 1u64..8, proptest::bool::ANY), 0..120),
            k0 in proptest::num::u64::ANY,
            k1 in proptest::num::u64::ANY,
        ) {
            let mut a = keyed(1, 3);
            let mut b = keyed(k0, k1);
            for (i, (client, seq, fail)) in ops.into_iter().enumerate() {
                let r = if fail {
                    ApplyResult::Rejected("x".repeat(i % 50))
                } else {
                    put(i as u64)
                };
                let want = a.lookup(client, seq);
                if want == Lookup::New {
                    a.record(client, seq, &r);
                }
                proptest::prop_assert_eq!(b.admit(client, seq, &r), want);
                proptest::prop_assert_eq!((a.len(), a.bytes(), a.tombstones()), (b.len(), b.bytes(), b.tombstones()));
            }
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            a.encode(&mut ea);
            b.encode(&mut eb);
            proptest::prop_assert!(ea == eb, "encodings differ");
        }
    }

    /// `t` encoded and decoded again, with `t`'s bounds (the encoding does not carry them).
    fn encode_decode(t: &Sessions) -> Sessions {
        let mut b = Vec::new();
        t.encode(&mut b);
        let mut r = Reader::new(&b);
        let mut back = Sessions::decode(&mut r).unwrap();
        r.finish().unwrap();
        back.bounds = t.bounds;
        back
    }

    #[test]
    fn encoding_round_trips() {
        let mut t = Sessions::with_bounds(3, usize::MAX, 2);
        for c in 1..=6 {
            t.record(c % 4, c, &put(c));
        }
        let back = encode_decode(&t);
        assert_eq!(back, t);
    }
}
