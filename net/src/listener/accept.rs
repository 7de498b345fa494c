//! The accept loop: binds the listening socket, accepts connections, enforces
//! `max_connections`, and spawns one local task per accepted connection ([`super::admit`]).
//! A failing accept or connection never stops the loop; only `shutdown` does.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::error::ErrorKind;
use crate::message::ErrorCode;
use crate::metrics::NetMetrics;
use crate::socket::{bind_listener, SocketOptions};

use super::admit::serve_accepted;
use super::direct::write_error_now;
use super::{Handler, ListenerConfig, ACCEPT_ERROR_PAUSE_MS};

/// Binds a glommio listener with `opts` (must run inside a glommio executor).
pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> io::Result<TcpListener> {
    let std_listener = bind_listener(addr, opts)?;
    // SAFETY: the descriptor comes from a freshly bound and listening socket whose ownership
    // `into_raw_fd` gives up; glommio's listener becomes its only owner and closes it on drop.
    Ok(unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) })
}

/// Accepts and drives connections until `shutdown` completes. Each connection runs as its own
/// local task; a failing connection never stops the listener.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    cfg: Rc<ListenerConfig>,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let live = Rc::new(Cell::new(0usize));
    let accept_loop = async {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(_) => {
                    metrics.count_error(ErrorKind::Io);
                    glommio::timer::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    continue;
                }
            };
            NetMetrics::add(&metrics.connections_accepted, 1);
            let (cfg, handler, metrics, live) =
                (cfg.clone(), handler.clone(), metrics.clone(), live.clone());
            if live.get() >= cfg.max_connections {
                NetMetrics::add(&metrics.connections_rejected_limit, 1);
                if cfg.connection.tls.is_some() {
                    // A plaintext error frame would only garble a TLS client's handshake, and a
                    // TLS handshake costs what the limit is there to save: just close.
                    drop(stream);
                    NetMetrics::add(&metrics.connections_closed, 1);
                    continue;
                }
                glommio::spawn_local(async move {
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(
                        cfg.connection.write_timeout_ms.max(1),
                    )));
                    let message = format!("connection limit {} reached", cfg.max_connections);
                    write_error_now(
                        &mut stream,
                        0,
                        ErrorCode::TooManyConnections,
                        message,
                        &cfg.connection,
                        &metrics,
                    )
                    .await;
                    NetMetrics::add(&metrics.connections_closed, 1);
                })
                .detach();
                continue;
            }
            live.set(live.get() + 1);
            glommio::spawn_local(async move {
                serve_accepted(stream, &cfg.connection, handler, metrics.clone()).await;
                NetMetrics::add(&metrics.connections_closed, 1);
                live.set(live.get() - 1);
            })
            .detach();
        }
    };
    futures_lite::future::or(accept_loop, shutdown).await
}
