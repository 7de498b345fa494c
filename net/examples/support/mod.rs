//! What the loopback benchmarks (`net_bench`, `tls_bench`) share: a glommio listener with a
//! counting sink handler on its own executor, the client side's one-way stream and windowed
//! echo loops, medians, and the `--out PATH` report plumbing. One copy of each loop, so the
//! plaintext and TLS figures of the two reports measure exactly the same thing.
//!
//! Invariants: the sink's frame count is reset by each end marker, so a stream is only
//! counted once it was fully validated by the listener; the server stops (and its executor
//! is joined) when [`Server`] is dropped.

use std::cell::Cell;
use std::error::Error;
use std::hint::black_box;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::listener::{self, Connection, Handler, ListenerConfig};
use ringraft_net::message::*;
use ringraft_net::metrics::NetMetrics;
use ringraft_net::tls::TlsConfig;
use ringraft_net::Frame;

/// Key bytes of each benchmark entry (the entry's number, little-endian, then zeros).
pub const KEY_BYTES: usize = 16;
/// Value bytes of each benchmark entry.
pub const VALUE_BYTES: usize = 256;
/// Frames the client queues before each flush (one write) in a one-way stream.
pub const FRAMES_PER_WRITE: usize = 64;
/// Pings in flight per round of the windowed echo.
pub const ECHO_WINDOW: usize = 128;
/// Ping nonce that asks the sink for its frame count (and resets it).
pub const END_NONCE: u64 = u64::MAX;
/// Frame bound of both ends: large enough for the biggest AppendEntries measured.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Bound on the client's queued bytes: a few batches of the largest frames.
const CLIENT_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// Receive buffer growth step of the listener (large frames arrive in few reads).
const SERVER_MIN_READ_BYTES: usize = 256 * 1024;
/// How often the server's executor checks for the stop flag.
const STOP_POLL_MS: u64 = 20;
/// Time the server gets to bind before the benchmark gives up.
const START_TIMEOUT_S: u64 = 10;
/// Bound on one client call (a long stream's end marker waits for the whole stream).
const RESPONSE_TIMEOUT_MS: u64 = 30_000;

/// Median of `v` (upper median for even lengths); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// An AppendEntries of `n` entries of [`KEY_BYTES`] + [`VALUE_BYTES`] each, as a leader
/// would send them.
pub fn append_entries(n: usize) -> AppendEntries {
    AppendEntries {
        group: 1,
        term: 5,
        leader: 1,
        prev_index: 1000,
        prev_term: 5,
        commit: 999,
        entries: (0..n)
            .map(|i| {
                let mut payload = vec![0u8; KEY_BYTES + VALUE_BYTES];
                payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
                payload[KEY_BYTES..].fill(i as u8);
                Entry {
                    term: 5,
                    index: 1001 + i as u64,
                    kind: EntryKind::Normal,
                    payload,
                }
            })
            .collect(),
    }
}

/// The listener's handler in the benchmarks: validation is done by the driver; it touches every
/// AppendEntries payload as the WAL hand-off would, counts one-way frames, answers the end
/// marker with the count, and echoes Pings that carry a request id.
struct Sink {
    frames: Cell<u64>,
    touched: Cell<u64>,
}

impl Handler for Sink {
    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        match frame.message {
            MessageRef::Ping(p) if p.nonce.to_native() == END_NONCE => {
                let n = self.frames.replace(0);
                let _ = conn.respond(
                    frame.header.request_id,
                    &Pong {
                        nonce: n,
                        data: Vec::new(),
                    },
                );
            }
            MessageRef::Ping(p) if frame.header.request_id != 0 => {
                let _ = conn.respond(
                    frame.header.request_id,
                    &Pong {
                        nonce: p.nonce.to_native(),
                        data: Vec::new(),
                    },
                );
            }
            MessageRef::AppendEntries(ae) => {
                let mut t = 0u64;
                for (_, _, _, payload) in ae.entry_payloads() {
                    t = t.wrapping_add(payload.len() as u64);
                }
                self.touched
                    .set(black_box(self.touched.get().wrapping_add(t)));
                self.frames.set(self.frames.get() + 1);
            }
            _ => self.frames.set(self.frames.get() + 1),
        }
    }
}

/// A glommio listener serving [`Sink`] on 127.0.0.1 (port 0) on its own executor thread.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Server {
    /// Starts node `node_id` of `cluster`, over TLS when `tls` is given.
    pub fn start(
        name: &str,
        cluster: u64,
        node_id: u64,
        tls: Option<TlsConfig>,
    ) -> Result<Server, Box<dyn Error>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let join = LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .spawn(move || async move {
                let mut cfg = ListenerConfig::new(LocalIdentity {
                    cluster_id: cluster,
                    role: PeerRole::Node { node_id },
                });
                cfg.connection.decoder.max_frame_bytes = MAX_FRAME_BYTES;
                cfg.connection.decoder.min_read_bytes = SERVER_MIN_READ_BYTES;
                cfg.connection.tls = tls;
                let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
                let l = match listener::bind(addr, &cfg.connection.socket) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(l.local_addr().map_err(|e| e.to_string()));
                let shutdown = async {
                    while !s.load(Ordering::Relaxed) {
                        glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
                    }
                };
                let sink = Rc::new(Sink {
                    frames: Cell::new(0),
                    touched: Cell::new(0),
                });
                listener::serve(l, Rc::new(cfg), sink, Arc::new(NetMetrics::new()), shutdown).await;
            })?;
        let addr = rx.recv_timeout(Duration::from_secs(START_TIMEOUT_S))??;
        Ok(Server {
            addr,
            stop,
            join: Some(join),
        })
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

/// A plaintext client of `cluster` sized for the benchmarks' frames.
pub fn client_config(cluster: u64) -> ClientConfig {
    let mut c = ClientConfig::new(LocalIdentity {
        cluster_id: cluster,
        role: PeerRole::Client { client_id: 1 },
    });
    c.response_timeout_ms = RESPONSE_TIMEOUT_MS;
    c.send_queue.max_frame_bytes = MAX_FRAME_BYTES;
    c.send_queue.max_queued_bytes = CLIENT_QUEUED_BYTES;
    c
}

/// One-way stream of `frames` copies of `msg` (encoded by the client per frame,
/// [`FRAMES_PER_WRITE`] per write), then an end marker; seconds until the server has
/// validated and counted them all.
pub fn stream_secs<M: Encode>(
    c: &mut BlockingClient,
    msg: &M,
    frames: u64,
) -> Result<f64, Box<dyn Error>> {
    let start = Instant::now();
    for i in 0..frames {
        c.send_oneway(msg)?;
        if (i as usize + 1).is_multiple_of(FRAMES_PER_WRITE) {
            c.flush()?;
        }
    }
    let end = Ping {
        nonce: END_NONCE,
        data: Vec::new(),
    };
    match c.call(&end)? {
        Message::Pong(p) if p.nonce == frames => {}
        other => return Err(format!("server counted {other:?}, expected {frames}").into()),
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Windowed echo: `rounds` × [`ECHO_WINDOW`] 64 B Pings in flight, each answered by a Pong;
/// seconds for all of them.
pub fn echo_secs(c: &mut BlockingClient, rounds: u64) -> Result<f64, Box<dyn Error>> {
    let ping = Ping {
        nonce: 1,
        data: vec![7; 64],
    };
    let start = Instant::now();
    for _ in 0..rounds {
        for _ in 0..ECHO_WINDOW {
            c.send(&ping)?;
        }
        c.flush()?;
        for _ in 0..ECHO_WINDOW {
            c.recv_with(|f| black_box(f.header.request_id))?;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// CPUs this process may run on (0 when unknown), for the report's header.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The `--out PATH` argument of benchmark `name`.
pub fn parse_out(name: &str) -> Result<String, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--help" | "-h" => {
                println!("usage: {name} --out PATH");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (usage: --out PATH)").into()),
        }
    }
    out.ok_or_else(|| "missing --out PATH".into())
}

/// Writes the report, creating its folder.
pub fn write_report(out_path: &str, md: String) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = std::path::Path::new(out_path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(out_path, md)?;
    eprintln!("wrote {out_path}");
    Ok(())
}
