//! Reassembly of the snapshot chunks a leader sends, bounded three ways: at most one
//! transfer per shard and [`MAX_SNAPSHOT_ASSEMBLIES`] per core, each at most the size the
//! caller allows, and all transfers of a node together at most its [`AssemblyBudget`]
//! ([`MAX_SNAPSHOT_ASSEMBLY_BYTES`]). Every offset and length is checked before allocation;
//! every refusal is a typed [`SnapshotChunkError`] and releases what it held. Owned by the
//! node; one [`SnapshotAssembly`] per core.

use std::collections::HashMap;
use std::sync::Arc;

use crate::raft::{GroupId, Membership, Message, MessageBody, NodeId, Snapshot, SnapshotMeta};

/// Snapshot reassemblies in progress per core (at most one per shard).
pub(crate) const MAX_SNAPSHOT_ASSEMBLIES: usize = 64;

/// Why a snapshot chunk from a peer was refused. Every refusal drops nothing but the chunk,
/// except where noted (the transfer it broke is dropped and its bytes released: the leader
/// resends the whole snapshot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SnapshotChunkError {
    /// A new transfer while [`MAX_SNAPSHOT_ASSEMBLIES`] are in progress on this core.
    #[error("more than {MAX_SNAPSHOT_ASSEMBLIES} snapshot transfers in progress")]
    TooManyTransfers,
    /// A chunk past offset 0 for a shard with no transfer in progress.
    #[error("snapshot chunk at offset {offset} without its start")]
    NoStart {
        /// Offset of the chunk.
        offset: u64,
    },
    /// A chunk from another leader than the one whose transfer is in progress.
    #[error(
        "snapshot chunk from node {from} while node {current} is sending this shard's snapshot"
    )]
    OtherLeader {
        /// Sender of the chunk.
        from: NodeId,
        /// Sender of the transfer in progress.
        current: NodeId,
    },
    /// A chunk for another index, or not at the next offset (the transfer is dropped).
    #[error("snapshot chunk for index {index} at offset {offset} does not continue the transfer (index {expected_index}, offset {expected_offset})")]
    Discontinuous {
        /// Index of the chunk.
        index: u64,
        /// Offset of the chunk.
        offset: u64,
        /// Index of the transfer.
        expected_index: u64,
        /// Bytes received so far.
        expected_offset: u64,
    },
    /// `offset + len` does not fit in 64 bits.
    #[error("snapshot chunk at offset {offset} with {len} bytes overflows")]
    Overflow {
        /// Offset of the chunk.
        offset: u64,
        /// Length of the chunk.
        len: u64,
    },
    /// The snapshot would exceed the largest one accepted (the transfer is dropped).
    #[error("snapshot of at least {bytes} bytes is larger than the {max} accepted")]
    TooLarge {
        /// Bytes the chunk would bring the transfer to.
        bytes: u64,
        /// Largest snapshot accepted.
        max: u64,
    },
    /// The node's transfers together would buffer more than their budget (the transfer is
    /// dropped; the leader retries later).
    #[error("snapshot transfers would buffer {bytes} more bytes on this node, over the {max} bytes all may hold")]
    NodeBudget {
        /// Bytes asked for.
        bytes: u64,
        /// The node's budget ([`MAX_SNAPSHOT_ASSEMBLY_BYTES`]).
        max: u64,
    },
    /// The reassembled bytes are not a snapshot (bad membership prefix).
    #[error("snapshot: {0}")]
    Malformed(String),
}

/// Bytes every snapshot transfer of one node may buffer together: two snapshots of the largest
/// size a follower accepts from a leader ([`crate::node::core::MAX_SNAPSHOT_BYTES`]), so one
/// full-size transfer can always proceed next to another, whatever the number of cores and
/// shards (64 transfers of the largest size would be 64 GiB).
pub(crate) const MAX_SNAPSHOT_ASSEMBLY_BYTES: usize = 2 * crate::node::core::MAX_SNAPSHOT_BYTES;

// A snapshot accepted from a leader must also be one the node can read back from its file, and
// the node's budget is far below what the per-core transfer count alone would allow.
const _: () = assert!(
    MAX_SNAPSHOT_ASSEMBLY_BYTES < MAX_SNAPSHOT_ASSEMBLIES * crate::node::core::MAX_SNAPSHOT_BYTES
);
const _: () = assert!(
    crate::node::core::MAX_SNAPSHOT_BYTES as u64 <= crate::node::storage::MAX_SNAPSHOT_FILE_BYTES
);

/// Buffer bytes reserved by the snapshot transfers of one node (shared by its cores).
#[derive(Debug)]
pub(crate) struct AssemblyBudget {
    used: std::sync::atomic::AtomicUsize,
    pub(super) max: usize,
}

impl AssemblyBudget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> AssemblyBudget {
        AssemblyBudget {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// The budget of this node (process): [`MAX_SNAPSHOT_ASSEMBLY_BYTES`], shared by every core.
    pub(crate) fn node() -> Arc<AssemblyBudget> {
        static NODE: std::sync::OnceLock<Arc<AssemblyBudget>> = std::sync::OnceLock::new();
        NODE.get_or_init(|| Arc::new(AssemblyBudget::new(MAX_SNAPSHOT_ASSEMBLY_BYTES)))
            .clone()
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }

    fn try_reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// One snapshot transfer in progress.
#[derive(Debug)]
struct Transfer {
    from: NodeId,
    index: u64,
    buf: Vec<u8>,
    /// Bytes charged to the budget for `buf`.
    reserved: usize,
}

/// Reassembles snapshot chunks, at most one transfer per shard (a transfer that starts replaces
/// the shard's previous one) and [`MAX_SNAPSHOT_ASSEMBLIES`] per core, each at most the
/// `max_bytes` given, all of a node's together at most its [`AssemblyBudget`]. Every offset and
/// length is checked (no overflow, no gap, bounds before allocation).
#[derive(Debug)]
pub(crate) struct SnapshotAssembly {
    parts: HashMap<GroupId, Transfer>,
    pub(super) budget: Arc<AssemblyBudget>,
}

impl Default for SnapshotAssembly {
    /// An assembly charging the node's budget ([`AssemblyBudget::node`]).
    fn default() -> Self {
        SnapshotAssembly::with_budget(AssemblyBudget::node())
    }
}

impl Drop for SnapshotAssembly {
    fn drop(&mut self) {
        for t in self.parts.values() {
            self.budget.release(t.reserved);
        }
    }
}

impl SnapshotAssembly {
    /// An assembly charging `budget`.
    pub(crate) fn with_budget(budget: Arc<AssemblyBudget>) -> SnapshotAssembly {
        SnapshotAssembly {
            parts: HashMap::new(),
            budget,
        }
    }

    /// Transfers in progress.
    #[cfg(test)]
    pub(super) fn transfers(&self) -> usize {
        self.parts.len()
    }

    fn drop_transfer(&mut self, group: GroupId) {
        if let Some(t) = self.parts.remove(&group) {
            self.budget.release(t.reserved);
        }
    }

    /// Adds a chunk; returns the core message once the last chunk arrived. A chunk at offset 0
    /// starts a transfer (replacing the shard's previous one); later chunks must continue it
    /// exactly (same leader, same index, next offset).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        me: NodeId,
        group: GroupId,
        from: NodeId,
        term: u64,
        index: u64,
        index_term: u64,
        offset: u64,
        data: &[u8],
        done: bool,
        max_bytes: usize,
    ) -> Result<Option<Message>, SnapshotChunkError> {
        let len = data.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or(SnapshotChunkError::Overflow { offset, len })?;
        if offset == 0 {
            self.drop_transfer(group);
            if self.parts.len() >= MAX_SNAPSHOT_ASSEMBLIES {
                return Err(SnapshotChunkError::TooManyTransfers);
            }
            self.parts.insert(
                group,
                Transfer {
                    from,
                    index,
                    buf: Vec::new(),
                    reserved: 0,
                },
            );
        }
        let Some(t) = self.parts.get(&group) else {
            return Err(SnapshotChunkError::NoStart { offset });
        };
        if t.from != from {
            return Err(SnapshotChunkError::OtherLeader {
                from,
                current: t.from,
            });
        }
        if t.index != index || t.buf.len() as u64 != offset {
            let e = SnapshotChunkError::Discontinuous {
                index,
                offset,
                expected_index: t.index,
                expected_offset: t.buf.len() as u64,
            };
            self.drop_transfer(group);
            return Err(e);
        }
        if end > max_bytes as u64 {
            self.drop_transfer(group);
            return Err(SnapshotChunkError::TooLarge {
                bytes: end,
                max: max_bytes as u64,
            });
        }
        // `end <= max_bytes`, so it fits a usize. Grow geometrically (capped at `max_bytes`)
        // while the budget allows, else exactly; every byte of capacity is charged first.
        let need = end as usize;
        let budget = self.budget.clone();
        let Some(t) = self.parts.get_mut(&group) else {
            return Err(SnapshotChunkError::NoStart { offset });
        };
        if need > t.reserved {
            let wanted = need.max(t.reserved.saturating_mul(2)).min(max_bytes);
            let target = if budget.try_reserve(wanted - t.reserved) {
                wanted
            } else if budget.try_reserve(need - t.reserved) {
                need
            } else {
                let e = SnapshotChunkError::NodeBudget {
                    bytes: (need - t.reserved) as u64,
                    max: budget.max as u64,
                };
                self.drop_transfer(group);
                return Err(e);
            };
            t.buf.reserve_exact(target - t.buf.len());
            t.reserved = target;
        }
        t.buf.extend_from_slice(data);
        if !done {
            return Ok(None);
        }
        let bytes = match self.parts.remove(&group) {
            Some(t) => {
                budget.release(t.reserved);
                t.buf
            }
            None => return Err(SnapshotChunkError::NoStart { offset }),
        };
        let malformed = |m: &str| SnapshotChunkError::Malformed(m.to_string());
        let mlen = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| malformed("shorter than its membership length"))?;
        let mend = mlen
            .checked_add(4)
            .ok_or_else(|| malformed("membership length overflows"))?;
        let mbytes = bytes
            .get(4..mend)
            .ok_or_else(|| malformed("shorter than its membership"))?;
        let membership = Membership::decode(mbytes)
            .map_err(|e| SnapshotChunkError::Malformed(format!("membership: {e}")))?;
        Ok(Some(Message {
            from,
            to: me,
            term,
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term: index_term,
                        membership,
                    },
                    data: Arc::from(&bytes[mend..]),
                },
            },
        }))
    }
}
