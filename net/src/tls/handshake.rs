//! The TLS handshakes: server side on an accepted glommio socket, client side on a dialed one
//! (glommio or blocking std), each bounded in time and followed by the identity checks of
//! [`super::claims`]. Also maps rustls I/O errors to [`NetError::Tls`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use glommio::net::TcpStream;
use rustls_pki_types::ServerName;

use crate::error::NetError;

use super::claims::{check_reached, peer_identity};
use super::{Alpn, CertIdentity, NetStream, TlsConfig};

/// Maps an I/O error out of a TLS stream: rustls failures (bad certificate, alert) become
/// [`NetError::Tls`], the rest stays [`NetError::Io`].
pub fn tls_io_error(e: io::Error) -> NetError {
    let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
    if is_tls {
        NetError::Tls(e.to_string())
    } else {
        NetError::Io(e)
    }
}

fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// Bounds `fut` by `timeout`.
async fn within<T>(
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(timeout).await;
        Err(NetError::Timeout(what))
    })
    .await
}

/// Runs the server side of the TLS handshake on an accepted socket, within `timeout`.
pub async fn accept(
    tcp: TcpStream,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<NetStream, NetError> {
    let server = tls
        .server_config()
        .ok_or_else(|| NetError::Tls("this endpoint has no certificate to serve TLS with".into()))?
        .clone();
    let acceptor = futures_rustls::TlsAcceptor::from(server);
    let stream = within(timeout, "TLS handshake", async {
        acceptor.accept(tcp).await.map_err(tls_io_error)
    })
    .await?;
    let identity = peer_identity(stream.get_ref().1);
    Ok(NetStream::tls(stream.into(), identity))
}

/// Runs the client side of the TLS handshake on a connected socket, within `timeout`, and
/// checks that the server is a node of our cluster (node `expected_node` if given).
pub async fn connect(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: &TlsConfig,
    alpn: Alpn,
    expected_node: Option<u64>,
    timeout: Duration,
) -> Result<NetStream, NetError> {
    let connector = futures_rustls::TlsConnector::from(tls.client_config(alpn).clone());
    let stream = within(timeout, "TLS handshake", async {
        connector
            .connect(server_name(addr), tcp)
            .await
            .map_err(tls_io_error)
    })
    .await?;
    let identity = check_reached(peer_identity(stream.get_ref().1), expected_node)?;
    Ok(NetStream::tls(stream.into(), Some(identity)))
}

/// A blocking TLS client stream over std's TCP.
pub type BlockingTlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Blocking client side of the TLS handshake on a connected std socket (its read and write
/// timeouts bound each step), then the same server check as [`connect`]. Returns the stream
/// and the identity of the node reached.
pub fn connect_blocking(
    mut tcp: std::net::TcpStream,
    tls: &TlsConfig,
    alpn: Alpn,
    expected_node: Option<u64>,
) -> Result<(BlockingTlsStream, CertIdentity), NetError> {
    let addr = tcp.peer_addr()?;
    let mut conn =
        rustls::ClientConnection::new(tls.client_config(alpn).clone(), server_name(addr))
            .map_err(|e| NetError::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(tls_io_error)?;
    }
    let identity = check_reached(peer_identity(&conn), expected_node)?;
    Ok((rustls::StreamOwned::new(conn, tcp), identity))
}
