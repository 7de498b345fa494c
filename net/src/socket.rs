//! TCP socket setup: every option configurable through [`SocketOptions`], applied with socket2.
//!
//! Listeners are built here (options set before `bind`, so SO_REUSEADDR/SO_REUSEPORT matter,
//! and accepted sockets inherit buffer sizes, keepalive and TCP_NODELAY from the listener on
//! Linux); outgoing connections connect with a timeout, for std (tools, tests) and glommio
//! (the node). Reconnect policy lives in [`crate::backoff`]. No protocol logic here.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default listen backlog.
pub const DEFAULT_LISTEN_BACKLOG: i32 = 1024;
/// Default keepalive idle time before probes.
pub const DEFAULT_KEEPALIVE_IDLE_MS: u64 = 10_000;
/// Default interval between keepalive probes.
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 2_000;
/// Default unanswered probes before the connection is dropped.
pub const DEFAULT_KEEPALIVE_RETRIES: u32 = 3;

/// TCP keepalive parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveOptions {
    /// Idle time before the first probe.
    pub idle_ms: u64,
    /// Time between probes.
    pub interval_ms: u64,
    /// Probes before giving up.
    pub retries: u32,
}

impl Default for KeepaliveOptions {
    fn default() -> Self {
        KeepaliveOptions {
            idle_ms: DEFAULT_KEEPALIVE_IDLE_MS,
            interval_ms: DEFAULT_KEEPALIVE_INTERVAL_MS,
            retries: DEFAULT_KEEPALIVE_RETRIES,
        }
    }
}

/// Socket options for listeners and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// TCP_NODELAY (disable Nagle): on by default, frames are batched by the send queue.
    pub nodelay: bool,
    /// SO_REUSEADDR on listeners (restart without waiting for TIME_WAIT).
    pub reuse_address: bool,
    /// SO_REUSEPORT on listeners (several executors accepting on one port).
    pub reuse_port: bool,
    /// SO_RCVBUF in bytes (`None`: kernel default / autotuning).
    pub recv_buffer_bytes: Option<usize>,
    /// SO_SNDBUF in bytes (`None`: kernel default / autotuning).
    pub send_buffer_bytes: Option<usize>,
    /// SO_KEEPALIVE with these parameters (`None`: off).
    pub keepalive: Option<KeepaliveOptions>,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Listen backlog.
    pub listen_backlog: i32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            reuse_address: true,
            reuse_port: false,
            recv_buffer_bytes: None,
            send_buffer_bytes: None,
            keepalive: Some(KeepaliveOptions::default()),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
        }
    }
}

impl SocketOptions {
    /// The connect timeout as a duration (at least 1 ms).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }
}

/// Applies the per-connection options (nodelay, buffers, keepalive) to a socket.
pub fn apply_stream_options(sock: &SockRef<'_>, opts: &SocketOptions) -> io::Result<()> {
    sock.set_nodelay(opts.nodelay)?;
    if let Some(n) = opts.recv_buffer_bytes {
        sock.set_recv_buffer_size(n)?;
    }
    if let Some(n) = opts.send_buffer_bytes {
        sock.set_send_buffer_size(n)?;
    }
    match opts.keepalive {
        Some(k) => {
            let ka = TcpKeepalive::new()
                .with_time(Duration::from_millis(k.idle_ms))
                .with_interval(Duration::from_millis(k.interval_ms))
                .with_retries(k.retries);
            sock.set_tcp_keepalive(&ka)?;
        }
        None => sock.set_keepalive(false)?,
    }
    Ok(())
}

/// Applies the per-connection options to any socket given by its raw descriptor owner.
pub fn apply_stream_options_fd(owner: &impl AsRawFd, opts: &SocketOptions) -> io::Result<()> {
    // SAFETY: `owner` owns an open socket descriptor and is borrowed for the whole call, so the
    // descriptor stays open and valid while the borrowed fd is used; nothing closes it here.
    let fd = unsafe { BorrowedFd::borrow_raw(owner.as_raw_fd()) };
    apply_stream_options(&SockRef::from(&fd), opts)
}

/// Binds a listening socket on `addr` with `opts` (port 0 picks a free port).
pub fn bind_listener(addr: SocketAddr, opts: &SocketOptions) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(opts.reuse_address)?;
    sock.set_reuse_port(opts.reuse_port)?;
    apply_stream_options(&SockRef::from(&sock), opts)?;
    sock.bind(&addr.into())?;
    sock.listen(opts.listen_backlog)?;
    Ok(sock.into())
}

/// Connects (blocking) to `addr` within the configured timeout and applies `opts`.
pub fn connect_std(addr: SocketAddr, opts: &SocketOptions) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    apply_stream_options(&SockRef::from(&sock), opts)?;
    sock.connect_timeout(&addr.into(), opts.connect_timeout())?;
    Ok(sock.into())
}

/// Connects from a glommio executor within the configured timeout and applies `opts`.
pub async fn connect_glommio(
    addr: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<glommio::net::TcpStream> {
    let stream = glommio::net::TcpStream::connect_timeout(addr, opts.connect_timeout())
        .await
        .map_err(io::Error::from)?;
    apply_stream_options_fd(&stream, opts)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_applied() {
        let opts = SocketOptions {
            recv_buffer_bytes: Some(256 * 1024),
            send_buffer_bytes: Some(256 * 1024),
            ..SocketOptions::default()
        };
        let l = bind_listener("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let addr = l.local_addr().unwrap();
        let s = connect_std(addr, &opts).unwrap();
        let r = SockRef::from(&s);
        assert!(r.nodelay().unwrap());
        assert!(r.keepalive().unwrap());
        assert!(r.recv_buffer_size().unwrap() >= 256 * 1024);
        let lr = SockRef::from(&l);
        assert!(lr.reuse_address().unwrap());
    }

    #[test]
    fn connect_refused_is_an_error_not_a_hang() {
        let l = bind_listener("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let opts = SocketOptions {
            connect_timeout_ms: 200,
            ..SocketOptions::default()
        };
        assert!(connect_std(addr, &opts).is_err());
    }
}
