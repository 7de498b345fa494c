//! The stages of a write, as fine histograms per core, and the table that names them for the
//! exposition. Written by the core that runs the write's shard. Owned by the node's metrics.

use super::{Counter, FineHistogram};

/// The stages of a write, timed on the core that runs its shard (all in ns). On the leader a
/// write is *received* when its request reaches the request path of the node, *proposed* when
/// the Raft core appended it to the log, *locally durable* when the leader's own WAL sync
/// covering it completed, *committed* when the driver round that found it committed began (a
/// quorum's acknowledgements were stepped), *applied* when the store applied it and
/// *answered* when the answer was handed to the asking connection task. On a follower, an
/// append is *received* when the driver round that persists it began, *durable* when its WAL
/// sync completed and *acknowledged* when the acknowledgement was queued to the leader.
///
/// The leader sends its entries before it syncs them, so its own sync overlaps replication:
/// proposed → committed is then close to the slower of the two, not their sum, and
/// `commit_before_local_durable` counts the writes a follower quorum committed before the
/// leader's own sync finished.
///
/// Three stages time a client request around the node's own path, on the core whose listener
/// took its connection: *frame read → served* from the socket read that completed its frame to
/// its request task starting to serve it, *received → reply queued* from received (as above)
/// to its answer queued on the connection (a single operation of any kind; at one write in
/// flight, minus received → answered, this is the wake-up of the request task after the
/// answer), and *reply queued → written* from a batch of answers queued on a client
/// connection to its socket write completing.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Received → proposed.
    pub received_to_proposed: FineHistogram,
    /// Proposed → locally durable (leader's own WAL sync). A write answered before its
    /// local sync completed is not in it: `commit_before_local_durable` counts it.
    pub proposed_to_local_durable: FineHistogram,
    /// Proposed → committed (quorum durable).
    pub proposed_to_committed: FineHistogram,
    /// Committed → applied.
    pub committed_to_applied: FineHistogram,
    /// Applied → answered.
    pub applied_to_answered: FineHistogram,
    /// Received → answered: the whole write on the node.
    pub received_to_answered: FineHistogram,
    /// Follower: append received → durable.
    pub append_received_to_durable: FineHistogram,
    /// Follower: durable → acknowledgement queued.
    pub append_durable_to_acked: FineHistogram,
    /// Client request: the socket read that completed its frame → its task serving it.
    pub frame_read_to_served: FineHistogram,
    /// Client request (one operation): received → its answer queued on the connection.
    pub received_to_reply_queued: FineHistogram,
    /// Client connection: oldest answer of a batch queued → the batch's socket write done.
    pub reply_queued_to_written: FineHistogram,
    /// Writes committed before the leader's own WAL sync covering them completed.
    pub commit_before_local_durable: Counter,
}

/// Stage names and their histograms, in render order.
type StageField = fn(&StageMetrics) -> &FineHistogram;
/// Every stage of [`StageMetrics`]: label and field.
pub const STAGES: [(&str, StageField); 11] = [
    ("received_to_proposed", |s| &s.received_to_proposed),
    ("proposed_to_local_durable", |s| {
        &s.proposed_to_local_durable
    }),
    ("proposed_to_committed", |s| &s.proposed_to_committed),
    ("committed_to_applied", |s| &s.committed_to_applied),
    ("applied_to_answered", |s| &s.applied_to_answered),
    ("received_to_answered", |s| &s.received_to_answered),
    ("follower_append_to_durable", |s| {
        &s.append_received_to_durable
    }),
    ("follower_durable_to_acked", |s| &s.append_durable_to_acked),
    ("request_frame_read_to_served", |s| &s.frame_read_to_served),
    ("request_received_to_reply_queued", |s| {
        &s.received_to_reply_queued
    }),
    ("reply_queued_to_written", |s| &s.reply_queued_to_written),
];
