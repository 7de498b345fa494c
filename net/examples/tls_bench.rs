//! tls_bench: what TLS costs on the wire, against plaintext in the same run, and writes a
//! Markdown report (`--out PATH`).
//!
//! Two glommio listeners run side by side, one plaintext and one TLS (mutual: the client
//! presents a client certificate, the server a node certificate, ECDSA P-256, rustls with the
//! `ring` provider, TLS 1.3). A blocking client measures against each, interleaved per
//! repetition so that drift on a shared machine hits both alike:
//! 1. Connect: TCP connect + (TLS handshake +) frame handshake, sequential connections (TLS
//!    connections after the first resume the session, as a reconnecting node's would).
//! 2. Round trip: one 64 B Ping → Pong at a time (latency).
//! 3. Throughput: one-way streams of 64 B Pings and of 64-entry AppendEntries (18 KiB
//!    frames), 64 frames per write; the listener decodes and validates every frame.
//! 4. Windowed echo: 128 Pings in flight, matched by request id.
//!
//! Every figure is the median of the repetitions. Run: `cargo run --release -p ringraft-net
//! --example tls_bench -- --out PATH`.

use std::cell::Cell;
use std::error::Error;
use std::fmt::Write as _;
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
use ringraft_net::send_queue::encode_frame;
use ringraft_net::tls::certgen::CertAuthority;
use ringraft_net::tls::{CertIdentity, Role, TlsConfig, TlsOptions};
use ringraft_net::Frame;
use rkyv::util::AlignedVec;

const CLUSTER: u64 = 0x7153;
const SERVER_NODE: u64 = 1;
const REPS: usize = 11;
const CONNECTS: usize = 100;
const ROUND_TRIPS: usize = 2_000;
const FRAMES_PER_WRITE: usize = 64;
const ECHO_WINDOW: usize = 128;
const ECHO_ROUNDS: usize = 200;
const END_NONCE: u64 = u64::MAX;
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Counts frames, answers Pings, walks AppendEntries payloads; the end marker returns the count.
struct Sink {
    frames: Cell<u64>,
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
                black_box(t);
                self.frames.set(self.frames.get() + 1);
            }
            _ => self.frames.set(self.frames.get() + 1),
        }
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Server {
    fn start(tls: Option<TlsConfig>) -> Result<Server, Box<dyn Error>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let join = LocalExecutorBuilder::new(Placement::Unbound)
            .name("tls-bench-server")
            .spawn(move || async move {
                let mut cfg = ListenerConfig::new(LocalIdentity {
                    cluster_id: CLUSTER,
                    role: PeerRole::Node {
                        node_id: SERVER_NODE,
                    },
                });
                cfg.connection.decoder.max_frame_bytes = MAX_FRAME_BYTES;
                cfg.connection.decoder.min_read_bytes = 256 * 1024;
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
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                    }
                };
                let sink = Rc::new(Sink {
                    frames: Cell::new(0),
                });
                listener::serve(l, Rc::new(cfg), sink, Arc::new(NetMetrics::new()), shutdown).await;
            })?;
        let addr = rx.recv_timeout(Duration::from_secs(10))??;
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

/// One endpoint under test: where it listens and how the client connects.
struct Target {
    addr: SocketAddr,
    cfg: ClientConfig,
}

impl Target {
    fn connect(&self) -> Result<BlockingClient, Box<dyn Error>> {
        Ok(BlockingClient::connect(self.addr, self.cfg.clone())?)
    }
}

fn connect_us(t: &Target) -> Result<f64, Box<dyn Error>> {
    let mut v = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        let s = Instant::now();
        let c = t.connect()?;
        v.push(s.elapsed().as_secs_f64() * 1e6);
        drop(c);
    }
    Ok(median(v))
}

fn round_trip_us(t: &Target) -> Result<f64, Box<dyn Error>> {
    let mut c = t.connect()?;
    let ping = Ping {
        nonce: 1,
        data: vec![7; 64],
    };
    let mut v = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let s = Instant::now();
        black_box(c.call(&ping)?);
        v.push(s.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(v))
}

/// Seconds to stream `frames` copies of `msg` one way and have the server count them.
fn stream_secs<M: Encode>(t: &Target, msg: &M, frames: u64) -> Result<f64, Box<dyn Error>> {
    let mut c = t.connect()?;
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

fn echo_per_sec(t: &Target) -> Result<f64, Box<dyn Error>> {
    let mut c = t.connect()?;
    let ping = Ping {
        nonce: 1,
        data: vec![7; 64],
    };
    let start = Instant::now();
    for _ in 0..ECHO_ROUNDS {
        for _ in 0..ECHO_WINDOW {
            c.send(&ping)?;
        }
        c.flush()?;
        for _ in 0..ECHO_WINDOW {
            c.recv_with(|f| black_box(f.header.request_id))?;
        }
    }
    Ok((ECHO_ROUNDS * ECHO_WINDOW) as f64 / start.elapsed().as_secs_f64())
}

fn append_entries(n: usize) -> AppendEntries {
    AppendEntries {
        group: 1,
        term: 5,
        leader: 1,
        prev_index: 1000,
        prev_term: 5,
        commit: 999,
        entries: (0..n)
            .map(|i| Entry {
                term: 5,
                index: 1001 + i as u64,
                kind: EntryKind::Normal,
                payload: vec![i as u8; 16 + 256],
            })
            .collect(),
    }
}

fn frame_len<M: Encode>(m: &M) -> Result<usize, Box<dyn Error>> {
    let mut out = AlignedVec::<16>::new();
    encode_frame(&mut out, 0, 1, m, MAX_FRAME_BYTES)?;
    Ok(out.len())
}

fn parse_out() -> Result<String, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--help" | "-h" => {
                println!("usage: tls_bench --out PATH");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (usage: --out PATH)").into()),
        }
    }
    out.ok_or_else(|| "missing --out PATH".into())
}

/// Medians of (plaintext, TLS) for one measurement, interleaved per repetition.
fn paired(
    plain: &Target,
    tls: &Target,
    mut f: impl FnMut(&Target) -> Result<f64, Box<dyn Error>>,
) -> Result<(f64, f64), Box<dyn Error>> {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        p.push(f(plain)?);
        t.push(f(tls)?);
    }
    Ok((median(p), median(t)))
}

fn main() -> Result<(), Box<dyn Error>> {
    let out_path = parse_out()?;
    let started = Instant::now();
    let ca = CertAuthority::generate("tls bench", 2)?;
    let node = ca.issue_node(CLUSTER, SERVER_NODE, &["127.0.0.1".into()])?;
    let client = ca.issue(
        &CertIdentity::Client {
            cluster_id: CLUSTER,
            name: "bench".into(),
            role: Role::Write,
        },
        &[],
    )?;
    let tls_cfg = |cert: &ringraft_net::tls::certgen::IssuedCert| {
        TlsConfig::new(TlsOptions {
            cluster_id: CLUSTER,
            ca_pem: ca.cert_pem().into_bytes(),
            cert_chain_pem: Some(cert.cert_pem.clone().into_bytes()),
            key_pem: Some(cert.key_pem.clone().into_bytes()),
            require_client_cert: true,
        })
    };
    let plain_server = Server::start(None)?;
    let tls_server = Server::start(Some(tls_cfg(&node)?))?;
    let mut base = ClientConfig::new(LocalIdentity {
        cluster_id: CLUSTER,
        role: PeerRole::Client { client_id: 1 },
    });
    base.response_timeout_ms = 30_000;
    base.send_queue.max_frame_bytes = MAX_FRAME_BYTES;
    base.send_queue.max_queued_bytes = 8 * 1024 * 1024;
    let plain = Target {
        addr: plain_server.addr,
        cfg: base.clone(),
    };
    let mut tls_client = base;
    tls_client.tls = Some(tls_cfg(&client)?);
    tls_client.expected_node_id = Some(SERVER_NODE);
    let tls = Target {
        addr: tls_server.addr,
        cfg: tls_client,
    };

    let connect = paired(&plain, &tls, connect_us)?;
    eprintln!(
        "connect: plain {:.0} us, tls {:.0} us",
        connect.0, connect.1
    );
    let rtt = paired(&plain, &tls, round_trip_us)?;
    eprintln!("round trip: plain {:.1} us, tls {:.1} us", rtt.0, rtt.1);
    let small = Ping {
        nonce: 1,
        data: vec![7; 64],
    };
    let ae = append_entries(64);
    let streams: [(&str, usize, u64, (f64, f64)); 2] = [
        (
            "Ping, 64 B data",
            frame_len(&small)?,
            100_000,
            paired(&plain, &tls, |t| stream_secs(t, &small, 100_000))?,
        ),
        (
            "AppendEntries, 64 entries",
            frame_len(&ae)?,
            4_000,
            paired(&plain, &tls, |t| stream_secs(t, &ae, 4_000))?,
        ),
    ];
    for (name, fb, n, (p, t)) in &streams {
        let mbps = |s: f64| (*n as f64 * *fb as f64) / s / 1e6;
        eprintln!(
            "stream {name}: plain {:.0} MB/s, tls {:.0} MB/s",
            mbps(*p),
            mbps(*t)
        );
    }
    let echo = paired(&plain, &tls, echo_per_sec)?;
    eprintln!("echo: plain {:.0}/s, tls {:.0}/s", echo.0, echo.1);
    drop((plain_server, tls_server));

    let mut md = String::new();
    writeln!(md, "# ringraft-net: TLS against plaintext")?;
    writeln!(md)?;
    writeln!(
        md,
        "Generated by `net/examples/tls_bench.rs`, release build, {} cores, total run {:.1} s. \
         Medians of {REPS} repetitions, plaintext and TLS interleaved in each. TLS: 1.3, mutual \
         (ECDSA P-256 node and client certificates), rustls with the `ring` provider. Blocking \
         client → glommio listener on 127.0.0.1; both ends share this machine's cores.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(md)?;
    writeln!(md, "| measurement | plaintext | TLS | TLS / plaintext |")?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| connect + handshake, µs (median of {CONNECTS} sequential; TLS resumes after the first) | {:.0} | {:.0} | {:.2} |",
        connect.0,
        connect.1,
        connect.1 / connect.0
    )?;
    writeln!(
        md,
        "| round trip, 64 B Ping → Pong, µs (median of {ROUND_TRIPS}) | {:.1} | {:.1} | {:.2} |",
        rtt.0,
        rtt.1,
        rtt.1 / rtt.0
    )?;
    for (name, fb, n, (p, t)) in &streams {
        let mbps = |s: f64| (*n as f64 * *fb as f64) / s / 1e6;
        writeln!(
            md,
            "| one-way stream, {name} ({fb} B frames, {n} frames, {FRAMES_PER_WRITE} per write), MB/s | {:.0} | {:.0} | {:.2} |",
            mbps(*p),
            mbps(*t),
            mbps(*t) / mbps(*p)
        )?;
        writeln!(
            md,
            "| same, frames/s | {:.0} | {:.0} | {:.2} |",
            *n as f64 / p,
            *n as f64 / t,
            p / t
        )?;
    }
    writeln!(
        md,
        "| windowed echo, {ECHO_WINDOW} in flight, round trips/s | {:.0} | {:.0} | {:.2} |",
        echo.0,
        echo.1,
        echo.1 / echo.0
    )?;
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&out_path, md)?;
    eprintln!("wrote {out_path}");
    Ok(())
}
