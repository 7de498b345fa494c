//! Harness shared by the live listener tests (`listener.rs`, `tls.rs`): a glommio listener
//! on 127.0.0.1 (port 0) on its own executor thread with the test's handler, bounded waits on
//! its metrics, frame encoding for raw sockets, a canned HTTP answer, and running a future on
//! a fresh executor. Every wait here is bounded; the server's executor is stopped and joined
//! when [`Server`] is dropped. Each test binary includes this module and uses part of it.
#![allow(dead_code)]

pub mod echo;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use ringraft_net::error::ErrorKind;
use ringraft_net::listener::{self, Handler, ListenerConfig};
use ringraft_net::message::{Encode, LocalIdentity, PeerRole};
use ringraft_net::metrics::NetMetrics;
use ringraft_net::send_queue::encode_frame;
use rkyv::util::AlignedVec;

/// Handshake and write timeout of the test listeners: short, so refusals end quickly.
const SERVER_TIMEOUT_MS: u64 = 1_000;
/// How often the server's executor checks for the stop flag.
const STOP_POLL_MS: u64 = 10;
/// Bound (in polls of 10 ms) on waiting for a metric the server thread updates.
const METRIC_POLLS: u32 = 300;
/// Frame bound of frames built for raw sockets.
const TEST_MAX_FRAME_BYTES: usize = 1 << 24;

/// A glommio listener serving node `node_id` of `cluster` with a test handler.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<NetMetrics>,
    stop: Arc<AtomicBool>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Server {
    /// Starts the listener; `handler` builds the handler on the server's executor, `tune`
    /// adjusts the settings after the test defaults (1 s handshake and write timeouts).
    pub fn spawn<H: Handler>(
        name: &str,
        cluster: u64,
        node_id: u64,
        handler: impl FnOnce() -> H + Send + 'static,
        tune: impl FnOnce(&mut ListenerConfig) + Send + 'static,
    ) -> Server {
        let metrics = Arc::new(NetMetrics::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (m, s) = (metrics.clone(), stop.clone());
        let join = LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .spawn(move || async move {
                let mut cfg = ListenerConfig::new(LocalIdentity {
                    cluster_id: cluster,
                    role: PeerRole::Node { node_id },
                });
                cfg.connection.handshake_timeout_ms = SERVER_TIMEOUT_MS;
                cfg.connection.write_timeout_ms = SERVER_TIMEOUT_MS;
                tune(&mut cfg);
                let l =
                    listener::bind("127.0.0.1:0".parse().unwrap(), &cfg.connection.socket).unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let shutdown = async {
                    while !s.load(Ordering::Relaxed) {
                        glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
                    }
                };
                listener::serve(l, Rc::new(cfg), Rc::new(handler()), m, shutdown).await;
            })
            .unwrap();
        let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Server {
            addr,
            metrics,
            stop,
            join: Some(join),
        }
    }

    /// The error counter of `k`.
    pub fn errors(&self, k: ErrorKind) -> u64 {
        self.metrics.errors(k)
    }

    /// Waits (bounded) until the error counter of `k` reaches `at_least`; metrics are updated
    /// by the server thread slightly after the client sees the close.
    pub fn wait_errors(&self, k: ErrorKind, at_least: u64) -> u64 {
        for _ in 0..METRIC_POLLS {
            if self.errors(k) >= at_least {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.errors(k)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// The bytes of one request frame carrying `m` with request id `id`.
pub fn frame_bytes<M: Encode>(m: &M, id: u64) -> Vec<u8> {
    let mut out = AlignedVec::<16>::new();
    encode_frame(&mut out, 0, id, m, TEST_MAX_FRAME_BYTES).unwrap();
    out.as_slice().to_vec()
}

/// A complete `200 OK` HTTP/1.1 answer with `body`, closing the connection.
pub fn http_ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Runs `f` on a fresh glommio executor named `name` and returns its result.
pub fn on_executor<T: Send + 'static, F>(name: &str, f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap()
}
