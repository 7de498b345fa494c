//! The ringraft node (server). Built by issue 6.

use std::process::ExitCode;

/// `ringraft server` arguments.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Node TOML config (also `CONFIG_PATH`).
    #[arg(long, env = "CONFIG_PATH")]
    pub config: Option<std::path::PathBuf>,
}

/// Entry point of `ringraft server`.
pub fn main(_args: ServerArgs) -> ExitCode {
    eprintln!("ringraft server: not built yet");
    ExitCode::from(2)
}
