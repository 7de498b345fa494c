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

mod support;

use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::*;
use ringraft_net::send_queue::encode_frame;
use ringraft_net::tls::certgen::CertAuthority;
use ringraft_net::tls::{CertIdentity, Role, TlsConfig, TlsOptions};
use rkyv::util::AlignedVec;
use support::{
    append_entries, client_config, cores, echo_secs, median, parse_out, stream_secs, write_report,
    Server, ECHO_WINDOW, FRAMES_PER_WRITE, MAX_FRAME_BYTES,
};

const CLUSTER: u64 = 0x7153;
const SERVER_NODE: u64 = 1;
const REPS: usize = 11;
const CONNECTS: usize = 100;
const ROUND_TRIPS: usize = 2_000;
const ECHO_ROUNDS: u64 = 200;

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
fn stream_once<M: Encode>(t: &Target, msg: &M, frames: u64) -> Result<f64, Box<dyn Error>> {
    stream_secs(&mut t.connect()?, msg, frames)
}

fn echo_per_sec(t: &Target) -> Result<f64, Box<dyn Error>> {
    let secs = echo_secs(&mut t.connect()?, ECHO_ROUNDS)?;
    Ok((ECHO_ROUNDS * ECHO_WINDOW as u64) as f64 / secs)
}

fn frame_len<M: Encode>(m: &M) -> Result<usize, Box<dyn Error>> {
    let mut out = AlignedVec::<16>::new();
    encode_frame(&mut out, 0, 1, m, MAX_FRAME_BYTES)?;
    Ok(out.len())
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
    let out_path = parse_out("tls_bench")?;
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
    let plain_server = Server::start("tls-bench-plain", CLUSTER, SERVER_NODE, None)?;
    let tls_server = Server::start("tls-bench-tls", CLUSTER, SERVER_NODE, Some(tls_cfg(&node)?))?;
    let base = client_config(CLUSTER);
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
            paired(&plain, &tls, |t| stream_once(t, &small, 100_000))?,
        ),
        (
            "AppendEntries, 64 entries",
            frame_len(&ae)?,
            4_000,
            paired(&plain, &tls, |t| stream_once(t, &ae, 4_000))?,
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
        cores(),
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
    write_report(&out_path, md)
}
