//! The `ringraft` binary: server, client CLI, benchmark, simulator and history checker.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ringraft",
    version,
    about = "A Raft consensus key-value server"
)]
struct Cli {
    /// Nodes to talk to, host:port, comma-separated (client commands and bench; default: the
    /// three local nodes of config/).
    #[arg(long, global = true, env = "RINGRAFT_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a ringraft node.
    Server(ringraft::node::ServerArgs),
    /// Check a recorded client history for linearizability.
    Check(ringraft::checker::CheckArgs),
    /// Run the latency benchmark against a cluster.
    Bench(ringraft::bench::BenchArgs),
    /// Client commands.
    #[command(flatten)]
    Client(ringraft::cli::ClientCommand),
    /// Run the seeded deterministic Raft simulator.
    Sim(ringraft::sim::SimArgs),
    /// Run the fault suite: a real cluster under faults, every history checked.
    Chaos(ringraft::chaos::ChaosArgs),
    /// Generate a CA and node and client certificates for TLS.
    Certs(ringraft::certs::CertsArgs),
    /// Inspect or repair a write-ahead log directory (`ringraft wal inspect|repair DIR`).
    Wal(ringraft::cli::wal::WalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => ringraft::node::main(args),
        Command::Check(args) => ringraft::checker::main(args),
        Command::Sim(args) => ringraft::sim::main(args),
        Command::Chaos(args) => ringraft::chaos::main(args),
        Command::Certs(args) => ringraft::certs::main(args),
        Command::Wal(args) => ringraft::cli::wal::main(args),
        Command::Bench(args) => ringraft::bench::main(args, &cli.endpoints),
        Command::Client(cmd) => ringraft::cli::main(cmd, &cli.endpoints),
    }
}
