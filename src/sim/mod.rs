//! The seeded deterministic Raft simulator: N nodes × G groups of the real core
//! ([`crate::raft`]) in one thread, on a seeded network that drops, duplicates, reorders and
//! delays messages, partitions and heals; nodes crash (losing what was not fsynced) and restart
//! from their simulated disk; tick rates are skewed. Safety invariants are checked after every
//! step ([`invariants`]); client histories are checked for linearizability by
//! [`crate::checker`]. On a failure the seed and the step count to replay it are printed.
//! [`script`] is the scenario language of the scripted tests. Each node runs the node's own
//! Ready loop ([`crate::node::driver`]) with its key-value state machine and apply checks
//! ([`crate::node::kv`], [`crate::node::kv::apply`]); the simulator supplies only the storage
//! ([`storage`]) and the network ([`cluster`]). Files: `cluster.rs` (nodes, network, events),
//! `knobs.rs` (shape and Raft knobs), `node.rs` (one node and its driver rounds), `trace.rs`
//! (descriptions for failure reports), `runner.rs` with `runner/clients.rs` (one seeded run and
//! its clients), `invariants.rs`, `storage.rs`, `script.rs`.

pub mod cluster;
pub mod invariants;
pub mod knobs;
pub mod node;
pub mod runner;
pub mod script;
pub mod storage;
pub mod trace;

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
    /// Acknowledge entries from memory (the documented weaker mode): crashes then lose
    /// committed entries, which the checks report.
    #[arg(long)]
    pub mem_first: bool,
    /// TEST ONLY: grant votes without the log up-to-date check (shows the checks can fail).
    #[arg(long)]
    pub break_vote_rule: bool,
    /// TEST ONLY: plant a fault in the key-value state machine: a compare-and-swap ignores its
    /// expected value (shows the linearizability check catches a broken state machine).
    #[arg(long)]
    pub plant_cas_fault: bool,
    /// TEST ONLY: plant a fault in the node's driver: what must wait for durability (votes,
    /// acknowledgements) is sent before the round is persisted (shows crashes then lose
    /// committed entries, which the checks report).
    #[arg(long)]
    pub plant_early_ack: bool,
    /// TEST ONLY: plant a fault in the node's driver: a write is answered when any entry is
    /// applied at its index, whatever that entry's term (shows the history check catches it).
    #[arg(long)]
    pub plant_ignore_term: bool,
    /// TEST ONLY: plant a fault in the simulated storage: every hard state is deferred, a new
    /// term or vote too, so a vote can be sent before it is durable (the check that a granted
    /// vote is durable when it is sent reports it).
    #[arg(long)]
    pub plant_defer_votes: bool,
}

/// Knob changes selected by the `ringraft sim` flags, and the flags as text.
pub fn tweak_for(args: &SimArgs) -> (Option<fn(&mut cluster::Knobs)>, &'static str) {
    if args.plant_cas_fault {
        return (Some(cas_fault_tweak), " --plant-cas-fault");
    }
    if args.plant_early_ack {
        return (Some(early_ack_tweak), " --plant-early-ack");
    }
    if args.plant_ignore_term {
        return (Some(ignore_term_tweak), " --plant-ignore-term");
    }
    if args.plant_defer_votes {
        return (Some(defer_votes_tweak), " --plant-defer-votes");
    }
    match (args.mem_first, args.break_vote_rule) {
        (false, false) => (None, ""),
        (true, false) => (Some(mem_first_tweak), " --mem-first"),
        (false, true) => (Some(break_vote_tweak), " --break-vote-rule"),
        (true, true) => (Some(both_tweak), " --mem-first --break-vote-rule"),
    }
}

/// `--mem-first`: MemFirst acknowledgements with slow fsyncs.
pub fn mem_first_tweak(k: &mut cluster::Knobs) {
    k.durability = crate::raft::Durability::MemFirst;
    k.fsync_delay = (2_000, 20_000);
}

/// `--break-vote-rule`.
pub fn break_vote_tweak(k: &mut cluster::Knobs) {
    k.unsafe_skip_vote_log_check = true;
}

/// `--plant-cas-fault`.
pub fn cas_fault_tweak(k: &mut cluster::Knobs) {
    k.planted_kv_fault = crate::node::kv::PlantedFault::CasIgnoresExpected;
}

/// `--plant-early-ack`.
pub fn early_ack_tweak(k: &mut cluster::Knobs) {
    k.driver_faults.send_before_durable = true;
}

/// `--plant-ignore-term`.
pub fn ignore_term_tweak(k: &mut cluster::Knobs) {
    k.driver_faults.answer_ignores_term = true;
}

/// `--plant-defer-votes`.
pub fn defer_votes_tweak(k: &mut cluster::Knobs) {
    k.defer_every_hard_state = true;
}

fn both_tweak(k: &mut cluster::Knobs) {
    mem_first_tweak(k);
    break_vote_tweak(k);
}

/// Entry point of `ringraft sim`.
pub fn main(args: SimArgs) -> ExitCode {
    if args.steps == 0 || args.seeds == 0 {
        eprintln!("ringraft sim: --steps and --seeds must be at least 1");
        return ExitCode::from(2);
    }
    let verbose = args.seeds == 1;
    let mut ok = 0u64;
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let mut opts = runner::RunOptions::new(seed, args.steps);
        (opts.tweak, opts.cli_flags) = tweak_for(&args);
        match runner::run(&opts) {
            Ok(r) => {
                ok += 1;
                if verbose || seed % 100 == 0 {
                    println!("{}", runner::summary(&r));
                }
            }
            Err(f) => {
                eprintln!("{f}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "ringraft sim: {ok} seeds passed ({} steps each)",
        args.steps
    );
    ExitCode::SUCCESS
}
