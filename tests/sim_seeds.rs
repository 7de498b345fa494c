//! The seeded simulator over many seeds: every run checks the safety invariants after
//! every step and the client history for linearizability; a failure prints the seed and the
//! command that replays it. Also shows the checks can fail: runs with a rule broken on purpose
//! must be caught.

use ringraft::sim::cluster::Knobs;
use ringraft::sim::runner::{run, summary, RunOptions};

/// Seeds run by `make test`.
const TEST_SEEDS: u64 = 200;
/// Steps per seed in `make test`.
const TEST_STEPS: u64 = 4_000;

#[test]
fn two_hundred_seeds_are_safe_and_linearizable() {
    let mut linearizable = 0;
    let mut ok_ops = 0;
    let (mut deferred, mut deferred_lost) = (0, 0);
    for seed in 1..=TEST_SEEDS {
        match run(&RunOptions::new(seed, TEST_STEPS)) {
            Ok(r) => {
                ok_ops += r.ops_ok;
                deferred += r.stats.hard_states_deferred;
                deferred_lost += r.stats.deferred_lost;
                if r.verdict == "linearizable" {
                    linearizable += 1;
                }
                assert!(r.checks > 0);
            }
            Err(f) => panic!("{f}"),
        }
    }
    // Progress, not only safety: clients got answers, and the checker decided every history.
    assert!(
        ok_ops > TEST_SEEDS * 50,
        "only {ok_ops} operations completed"
    );
    assert_eq!(linearizable, TEST_SEEDS, "some histories were not decided");
    // The storage defers hard states that only move the commit index, as the node's WAL does,
    // and crashes do lose some of them: the runs above cover restarts with a commit index older
    // than the one acknowledged before the crash.
    assert!(deferred > 0, "no hard state was deferred");
    assert!(deferred_lost > 0, "no crash lost a deferred hard state");
}

#[test]
fn same_seed_same_run() {
    let a = run(&RunOptions::new(7, 2_000)).unwrap();
    let b = run(&RunOptions::new(7, 2_000)).unwrap();
    assert_eq!(summary(&a), summary(&b));
    assert_eq!(a.history, b.history);
}

/// The report without the checker's wall-clock figures (e.g. "0.002 s"), which differ run to run.
fn without_timings(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !(w.contains('.') && w.trim_end_matches(',').parse::<f64>().is_ok()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn find_failure(tweak: fn(&mut Knobs), flags: &'static str, seeds: u64) -> Option<String> {
    for seed in 1..=seeds {
        let mut o = RunOptions::new(seed, TEST_STEPS);
        o.tweak = Some(tweak);
        o.cli_flags = flags;
        if let Err(f) = run(&o) {
            let text = f.to_string();
            let replay = format!("ringraft sim --seed {seed} --steps {TEST_STEPS}{flags}");
            assert!(text.contains(&replay), "{text}");
            // The printed command reproduces the failure.
            let again = run(&o).unwrap_err();
            assert_eq!(
                (again.step, without_timings(&again.violation.0)),
                (f.step, without_timings(&f.violation.0))
            );
            return Some(text);
        }
    }
    None
}

#[test]
fn voting_without_the_log_check_is_caught() {
    let caught = find_failure(ringraft::sim::break_vote_tweak, " --break-vote-rule", 100);
    let text = caught.expect("the simulator missed votes granted without the log check");
    println!("{text}");
}

#[test]
fn mem_first_loses_committed_entries_under_crashes() {
    // MemFirst acknowledges entries before they are durable: crashes then lose entries that
    // were already committed, which the invariant checker reports. DiskFirst (every other test
    // here) survives the same schedules.
    let caught = find_failure(ringraft::sim::mem_first_tweak, " --mem-first", 200);
    let text = caught.expect("MemFirst never lost a committed entry");
    println!("{text}");
}

#[test]
fn a_cas_that_ignores_its_expected_value_is_caught() {
    // The simulator runs the node's own KvStore: a fault planted in it (a value-based
    // compare-and-swap that always swaps) must show up as a non-linearizable history within a
    // few hundred seeds, and the printed replay command must reproduce it.
    let caught = find_failure(ringraft::sim::cas_fault_tweak, " --plant-cas-fault", 300);
    let text =
        caught.expect("the simulator missed a compare-and-swap that ignores its expectation");
    println!("{text}");
}

#[test]
fn a_driver_that_acknowledges_before_durability_is_caught() {
    // The simulator runs the node's driver: a fault planted in it (the envelopes that must wait
    // for durability, votes and DiskFirst acknowledgements, sent before the round is persisted)
    // lets crashes lose committed entries, which the checks must report within a few hundred
    // seeds with a replay command that reproduces it.
    let caught = find_failure(ringraft::sim::early_ack_tweak, " --plant-early-ack", 300);
    let text = caught.expect("the simulator missed acknowledgements sent before durability");
    println!("{text}");
}

#[test]
fn a_driver_that_answers_writes_ignoring_the_entry_term_is_caught() {
    // Planted in the driver's pending-write table: a write answered "applied" when another
    // term's entry is applied at its index. The client then believes a write that never happened;
    // the linearizability check of the history must catch it.
    let caught = find_failure(
        ringraft::sim::ignore_term_tweak,
        " --plant-ignore-term",
        300,
    );
    let text = caught.expect("the simulator missed writes answered for another term's entry");
    println!("{text}");
}

#[test]
fn deferring_a_new_vote_is_caught() {
    // Only a hard state that keeps the term and vote may wait for a later sync. Planted in the
    // simulated storage: every hard state deferred, so a vote goes out before it is durable (a
    // crash would then let the node vote again in the same term). The checks must catch it.
    let caught = find_failure(
        ringraft::sim::defer_votes_tweak,
        " --plant-defer-votes",
        300,
    );
    let text = caught.expect("the simulator missed votes sent before they were durable");
    println!("{text}");
}
