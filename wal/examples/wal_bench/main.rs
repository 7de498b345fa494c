//! wal_bench: durable-append benchmark of ringraft-wal against the raw ways Linux offers to make
//! bytes durable, measured side by side in the same run.
//!
//! 256-byte records, durable batches of 1, 10, 100 and 1000 (append the batch, then wait until
//! its last record is durable). For each: records/s, MB/s, p50/p99 of the durable wait and of
//! the whole batch, CPU µs per record (whole process incl. flush workers and kernel time, and
//! the appending thread alone), syncs per batch. Raw baselines on a preallocated, zero-filled,
//! synced file (as WAL segments are): `pwrite` + `fdatasync`; `memcpy` into a shared map +
//! `msync`; `pwrite` + `sync_file_range` + `fdatasync`; `O_DIRECT` `pwrite` of the covering
//! 4 KiB blocks + `fdatasync`. The WAL in both write modes (`pwrite`, `mmap`), and synced by the
//! appender itself (blocking, or through a glommio executor's io_uring). Batch 1 also with
//! three writers at once (three nodes on one disk). Every configuration runs `--runs` times,
//! interleaved; the report quotes the median run.
//!
//! Usage: `cargo run --release -p ringraft-wal --example wal_bench -- --out benches/reports/wal.md
//! [--dir DIR] [--secs S] [--runs N]`
//!
//! Files: `main.rs` (arguments, the run schedule), `wal_runs.rs` (the WAL's runs), `raw.rs`
//! (raw baselines), `measure.rs` (run figures, CPU, medians, concurrency), `report.rs`.

mod measure;
mod raw;
mod report;
mod wal_runs;

use std::path::PathBuf;

use ringraft_wal::WriteMode;

use measure::{concurrent, median, pct, Neighbour, Run};
use raw::{baseline_run, Raw};
use report::Row;
use wal_runs::{wal_here_run, wal_pipelined_run, wal_run, wal_uring_run};

const PAYLOAD_BYTES: usize = 256;
const BATCHES: [usize; 4] = [1, 10, 100, 1000];
const GROUPS: u64 = 8;

struct Args {
    out: PathBuf,
    dir: PathBuf,
    secs: f64,
    runs: usize,
}

fn args() -> Result<Args, String> {
    let mut out = None;
    let mut dir = std::env::temp_dir().join(format!("ringraft-wal-bench-{}", std::process::id()));
    let mut secs = 1.0;
    let mut runs = 3;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(val()?)),
            "--dir" => dir = PathBuf::from(val()?),
            "--secs" => secs = val()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        out: out.ok_or("--out PATH is required")?,
        dir,
        secs,
        runs: runs.max(1),
    })
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wal_bench: {e}");
            std::process::exit(2);
        }
    };
    let go = |r: Result<Run, String>| r.unwrap_or_else(|e| fail(&e));
    let w = a.dir.join("wal");
    let raws = [Raw::Pwrite, Raw::Msync, Raw::SyncFileRange, Raw::Direct];
    let modes = [(WriteMode::Pwrite, "pwrite"), (WriteMode::Mmap, "mmap")];
    let mut rows: Vec<Row> = Vec::new();
    for &batch in &BATCHES {
        // (name, runs) in the order they are printed; runs are interleaved.
        let mut acc: Vec<(String, Vec<Run>)> = Vec::new();
        let mut push = |name: String, r: Run| match acc.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(r),
            None => acc.push((name, vec![r])),
        };
        for _ in 0..a.runs {
            for raw in raws {
                if batch > 100 && raw == Raw::Direct {
                    continue;
                }
                push(
                    raw.name().into(),
                    go(baseline_run(&a.dir, batch, a.secs, raw)),
                );
            }
            for (mode, m) in modes {
                push(
                    format!("ringraft-wal {m}"),
                    go(wal_run(&w, batch, a.secs, false, mode)),
                );
            }
            if batch == 1 {
                push(
                    "ringraft-wal pwrite, sync here".into(),
                    go(wal_here_run(&w, a.secs)),
                );
                push(
                    "ringraft-wal pwrite, io_uring sync".into(),
                    go(wal_uring_run(&w, a.secs)),
                );
                let n = Neighbour::start();
                for raw in [Raw::Pwrite, Raw::Msync] {
                    push(
                        format!("{}, busy neighbour", raw.name()),
                        go(baseline_run(&a.dir, batch, a.secs, raw)),
                    );
                }
                for (mode, m) in modes {
                    push(
                        format!("ringraft-wal {m}, busy neighbour"),
                        go(wal_run(&w, batch, a.secs, false, mode)),
                    );
                }
                push(
                    "ringraft-wal pwrite, sync here, busy neighbour".into(),
                    go(wal_here_run(&w, a.secs)),
                );
                push(
                    "ringraft-wal pwrite, io_uring sync, busy neighbour".into(),
                    go(wal_uring_run(&w, a.secs)),
                );
                push(
                    "ringraft-wal pwrite, spin, busy neighbour".into(),
                    go(wal_run(&w, batch, a.secs, true, WriteMode::Pwrite)),
                );
                drop(n);
                for raw in [Raw::Pwrite, Raw::Msync] {
                    push(
                        format!("{}, 3 writers", raw.name()),
                        go(concurrent(3, |i| {
                            baseline_run(&a.dir.join(format!("w{i}")), batch, a.secs, raw)
                        })),
                    );
                }
                push(
                    "ringraft-wal pwrite, sync here, 3 writers".into(),
                    go(concurrent(3, |i| {
                        wal_here_run(&a.dir.join(format!("wal{i}")), a.secs)
                    })),
                );
                push(
                    "ringraft-wal pwrite, io_uring sync, 3 writers".into(),
                    go(concurrent(3, |i| {
                        wal_uring_run(&a.dir.join(format!("wal{i}")), a.secs)
                    })),
                );
                for (mode, m) in modes {
                    push(
                        format!("ringraft-wal {m}, 3 writers"),
                        go(concurrent(3, |i| {
                            wal_run(&a.dir.join(format!("wal{i}")), batch, a.secs, false, mode)
                        })),
                    );
                }
            } else {
                push(
                    "ringraft-wal pwrite, pipelined".into(),
                    go(wal_pipelined_run(&w, batch, a.secs)),
                );
            }
        }
        for (name, runs) in acc {
            let run = median(runs);
            eprintln!(
                "batch {batch}: {name}: {:.0} rec/s, batch p50 {:.1} µs",
                run.rate(),
                pct(&run.batch_ns, 0.5)
            );
            rows.push(Row { name, batch, run });
        }
    }
    let _ = std::fs::remove_dir_all(&a.dir);

    let md = report::render(&a, &rows);
    if let Some(parent) = a.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&a.out, md) {
        fail(&format!("writing {}: {e}", a.out.display()));
    }
    eprintln!("report written to {}", a.out.display());
}

fn fail(e: &str) -> ! {
    eprintln!("wal_bench: {e}");
    std::process::exit(1);
}
