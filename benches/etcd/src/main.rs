//! ringraft-etcd-load: runs ringraft's benchmark workloads against etcd, so `make bench-etcd`
//! can put the two side by side from the same run on the same machine.
//!
//! Same load model and output as `ringraft bench`: `--connections` gRPC connections (connection
//! i dials endpoint i mod n), `--inflight` requests in flight in total, closed loop, an
//! unmeasured warmup, then a measured `--duration`; latencies in an hdrhistogram; one JSON line
//! with the fields of ringraft's summary, and `--percentiles FILE` writes the percentile
//! distribution as `percentile,latency_us` CSV. Keys are the key index zero-padded to
//! `--key-size` bytes; values `--value-size` bytes. Reads are linearizable or serializable
//! (etcd's local read, the closest to ringraft's lease/eventual reads).

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use hdrhistogram::Histogram;

/// Largest latency tracked, in nanoseconds.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

#[derive(Debug, Clone)]
struct Args {
    endpoints: Vec<String>,
    op: String,
    consistency: String,
    connections: usize,
    inflight: usize,
    duration_s: f64,
    warmup_s: f64,
    key_size: usize,
    value_size: usize,
    key_space: u64,
    read_ratio: f64,
    json: bool,
    percentiles: Option<String>,
    seed: u64,
    cpu_pids: Vec<u32>,
}

fn usage() -> &'static str {
    "usage: ringraft-etcd-load [--endpoints a,b,c] [--op put|get|mixed|hot-key] \
     [--consistency linearizable|serializable] [--connections N] [--inflight N] \
     [--duration S] [--warmup S] [--key-size B] [--value-size B] [--key-space N] \
     [--read-ratio F] [--seed N] [--json] [--percentiles FILE] [--cpu-pids P1,P2,..]"
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        endpoints: vec![
            "127.0.0.1:23791".into(),
            "127.0.0.1:23792".into(),
            "127.0.0.1:23793".into(),
        ],
        op: "put".into(),
        consistency: "linearizable".into(),
        connections: 1,
        inflight: 1,
        duration_s: 10.0,
        warmup_s: 1.0,
        key_size: 8,
        value_size: 256,
        key_space: 0,
        read_ratio: 0.5,
        json: false,
        percentiles: None,
        seed: 1,
        cpu_pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(usage().into());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag}: missing value\n{}", usage()))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--endpoints" => a.endpoints = v.split(',').map(str::to_string).collect(),
            "--op" => a.op = v,
            "--consistency" => a.consistency = v,
            "--connections" => a.connections = num(&v)? as usize,
            "--inflight" => a.inflight = num(&v)? as usize,
            "--duration" => a.duration_s = num(&v)?,
            "--warmup" => a.warmup_s = num(&v)?,
            "--key-size" => a.key_size = num(&v)? as usize,
            "--value-size" => a.value_size = num(&v)? as usize,
            "--key-space" => a.key_space = num(&v)? as u64,
            "--read-ratio" => a.read_ratio = num(&v)?,
            "--seed" => a.seed = num(&v)? as u64,
            "--percentiles" => a.percentiles = Some(v),
            "--cpu-pids" => {
                a.cpu_pids = v
                    .split(',')
                    .map(|p| p.parse::<u32>().map_err(|e| format!("--cpu-pids {p}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    if !["put", "get", "mixed", "hot-key"].contains(&a.op.as_str()) {
        return Err(format!("--op {}: one of put, get, mixed, hot-key", a.op));
    }
    if !["linearizable", "serializable"].contains(&a.consistency.as_str()) {
        return Err(format!(
            "--consistency {}: linearizable or serializable",
            a.consistency
        ));
    }
    if a.connections == 0 || a.inflight < a.connections || a.endpoints.is_empty() {
        return Err(
            "need at least one endpoint, one connection, and --inflight >= --connections".into(),
        );
    }
    if a.key_space == 0 {
        a.key_space = if a.op == "hot-key" { 8 } else { 10_000 };
    }
    if a.duration_s <= 0.0 || a.warmup_s < 0.0 || !(0.0..=1.0).contains(&a.read_ratio) {
        return Err("--duration must be > 0, --warmup >= 0, --read-ratio in [0, 1]".into());
    }
    let digits = (a.key_space.max(2) - 1).ilog10() as usize + 1;
    if digits > a.key_size {
        return Err(format!(
            "--key-size {} cannot hold {} keys",
            a.key_size, a.key_space
        ));
    }
    Ok(a)
}

/// utime + stime of `pids` in microseconds, from `/proc/<pid>/stat` (fields 14 and 15, clock
/// ticks of 1/100 s, the Linux value of `CLK_TCK`).
fn cpu_us(pids: &[u32]) -> Result<u64, String> {
    let mut total = 0u64;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let rest = text
            .rfind(')')
            .map(|i| &text[i + 1..])
            .ok_or_else(|| format!("{path}: unexpected format"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| -> Result<u64, String> {
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{path}: unexpected format"))
        };
        total += (tick(11)? + tick(12)?) * 10_000;
    }
    Ok(total)
}

fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn key(a: &Args, i: u64) -> Vec<u8> {
    format!("{i:0width$}", width = a.key_size).into_bytes()
}

fn value(a: &Args, n: u64) -> Vec<u8> {
    (0..a.value_size as u64)
        .map(|j| b'a' + ((n + j) % 26) as u8)
        .collect()
}

struct Counters {
    next: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
}

#[derive(Clone, Copy)]
enum Phase {
    Load,
    Run { stop_at: Instant },
}

async fn worker(
    mut client: Client,
    a: Rc<Args>,
    c: Rc<RefCell<Counters>>,
    phase: Phase,
    stream: u64,
) {
    let mut rng = mix64(a.seed ^ mix64(stream + 0x5151));
    let serializable = a.consistency == "serializable";
    loop {
        let n = {
            let mut c = c.borrow_mut();
            let n = c.next;
            c.next += 1;
            n
        };
        let (read, k) = match phase {
            Phase::Load => {
                if n >= a.key_space {
                    return;
                }
                (false, key(&a, n))
            }
            Phase::Run { stop_at } => {
                if Instant::now() >= stop_at {
                    return;
                }
                rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let r1 = mix64(rng);
                rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let r2 = mix64(rng);
                let k = key(
                    &a,
                    ((u128::from(r1) * u128::from(a.key_space)) >> 64) as u64,
                );
                let read = match a.op.as_str() {
                    "put" => false,
                    "get" => true,
                    _ => ((r2 >> 11) as f64 / (1u64 << 53) as f64) < a.read_ratio,
                };
                (read, k)
            }
        };
        let start = Instant::now();
        let r = if read {
            let opts = serializable.then(|| GetOptions::new().with_serializable());
            client.get(k, opts).await.map(|_| ())
        } else {
            client.put(k, value(&a, n), None).await.map(|_| ())
        };
        let ns = start.elapsed().as_nanos() as u64;
        let mut c = c.borrow_mut();
        match r {
            Ok(()) => {
                c.ok += 1;
                let _ = c.hist.record(ns.clamp(1_000, MAX_LATENCY_NS));
            }
            Err(e) => {
                c.errors += 1;
                if c.first_error.is_none() {
                    c.first_error = Some(e.to_string());
                }
            }
        }
    }
}

async fn phase(
    clients: &[Client],
    a: &Rc<Args>,
    phase: Phase,
    seed: u64,
) -> Result<(Rc<RefCell<Counters>>, f64), String> {
    let hist = Histogram::new_with_bounds(1_000, MAX_LATENCY_NS, 3).map_err(|e| e.to_string())?;
    let c = Rc::new(RefCell::new(Counters {
        next: 0,
        ok: 0,
        errors: 0,
        first_error: None,
        hist,
    }));
    let t0 = Instant::now();
    let local = tokio::task::LocalSet::new();
    for i in 0..a.inflight {
        local.spawn_local(worker(
            clients[i % clients.len()].clone(),
            a.clone(),
            c.clone(),
            phase,
            seed.wrapping_add(i as u64),
        ));
    }
    local.await;
    Ok((c, t0.elapsed().as_secs_f64()))
}

async fn run(a: Args) -> Result<String, String> {
    let a = Rc::new(a);
    let mut clients = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let ep = &a.endpoints[i % a.endpoints.len()];
        let c = Client::connect([format!("http://{ep}")], None)
            .await
            .map_err(|e| format!("cannot connect to etcd at {ep}: {e}"))?;
        clients.push(c);
    }
    if a.op != "put" {
        let (c, _) = phase(&clients, &a, Phase::Load, 0).await?;
        if c.borrow().errors > 0 {
            return Err(format!("loading keys failed: {:?}", c.borrow().first_error));
        }
    }
    if a.warmup_s > 0.0 {
        let stop_at = Instant::now() + Duration::from_secs_f64(a.warmup_s);
        phase(&clients, &a, Phase::Run { stop_at }, a.seed ^ 0xAAAA).await?;
    }
    let cpu0 = cpu_us(&a.cpu_pids)?;
    let stop_at = Instant::now() + Duration::from_secs_f64(a.duration_s);
    let (c, elapsed) = phase(&clients, &a, Phase::Run { stop_at }, a.seed).await?;
    let cpu = cpu_us(&a.cpu_pids)?.saturating_sub(cpu0);
    let c = c.borrow();
    if let Some(e) = &c.first_error {
        eprintln!(
            "ringraft-etcd-load: {} request(s) failed; first: {e}",
            c.errors
        );
    }
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let q = |p: f64| {
        if c.hist.is_empty() {
            0.0
        } else {
            us(c.hist.value_at_quantile(p))
        }
    };
    if let Some(path) = &a.percentiles {
        let mut s = String::from("percentile,latency_us\n");
        if !c.hist.is_empty() {
            for v in c.hist.iter_quantiles(5) {
                s.push_str(&format!(
                    "{:.6},{:.1}\n",
                    v.quantile_iterated_to() * 100.0,
                    us(v.value_iterated_to())
                ));
            }
        }
        std::fs::write(path, s).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let consistency = if a.op == "put" {
        "none"
    } else {
        a.consistency.as_str()
    };
    let line = format!(
        "{{\"op\":\"{}\",\"consistency\":\"{}\",\"connections\":{},\"inflight\":{},\"total\":{},\"ok\":{},\"errors\":{},\"elapsed_s\":{:.3},\"ops_per_s\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}{}}}",
        a.op,
        consistency,
        a.connections,
        a.inflight,
        c.ok + c.errors,
        c.ok,
        c.errors,
        elapsed,
        c.ok as f64 / elapsed.max(1e-9),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        if c.hist.is_empty() { 0.0 } else { us(c.hist.max()) },
        if a.cpu_pids.is_empty() {
            String::new()
        } else {
            format!(
                ",\"node_cpu_us_per_op\":{:.1}",
                cpu as f64 / c.ok.max(1) as f64
            )
        },
    );
    if c.ok == 0 {
        return Err(format!("no request succeeded: {line}"));
    }
    Ok(line)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringraft-etcd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringraft-etcd-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(line) => {
            // The JSON line is the output either way; `--json` is accepted for symmetry.
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringraft-etcd-load: {e}");
            ExitCode::from(2)
        }
    }
}
