//! The handshake every connection opens with, and the error frame that refuses or closes one.
//!
//! The dialer's first frame is a [`Handshake`]; the acceptor answers [`HandshakeAck`] or an
//! [`ErrorFrame`] (flag ERROR) and closes. A peer of another cluster, an unsupported version,
//! or anything but a handshake first is refused. The decision is the pure function
//! [`check_handshake`], shared by every transport.

use rkyv::{Archive, Deserialize, Serialize};

use super::raft::NodeId;
use crate::frame::PROTOCOL_VERSION;

/// Who is dialing.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum PeerRole {
    /// Another node of the cluster.
    Node {
        /// Its node id.
        node_id: NodeId,
    },
    /// A client or admin tool.
    Client {
        /// Client id (also used in write sessions).
        client_id: u64,
    },
}

/// First frame of every connection, sent by the dialer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Handshake {
    /// Protocol version the dialer speaks.
    pub protocol_version: u16,
    /// Cluster the dialer belongs to / wants.
    pub cluster_id: u64,
    /// Who is dialing.
    pub role: PeerRole,
}

/// Acceptor → dialer: accepted.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct HandshakeAck {
    /// Protocol version agreed.
    pub protocol_version: u16,
    /// Acceptor's cluster id.
    pub cluster_id: u64,
    /// Acceptor's node id.
    pub node_id: NodeId,
}

/// Machine-readable reason in an [`ErrorFrame`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ErrorCode {
    /// The stream ended inside a frame.
    Truncated,
    /// Payload above the receiver's `max_frame_bytes`.
    Oversize,
    /// Not a ringraft frame.
    BadMagic,
    /// Protocol version not supported.
    UnsupportedVersion,
    /// Malformed header.
    BadHeader,
    /// Unknown message kind.
    UnknownKind,
    /// Payload CRC mismatch.
    CrcMismatch,
    /// Payload is not a valid archive.
    InvalidArchive,
    /// The dialer belongs to another cluster.
    WrongCluster,
    /// The first frame was not a handshake (or a second handshake came).
    HandshakeRequired,
    /// The acceptor is at its connection limit.
    TooManyConnections,
    /// A frame kind that this endpoint does not serve.
    Unsupported,
    /// The endpoint is shutting down.
    ShuttingDown,
    /// The peer's credentials do not allow what it asked: a handshake claiming a node id
    /// without that node's certificate, or a plaintext connection to a TLS listener.
    Unauthenticated,
    /// The peer is authenticated, but its role does not allow the request.
    Forbidden,
}

/// Error frame body: sent with flag ERROR before the sender closes the connection (or, for
/// `Unsupported`, as the answer to one request).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ErrorFrame {
    /// Reason code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Liveness probe / echo request (also the payload of throughput benchmarks).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Ping {
    /// Opaque value echoed back.
    pub nonce: u64,
    /// Opaque bytes echoed back.
    pub data: Vec<u8>,
}

/// Answer to a [`Ping`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
    /// The ping's bytes.
    pub data: Vec<u8>,
}

/// This endpoint's identity, used to judge incoming handshakes and to build outgoing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalIdentity {
    /// Cluster id every peer must share.
    pub cluster_id: u64,
    /// This endpoint's role (nodes: `Node`, tools: `Client`).
    pub role: PeerRole,
}

impl LocalIdentity {
    /// The handshake this endpoint sends when dialing.
    pub fn handshake(&self) -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.cluster_id,
            role: self.role,
        }
    }

    /// The ack this endpoint sends when accepting (`node_id` 0 for a non-node).
    pub fn ack(&self) -> HandshakeAck {
        HandshakeAck {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.cluster_id,
            node_id: match self.role {
                PeerRole::Node { node_id } => node_id,
                PeerRole::Client { .. } => 0,
            },
        }
    }
}

/// Judges an incoming handshake: the peer's role if accepted, else the error frame to send.
pub fn check_handshake(
    local: &LocalIdentity,
    hs: &ArchivedHandshake,
) -> Result<PeerRole, ErrorFrame> {
    let version = hs.protocol_version.to_native();
    if version != PROTOCOL_VERSION {
        return Err(ErrorFrame {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "protocol version {version} not supported (this node speaks {PROTOCOL_VERSION})"
            ),
        });
    }
    let cluster = hs.cluster_id.to_native();
    if cluster != local.cluster_id {
        return Err(ErrorFrame {
            code: ErrorCode::WrongCluster,
            message: format!(
                "peer is in cluster {cluster:#x}, this node is in cluster {:#x}",
                local.cluster_id
            ),
        });
    }
    Ok(match hs.role {
        ArchivedPeerRole::Node { node_id } => PeerRole::Node {
            node_id: node_id.to_native(),
        },
        ArchivedPeerRole::Client { client_id } => PeerRole::Client {
            client_id: client_id.to_native(),
        },
    })
}
