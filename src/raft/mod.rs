//! The pure Raft core: one replica of one group is a [`Raft`]; a node hosts many groups
//! in a [`MultiRaft`], which merges heartbeats to the same node into one envelope.
//!
//! The core never does I/O, never reads a clock, never spawns threads: inputs are method calls
//! (`step`, `tick`, `propose`, `read`, `on_persisted`, `compact`), outputs are collected in a
//! [`Ready`] that the driver (the node, the simulator, the benchmark) carries out in the order
//! documented in [`ready`]. Randomness comes only from the seeded [`rng::Rng`]. Every limit is a
//! named constant in [`config`].

pub mod config;
pub mod core;
pub mod election;
pub mod lease;
pub mod log;
pub mod membership;
pub mod message;
pub mod multi;
pub mod progress;
pub mod read_index;
pub mod ready;
pub mod replication;
pub mod rng;
pub mod snapshot;
pub mod transfer;
pub mod validate;

pub use self::config::{Config, ConfigError, Durability};
pub use self::core::{ProposeError, Raft, RestartState, StepError};
pub use self::membership::{ConfChange, Membership, MembershipError};
pub use self::message::{
    Entry, EntryKind, HardState, Message, MessageBody, NodeId, RejectHint, Snapshot, SnapshotMeta,
    NO_NODE,
};
pub use self::multi::{Envelope, GroupId, MultiRaft, MultiReady};
pub use self::read_index::{ReadError, ReadMode};
pub use self::ready::{ReadState, Ready, Role, SoftState};
pub use self::snapshot::SnapshotError;
pub use self::transfer::TransferError;
pub use self::validate::{InvalidMessage, MAX_INDEX, MAX_TERM};
