//! Crash test with real processes: the test binary re-executes itself as a child (selected by
//! an environment variable) that appends to several groups, purges, sets hard state, and prints
//! each durable index once `wait_blocking` confirmed it. The parent SIGKILLs the child at a
//! random (seeded) moment, reopens the log and checks that every index reported durable is
//! there and intact, purges and hard states reported durable hold, and nothing recovered is
//! garbage. Many rounds on the same directory, so recovery also runs on recovered logs.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{payload, Rng};
use ringraft_wal::{FlushPolicy, HardState, Wal, WalOptions, WriteMode};

const CHILD_ENV: &str = "RINGRAFT_WAL_CRASH_CHILD";
const CHILD_MODE_ENV: &str = "RINGRAFT_WAL_CRASH_CHILD_MODE";
const GROUPS: u64 = 4;
/// A child never runs longer than this, even if nobody kills it.
const CHILD_MAX_SECS: u64 = 20;

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 64 * 1024,
        max_payload_bytes: 1024,
        flush_policy: FlushPolicy::Immediate,
        flush_workers: 2,
        ..WalOptions::default()
    }
}

fn len_of(g: u64, i: u64) -> usize {
    ((g * 31 + i * 17) % 300) as usize
}

#[derive(Default, Clone, Copy, Debug)]
struct Reported {
    durable: u64,
    purged: u64,
    hs: HardState,
}

fn child(dir: &str) {
    let start = Instant::now();
    // Every third round writes in mmap mode: both write modes share one on-disk format, so
    // the same log is continued in either (a segment recycled by one, written by the other).
    let mode = match std::env::var(CHILD_MODE_ENV).as_deref() {
        Ok("mmap") => WriteMode::Mmap,
        _ => WriteMode::Pwrite,
    };
    let o = WalOptions {
        write_mode: mode,
        ..opts()
    };
    let mut wal = Wal::open(dir, o).expect("child open");
    let seed: u64 = std::env::var("RINGRAFT_WAL_CHILD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    let mut out = std::io::stdout().lock();
    let mut term = (0..GROUPS)
        .filter_map(|g| wal.hard_state(g).map(|h| h.term))
        .max()
        .unwrap_or(0);
    while start.elapsed() < Duration::from_secs(CHILD_MAX_SECS) {
        term += 1;
        let n = 1 + rng.below(20);
        for _ in 0..n {
            let g = rng.below(GROUPS);
            let i = wal.last_index(g) + 1;
            wal.append(g, i, 1, &payload(g, i, 1, len_of(g, i)))
                .expect("append");
        }
        let g = rng.below(GROUPS);
        let d = wal.durable_index(g);
        let purge_to = if rng.below(4) == 0 && d > 60 {
            wal.purge(g, d - 50).expect("purge");
            Some(d - 50)
        } else {
            None
        };
        let hs = HardState {
            term,
            vote: g,
            commit: d,
        };
        wal.set_hard_state(g, hs).expect("hard state");
        let last = wal.flush();
        wal.durability().wait_blocking(last).expect("durable");
        for k in 0..GROUPS {
            writeln!(out, "D {k} {}", wal.durable_index(k)).unwrap();
        }
        if let Some(p) = purge_to {
            writeln!(out, "P {g} {p}").unwrap();
        }
        writeln!(out, "H {g} {} {} {}", hs.term, hs.vote, hs.commit).unwrap();
        out.flush().unwrap();
        wal.reclaim().expect("reclaim");
    }
}

fn parse(line: &str, rep: &mut HashMap<u64, Reported>) {
    let f: Vec<u64> = line
        .split(' ')
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    match (line.as_bytes().first(), f.as_slice()) {
        (Some(b'D'), [g, d]) => {
            let r = rep.entry(*g).or_default();
            r.durable = r.durable.max(*d);
        }
        (Some(b'P'), [g, p]) => {
            let r = rep.entry(*g).or_default();
            r.purged = r.purged.max(*p);
        }
        (Some(b'H'), [g, t, v, c]) => {
            rep.entry(*g).or_default().hs = HardState {
                term: *t,
                vote: *v,
                commit: *c,
            };
        }
        _ => {}
    }
}

fn verify(dir: &Path, rep: &HashMap<u64, Reported>, round: u32, seed: u64) {
    let wal = Wal::open(dir, opts())
        .unwrap_or_else(|e| panic!("round {round} seed {seed}: reopen failed: {e}"));
    for (&g, r) in rep {
        let (first, last) = (wal.first_index(g), wal.last_index(g));
        let ctx = format!("round {round} seed {seed} group {g} first {first} last {last} {r:?}");
        assert!(last >= r.durable, "lost durable entries: {ctx}");
        assert!(first >= r.purged.max(1), "durable purge undone: {ctx}");
        assert!(
            first <= r.durable + 1,
            "purged beyond what was asked: {ctx}"
        );
        for i in first..=last {
            let e = wal
                .entry(g, i)
                .unwrap_or_else(|e| panic!("{ctx}: entry {i}: {e}"));
            assert_eq!(
                e.payload,
                payload(g, i, 1, len_of(g, i)).as_slice(),
                "{ctx}: entry {i}"
            );
        }
        if r.hs.term > 0 {
            let hs = wal
                .hard_state(g)
                .unwrap_or_else(|| panic!("{ctx}: hard state lost"));
            assert!(
                hs.term >= r.hs.term,
                "{ctx}: hard state {hs:?} older than reported"
            );
            if hs.term == r.hs.term {
                assert_eq!(hs, r.hs, "{ctx}");
            }
        }
    }
    drop(wal);
}

#[test]
fn sigkill_at_random_moments_keeps_every_reported_durable_index() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let seed = common::seed(0xC4A5_11ED);
    let rounds: u32 = std::env::var("RINGRAFT_WAL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rep: HashMap<u64, Reported> = HashMap::new();
    let mut lines_total = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_at_random_moments_keeps_every_reported_durable_index",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("RINGRAFT_WAL_CHILD_SEED", rng.next().to_string())
            .env(
                CHILD_MODE_ENV,
                if round % 3 == 2 { "mmap" } else { "pwrite" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => sink.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        let wait_ms = 30 + rng.below(150);
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let lines = std::mem::take(&mut *lines.lock().unwrap());
        assert!(
            !status.success(),
            "round {round}: child finished on its own instead of being killed"
        );
        lines_total += lines.len();
        for l in &lines {
            parse(l, &mut rep);
        }
        verify(dir.path(), &rep, round, seed);
    }
    assert!(
        lines_total > 50,
        "children reported too little ({lines_total} lines)"
    );
    eprintln!("crash rounds {rounds}, reported lines {lines_total}, final {rep:?}");
}
