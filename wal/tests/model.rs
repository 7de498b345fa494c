//! Model-based property test: random sequences of append / truncate / purge / hard state /
//! sync / reopen on a real WAL (small segments, so rolls, checkpoints and segment deletion
//! happen constantly), checked after every step against a plain in-memory model.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringraft_wal::{HardState, Wal, WalOptions, WriteMode};

const GROUPS: u64 = 3;

#[derive(Clone, Debug)]
enum Op {
    Append { group: u64, n: u64, len: usize },
    Truncate { group: u64, back: u64 },
    Purge { group: u64, forward: u64 },
    PurgeAll,
    SetHardState { group: u64, vote: u64 },
    Sync,
    Reopen { sync_first: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..GROUPS, 1..8u64, 0..300usize).prop_map(|(group, n, len)| Op::Append { group, n, len }),
        2 => (0..GROUPS, 0..12u64).prop_map(|(group, back)| Op::Truncate { group, back }),
        2 => (0..GROUPS, 0..25u64).prop_map(|(group, forward)| Op::Purge { group, forward }),
        1 => Just(Op::PurgeAll),
        2 => (0..GROUPS, 0..5u64).prop_map(|(group, vote)| Op::SetHardState { group, vote }),
        1 => Just(Op::Sync),
        1 => any::<bool>().prop_map(|sync_first| Op::Reopen { sync_first }),
    ]
}

#[derive(Clone, Debug)]
struct Group {
    first: u64,
    entries: Vec<(u64, Vec<u8>)>,
    hs: Option<HardState>,
    term: u64,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            first: 1,
            entries: Vec::new(),
            hs: None,
            term: 1,
        }
    }
}

impl Group {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
}

fn opts(mode: WriteMode) -> WalOptions {
    WalOptions {
        write_mode: mode,
        ..common::small_opts(8 * 1024)
    }
}

fn check(wal: &Wal, model: &BTreeMap<u64, Group>) -> Result<(), TestCaseError> {
    for (&g, m) in model {
        prop_assert_eq!(wal.first_index(g), m.first, "first index of group {}", g);
        prop_assert_eq!(wal.last_index(g), m.last(), "last index of group {}", g);
        prop_assert_eq!(wal.hard_state(g), m.hs, "hard state of group {}", g);
        let got: Vec<_> = wal
            .entries(g, m.first, m.last() + 1)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), m.entries.len());
        for (k, (e, (term, payload))) in got.iter().zip(&m.entries).enumerate() {
            prop_assert_eq!(e.index, m.first + k as u64);
            prop_assert_eq!(e.term, *term);
            prop_assert_eq!(e.payload, payload.as_slice());
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>, mode: WriteMode) -> Result<(), TestCaseError> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let mut wal = Wal::open(dir.path(), opts(mode)).unwrap();
    let mut model: BTreeMap<u64, Group> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let shown = format!("{op:?}");
        match op {
            Op::Append { group, n, len } => {
                let m = model.entry(group).or_default();
                for _ in 0..n {
                    let index = m.last() + 1;
                    let p = common::payload(group, index, m.term, len);
                    wal.append(group, index, m.term, &p)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    m.entries.push((m.term, p));
                }
            }
            Op::Truncate { group, back } => {
                let m = model.entry(group).or_default();
                let from = (m.last() + 1).saturating_sub(back).max(m.first);
                wal.truncate(group, from)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.entries.truncate((from - m.first) as usize);
                m.term += 1;
            }
            Op::Purge { group, forward } => {
                let m = model.entry(group).or_default();
                let to = m.first + forward;
                wal.purge(group, to)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let drop = ((to - m.first) as usize).min(m.entries.len());
                m.entries.drain(..drop);
                m.first = to.max(m.first);
            }
            Op::PurgeAll => {
                for g in 0..GROUPS {
                    let m = model.entry(g).or_default();
                    let to = m.last() + 1;
                    wal.purge(g, to)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    m.entries.clear();
                    m.first = to;
                }
                wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
                wal.reclaim()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    wal.segment_count(),
                    1,
                    "nothing needed: only the active segment"
                );
            }
            Op::SetHardState { group, vote } => {
                let m = model.entry(group).or_default();
                let hs = HardState {
                    term: m.term,
                    vote,
                    commit: m.last(),
                };
                wal.set_hard_state(group, hs)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.hs = Some(hs);
            }
            Op::Sync => {
                wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(wal.durable_lsn(), wal.last_lsn());
                for (&g, m) in &model {
                    prop_assert_eq!(wal.durable_index(g), m.last());
                }
            }
            // Drop syncs (graceful close), so both variants must reopen to the same state; the
            // crash test covers processes that die without dropping.
            Op::Reopen { sync_first } => {
                if sync_first {
                    wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                drop(wal);
                wal = Wal::open(dir.path(), opts(mode))
                    .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
                // Everything found on open is synced first, so all of it is durable.
                prop_assert_eq!(wal.durable_lsn(), wal.last_lsn());
            }
        }
        check(&wal, &model)
            .map_err(|e| TestCaseError::fail(format!("after step {step} {shown}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wal_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, WriteMode::Pwrite)?;
    }

    #[test]
    fn wal_matches_model_in_mmap_mode(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, WriteMode::Mmap)?;
    }
}
