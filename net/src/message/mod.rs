//! Every message that travels in a frame, its kind number, and the typed in-place view of a
//! validated payload.
//!
//! The table in [`messages!`] is the single source of truth: it assigns each owned message type
//! its wire [`Kind`] (the `kind` header field), generates [`Encode`] for it, the borrowed
//! [`MessageRef`] enum of archived views, the owned [`Message`] enum, and [`validate`], which
//! runs rkyv's bytecheck validation for the kind before anything reads the payload. Kind
//! numbers are part of the wire format: never reuse or renumber one.
//!
//! Kinds 1–15 are connection control, 16–31 Raft, 32–47 client, 48–63 admin.

pub mod admin;
pub mod client;
pub mod handshake;
pub mod raft;

pub use admin::*;
pub use client::*;
pub use handshake::*;
pub use raft::*;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::DecodeError;

/// Serializes a message into the send buffer, after its header, at a 16-aligned position.
pub trait Encode {
    /// Wire kind of this message type.
    const KIND: Kind;
    /// Appends the rkyv archive of `self` to `out` (whose length must be 16-aligned).
    fn encode_into(&self, out: &mut AlignedVec<16>) -> Result<(), rancor::Error>;
}

macro_rules! messages {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => $ty:ty ),* $(,)?) => {
        /// Message kind: the `kind` field of the frame header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Kind {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl Kind {
            /// Every kind, in table order.
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant, )* ];

            /// The kind with wire number `v`, if any.
            pub fn from_u16(v: u16) -> Option<Kind> {
                match v {
                    $( $code => Some(Kind::$variant), )*
                    _ => None,
                }
            }

            /// Wire number.
            pub fn as_u16(self) -> u16 {
                self as u16
            }
        }

        /// A validated message, read in place from the receive buffer (no copy, no
        /// deserialization). Lives as long as the borrowed frame.
        #[derive(Debug, Clone, Copy)]
        pub enum MessageRef<'a> {
            $( $(#[$doc])* $variant(&'a <$ty as rkyv::Archive>::Archived), )*
        }

        /// An owned message (what senders build; what `MessageRef::to_owned_message` returns).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $( $(#[$doc])* $variant($ty), )*
        }

        $(
            impl Encode for $ty {
                const KIND: Kind = Kind::$variant;
                fn encode_into(&self, out: &mut AlignedVec<16>) -> Result<(), rancor::Error> {
                    rkyv::api::high::to_bytes_in::<_, rancor::Error>(self, out).map(|_| ())
                }
            }

            impl From<$ty> for Message {
                fn from(m: $ty) -> Message {
                    Message::$variant(m)
                }
            }
        )*

        /// Validates `payload` (16-aligned, exactly the archive bytes) as the archive of `kind`'s
        /// type and returns the typed in-place view.
        pub fn validate(kind: Kind, payload: &[u8]) -> Result<MessageRef<'_>, DecodeError> {
            let invalid = |e: rancor::Error| DecodeError::InvalidArchive {
                kind: kind.as_u16(),
                reason: e.to_string(),
            };
            Ok(match kind {
                $( Kind::$variant => MessageRef::$variant(
                    rkyv::access::<<$ty as rkyv::Archive>::Archived, rancor::Error>(payload)
                        .map_err(invalid)?,
                ), )*
            })
        }

        impl MessageRef<'_> {
            /// Kind of the message.
            pub fn kind(&self) -> Kind {
                match self {
                    $( MessageRef::$variant(_) => Kind::$variant, )*
                }
            }

            /// Deserializes into an owned [`Message`] (tools and tests; the node reads in place).
            pub fn to_owned_message(&self) -> Result<Message, rancor::Error> {
                Ok(match self {
                    $( MessageRef::$variant(a) =>
                        Message::$variant(rkyv::deserialize::<$ty, rancor::Error>(*a)?), )*
                })
            }
        }

        impl Message {
            /// Kind of the message.
            pub fn kind(&self) -> Kind {
                match self {
                    $( Message::$variant(_) => Kind::$variant, )*
                }
            }

            /// Appends the archive of the inner message to `out`.
            pub fn encode_into(&self, out: &mut AlignedVec<16>) -> Result<(), rancor::Error> {
                match self {
                    $( Message::$variant(m) => m.encode_into(out), )*
                }
            }
        }
    };
}

messages! {
    /// Connection opener.
    Handshake = 1 => Handshake,
    /// Handshake accepted.
    HandshakeAck = 2 => HandshakeAck,
    /// Error frame (refusal, bad input report, unsupported request).
    Error = 3 => ErrorFrame,
    /// Liveness probe / echo.
    Ping = 4 => Ping,
    /// Echo answer.
    Pong = 5 => Pong,
    /// Raft replication.
    AppendEntries = 16 => AppendEntries,
    /// Raft replication answer.
    AppendEntriesResponse = 17 => AppendEntriesResponse,
    /// Raft vote request.
    RequestVote = 18 => RequestVote,
    /// Raft vote answer.
    RequestVoteResponse = 19 => RequestVoteResponse,
    /// Raft pre-vote request.
    PreVote = 20 => PreVote,
    /// Raft pre-vote answer.
    PreVoteResponse = 21 => PreVoteResponse,
    /// Merged heartbeats for many groups.
    Heartbeat = 22 => Heartbeat,
    /// Merged heartbeat answers.
    HeartbeatResponse = 23 => HeartbeatResponse,
    /// Snapshot chunk.
    InstallSnapshot = 24 => InstallSnapshot,
    /// Snapshot chunk answer.
    InstallSnapshotResponse = 25 => InstallSnapshotResponse,
    /// Leadership transfer trigger.
    TimeoutNow = 26 => TimeoutNow,
    /// Client key-value request.
    ClientRequest = 32 => ClientRequest,
    /// Client key-value response.
    ClientResponse = 33 => ClientResponse,
    /// Admin request.
    AdminRequest = 48 => AdminRequest,
    /// Admin response.
    AdminResponse = 49 => AdminResponse,
}

#[cfg(test)]
mod tests;
