//! One simulated node: its groups ([`MultiRaft`]), its simulated storage, and the node's own
//! driver state (shards with their state machines, reads and writes waiting for an answer,
//! persist batches waiting for durability). [`SimNode::round`] runs one round of the real
//! driver against the simulated storage.
//!
//! Invariants: a persist batch is handed back to the driver only once its ticket is durable,
//! oldest first; every committed entry of a round passes the invariant checker before it is
//! applied. Owned by the simulator.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::invariants::{Invariants, Violation};
use super::storage::NodeStorage;
use crate::node::driver::{
    note_acked, Driver, DriverFaults, PendingRead, PersistBatch, RoundStats, Shard,
};
use crate::node::metrics::CoreMetrics;
use crate::raft::{Envelope, GroupId, MultiRaft, NodeId};

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Id.
    pub id: NodeId,
    /// The groups, `None` while crashed.
    pub multi: Option<MultiRaft>,
    /// Storage (durable part survives crashes).
    pub storage: NodeStorage,
    /// The driver's shards: state machines (lost on crash, rebuilt from the snapshot), writes
    /// and reads waiting for an answer.
    pub(super) shards: BTreeMap<GroupId, Shard>,
    pub(super) reads: HashMap<u64, PendingRead>,
    /// Persist batches waiting for their ticket to be durable, oldest first.
    pub(super) batches: VecDeque<PersistBatch>,
    pub(super) metrics: CoreMetrics,
    /// Restarts so far.
    pub incarnation: u64,
    /// Time units per tick.
    pub tick_period: u64,
    pub(super) fsync_scheduled: bool,
}

impl SimNode {
    /// The node's driver over its state (`None` while crashed).
    pub(super) fn driver(&mut self, faults: DriverFaults) -> Option<Driver<'_>> {
        let multi = self.multi.as_mut()?;
        Some(
            Driver::new(multi, &mut self.shards, &mut self.reads, &self.metrics)
                .with_faults(faults),
        )
    }

    /// One round of the node's driver (`None`: nothing to do, or the node is down). The storage
    /// never applies backpressure; a received snapshot is durable with the round's write.
    pub(super) fn round(
        &mut self,
        faults: DriverFaults,
        net: &mut Vec<Envelope>,
        inv: &mut Invariants,
    ) -> Result<Option<RoundStats>, Violation> {
        let id = self.id;
        let Some(multi) = self.multi.as_mut() else {
            return Ok(None);
        };
        let mut d = Driver::new(multi, &mut self.shards, &mut self.reads, &self.metrics)
            .with_faults(faults);
        let Some(mut round) = d
            .begin(None, net)
            .map_err(|e| Violation(format!("node {id}: {e}")))?
        else {
            return Ok(None);
        };
        let batch = d
            .persist(&mut round, &mut self.storage)
            .map_err(|e| Violation(format!("node {id}: {e}")))?;
        if !batch.is_empty() {
            self.batches.push_back(batch);
        }
        for (g, e) in round.committed() {
            inv.check_apply(g, id, e)?;
        }
        let taken = d
            .apply(&mut round, net)
            .map_err(|e| Violation(format!("node {id}: {e}")))?;
        for t in &taken {
            if let Some(w) =
                d.compact_taken(t.group, t.state.applied_index(), t.state.snapshot_shared())
            {
                d.snapshot_written(&w, Ok(()), &mut self.storage);
            }
        }
        Ok(Some(round.stats()))
    }

    /// Hands the batches whose ticket is durable back to the driver, oldest first.
    pub(super) fn release_durable(
        &mut self,
        faults: DriverFaults,
        net: &mut Vec<Envelope>,
    ) -> Result<(), Violation> {
        let id = self.id;
        let durable = self.storage.durable_ticket();
        let Some(multi) = self.multi.as_mut() else {
            return Ok(());
        };
        let mut d = Driver::new(multi, &mut self.shards, &mut self.reads, &self.metrics)
            .with_faults(faults);
        while self.batches.front().is_some_and(|b| b.ticket() <= durable) {
            if let Some(b) = self.batches.pop_front() {
                let done = d.on_durable(b, net);
                if let Some(e) = done.refused {
                    return Err(Violation(format!("node {id}: {e}")));
                }
                note_acked(&self.metrics, done.follower);
            }
        }
        Ok(())
    }
}
