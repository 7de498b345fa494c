//! The per-connection byte streams: [`NetStream`] (glommio, plaintext or TLS, with the peer's
//! verified identity) and [`BlockingStream`] (std, for tools and tests). Each wraps exactly one
//! transport for its whole life; the identity is fixed at the handshake.

use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::{BlockingTlsStream, CertIdentity};

enum StreamInner {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

/// One connection's byte stream on a glommio executor: plaintext TCP or TLS over it. What
/// [`crate::listener::Handler::on_http_stream`] gets, with the peer's verified identity.
pub struct NetStream {
    inner: StreamInner,
    identity: Option<CertIdentity>,
}

impl fmt::Debug for NetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetStream")
            .field("tls", &self.is_tls())
            .field("identity", &self.identity)
            .finish()
    }
}

impl NetStream {
    /// A plaintext stream.
    pub fn plain(tcp: TcpStream) -> NetStream {
        NetStream {
            inner: StreamInner::Plain(tcp),
            identity: None,
        }
    }

    /// A TLS stream whose handshake verified `identity` (see [`super::handshake`]).
    pub(super) fn tls(
        stream: futures_rustls::TlsStream<TcpStream>,
        identity: Option<CertIdentity>,
    ) -> NetStream {
        NetStream {
            inner: StreamInner::Tls(Box::new(stream)),
            identity,
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, StreamInner::Tls(_))
    }

    /// The identity of the certificate the peer presented and the TLS handshake verified
    /// (`None`: plaintext, or a TLS client without a certificate).
    pub fn peer_identity(&self) -> Option<&CertIdentity> {
        self.identity.as_ref()
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.inner {
            StreamInner::Plain(_) => None,
            StreamInner::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The TCP socket underneath (for timeouts and addresses; never read or write it
    /// directly under TLS).
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            StreamInner::Plain(s) => s,
            StreamInner::Tls(s) => s.get_ref().0,
        }
    }

    /// The plaintext socket, or the TLS stream back.
    pub fn into_plain(self) -> Result<TcpStream, Box<NetStream>> {
        match self.inner {
            StreamInner::Plain(s) => Ok(s),
            inner @ StreamInner::Tls(_) => Err(Box::new(NetStream {
                inner,
                identity: self.identity,
            })),
        }
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_flush(cx),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_close(cx),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A blocking client stream: plaintext or TLS (what [`crate::blocking_client`] reads and
/// writes).
#[derive(Debug)]
pub enum BlockingStream {
    /// Plaintext.
    Plain(std::net::TcpStream),
    /// TLS.
    Tls(Box<BlockingTlsStream>),
}

impl BlockingStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &std::net::TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}
