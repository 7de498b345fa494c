//! A short run of the Raft core fuzzer (`raft_support::fuzz`; long runs:
//! `cargo run --release --example raft_fuzz -- --seconds 60`): benign seeds check safety across
//! replicas and crashes, hostile seeds inject arbitrary messages and check that nothing panics
//! and no replica's term, commit index or committed entries go back.

use crate::raft_support::fuzz::{run_seed, FuzzStats};

/// Seeds per mode in `cargo test`.
const SEEDS: u64 = 200;
/// Inputs per seed.
const STEPS: usize = 5_000;
/// Seeds that once found a bug (replayed on every run).
const REGRESSION_SEEDS: [u64; 1] = [
    // A restarted candidate counted a grant its previous incarnation earned.
    23_828,
];

#[test]
fn benign_schedules_keep_raft_safe() {
    let mut stats = FuzzStats::default();
    for seed in (0..SEEDS).chain(REGRESSION_SEEDS) {
        run_seed(seed, STEPS, false, &mut stats).unwrap_or_else(|e| panic!("{e}"));
    }
    println!("{stats:?}");
    assert!(stats.leaders >= SEEDS, "elections happen: {stats:?}");
    assert!(stats.committed > SEEDS * 50, "entries commit: {stats:?}");
    assert!(
        stats.crashes > 0 && stats.snapshots_installed > 0,
        "{stats:?}"
    );
}

#[test]
fn hostile_messages_never_panic_or_move_state_backwards() {
    let mut stats = FuzzStats::default();
    for seed in 1_000..1_000 + SEEDS {
        run_seed(seed, STEPS, true, &mut stats).unwrap_or_else(|e| panic!("{e}"));
    }
    println!("{stats:?}");
    assert!(stats.injected > SEEDS * 100, "{stats:?}");
    assert!(
        stats.refused > 0 && stats.accepted > stats.refused,
        "{stats:?}"
    );
    assert!(stats.committed > 0, "{stats:?}");
}
