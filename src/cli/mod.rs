//! The client CLI commands of the `ringraft` binary (`put`, `get`, …). Built by issue 7.

use std::process::ExitCode;

/// Client subcommands, flattened into the binary's top-level commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Cluster status.
    Status,
}

/// Runs one client subcommand.
pub fn main(_cmd: ClientCommand) -> ExitCode {
    eprintln!("ringraft: client commands not built yet");
    ExitCode::from(2)
}
