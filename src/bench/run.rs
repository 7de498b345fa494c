//! The benchmark driver: one glommio executor, `--connections` async clients, `--inflight`
//! worker tasks spread over them, three phases (load, warmup, measure), a progress line.
//!
//! Each worker takes request numbers from a shared counter. Closed loop: it sends request `n`
//! as soon as its previous request answered, and measures from the send. Open loop (`rate`):
//! request `n` is due at `t0 + n / rate`; the worker waits until then if early, and measures
//! from the due time, so time spent queued behind a slow answer counts (coordinated omission
//! corrected); with too few workers for the rate, latencies grow instead of the rate silently
//! dropping. Owned by the client.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::bench::report::{self, new_histogram, Summary};
use crate::bench::workload::{Rng, Workload, WorkloadKind, DEFAULT_KEY_SPACE, HOT_KEY_SPACE};
use crate::bench::{breakdown, cpu};
use crate::bench::{BenchArgs, DEFAULT_DURATION_S, DEFAULT_READ_RATIO};
use crate::cli::client_config;
use crate::client::{AsyncClient, Consistency, HistoryRecorder};

/// Interval of progress line updates.
pub(crate) const PROGRESS_INTERVAL_MS: u64 = 500;

/// Counters of one phase, shared by its workers.
struct Shared {
    next: Cell<u64>,
    ok: Cell<u64>,
    errors: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    first_error: RefCell<Option<String>>,
}

impl Shared {
    fn new() -> Rc<Shared> {
        Rc::new(Shared {
            next: Cell::new(0),
            ok: Cell::new(0),
            errors: Cell::new(0),
            hist: RefCell::new(new_histogram()),
            first_error: RefCell::new(None),
        })
    }
}

/// What a phase sends and when it stops.
#[derive(Clone, Copy)]
enum Source {
    /// Puts of keys `0..key_space`.
    Load,
    /// The workload's requests.
    Workload,
}

#[derive(Clone, Copy)]
struct Phase {
    source: Source,
    total: Option<u64>,
    stop_at: Option<Instant>,
    rate: Option<f64>,
    t0: Instant,
}

async fn worker(
    client: AsyncClient,
    wl: Rc<Workload>,
    shared: Rc<Shared>,
    phase: Phase,
    mut rng: Rng,
) {
    loop {
        let n = shared.next.get();
        if phase.total.is_some_and(|t| n >= t) {
            return;
        }
        shared.next.set(n + 1);
        let start = match phase.rate {
            Some(rate) => {
                let due = phase.t0 + Duration::from_secs_f64(n as f64 / rate);
                if phase.stop_at.is_some_and(|s| due >= s) {
                    return;
                }
                let now = Instant::now();
                if due > now {
                    glommio::timer::sleep(due - now).await;
                }
                due
            }
            None => {
                let now = Instant::now();
                if phase.stop_at.is_some_and(|s| now >= s) {
                    return;
                }
                now
            }
        };
        let op = match phase.source {
            Source::Load => wl.load_op(n),
            Source::Workload => wl.next_op(&mut rng, n),
        };
        let r = client.execute(op).await;
        let ns = start.elapsed().as_nanos() as u64;
        match r {
            Ok(_) => {
                shared.ok.set(shared.ok.get() + 1);
                report::record(&mut shared.hist.borrow_mut(), ns);
            }
            Err(e) => {
                shared.errors.set(shared.errors.get() + 1);
                let mut first = shared.first_error.borrow_mut();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

async fn progress(label: String, shared: Rc<Shared>, t0: Instant) {
    loop {
        glommio::timer::sleep(Duration::from_millis(PROGRESS_INTERVAL_MS)).await;
        let secs = t0.elapsed().as_secs_f64();
        let ok = shared.ok.get();
        eprint!(
            "\r\x1b[K{label}: {secs:6.1} s  {ok:>10} ok  {:>8} errors  {:>9.0} ops/s",
            shared.errors.get(),
            ok as f64 / secs.max(1e-9)
        );
    }
}

/// Runs one phase to its end; returns the counters and the elapsed time.
async fn phase(
    clients: &[AsyncClient],
    wl: &Rc<Workload>,
    inflight: usize,
    ph: Phase,
    seed: u64,
    label: Option<String>,
) -> (Rc<Shared>, f64) {
    let shared = Shared::new();
    let bar = label.map(|l| glommio::spawn_local(progress(l, shared.clone(), ph.t0)));
    let tasks: Vec<_> = (0..inflight)
        .map(|i| {
            glommio::spawn_local(worker(
                clients[i % clients.len()].clone(),
                wl.clone(),
                shared.clone(),
                ph,
                Rng::new(seed, i as u64),
            ))
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = ph.t0.elapsed().as_secs_f64();
    if let Some(b) = bar {
        drop(b);
        eprint!("\r\x1b[K");
    }
    (shared, elapsed)
}

fn workload_of(args: &BenchArgs) -> Workload {
    let key_space = args.key_space.unwrap_or(match args.workload {
        WorkloadKind::HotKey => HOT_KEY_SPACE,
        _ => DEFAULT_KEY_SPACE,
    });
    Workload {
        kind: args.workload,
        consistency: args.consistency.into(),
        read_ratio: args.read_ratio.unwrap_or(DEFAULT_READ_RATIO),
        key_size: args.key_size,
        value_size: args.value_size,
        key_space,
    }
}

fn consistency_name(wl: &Workload) -> &'static str {
    if wl.kind == WorkloadKind::Put {
        return "none";
    }
    match wl.consistency {
        Consistency::Default => "default",
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Eventual => "eventual",
    }
}

/// Runs the benchmark and prints its result.
pub(crate) fn run(args: &BenchArgs, endpoints: &[String]) -> Result<(), String> {
    args.validate()?;
    let wl = workload_of(args);
    wl.validate()?;
    let cfg = client_config(endpoints);
    cfg.validate()?;
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ringraft-bench")
        .make()
        .map_err(|e| format!("cannot start a glommio executor: {e}"))?;
    let summary = ex.run(async move {
        let recorder = match &args.history {
            Some(p) => Some(Arc::new(HistoryRecorder::create(p).map_err(|e| {
                format!("cannot create the history file {}: {e}", p.display())
            })?)),
            None => None,
        };
        let mut clients = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let c = AsyncClient::new(cfg.clone(), None).map_err(|e| e.to_string())?;
            c.cluster_status().await.map_err(|e| e.to_string())?;
            clients.push(c);
        }
        let wl = Rc::new(wl);
        let show = !args.no_progress && std::io::stderr().is_terminal();
        let label = |what: &str| show.then(|| format!("{what} {}", wl.kind.name()));
        if wl.kind.needs_preload() && !args.no_preload {
            let ph = Phase {
                source: Source::Load,
                total: Some(wl.key_space),
                stop_at: None,
                rate: None,
                t0: Instant::now(),
            };
            let (s, _) = phase(&clients, &wl, args.inflight, ph, args.seed, label("load")).await;
            if s.errors.get() > 0 {
                return Err(format!(
                    "loading {} keys: {} failed, first: {}",
                    wl.key_space,
                    s.errors.get(),
                    s.first_error.borrow().clone().unwrap_or_default()
                ));
            }
        }
        if args.warmup > 0.0 {
            let t0 = Instant::now();
            let ph = Phase {
                source: Source::Workload,
                total: None,
                stop_at: Some(t0 + Duration::from_secs_f64(args.warmup)),
                rate: args.rate,
                t0,
            };
            phase(
                &clients,
                &wl,
                args.inflight,
                ph,
                args.seed ^ 0xAAAA,
                label("warmup"),
            )
            .await;
        }
        // The measured phase records its history (warmup and load do not).
        let measured: Vec<AsyncClient> = match &recorder {
            Some(r) => {
                let mut v = Vec::with_capacity(args.connections);
                for _ in 0..args.connections {
                    let c = AsyncClient::new(cfg.clone(), Some(r.clone()))
                        .map_err(|e| e.to_string())?;
                    c.cluster_status().await.map_err(|e| e.to_string())?;
                    v.push(c);
                }
                v
            }
            None => clients.clone(),
        };
        let stages_before = args
            .breakdown
            .as_ref()
            .map(|_| breakdown::scrape_all(endpoints));
        let cpu_before = if args.cpu_pids.is_empty() {
            None
        } else {
            Some(cpu::total_cpu_us(&args.cpu_pids)?)
        };
        let t0 = Instant::now();
        let duration = match (args.total, args.duration) {
            (Some(_), _) => None,
            (None, d) => Some(Duration::from_secs_f64(d.unwrap_or(DEFAULT_DURATION_S))),
        };
        let ph = Phase {
            source: Source::Workload,
            total: args.total,
            stop_at: duration.map(|d| t0 + d),
            rate: args.rate,
            t0,
        };
        let (s, elapsed) =
            phase(&measured, &wl, args.inflight, ph, args.seed, label("bench")).await;
        let node_cpu_us = match cpu_before {
            Some(b) => Some(cpu::total_cpu_us(&args.cpu_pids)?.saturating_sub(b)),
            None => None,
        };
        let stages = stages_before.map(|b| breakdown::table(&b, &breakdown::scrape_all(endpoints)));
        for c in clients.iter().chain(measured.iter()) {
            c.close();
        }
        if let Some(r) = &recorder {
            r.flush().map_err(|e| format!("writing the history: {e}"))?;
        }
        if let Some(e) = s.first_error.borrow().as_ref() {
            eprintln!(
                "ringraft bench: {} request(s) failed; first: {e}",
                s.errors.get()
            );
        }
        let hist = s.hist.borrow().clone();
        let mut summary = Summary::new(
            wl.kind.name(),
            consistency_name(&wl),
            args.connections,
            args.inflight,
            s.ok.get(),
            s.errors.get(),
            elapsed,
            &hist,
        );
        summary.node_cpu_us_per_op =
            node_cpu_us.map(|c| (c as f64 / s.ok.get().max(1) as f64 * 10.0).round() / 10.0);
        Ok::<_, String>((summary, hist, stages))
    });
    let (summary, hist, stages) = summary?;
    if let (Some(t), Some(to)) = (&stages, &args.breakdown) {
        match to {
            Some(p) => {
                std::fs::write(p, t).map_err(|e| format!("cannot write {}: {e}", p.display()))?
            }
            None => println!("Where the measured writes' time went, per node and stage:\n\n{t}"),
        }
    }
    if let Some(p) = &args.percentiles {
        std::fs::write(p, report::distribution_csv(&hist))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.svg {
        let title = format!(
            "ringraft {} ({}), {} in flight",
            summary.op, summary.consistency, summary.inflight
        );
        let svg = report::svg_plot(&title, &[("ringraft".into(), report::distribution(&hist))]);
        std::fs::write(p, svg).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_table());
    }
    if summary.ok == 0 {
        return Err("no request succeeded".into());
    }
    Ok(())
}
