//! The latency benchmark (`ringraft bench`). Built by issue 7.

use std::process::ExitCode;

/// `ringraft bench` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Entry point of `ringraft bench`.
pub fn main(_args: BenchArgs) -> ExitCode {
    eprintln!("ringraft bench: not built yet");
    ExitCode::from(2)
}
