//! Identity checks after the TLS handshake: which identity the peer's certificate names, whether
//! a frame handshake's claimed role matches it (acceptor), and whether the node reached is
//! the one meant (dialer). Pure functions; the listener and dialer call them.

use rustls::CommonState;

use crate::error::NetError;
use crate::message::{ErrorCode, ErrorFrame, PeerRole};

use super::CertIdentity;

/// The identity of the verified certificate the peer presented (`None`: none presented).
pub fn peer_identity(state: &CommonState) -> Option<CertIdentity> {
    let der = state.peer_certificates()?.first()?;
    CertIdentity::from_der(der).ok()
}

/// Judges a frame handshake's claimed role against the certificate the peer presented on a
/// TLS connection: a claim to be node `n` needs the certificate of node `n`. Clients may
/// present any certificate of the cluster, or none (the node decides what an unauthenticated
/// or a node-certified client may do). The cluster was already checked by the TLS handshake.
pub fn check_claim(claim: PeerRole, cert: Option<&CertIdentity>) -> Result<(), ErrorFrame> {
    match (claim, cert) {
        (PeerRole::Client { .. }, _) => Ok(()),
        (
            PeerRole::Node { node_id },
            Some(CertIdentity::Node {
                node_id: cert_id, ..
            }),
        ) if *cert_id == node_id => Ok(()),
        (PeerRole::Node { node_id }, Some(other)) => Err(ErrorFrame {
            code: ErrorCode::Unauthenticated,
            message: format!("handshake claims node {node_id}, but the certificate names {other}"),
        }),
        (PeerRole::Node { node_id }, None) => Err(ErrorFrame {
            code: ErrorCode::Unauthenticated,
            message: format!(
                "handshake claims node {node_id}, but no certificate was presented; peers need \
                 their node certificate"
            ),
        }),
    }
}

/// Checks the node a dialer reached: the certificate must name a node (of our cluster: the
/// verifier checked that), and `expected` if given.
pub(super) fn check_reached(
    cert: Option<CertIdentity>,
    expected: Option<u64>,
) -> Result<CertIdentity, NetError> {
    let id = cert.ok_or_else(|| NetError::Tls("server presented no certificate".into()))?;
    match (expected, id.node_id()) {
        (Some(want), Some(got)) if want != got => Err(NetError::WrongPeer {
            expected: want,
            found: got,
        }),
        (_, Some(_)) => Ok(id),
        (_, None) => Err(NetError::Tls(format!("server certificate names {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Role;

    #[test]
    fn node_claims_need_the_matching_node_certificate() {
        let node = |n| CertIdentity::Node {
            cluster_id: 1,
            node_id: n,
        };
        let client = CertIdentity::Client {
            cluster_id: 1,
            name: "a".into(),
            role: Role::Admin,
        };
        assert!(check_claim(PeerRole::Node { node_id: 2 }, Some(&node(2))).is_ok());
        for cert in [Some(&node(3)), Some(&client), None] {
            let e = check_claim(PeerRole::Node { node_id: 2 }, cert).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthenticated);
        }
        for cert in [Some(&node(3)), Some(&client), None] {
            assert!(check_claim(PeerRole::Client { client_id: 9 }, cert).is_ok());
        }
    }

    #[test]
    fn dialer_checks_the_node_it_reached() {
        let node = |n| CertIdentity::Node {
            cluster_id: 1,
            node_id: n,
        };
        assert!(check_reached(Some(node(2)), Some(2)).is_ok());
        assert!(check_reached(Some(node(2)), None).is_ok());
        assert!(matches!(
            check_reached(Some(node(3)), Some(2)),
            Err(NetError::WrongPeer {
                expected: 2,
                found: 3
            })
        ));
        assert!(check_reached(None, None).is_err());
    }
}
