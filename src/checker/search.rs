//! The Wing–Gong linearizability search with Lowe's memoization, over the operations of ONE
//! key (the porcupine approach, written from the papers).
//!
//! Calls and returns sit in a doubly linked list ordered by time (a pending operation's return
//! sits after every real return: it never constrains anything). Scanning from the head, the
//! search tries to linearize the first call whose step the model allows; linearizing removes
//! ("lifts") the call and its return from the list and restarts from the head. Reaching a return
//! means the operation it ends should already have been linearized: backtrack (pop the last
//! linearized call, restore its state, put it back, try the next call after it). The history is
//! linearizable once every completed operation is linearized (pending ones may stay out: they
//! may not have happened). Lowe's memoization: a (set of linearized operations, model state)
//! pair once explored is never explored again; the set is a bitset, hashed incrementally with
//! one random 64-bit word per operation (Zobrist), the state is interned to a u32.
//!
//! Invariants: the search is exhaustive, so NotLinearizable is a proof; on a spent budget it
//! answers Unknown, never a guess. Owned by the checker.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::history::Operation;
use super::model::Model;

/// Seed of the per-operation Zobrist words (fixed: runs are deterministic).
const ZOBRIST_SEED: u64 = 0x5EED_0F0B_1D5E_ED00;

/// Bytes a cached pair costs besides its bitset words: map slot, box header and allocator.
pub const CACHED_PAIR_OVERHEAD_BYTES: u64 = 64;

/// How many search steps run between two looks at the clock.
pub const STEPS_PER_CLOCK_CHECK: u64 = 4096;

/// Limits of one search.
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits<'a> {
    /// Give up (Unknown) at this instant.
    pub deadline: Option<Instant>,
    /// Give up (Unknown) once this many distinct (linearized set, state) pairs were explored.
    pub max_states: u64,
    /// Give up (Unknown) once the memo cache and the model states take about this many bytes.
    pub max_memory_bytes: u64,
    /// Give up (Unknown) once this is set (another key already decided the answer).
    pub cancel: Option<&'a AtomicBool>,
}

/// Why a search gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// The deadline passed.
    Time,
    /// `max_states` explored.
    States,
    /// `max_memory_bytes` used.
    Memory,
    /// Cancelled from outside.
    Cancelled,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchVerdict {
    /// `linearization` is a valid order of the completed (and some pending) operations.
    Linearizable,
    /// No order exists; `linearization` is the longest valid prefix found.
    NotLinearizable,
    /// The budget ran out; `linearization` is the longest valid prefix found so far.
    Unknown(GaveUp),
}

/// The outcome of one search.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The verdict.
    pub verdict: SearchVerdict,
    /// Indices (into the searched slice) of the linearized operations, in order: the whole
    /// linearization if linearizable, else the longest prefix found.
    pub linearization: Vec<usize>,
    /// Distinct (linearized set, state) pairs explored.
    pub states: u64,
}

/// A hasher for keys that are already good 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PassThrough>>;

/// One explored pair: the state id and the linearized set, stored compactly as
/// `[number of leading all-ones words, the words after them up to the last non-zero one]`.
/// Operations are in call order, so a linearized set is mostly a prefix of ones followed by a
/// few bits: the stored form stays small however long the history is. The form is canonical,
/// so comparing stored forms compares sets.
type CachedPair = (u32, Box<[u64]>);

/// The compact form of a bitset: (leading all-ones words, the middle words).
fn compact(bits: &[u64]) -> (u64, &[u64]) {
    let full = bits.iter().take_while(|&&w| w == u64::MAX).count();
    let end = bits
        .iter()
        .rposition(|&w| w != 0)
        .map_or(0, |p| p + 1)
        .max(full);
    (full as u64, &bits[full..end])
}

/// splitmix64: the per-operation Zobrist words and the state mixing.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// States seen so far, each given a small id; each state is stored once.
struct StateTable<S> {
    /// Hash of a state -> ids of the states with that hash.
    ids: FastMap<u64, Vec<u32>>,
    states: Vec<S>,
    hasher: BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
}

impl<S: Clone + Eq + std::hash::Hash> StateTable<S> {
    fn new() -> Self {
        StateTable {
            ids: FastMap::default(),
            states: Vec::new(),
            hasher: BuildHasherDefault::default(),
        }
    }
    /// The id of `s`, and whether it is new.
    fn intern(&mut self, s: S) -> (u32, bool) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(&s);
        let ids = self.ids.entry(h).or_default();
        if let Some(&id) = ids.iter().find(|&&id| self.states[id as usize] == s) {
            return (id, false);
        }
        let id = self.states.len() as u32;
        self.states.push(s);
        ids.push(id);
        (id, true)
    }
    fn get(&self, id: u32) -> &S {
        &self.states[id as usize]
    }
}

/// One node of the call/return list.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: the list index of its return.
    partner: usize,
}

/// Searches for a linearization of `ops` (all of one key) under `model`.
pub fn search<M: Model>(model: &M, ops: &[Operation], limits: &SearchLimits) -> SearchResult {
    let n = ops.len();
    let completed_total = ops.iter().filter(|o| o.is_completed()).count();
    if completed_total == 0 {
        return SearchResult {
            verdict: SearchVerdict::Linearizable,
            linearization: Vec::new(),
            states: 0,
        };
    }
    // Build the time-ordered entry list: index 0 = head, 1..=2n entries, 2n+1 = tail.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, 0, i));
        order.push((o.ret.unwrap_or(u64::MAX), 1, i));
    }
    // Ties only happen between pending returns (u64::MAX): any order of those is fine.
    order.sort_unstable();
    let head = 0usize;
    let tail = 2 * n + 1;
    let mut entries = vec![
        Entry {
            op: usize::MAX,
            is_call: false,
            partner: 0,
        };
        2 * n + 2
    ];
    let mut call_slot = vec![0usize; n];
    let mut ret_slot = vec![0usize; n];
    for (k, &(_, kind, i)) in order.iter().enumerate() {
        let slot = k + 1;
        entries[slot].op = i;
        entries[slot].is_call = kind == 0;
        if kind == 0 {
            call_slot[i] = slot;
        } else {
            ret_slot[i] = slot;
        }
    }
    for i in 0..n {
        entries[call_slot[i]].partner = ret_slot[i];
    }
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    next[tail] = tail;
    let mut prev: Vec<usize> = (0..=tail).map(|i| i.saturating_sub(1)).collect();
    prev[head] = head;

    let zobrist: Vec<u64> = (0..n).map(|i| mix64(i as u64 ^ ZOBRIST_SEED)).collect();
    let words = n.div_ceil(64);
    let mut bits = vec![0u64; words];
    let mut bits_hash = 0u64;

    let mut table = StateTable::new();
    let (mut state, _) = table.intern(model.init());
    let mut memory_bytes = 0u64;
    // Lowe's cache: combined hash -> the first (state, linearized set) pair with that hash;
    // further pairs with the same 64-bit hash (rare) go to `collisions`.
    let mut cache: FastMap<u64, CachedPair> = FastMap::default();
    let mut collisions: FastMap<u64, Vec<CachedPair>> = FastMap::default();
    let mut states = 0u64;
    let mut stack: Vec<(usize, u32)> = Vec::new(); // (call slot, state before)
    let mut linearized_completed = 0usize;
    // The longest stack seen (as operation indices); best[..agree] equals the stack's bottom.
    let mut best: Vec<usize> = Vec::new();
    let mut agree = 0usize;
    let mut steps = 0u64;

    let mut cur = next[head];
    loop {
        if linearized_completed == completed_total {
            return SearchResult {
                verdict: SearchVerdict::Linearizable,
                linearization: stack.iter().map(|&(slot, _)| entries[slot].op).collect(),
                states,
            };
        }
        steps += 1;
        if steps.is_multiple_of(STEPS_PER_CLOCK_CHECK) {
            if let Some(d) = limits.deadline {
                if Instant::now() >= d {
                    record_longest(&mut best, &mut agree, &stack, &entries);
                    return gave_up(GaveUp::Time, best, states);
                }
            }
            if limits.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                record_longest(&mut best, &mut agree, &stack, &entries);
                return gave_up(GaveUp::Cancelled, best, states);
            }
        }
        let e = entries[cur];
        if cur != tail && e.is_call {
            let op = &ops[e.op];
            if let Some(new_state) = model.step(table.get(state), &op.op) {
                let new_bytes = model.state_bytes(&new_state) as u64;
                let (new_id, fresh) = table.intern(new_state);
                if fresh {
                    memory_bytes += new_bytes;
                }
                let w = e.op / 64;
                let m = 1u64 << (e.op % 64);
                bits[w] |= m;
                bits_hash ^= zobrist[e.op];
                let h = bits_hash ^ mix64(u64::from(new_id));
                let (full_words, middle) = compact(&bits);
                let same =
                    |(s, b): &CachedPair| *s == new_id && b[0] == full_words && b[1..] == *middle;
                let seen = match cache.get(&h) {
                    None => false,
                    Some(first) => {
                        same(first) || collisions.get(&h).is_some_and(|v| v.iter().any(same))
                    }
                };
                if !seen {
                    let mut stored = Vec::with_capacity(middle.len() + 1);
                    stored.push(full_words);
                    stored.extend_from_slice(middle);
                    let pair = (new_id, stored.into_boxed_slice());
                    match cache.entry(h) {
                        Slot::Occupied(_) => collisions.entry(h).or_default().push(pair),
                        Slot::Vacant(slot) => {
                            slot.insert(pair);
                        }
                    }
                    states += 1;
                    memory_bytes += CACHED_PAIR_OVERHEAD_BYTES + 8 * (middle.len() as u64 + 1);
                    if states > limits.max_states {
                        record_longest(&mut best, &mut agree, &stack, &entries);
                        return gave_up(GaveUp::States, best, states);
                    }
                    if memory_bytes > limits.max_memory_bytes {
                        record_longest(&mut best, &mut agree, &stack, &entries);
                        return gave_up(GaveUp::Memory, best, states);
                    }
                    stack.push((cur, state));
                    state = new_id;
                    if op.is_completed() {
                        linearized_completed += 1;
                    }
                    // Lift the call and its return out of the list.
                    let r = e.partner;
                    next[prev[cur]] = next[cur];
                    prev[next[cur]] = prev[cur];
                    next[prev[r]] = next[r];
                    prev[next[r]] = prev[r];
                    cur = next[head];
                    continue;
                }
                bits[w] &= !m;
                bits_hash ^= zobrist[e.op];
            }
            cur = next[cur];
        } else {
            // A return (or the end) reached: the last choice was wrong.
            record_longest(&mut best, &mut agree, &stack, &entries);
            let popped = stack.pop();
            agree = agree.min(stack.len());
            let Some((slot, before)) = popped else {
                return SearchResult {
                    verdict: SearchVerdict::NotLinearizable,
                    linearization: best,
                    states,
                };
            };
            let c = entries[slot];
            state = before;
            bits[c.op / 64] &= !(1u64 << (c.op % 64));
            bits_hash ^= zobrist[c.op];
            if ops[c.op].is_completed() {
                linearized_completed -= 1;
            }
            // Unlift in reverse order: the return, then the call.
            let r = c.partner;
            next[prev[r]] = r;
            prev[next[r]] = r;
            next[prev[slot]] = slot;
            prev[next[slot]] = slot;
            cur = next[slot];
        }
    }
}

/// Keeps `best` the longest stack seen. Called before the stack shrinks; copies only the part
/// of the stack above `agree` (the length it is known to share with `best`), so the total
/// copying is bounded by the number of pushes, not pushes × depth.
fn record_longest(
    best: &mut Vec<usize>,
    agree: &mut usize,
    stack: &[(usize, u32)],
    entries: &[Entry],
) {
    if stack.len() > best.len() {
        best.truncate(*agree);
        best.extend(stack[*agree..].iter().map(|&(slot, _)| entries[slot].op));
        *agree = stack.len();
    }
}

fn gave_up(why: GaveUp, best: Vec<usize>, states: u64) -> SearchResult {
    SearchResult {
        verdict: SearchVerdict::Unknown(why),
        linearization: best,
        states,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::history::Op;
    use crate::checker::model::RegisterModel;

    fn op(index: usize, op: Op, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            index,
            process: index as u64,
            key: None,
            op,
            call,
            ret,
            call_line: call as usize + 1,
            return_line: ret.map(|r| r as usize + 1),
        }
    }
    fn w(v: &str) -> Op {
        Op::Write { value: v.into() }
    }
    fn r(v: Option<&str>) -> Op {
        Op::Read {
            observed: v.map(String::from),
        }
    }
    const NO_LIMITS: SearchLimits = SearchLimits {
        deadline: None,
        max_states: u64::MAX,
        max_memory_bytes: u64::MAX,
        cancel: None,
    };

    #[test]
    fn concurrent_write_and_read_either_order() {
        // write 1 [0,3] overlaps read [1,2]: the read may see nil or 1.
        for seen in [None, Some("1")] {
            let ops = [op(0, w("1"), 0, Some(3)), op(1, r(seen), 1, Some(2))];
            let res = search(&RegisterModel, &ops, &NO_LIMITS);
            assert_eq!(res.verdict, SearchVerdict::Linearizable, "{seen:?}");
            assert_eq!(res.linearization.len(), 2);
        }
    }

    #[test]
    fn stale_read_is_caught() {
        // write 1 returns, then a read begins and sees nil: not linearizable.
        let ops = [op(0, w("1"), 0, Some(1)), op(1, r(None), 2, Some(3))];
        let res = search(&RegisterModel, &ops, &NO_LIMITS);
        assert_eq!(res.verdict, SearchVerdict::NotLinearizable);
        assert_eq!(res.linearization, vec![0]);
    }

    #[test]
    fn pending_write_may_or_may_not_apply() {
        // A pending write of 2 called at 0; reads after it see 2, then 1 is written and read.
        let took_effect = [
            op(0, w("2"), 0, None),
            op(1, r(Some("2")), 1, Some(2)),
            op(2, w("1"), 3, Some(4)),
            op(3, r(Some("1")), 5, Some(6)),
        ];
        let res = search(&RegisterModel, &took_effect, &NO_LIMITS);
        assert_eq!(res.verdict, SearchVerdict::Linearizable);
        let never = [op(0, w("2"), 0, None), op(1, r(None), 1, Some(2))];
        assert_eq!(
            search(&RegisterModel, &never, &NO_LIMITS).verdict,
            SearchVerdict::Linearizable
        );
        // It can take effect late, but only once: 2, then 1, then 2 again is impossible.
        let twice = [
            op(0, w("2"), 0, None),
            op(1, r(Some("2")), 1, Some(2)),
            op(2, w("1"), 3, Some(4)),
            op(3, r(Some("2")), 5, Some(6)),
        ];
        assert_eq!(
            search(&RegisterModel, &twice, &NO_LIMITS).verdict,
            SearchVerdict::NotLinearizable
        );
    }

    #[test]
    fn compact_form_is_canonical() {
        assert_eq!(compact(&[u64::MAX, u64::MAX, 5, 0, 0]), (2, &[5u64][..]));
        assert_eq!(compact(&[u64::MAX, 0, 0]), (1, &[][..]));
        assert_eq!(compact(&[0, 0]), (0, &[][..]));
        assert_eq!(compact(&[1, 0, 8, 0]), (0, &[1u64, 0, 8][..]));
        assert_eq!(compact(&[u64::MAX, u64::MAX]), (2, &[][..]));
    }

    #[test]
    fn state_budget_gives_unknown() {
        // Many concurrent writes followed by an impossible read: exhaustive search is large.
        let mut ops: Vec<Operation> = (0..12)
            .map(|i| op(i, w(&i.to_string()), i as u64, Some(100 + i as u64)))
            .collect();
        ops.push(op(12, r(Some("x")), 200, Some(201)));
        let limits = SearchLimits {
            deadline: None,
            max_states: 50,
            max_memory_bytes: u64::MAX,
            cancel: None,
        };
        let res = search(&RegisterModel, &ops, &limits);
        assert_eq!(res.verdict, SearchVerdict::Unknown(GaveUp::States));
        let limits = SearchLimits {
            deadline: None,
            max_states: u64::MAX,
            max_memory_bytes: 4096,
            cancel: None,
        };
        let res = search(&RegisterModel, &ops, &limits);
        assert_eq!(res.verdict, SearchVerdict::Unknown(GaveUp::Memory));
        let res = search(&RegisterModel, &ops, &NO_LIMITS);
        assert_eq!(res.verdict, SearchVerdict::NotLinearizable);
        assert_eq!(res.linearization.len(), 12);
    }
}
