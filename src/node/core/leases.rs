//! Lease expiry on the leader: every [`LEASE_CHECK_INTERVAL_MS`] each shard this node leads
//! asks its store which leases are due on the leader's clock (see [`crate::node::kv::lease`])
//! and proposes one `LeaseExpire` command per due lease. Followers never expire anything; the
//! log carries the decision to every replica. Proposals that cannot be made now (busy, lost
//! leadership) are simply retried by a later check.

use super::*;
use crate::node::kv::WriteOp;
use crate::node::limits::LEASE_CHECK_INTERVAL_MS;

impl CoreState {
    /// Proposes the lease expiries due now on the shards this node leads.
    pub fn expire_leases(&mut self, now: Instant) {
        if self.fatal.is_some() {
            return;
        }
        let groups: Vec<GroupId> = self.shards.keys().copied().collect();
        let mut proposed = 0usize;
        for g in groups {
            let term = match self.multi.group_mut(g) {
                Some(r) if r.role() == Role::Leader => r.term(),
                _ => continue,
            };
            let due: Vec<WriteOp> = match self.shards.get_mut(&g) {
                Some(s) => s.kv.due_lease_expiries(now, term),
                None => continue,
            };
            for op in due {
                // Nobody waits for the answer: the receiver is dropped at once.
                let (tx, _rx) = reply_channel();
                match self.propose(g, 0, 0, ClientOp::Write(op), tx, Instant::now()) {
                    Ok(()) => proposed += 1,
                    Err((e, _)) => debug!(shard = g, "lease expiry not proposed now: {e}"),
                }
            }
        }
        if proposed > 0 {
            debug!(proposed, "lease expiries proposed");
            self.kick();
        }
    }
}

/// Runs [`CoreState::expire_leases`] every [`LEASE_CHECK_INTERVAL_MS`] until the core fails.
pub async fn lease_loop(st: Rc<RefCell<CoreState>>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(LEASE_CHECK_INTERVAL_MS)).await;
        let mut s = st.borrow_mut();
        if s.fatal.is_some() {
            return;
        }
        s.expire_leases(Instant::now());
    }
}
