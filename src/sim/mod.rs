//! The seeded deterministic Raft simulator. Built by issue 4.

use std::process::ExitCode;

/// `ringraft sim` arguments.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of seeds to run, starting at `--seed`.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Steps per run.
    #[arg(long, default_value_t = 20_000)]
    pub steps: u64,
}

/// Entry point of `ringraft sim`.
pub fn main(_args: SimArgs) -> ExitCode {
    eprintln!("ringraft sim: not built yet");
    ExitCode::from(2)
}
