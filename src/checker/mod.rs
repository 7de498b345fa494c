//! The linearizability checker. Built by issue 5.

use std::process::ExitCode;

/// `ringraft check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// History file: ringraft JSON lines, a Jepsen etcd log, or a Jepsen kv EDN history.
    pub history: std::path::PathBuf,
}

/// Entry point of `ringraft check`.
pub fn main(_args: CheckArgs) -> ExitCode {
    eprintln!("ringraft check: not built yet");
    ExitCode::from(2)
}
