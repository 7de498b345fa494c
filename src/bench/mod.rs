//! The latency benchmark, `ringraft bench`: drives a cluster through the async client
//! ([`crate::client::AsyncClient`], on one glommio executor) and reports throughput and latency
//! percentiles (hdrhistogram).
//!
//! Workloads ([`workload`]): put, get (per consistency), mixed (`--read-ratio`), hot-key (a
//! tiny key space). Load shape: `--connections` clients (one connection per node each) share
//! `--inflight` concurrent requests in total. Closed loop by default (each in-flight slot sends
//! its next request when the previous answers); with `--rate` open loop: request `n` is due at
//! `start + n / rate`, and its latency is measured from when it was *due*, not when it was
//! sent, which corrects coordinated omission. `--total` or `--duration` bounds the measured
//! phase; `--warmup` seconds run first and are not measured; get, mixed and hot-key load their
//! key space first. A progress line updates on stderr while it runs (when stderr is a
//! terminal). Output: a table, or with `--json` one line with the fields of
//! [`report::Summary`]; `--percentiles FILE` writes the distribution as CSV, `--svg FILE` a plot.
//! Owned by the client.

pub(crate) mod breakdown;
pub(crate) mod cpu;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::ConsistencyArg;
use workload::WorkloadKind;

/// Most connections (clients) one run opens.
pub(crate) const MAX_CONNECTIONS: usize = 1_024;
/// Most requests in flight in total.
pub(crate) const MAX_INFLIGHT: usize = 65_536;
/// Measured duration when neither `--total` nor `--duration` is given.
pub(crate) const DEFAULT_DURATION_S: f64 = 10.0;
/// Read ratio of mixed and hot-key unless `--read-ratio` is given.
pub(crate) const DEFAULT_READ_RATIO: f64 = 0.5;
/// Longest duration or warmup accepted, in seconds.
pub(crate) const MAX_DURATION_S: f64 = 86_400.0;

/// `ringraft bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workload.
    #[arg(value_enum, default_value_t = WorkloadKind::Put)]
    pub(crate) workload: WorkloadKind,
    /// Consistency of the reads.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub(crate) consistency: ConsistencyArg,
    /// Fraction of reads in mixed and hot-key (default 0.5).
    #[arg(long)]
    pub(crate) read_ratio: Option<f64>,
    /// Connections (each a client with one connection per node).
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Requests in flight in total (spread over the connections).
    #[arg(long, default_value_t = 1)]
    pub(crate) inflight: usize,
    /// Measured requests (instead of --duration).
    #[arg(long, conflicts_with = "duration")]
    pub(crate) total: Option<u64>,
    /// Measured seconds (default 10 unless --total is given).
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Unmeasured seconds before the measurement.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub(crate) key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub(crate) value_size: usize,
    /// Distinct keys (default 10000; hot-key: 8).
    #[arg(long)]
    pub(crate) key_space: Option<u64>,
    /// Open loop at this many requests per second (coordinated omission corrected).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write the latency percentile distribution as CSV here.
    #[arg(long)]
    pub(crate) percentiles: Option<PathBuf>,
    /// Write a latency-by-percentile plot (SVG) here.
    #[arg(long)]
    pub(crate) svg: Option<PathBuf>,
    /// Record the measured operations as a checker history (JSON lines) here.
    #[arg(long)]
    pub(crate) history: Option<PathBuf>,
    /// Do not load the key space before read workloads.
    #[arg(long)]
    pub(crate) no_preload: bool,
    /// No progress line.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// PIDs of the cluster's node processes (comma-separated, same machine): adds their CPU
    /// time per successful request during the measured phase as `node_cpu_us_per_op`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) cpu_pids: Vec<u32>,
    /// Where the measured writes' time went: every node's /metrics is read before and after
    /// the measured phase and the per-stage p50/p99 table is printed before the result (or
    /// written to FILE when given).
    #[arg(long, num_args = 0..=1, value_name = "FILE")]
    pub(crate) breakdown: Option<Option<PathBuf>>,
    /// Plot mode, no load: draw `NAME=FILE` percentile CSVs (as written by --percentiles) into
    /// the --svg file, one line each (repeatable).
    #[arg(long, requires = "svg")]
    pub(crate) plot_series: Vec<String>,
    /// Title of the plot.
    #[arg(long)]
    pub(crate) title: Option<String>,
}

impl BenchArgs {
    /// Checks the load options; the message names the option.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(format!(
                "--connections {}: must be 1 to {MAX_CONNECTIONS}",
                self.connections
            ));
        }
        if self.inflight < self.connections || self.inflight > MAX_INFLIGHT {
            return Err(format!(
                "--inflight {}: must be from --connections ({}) to {MAX_INFLIGHT}",
                self.inflight, self.connections
            ));
        }
        if self.total == Some(0) {
            return Err("--total 0: must be at least 1".into());
        }
        for (name, v) in [
            ("--duration", self.duration),
            ("--warmup", Some(self.warmup)),
        ] {
            if let Some(v) = v {
                if !(0.0..=MAX_DURATION_S).contains(&v) || v.is_nan() {
                    return Err(format!("{name} {v}: must be 0 to {MAX_DURATION_S} seconds"));
                }
            }
        }
        if self.duration == Some(0.0) {
            return Err("--duration 0: must be above 0".into());
        }
        if let Some(r) = self.rate {
            if r.is_nan() || r <= 0.0 {
                return Err(format!("--rate {r}: must be above 0 requests per second"));
            }
        }
        Ok(())
    }
}

/// Entry point of `ringraft bench` against `endpoints` (empty: the local cluster of `config/`).
pub fn main(args: BenchArgs, endpoints: &[String]) -> ExitCode {
    let r = if args.plot_series.is_empty() {
        run::run(&args, endpoints)
    } else {
        plot(&args)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Plot mode: draws the `--plot-series` CSVs into the `--svg` file.
fn plot(args: &BenchArgs) -> Result<(), String> {
    let Some(out) = &args.svg else {
        return Err("--plot-series needs --svg FILE".into());
    };
    let mut series = Vec::with_capacity(args.plot_series.len());
    for s in &args.plot_series {
        let (name, file) = s
            .split_once('=')
            .ok_or_else(|| format!("--plot-series {s:?}: expected NAME=FILE"))?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let pts = report::parse_distribution_csv(&text).map_err(|e| format!("{file}: {e}"))?;
        series.push((name.to_string(), pts));
    }
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| "latency by percentile".into());
    std::fs::write(out, report::svg_plot(&title, &series))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}
