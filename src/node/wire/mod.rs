//! Translation between the Raft core's messages (`crate::raft`) and the wire messages of
//! `ringraft-net`, in both directions: [`outbound`] turns a core message into frames,
//! [`inbound`] checks and decodes a peer's frame into core messages, [`heartbeat`] keeps the
//! merged heartbeats' rounds, and [`snapshot_reassembly`] puts a chunked snapshot back together
//! under a per-node memory budget. Each direction checks what the other one writes: a frame
//! from a peer is hostile until decoded here (its claimed sender must be the handshake's
//! identity, every length is bounded before allocation). Owned by the node.

use ringraft_net::message as wire;
use ringraft_net::{NetError, SendQueue};

mod heartbeat;
mod inbound;
mod outbound;
mod snapshot_reassembly;

pub use heartbeat::{
    heartbeat_responses_to_wire, heartbeats_to_wire, HeartbeatRounds,
    MAX_HEARTBEAT_BATCHES_REMEMBERED,
};
pub use inbound::{inbound_from_wire, Inbound};
pub use outbound::{message_to_wire, snapshot_wire_bytes};
pub use snapshot_reassembly::{
    AssemblyBudget, SnapshotAssembly, SnapshotChunkError, MAX_SNAPSHOT_ASSEMBLIES,
    MAX_SNAPSHOT_ASSEMBLY_BYTES,
};

/// Frame flags for a request (`false`) or a response (`true`).
pub fn frame_flags(response: bool) -> u16 {
    if response {
        ringraft_net::frame::FLAG_RESPONSE
    } else {
        0
    }
}

/// Queues any owned wire message on `q` as a request or as the response to `request_id`.
pub fn push_message(
    q: &mut SendQueue,
    request_id: u64,
    response: bool,
    m: &wire::Message,
) -> Result<usize, NetError> {
    q.push_message(frame_flags(response), request_id, m)
}

#[cfg(test)]
mod tests;
