//! Long runs of the Raft core fuzzer (the short run is `tests/raft_core/fuzz.rs`):
//! alternating benign and hostile seeds for `--seconds` (default 60), from `--seed` (default
//! 1), `--steps` inputs per seed. A broken invariant or a panic prints the seed and step to
//! replay and exits 1; at the end it prints inputs, inputs per second, messages injected and
//! refused.
//!
//! `cargo run --release --example raft_fuzz -- --seconds 60`

#[path = "../tests/raft_support/mod.rs"]
mod raft_support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use raft_support::fuzz::{run_seed, FuzzStats};

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| {
        Ok::<_, String>((
            arg(&args, "--seconds", 60)?,
            arg(&args, "--seed", 1)?,
            arg(&args, "--steps", 5_000)?,
        ))
    })();
    let (seconds, first, steps) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("raft_fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut stats = FuzzStats::default();
    let mut seed = first;
    loop {
        let hostile = seed % 2 == 1;
        let res = catch_unwind(AssertUnwindSafe(|| {
            run_seed(seed, steps as usize, hostile, &mut stats)
        }));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("raft_fuzz: invariant broken: {e}");
                eprintln!("replay: cargo run --release --example raft_fuzz -- --seed {seed} --steps {steps} --seconds 0");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("raft_fuzz: panic at seed {seed} (hostile: {hostile})");
                eprintln!("replay: cargo run --release --example raft_fuzz -- --seed {seed} --steps {steps} --seconds 0");
                return ExitCode::FAILURE;
            }
        }
        seed += 1;
        if start.elapsed() >= deadline {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "raft_fuzz: {} seeds ({}..{}), {} inputs in {:.1} s = {:.0} inputs/s; {} hostile messages injected, {} refused as invalid, {} leaders elected, {} entries committed, {} crashes, {} snapshots installed",
        stats.seeds,
        first,
        seed,
        stats.inputs,
        secs,
        stats.inputs as f64 / secs.max(1e-9),
        stats.injected,
        stats.refused,
        stats.leaders,
        stats.committed,
        stats.crashes,
        stats.snapshots_installed
    );
    ExitCode::SUCCESS
}
