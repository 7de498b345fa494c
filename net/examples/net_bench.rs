//! net_bench: measures the wire protocol and writes a Markdown report (`--out PATH`).
//!
//! 1. Codec: encode, decode (copy into the receive buffer + header + CRC + rkyv validation),
//!    the parts of that alone, in-place entry access, and a full deserialize for contrast, for
//!    AppendEntries with 1, 64 and 1024 entries (16 B key + 256 B value per entry). Baseline in
//!    the same run: a memcpy of the same frame bytes.
//! 2. Loopback: pipelined frames over one TCP connection from a blocking client to the glommio
//!    listener (which decodes, validates and touches every frame), one-way streams and a
//!    windowed echo, beside a raw-TCP baseline that moves the same bytes with plain memcpy on
//!    both ends (no framing, no CRC, no validation).
//!
//! Every figure is the median of several repetitions. Run: `make bench-net`.

mod support;

use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use ringraft_net::blocking_client::BlockingClient;
use ringraft_net::decoder::{Decoder, DecoderConfig};
use ringraft_net::frame::HEADER_BYTES;
use ringraft_net::message::*;
use ringraft_net::send_queue::encode_frame;
use rkyv::util::AlignedVec;
use support::{
    append_entries, client_config, cores, echo_secs, median, parse_out, stream_secs, write_report,
    Server, ECHO_WINDOW, FRAMES_PER_WRITE, KEY_BYTES, MAX_FRAME_BYTES, VALUE_BYTES,
};

const ENTRY_COUNTS: [usize; 3] = [1, 64, 1024];
const CODEC_REPS: usize = 21;
const LOOPBACK_REPS: usize = 5;
const CLUSTER: u64 = 0xBE0C;

/// Median ns per call of `f` over `reps` repetitions of `iters` calls.
fn measure(reps: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters.min(1000) {
        f();
    }
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        v.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    median(v)
}

struct CodecRow {
    entries: usize,
    frame_bytes: usize,
    encode_ns: f64,
    decode_ns: f64,
    crc_ns: f64,
    validate_ns: f64,
    access_ns: f64,
    deserialize_ns: f64,
    memcpy_ns: f64,
}

fn codec(entries: usize) -> Result<CodecRow, Box<dyn Error>> {
    let msg = append_entries(entries);
    let mut frame = AlignedVec::<16>::new();
    encode_frame(&mut frame, 0, 1, &msg, MAX_FRAME_BYTES)?;
    let frame_bytes = frame.len();
    let iters = (20_000_000 / frame_bytes).clamp(50, 200_000);

    let mut out = AlignedVec::<16>::with_capacity(frame_bytes);
    let encode_ns = measure(CODEC_REPS, iters, || {
        out.clear();
        black_box(encode_frame(&mut out, 0, 1, &msg, MAX_FRAME_BYTES).is_ok());
    });

    let mut dec = Decoder::new(DecoderConfig {
        max_frame_bytes: MAX_FRAME_BYTES,
        ..DecoderConfig::default()
    });
    let decode_ns = measure(CODEC_REPS, iters, || {
        let mut rest = frame.as_slice();
        while !rest.is_empty() {
            let n = dec.push(rest);
            rest = &rest[n..];
        }
        black_box(matches!(dec.next_frame(), Ok(Some(_))));
    });

    let payload_len = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]) as usize;
    let payload = &frame.as_slice()[HEADER_BYTES..HEADER_BYTES + payload_len];
    let crc_ns = measure(CODEC_REPS, iters, || {
        black_box(crc32fast::hash(black_box(payload)));
    });
    let validate_ns = measure(CODEC_REPS, iters, || {
        black_box(validate(Kind::AppendEntries, black_box(payload)).is_ok());
    });
    let archived = match validate(Kind::AppendEntries, payload)? {
        MessageRef::AppendEntries(a) => a,
        _ => return Err("wrong kind".into()),
    };
    let access_ns = measure(CODEC_REPS, iters, || {
        let mut sum = 0u64;
        for (_, index, _, p) in black_box(archived).entry_payloads() {
            sum = sum.wrapping_add(index).wrapping_add(p.len() as u64);
        }
        black_box(sum);
    });
    let deserialize_ns = measure(CODEC_REPS, iters.div_ceil(4), || {
        black_box(rkyv::deserialize::<AppendEntries, rkyv::rancor::Error>(archived).is_ok());
    });
    let mut sink = AlignedVec::<16>::with_capacity(frame_bytes);
    sink.resize(frame_bytes, 0);
    let memcpy_ns = measure(CODEC_REPS, iters, || {
        sink.as_mut_slice()
            .copy_from_slice(black_box(frame.as_slice()));
        black_box(sink.as_slice());
    });
    Ok(CodecRow {
        entries,
        frame_bytes,
        encode_ns,
        decode_ns,
        crc_ns,
        validate_ns,
        access_ns,
        deserialize_ns,
        memcpy_ns,
    })
}

struct LoopRow {
    name: String,
    frame_bytes: usize,
    frames: u64,
    protocol_fps: f64,
    protocol_mbps: f64,
    raw_fps: f64,
    raw_mbps: f64,
}

/// One-way stream of `frames` copies of `msg` on a fresh connection, then an end marker;
/// returns seconds until the server has validated them all.
fn stream_once<M: Encode>(addr: SocketAddr, msg: &M, frames: u64) -> Result<f64, Box<dyn Error>> {
    let mut c = BlockingClient::connect(addr, client_config(CLUSTER))?;
    stream_secs(&mut c, msg, frames)
}

/// Windowed echo on a fresh connection: `rounds` × `ECHO_WINDOW` pings in flight.
fn echo_once(addr: SocketAddr, rounds: u64) -> Result<f64, Box<dyn Error>> {
    let mut c = BlockingClient::connect(addr, client_config(CLUSTER))?;
    echo_secs(&mut c, rounds)
}

/// Raw TCP baseline: the same bytes, memcpy'd into the write buffer in the same batches,
/// received into a buffer and memcpy'd out, no framing. Returns seconds until the receiver
/// has all the bytes and acked.
fn raw_once(frame: &[u8], frames: u64) -> Result<f64, Box<dyn Error>> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let total = frame.len() as u64 * frames;
    let rx = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sink = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < total {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink[..n].copy_from_slice(&buf[..n]);
            black_box(&sink);
            got += n as u64;
        }
        s.write_all(&[1])?;
        Ok(got)
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut wbuf = Vec::with_capacity(frame.len() * FRAMES_PER_WRITE);
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < frames {
        wbuf.clear();
        let batch = (frames - sent).min(FRAMES_PER_WRITE as u64);
        for _ in 0..batch {
            wbuf.extend_from_slice(frame);
        }
        s.write_all(&wbuf)?;
        sent += batch;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)?;
    let secs = t.elapsed().as_secs_f64();
    let got = rx.join().map_err(|_| "receiver panicked")??;
    if got != total {
        return Err(format!("raw receiver got {got} of {total} bytes").into());
    }
    Ok(secs)
}

fn loopback_stream<M: Encode>(
    server: &Server,
    name: &str,
    msg: &M,
    frames: u64,
) -> Result<LoopRow, Box<dyn Error>> {
    let mut frame = AlignedVec::<16>::new();
    encode_frame(&mut frame, 0, 1, msg, MAX_FRAME_BYTES)?;
    let fb = frame.len();
    let mut p = Vec::new();
    let mut r = Vec::new();
    for _ in 0..LOOPBACK_REPS {
        p.push(stream_once(server.addr, msg, frames)?);
        r.push(raw_once(frame.as_slice(), frames)?);
    }
    let (ps, rs) = (median(p), median(r));
    Ok(LoopRow {
        name: name.to_string(),
        frame_bytes: fb,
        frames,
        protocol_fps: frames as f64 / ps,
        protocol_mbps: (frames as f64 * fb as f64) / ps / 1e6,
        raw_fps: frames as f64 / rs,
        raw_mbps: (frames as f64 * fb as f64) / rs / 1e6,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let out_path = parse_out("net_bench")?;
    let started = Instant::now();

    let mut codec_rows = Vec::new();
    for n in ENTRY_COUNTS {
        let row = codec(n)?;
        eprintln!(
            "codec {n:>5} entries: encode {:.0} ns, decode {:.0} ns, memcpy {:.0} ns",
            row.encode_ns, row.decode_ns, row.memcpy_ns
        );
        codec_rows.push(row);
    }

    let server = Server::start("net-bench-server", CLUSTER, 1, None)?;
    let small = Ping {
        nonce: 1,
        data: vec![7; 64],
    };
    let ae64 = append_entries(64);
    let mut loop_rows = vec![
        loopback_stream(&server, "Ping, 64 B data", &small, 200_000)?,
        loopback_stream(&server, "AppendEntries, 64 entries", &ae64, 4_000)?,
    ];
    for r in &loop_rows {
        eprintln!(
            "loopback {}: {:.0} frames/s {:.0} MB/s (raw {:.0} frames/s {:.0} MB/s)",
            r.name, r.protocol_fps, r.protocol_mbps, r.raw_fps, r.raw_mbps
        );
    }
    let rounds = 400u64;
    let mut e = Vec::new();
    for _ in 0..LOOPBACK_REPS {
        e.push(echo_once(server.addr, rounds)?);
    }
    let echo_secs = median(e);
    let echo_fps = (rounds * ECHO_WINDOW as u64) as f64 / echo_secs;
    eprintln!("echo window {ECHO_WINDOW}: {echo_fps:.0} round trips/s");
    drop(server);
    loop_rows.sort_by_key(|a| a.frame_bytes);

    let mut md = String::new();
    writeln!(md, "# ringraft-net benchmark")?;
    writeln!(md)?;
    writeln!(
        md,
        "Generated by `make bench-net` (`net/examples/net_bench.rs`), release build, {} cores, \
         total run {:.1} s. Medians of {CODEC_REPS} (codec) / {LOOPBACK_REPS} (loopback) \
         repetitions; baselines measured in the same run.",
        cores(),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "## Codec: AppendEntries ({KEY_BYTES} B key + {VALUE_BYTES} B value per entry)"
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "- **encode**: header + rkyv serialize in place + CRC + padding into a reused buffer."
    )?;
    writeln!(md, "- **decode**: copy into the aligned receive buffer + header checks + CRC + bytecheck validation (what a receiver pays before touching a field).")?;
    writeln!(md, "- **crc** / **validate**: those two parts alone. **access**: iterate every entry's (term, index, payload) in place, the WAL hand-off.")?;
    writeln!(md, "- **deserialize**: a full owned copy, which the node does not do (for contrast). **memcpy**: copying the frame bytes once (baseline).")?;
    writeln!(md)?;
    writeln!(md, "| entries | frame bytes | encode ns | decode ns | crc ns | validate ns | access ns | deserialize ns | memcpy ns | encode ns/entry | decode ns/entry |")?;
    writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for r in &codec_rows {
        let n = r.entries as f64;
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            r.entries,
            r.frame_bytes,
            r.encode_ns,
            r.decode_ns,
            r.crc_ns,
            r.validate_ns,
            r.access_ns,
            r.deserialize_ns,
            r.memcpy_ns,
            r.encode_ns / n,
            r.decode_ns / n
        )?;
    }
    writeln!(md)?;
    writeln!(md, "## Loopback: pipelined frames over one TCP connection")?;
    writeln!(md)?;
    writeln!(
        md,
        "Blocking client → glommio listener on 127.0.0.1, {FRAMES_PER_WRITE} frames per write, \
         one-way stream then one acked end marker; the listener decodes, validates and (for \
         AppendEntries) walks every entry payload. **raw** = the same bytes over plain TCP, \
         memcpy'd into the write buffer and out of the read buffer, no framing/CRC/validation."
    )?;
    writeln!(md)?;
    writeln!(md, "| stream | frame bytes | frames | frames/s | MB/s | raw frames/s | raw MB/s | protocol / raw |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in &loop_rows {
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            r.name,
            r.frame_bytes,
            r.frames,
            r.protocol_fps,
            r.protocol_mbps,
            r.raw_fps,
            r.raw_mbps,
            r.protocol_fps / r.raw_fps
        )?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "Windowed echo (Ping 64 B → Pong, {ECHO_WINDOW} requests in flight, matched by request \
         id): **{echo_fps:.0} round trips/s** (median of {LOOPBACK_REPS} runs of {} requests).",
        rounds * ECHO_WINDOW as u64
    )?;
    writeln!(md)?;
    writeln!(md, "The two ends share this machine's cores with each other (and with anything else running), so loopback figures are a floor, not a ceiling.")?;
    write_report(&out_path, md)
}
