//! `ringraft chaos`: a Jepsen-style fault suite over real processes. It rewrites a config set
//! into a work directory (own ports, data and log directories, so it never collides with
//! `make start-cluster`), starts real `ringraft server` processes (this executable), waits for a
//! leader, runs concurrent clients (`workload.rs`) while a nemesis injects faults on a seeded
//! schedule (`schedule.rs`, printed at the start: same seed, same schedule), heals, waits for
//! the cluster to recover, reads every key back, and checks: the history by the project's
//! linearizability checker (`crate::checker`), and the rest by `findings.rs` (lost writes, "not
//! applied" answers whose write shows up, duplicate/phantom appends, stale eventual reads of
//! values never written, crash lines, unexpected exits, replicas that do not converge).
//!
//! Faults: SIGKILL (+ restart on the same data directory), SIGSTOP/SIGCONT, restart of every
//! node, and network faults through a fault proxy the suite runs between peers (`proxy.rs`):
//! each node's config names proxy addresses for its peers, so links can be cut per direction
//! without root, namespaces, iptables or `tc` (netem is not available on the development
//! machines); clients dial the nodes directly, so an isolated leader stays reachable.
//!
//! Membership and leadership under load: `transfer-leader` sends the admin
//! `TransferLeadership` request; `membership` starts a spare node (the config set's learner
//! configs after the voters', rewritten like the others) that joins as a learner, promotes it,
//! removes a follower voter and stops that node for good ([`Cluster::retire`]). Each step's
//! time goes into the fault's record; the final reads and the convergence check use the
//! members at the end. A learner announces its real address when it joins; every other node's
//! config routes to it through the fault proxy (`cluster.peer_addresses`), and at the end every
//! member's peer addresses are checked to be proxy links (a link outside the proxy is reported:
//! the run's network faults could not have reached it).
//!
//! Disk faults: the `disk` nemesis kills one seeded node and restarts it with the WAL's fault
//! hook armed — `RINGRAFT_WAL_FAULT=<spec>` (a seeded `fsync_fail_after=N`,
//! `short_write_after=N` or `enospc_after=N`) together with `RINGRAFT_WAL_FAULT_ENABLE=1`; the
//! node arms the hook only when both are set — with its own output file and log directory; at
//! the heal it is killed and restarted without them. The checks stay the same: a node whose WAL
//! fails must stop (crash-stop), so its exit and its error lines in that incarnation are
//! expected (listed, not violations; a panic still is one), and no acknowledged write may be
//! lost. A node that does not honour the hook just runs through the window (the fault record
//! says so). `--server-env KEY=VALUE` passes extra variables to every server.
//!
//! Negative controls: `--unsafe-faults a,b` starts the servers with
//! `RINGRAFT_UNSAFE_TEST_FAULTS=a,b`, test-only Raft faults the node maps onto its Raft
//! configuration; a run with them must fail. `skip_vote_log_check` and `lease_ignore_clock` are
//! caught (the ignored controls of `tests/chaos_suite.rs`); `commit_previous_term` is masked on
//! the node by the leader's no-op, which every append carries along (why, in that file).
//!
//! Files: `cluster.rs` (the processes), `config.rs` (their rewritten configs), `proxy.rs` (the
//! links), `schedule.rs` (the seeded plan), `nemesis.rs` (applying each planned fault),
//! `workload.rs` (the clients), `recorder.rs` (the recorded history), `run.rs` (one run from
//! start-up to verdict), `findings.rs` (the checks besides linearizability), `report.rs`
//! (summary.md and timeline.svg).
//!
//! Exit status: 0 every check passed, 1 a violation, 2 the run could not be made (no leader,
//! unreadable config), 3 the checker's budget was spent (unknown). Cleanup: every process is
//! killed by its PID when the run ends, panics, or gets Ctrl-C / SIGTERM. Owned by the fault
//! suite.

pub mod cluster;
pub mod config;
pub mod findings;
pub mod http;
pub mod nemesis;
pub mod proxy;
pub mod recorder;
pub mod report;
pub mod run;
pub mod schedule;
pub mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use schedule::NemesisKind;

pub use run::run;

/// Exit status: every check passed.
pub const EXIT_VALID: u8 = 0;
/// Exit status: a violation.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: the run could not be made.
pub const EXIT_SETUP: u8 = 2;
/// Exit status: the checker gave up (budget).
pub const EXIT_UNKNOWN: u8 = 3;
/// Longest wait for a leader at the start and after healing.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Longest time the final reads may take (retrying through elections).
pub const FINAL_READ_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for every replica's local state to match the final values.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(20);
/// A lagging-election fault keeps the killed leader down this long after the heal.
pub const LAGGING_LEADER_DOWN: Duration = Duration::from_secs(2);
/// Most spare nodes (learner configs `n<nodes+1>.toml`, ...) prepared for the membership
/// nemesis: each membership fault adds one and removes a voter, so this bounds how many such
/// faults change the membership in one run.
pub const SPARES_MAX: usize = 2;
/// Pause between two tries of a membership request that was refused (no leader yet, learner
/// not added yet, another change in flight).
pub const MEMBERSHIP_RETRY: Duration = Duration::from_millis(200);
/// Largest node log file scanned for crash lines.
pub const LOG_SCAN_BYTES_MAX: u64 = 256 << 20;

/// Set by SIGINT/SIGTERM: the run stops early and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived since the handlers were installed.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Installs the SIGINT/SIGTERM handlers that set the stop flag ([`interrupted`]).
pub(crate) fn install_signal_handlers() {
    // SAFETY: installing an async-signal-safe handler (it only stores to an atomic).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `ringraft chaos` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Directory with the node configs n1.toml, n2.toml, ... (rewritten into the work dir).
    #[arg(long, default_value = "config")]
    pub config_dir: PathBuf,
    /// Nodes (n1..=nN of the config directory).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds of workload (faults stop a few seconds before the end).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the schedule and the workers' choices (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Nemeses, comma-separated; `mixed` = a random one of all per fault.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mixed")]
    pub nemesis: Vec<NemesisKind>,
    /// Output directory (default: chaos_reports/<unix time>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// HTTP register workers.
    #[arg(long, default_value_t = 3)]
    pub http_workers: usize,
    /// Frame-client register workers.
    #[arg(long, default_value_t = 3)]
    pub frame_workers: usize,
    /// Append workers (exactly-once client).
    #[arg(long, default_value_t = 2)]
    pub append_workers: usize,
    /// Register keys.
    #[arg(long, default_value_t = 6)]
    pub keys: usize,
    /// Append keys.
    #[arg(long, default_value_t = 3)]
    pub append_keys: usize,
    /// NEGATIVE CONTROL: test-only Raft faults for the servers (RINGRAFT_UNSAFE_TEST_FAULTS),
    /// e.g. skip_vote_log_check. A run with them is expected to fail.
    #[arg(long)]
    pub unsafe_faults: Option<String>,
    /// Extra environment for every server, KEY=VALUE (repeatable), e.g. LOG_LEVEL=info or a
    /// WAL fault hook.
    #[arg(long)]
    pub server_env: Vec<String>,
    /// The server executable (default: this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Reads mostly through the lease path (80 % lease reads): with `pause-isolated`, the
    /// schedule for a leader that serves lease reads after it lost its lease.
    #[arg(long)]
    pub lease_heavy: bool,
    /// Time budget of the linearizability check, seconds.
    #[arg(long, default_value_t = 120)]
    pub check_budget_s: u64,
}

/// What a run concluded.
#[derive(Debug)]
pub struct RunResult {
    /// Exit status ([`EXIT_VALID`], ...).
    pub exit: u8,
    /// The one-line verdict.
    pub verdict: String,
    /// Output directory.
    pub out: PathBuf,
    /// Operations recorded.
    pub ops: usize,
    /// Violations found (checker counted as one when not linearizable).
    pub violations: usize,
}

/// Entry point of `ringraft chaos`.
pub fn main(args: ChaosArgs) -> ExitCode {
    match run(&args) {
        Ok(r) => {
            println!("{}", r.verdict);
            ExitCode::from(r.exit)
        }
        Err(e) => {
            eprintln!("ringraft chaos: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}
