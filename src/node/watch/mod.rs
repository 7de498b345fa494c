//! Watches: streams of the puts and deletes applied to a shard, from a revision or from now.
//!
//! A *revision* is the shard's Raft log index of the entry that made a change: the same on
//! every replica, so a watch can resume on any node after a failover. Revisions are per shard;
//! a watch over a prefix or a range spans every shard, and the client keeps one revision per
//! shard and merges the streams (no order across shards; strict log order within one).
//!
//! Pieces, in the order an event travels:
//! - [`events`]: what one applied entry changed (derived from its command and its result, on
//!   every replica, at apply).
//! - [`history`]: the shard's bounded ring of recent events (count *and* bytes, constants of
//!   [`crate::node::limits`]); its floor is what "compacted" reports. After a restart or a
//!   snapshot install it starts at the snapshot's index.
//! - [`hub`]: per shard, the history plus the registered watchers, each with a bounded send
//!   queue; a watcher whose queue is full when there is more for it is cancelled "too slow"
//!   (never allowed to grow memory) and resumes from its last covered revision.
//! - [`serve`]: registration from any core (the shard's core owns the hub; other cores ask it
//!   over the mesh) and the frame protocol stream.
//! - [`http`]: `GET /watch` as chunked JSON lines or server-sent events.
//!
//! Consistency: a watch is served by the node it is sent to, leader or follower. Its events
//! are in log order and exactly those the log applied, but a follower may be behind the
//! leader: a watch is eventually consistent, never out of order, and a resumed watch neither
//! misses nor repeats an event (resume from `through + 1`).
//!
//! The hub is a field of the shared driver's per-shard state ([`crate::node::driver::Shard`]):
//! the driver feeds it at apply on the node and in the simulator alike, so the history is the
//! same deterministic function of the log everywhere (it reads no clock while no watcher is
//! registered; the simulator registers none). The shard's core owns it (no locks); what
//! crosses cores is a registration message and the watcher's queue (a bounded channel of
//! shared, immutable events).

pub mod events;
pub mod history;
pub mod http;
pub mod hub;
pub mod serve;

pub use history::History;
pub use hub::{Subscription, WatchHub};
pub use ringraft_net::message::{WatchCancel, WatchEvent, WatchEventKind, WatchFilter, WatchReply};

use crate::node::limits::WATCH_EVENT_OVERHEAD_BYTES;

/// Bytes an event is charged in the history and in a watcher's queue.
pub fn event_bytes(e: &WatchEvent) -> usize {
    e.key.len() + e.value.len() + WATCH_EVENT_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests;
