//! Translation between the Raft core's messages (`crate::raft`) and the wire messages of
//! `ringraft-net`, in both directions: [`outbound`] turns a core message into frames,
//! [`inbound`] checks and decodes a peer's frame into core messages, [`heartbeat`] keeps the
//! merged heartbeats' rounds, and [`snapshot_reassembly`] puts a chunked snapshot back together
//! under a per-node memory budget. Each direction checks what the other one writes: a frame
//! from a peer is hostile until decoded here (its claimed sender must be the handshake's
//! identity, every length is bounded before allocation). Owned by the node.

mod heartbeat;
mod inbound;
mod outbound;
mod snapshot_reassembly;

pub(crate) use heartbeat::{heartbeat_responses_to_wire, heartbeats_to_wire, HeartbeatRounds};
pub(crate) use inbound::{inbound_from_wire, Inbound};
pub(crate) use outbound::{message_to_wire, AppendFrames};
pub(crate) use snapshot_reassembly::SnapshotAssembly;

/// Frame flags for a request (`false`) or a response (`true`).
pub(crate) fn frame_flags(response: bool) -> u16 {
    if response {
        ringraft_net::frame::FLAG_RESPONSE
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
