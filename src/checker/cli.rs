//! `ringraft check HISTORY [--model register|kv] [--format ...] [--budget-ms N]
//! [--max-states N] [--initial empty|unknown] [--explain] [--svg PATH] [--json]`.
//!
//! Exit status (a contract for scripts and CI): 0 linearizable, 1 not linearizable, 2 the input
//! (or an output file) could not be read/written — the message names the line and its text —
//! 3 unknown (budget spent). Owned by the checker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::history::Format;
use super::model::ModelKind;
use super::report::Verdict;
use super::Budget;

/// Exit status: linearizable.
pub const EXIT_LINEARIZABLE: u8 = 0;
/// Exit status: not linearizable.
pub const EXIT_NOT_LINEARIZABLE: u8 = 1;
/// Exit status: unreadable input.
pub const EXIT_UNREADABLE: u8 = 2;
/// Exit status: unknown (budget spent).
pub const EXIT_UNKNOWN: u8 = 3;

/// `ringraft check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// History file: ringraft JSON lines, a Jepsen etcd log, or a Jepsen kv EDN history.
    pub history: PathBuf,
    /// The model; default: register for Jepsen etcd logs and read/write/cas histories, else kv.
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// The input format; default: detected from the first lines.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// What every key held before the history: `empty` (the model's start) or `unknown` (the
    /// history was recorded against a store that already held data, e.g. after a preload: the
    /// first read of a key may return anything, once).
    #[arg(long, value_enum, default_value_t = super::Initial::Empty)]
    pub initial: super::Initial,
    /// Time budget in milliseconds, after which the answer is "unknown" (0 = unlimited).
    #[arg(long, default_value_t = super::DEFAULT_BUDGET_MS)]
    pub budget_ms: u64,
    /// Explored (linearized set, state) pairs per key, after which the answer is "unknown".
    #[arg(long, default_value_t = super::DEFAULT_MAX_STATES_PER_KEY)]
    pub max_states: u64,
    /// Memory per key (memo cache and model states, estimated), in MiB, after which the
    /// answer is "unknown".
    #[arg(long, default_value_t = super::DEFAULT_MAX_MEMORY_BYTES_PER_KEY >> 20)]
    pub max_memory_mib: u64,
    /// Worker threads (keys are checked in parallel); default: the cores available.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the full explanation (longest prefix, unplaceable operations) for every
    /// violating key; without it only a summary and the first violation are printed.
    #[arg(long)]
    pub explain: bool,
    /// Write an SVG timeline of the first violating (else unknown, else first) key here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Search every key to the end, even after one is proven not linearizable.
    #[arg(long)]
    pub all_keys: bool,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Entry point of `ringraft check`.
pub fn main(args: CheckArgs) -> ExitCode {
    let mut budget = Budget {
        time: (args.budget_ms > 0).then(|| Duration::from_millis(args.budget_ms)),
        max_states_per_key: args.max_states,
        max_memory_bytes_per_key: args.max_memory_mib.saturating_mul(1 << 20),
        stop_at_first_violation: !args.all_keys,
        ..Budget::default()
    };
    if let Some(t) = args.threads {
        budget.threads = t;
    }
    let checked = super::read_history_file(&args.history).and_then(|text| {
        let format = match args.format {
            Some(f) => f,
            None => super::parse_jepsen::detect_format(&text)?,
        };
        let history = super::parse_jepsen::parse(&text, format)?;
        super::check_history_with(&history, args.model, &budget, args.initial)
    });
    let report = match checked {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "ringraft check: {}: unreadable history: {e}",
                args.history.display()
            );
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("ringraft check: cannot write the report: {e}");
                return ExitCode::from(EXIT_UNREADABLE);
            }
        }
    } else {
        if args.explain {
            print!("{}", report.explain());
        } else {
            print!("{}", report.explain_brief());
        }
    }
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, report.to_svg()) {
            eprintln!("ringraft check: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_UNREADABLE);
        }
    }
    ExitCode::from(match report.verdict {
        Verdict::Linearizable => EXIT_LINEARIZABLE,
        Verdict::NotLinearizable => EXIT_NOT_LINEARIZABLE,
        Verdict::Unknown => EXIT_UNKNOWN,
    })
}
