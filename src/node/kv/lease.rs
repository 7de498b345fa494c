//! One shard's leases: `id -> (time to live, last refresh index, attached keys)`, plus the
//! leader's local clock that decides when a lease expires.
//!
//! Replicated state (in snapshots, identical on every replica): the leases, their TTLs, the
//! log index of each lease's last grant or keep-alive (`refreshed`), and which keys each one
//! holds (a key belongs to at most one lease). Expiry is never decided at apply: the leader
//! times every lease with its own monotonic clock ([`LeaseClock`], never replicated) and
//! proposes a `LeaseExpire { id, refreshed }` command; applying it deletes the lease and its
//! keys only if the lease was not refreshed since (a keep-alive that raced the expiry wins).
//! So every replica deletes the same keys at the same log index.
//!
//! Conservative clock: a deadline is `now + ttl` taken when the leader first sees a refresh
//! index, and the whole clock restarts from full TTLs whenever the leader's term changes, so a
//! lease never expires before its TTL has passed on the current leader since the last refresh
//! it knows of (as etcd does on leader change).
//!
//! Bounds: [`MAX_LEASES_PER_SHARD`] leases, [`MAX_KEYS_PER_LEASE`] keys each, TTLs between
//! [`MIN_LEASE_TTL_MS`] and [`MAX_LEASE_TTL_MS`], at most [`LEASE_EXPIRES_PER_CHECK`]
//! expiries proposed per check. Owned by the shard's [`super::KvStore`].
//!
//! The tables are persistent structures ([`imbl`]), so cloning them (a snapshot being taken)
//! is O(1) however many leases and attached keys there are.

use imbl::{HashMap, OrdMap, OrdSet};
use std::time::{Duration, Instant};

use ringraft_net::message::LeaseInfo;

use super::command::{put_bytes, CodecError, Reader};
use crate::node::limits::{
    LEASE_EXPIRES_PER_CHECK, MAX_KEYS_PER_LEASE, MAX_LEASES_PER_SHARD, MAX_LEASE_TTL_MS,
    MIN_LEASE_TTL_MS,
};

/// How long the leader waits for a proposed expiry to apply before proposing it again.
const EXPIRE_RETRY: Duration = Duration::from_secs(1);

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Time to live, restarted by every keep-alive.
    pub ttl_ms: u64,
    /// Log index of the grant or the last keep-alive.
    pub refreshed: u64,
    /// Keys attached.
    pub keys: OrdSet<Vec<u8>>,
}

/// The leader's deadlines (local, never replicated).
#[derive(Debug, Clone, Default)]
struct LeaseClock {
    /// The leader term the deadlines were taken in (a new term restarts them all).
    term: u64,
    /// `id -> (refresh index the deadline was taken for, deadline)`.
    deadlines: HashMap<u64, (u64, Instant)>,
}

/// One shard's lease table (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Leases {
    leases: OrdMap<u64, Lease>,
    /// Which lease each attached key belongs to.
    key_lease: HashMap<Vec<u8>, u64>,
    clock: LeaseClock,
}

impl PartialEq for Leases {
    /// Replicated state only (the clock is local).
    fn eq(&self, other: &Self) -> bool {
        self.leases == other.leases
    }
}

impl Leases {
    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there is no lease.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Lease `id`.
    pub fn get(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every lease id, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.leases.keys().copied().collect()
    }

    /// The lease `key` is attached to.
    pub fn lease_of(&self, key: &[u8]) -> Option<u64> {
        self.key_lease.get(key).copied()
    }

    /// Why lease `id` with `ttl_ms` cannot be granted now, if it cannot.
    pub fn check_grant(&self, id: u64, ttl_ms: u64) -> Result<(), String> {
        if id == 0 {
            return Err("lease id 0 is not allowed".into());
        }
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&ttl_ms) {
            return Err(format!(
                "lease ttl of {ttl_ms} ms: must be {MIN_LEASE_TTL_MS} to {MAX_LEASE_TTL_MS} ms"
            ));
        }
        if self.leases.contains_key(&id) {
            return Err(format!("lease {id} already exists"));
        }
        if self.leases.len() >= MAX_LEASES_PER_SHARD {
            return Err(format!(
                "this shard holds {MAX_LEASES_PER_SHARD} leases, the most it keeps; revoke some"
            ));
        }
        Ok(())
    }

    /// Grants lease `id` at log index `index` (call [`Leases::check_grant`] first).
    pub fn grant(&mut self, id: u64, ttl_ms: u64, index: u64) {
        self.leases.insert(
            id,
            Lease {
                ttl_ms,
                refreshed: index,
                keys: OrdSet::new(),
            },
        );
    }

    /// Why `key` cannot be attached to lease `id`, if it cannot.
    pub fn check_attach(&self, key: &[u8], id: u64) -> Result<(), String> {
        let l = self
            .leases
            .get(&id)
            .ok_or_else(|| format!("lease {id} not found (expired or revoked)"))?;
        if l.keys.len() >= MAX_KEYS_PER_LEASE && !l.keys.contains(key) {
            return Err(format!(
                "lease {id} holds {MAX_KEYS_PER_LEASE} keys, the most one lease keeps"
            ));
        }
        Ok(())
    }

    /// Attaches `key` to lease `id` (detaching it from any other; call
    /// [`Leases::check_attach`] first).
    pub fn attach(&mut self, key: &[u8], id: u64) {
        self.detach(key);
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
            self.key_lease.insert(key.to_vec(), id);
        }
    }

    /// Detaches `key` from its lease (a plain put or a delete of the key).
    pub fn detach(&mut self, key: &[u8]) {
        // Most shards hold no leased key: skip hashing the key on every put.
        if self.key_lease.is_empty() {
            return;
        }
        if let Some(id) = self.key_lease.remove(key) {
            if let Some(l) = self.leases.get_mut(&id) {
                l.keys.remove(key);
            }
        }
    }

    /// Records a keep-alive of `id` at `index`; returns the lease.
    pub fn refresh(&mut self, id: u64, index: u64) -> Option<&Lease> {
        let l = self.leases.get_mut(&id)?;
        l.refreshed = index;
        Some(l)
    }

    /// Removes lease `id`; returns it (the caller deletes its keys).
    pub fn remove(&mut self, id: u64) -> Option<Lease> {
        let l = self.leases.remove(&id)?;
        for k in &l.keys {
            self.key_lease.remove(k);
        }
        self.clock.deadlines.remove(&id);
        Some(l)
    }

    /// Brings the leader's clock up to date at `now` in leader term `term`: a new term
    /// restarts every deadline from its full TTL; a lease seen with a new refresh index gets
    /// `now + ttl`.
    fn tick(&mut self, now: Instant, term: u64) {
        if self.clock.term != term {
            self.clock.term = term;
            self.clock.deadlines.clear();
        }
        let leases = &self.leases;
        self.clock.deadlines.retain(|id, _| leases.contains_key(id));
        for (id, l) in leases {
            let fresh = self
                .clock
                .deadlines
                .get(id)
                .is_some_and(|(r, _)| *r == l.refreshed);
            if !fresh {
                let deadline = now + Duration::from_millis(l.ttl_ms);
                self.clock.deadlines.insert(*id, (l.refreshed, deadline));
            }
        }
    }

    /// On the leader of term `term` at `now`: the leases whose deadline passed, as
    /// `(id, refreshed)` for `LeaseExpire` commands, at most [`LEASE_EXPIRES_PER_CHECK`].
    pub fn due(&mut self, now: Instant, term: u64) -> Vec<(u64, u64)> {
        self.tick(now, term);
        let mut out: Vec<(u64, u64)> = self
            .clock
            .deadlines
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(id, (r, _))| (*id, *r))
            .collect();
        out.sort_unstable();
        out.truncate(LEASE_EXPIRES_PER_CHECK);
        // Proposed now: asked again only if the expiry has not applied a while later (a lost
        // proposal), not on every check while it travels through the log.
        for (id, r) in &out {
            self.clock.deadlines.insert(*id, (*r, now + EXPIRE_RETRY));
        }
        out
    }

    /// Every lease with its remaining time on this node's clock (meaningful on the leader;
    /// a lease the clock has not timed yet shows its full TTL).
    pub fn list(&self, now: Instant) -> Vec<LeaseInfo> {
        self.leases
            .iter()
            .map(|(id, l)| {
                let remaining = match self.clock.deadlines.get(id) {
                    Some((r, d)) if *r == l.refreshed => {
                        d.saturating_duration_since(now).as_millis() as u64
                    }
                    _ => l.ttl_ms,
                };
                LeaseInfo {
                    id: *id,
                    ttl_ms: l.ttl_ms,
                    remaining_ms: remaining,
                    keys: l.keys.len() as u32,
                }
            })
            .collect()
    }

    /// Appends the replicated state: `count u64 | count x (id u64 | ttl_ms u64 | refreshed u64
    /// | key_count u64 | key_count x (key_len u32 | key))`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.leases.len() as u64).to_le_bytes());
        for (id, l) in &self.leases {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&l.ttl_ms.to_le_bytes());
            out.extend_from_slice(&l.refreshed.to_le_bytes());
            out.extend_from_slice(&(l.keys.len() as u64).to_le_bytes());
            for k in &l.keys {
                put_bytes(out, k);
            }
        }
    }

    /// Reads [`Leases::encode`]'s output; every count is checked against the bytes left and
    /// the table's bounds, and a key attached twice is refused.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Leases, CodecError> {
        let n = r.count(32)?;
        if n > MAX_LEASES_PER_SHARD {
            return Err(CodecError(format!("{n} leases in a snapshot")));
        }
        let mut t = Leases::default();
        for _ in 0..n {
            let id = r.u64()?;
            let ttl_ms = r.u64()?;
            let refreshed = r.u64()?;
            let nk = r.count(4)?;
            if nk > MAX_KEYS_PER_LEASE {
                return Err(CodecError(format!("lease {id} with {nk} keys")));
            }
            let mut keys = OrdSet::new();
            for _ in 0..nk {
                let k = r.bytes()?.to_vec();
                if t.key_lease.insert(k.clone(), id).is_some() {
                    return Err(CodecError(format!(
                        "a key is attached to two leases ({id})"
                    )));
                }
                keys.insert(k);
            }
            if t.leases
                .insert(
                    id,
                    Lease {
                        ttl_ms,
                        refreshed,
                        keys,
                    },
                )
                .is_some()
            {
                return Err(CodecError(format!("lease {id} twice in a snapshot")));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_restart_on_refresh_and_on_a_new_term() {
        let mut t = Leases::default();
        t.grant(7, 1_000, 1);
        let t0 = Instant::now();
        assert!(t.due(t0, 1).is_empty());
        assert!(t.due(t0 + Duration::from_millis(999), 1).is_empty());
        assert_eq!(t.due(t0 + Duration::from_millis(1_000), 1), [(7, 1)]);
        // A keep-alive (new refresh index) restarts the deadline.
        t.refresh(7, 5);
        let t1 = t0 + Duration::from_millis(1_500);
        assert!(t.due(t1, 1).is_empty());
        assert_eq!(t.due(t1 + Duration::from_millis(1_000), 1), [(7, 5)]);
        // A new leader term restarts every deadline from full.
        let t2 = t1 + Duration::from_millis(900);
        assert!(t.due(t2, 2).is_empty());
        assert!(t.due(t2 + Duration::from_millis(999), 2).is_empty());
        assert_eq!(t.due(t2 + Duration::from_millis(1_000), 2), [(7, 5)]);
    }
}
