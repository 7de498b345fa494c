//! The checker against a brute-force oracle on thousands of small random histories (seeded:
//! the failing seed and history are printed). The oracle tries every order of the whole
//! history (no per-key split, no memoization, no linked list) that respects real time, with
//! pending operations placed anywhere after their call or not at all, over its own tiny model.
//! Histories are made from a real sequential run at random linearization points, then half of
//! them get one read's result changed, so both verdicts occur often.

use std::collections::BTreeMap;

use ringraft::checker::{check_events, Budget, Event, EventType, ModelKind, OpFunction, Verdict};

/// Histories per model.
const TRIALS: u64 = 3000;
/// Base seed; trial i uses BASE_SEED + i.
const BASE_SEED: u64 = 0x00C0_FFEE;
/// Operations per history at most (the oracle is factorial in it).
const OPS_MAX: u64 = 7;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
struct GenOp {
    process: u64,
    f: OpFunction,
    key: String,
    value: Option<String>,
    expected: Option<String>,
    observed: Option<String>,
    call: u64,
    /// None = pending (info or never completed).
    ret: Option<u64>,
    failed: bool,
    /// Pending: whether it is reported with an `info` event (else it never completes).
    info: bool,
}

type State = BTreeMap<String, Option<String>>;

/// The oracle's own model. Returns None if `op` cannot take effect in `s`.
fn apply(s: &State, op: &GenOp, register: bool) -> Option<State> {
    let cur = s.get(&op.key).cloned().unwrap_or(None);
    let mut next = s.clone();
    match op.f {
        OpFunction::Read | OpFunction::Get => {
            return (op.observed == cur).then_some(next);
        }
        OpFunction::Write | OpFunction::Put => {
            next.insert(op.key.clone(), op.value.clone());
        }
        OpFunction::Delete => {
            next.insert(op.key.clone(), None);
        }
        OpFunction::Append => {
            let mut v = cur.unwrap_or_default();
            v.push_str(op.value.as_deref().unwrap_or(""));
            next.insert(op.key.clone(), Some(v));
        }
        OpFunction::Cas => {
            if op.expected != cur {
                return None;
            }
            next.insert(op.key.clone(), op.value.clone());
        }
    }
    let _ = register;
    Some(next)
}

/// Every real-time-respecting order of the completed operations plus any subset of the
/// pending ones: does one of them replay?
fn oracle(ops: &[GenOp], register: bool) -> bool {
    let live: Vec<&GenOp> = ops
        .iter()
        .filter(|o| {
            let pending_read = o.ret.is_none() && matches!(o.f, OpFunction::Read | OpFunction::Get);
            !o.failed && !pending_read
        })
        .collect();
    fn go(live: &[&GenOp], placed: &mut Vec<bool>, s: &State, register: bool) -> bool {
        let all_done = live
            .iter()
            .zip(placed.iter())
            .all(|(o, p)| *p || o.ret.is_none());
        if all_done {
            return true;
        }
        for i in 0..live.len() {
            if placed[i] {
                continue;
            }
            let x = live[i];
            // x may go next only if no unplaced operation returned before x was called.
            let blocked = live
                .iter()
                .zip(placed.iter())
                .any(|(y, p)| !*p && y.ret.is_some_and(|r| r < x.call));
            if blocked {
                continue;
            }
            if let Some(next) = apply(s, x, register) {
                placed[i] = true;
                if go(live, placed, &next, register) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let mut placed = vec![false; live.len()];
    go(&live, &mut placed, &State::new(), register)
}

fn generate(rng: &mut Rng, register: bool) -> Vec<GenOp> {
    let processes = 1 + rng.below(4);
    let total = 1 + rng.below(OPS_MAX);
    let values = ["a", "b", "c"];
    let mut cursor = vec![0u64; processes as usize];
    let mut ops = Vec::new();
    for _ in 0..total {
        let p = rng.below(processes);
        let call = cursor[p as usize] + rng.below(3);
        let ret = call + rng.below(8);
        let key = if register || rng.below(3) > 0 {
            "x"
        } else {
            "y"
        }
        .to_string();
        let v = Some(values[rng.below(3) as usize].to_string());
        let f = if register {
            [OpFunction::Read, OpFunction::Write, OpFunction::Cas][rng.below(3) as usize]
        } else {
            [
                OpFunction::Get,
                OpFunction::Put,
                OpFunction::Append,
                OpFunction::Delete,
                OpFunction::Cas,
            ][rng.below(5) as usize]
        };
        let expected = if f == OpFunction::Cas {
            if rng.below(4) == 0 {
                None
            } else {
                Some(values[rng.below(3) as usize].to_string())
            }
        } else {
            None
        };
        let outcome = rng.below(10);
        let (ret, failed, info) = match outcome {
            0 => (None, false, true),
            1 => (None, false, false),
            2 => (Some(ret), true, false),
            _ => (Some(ret), false, false),
        };
        // A process with a pending operation calls nothing more (Jepsen gives it a new id).
        cursor[p as usize] = ret.map_or(u64::MAX / 2, |r| r + 1);
        if call >= u64::MAX / 4 {
            continue;
        }
        ops.push(GenOp {
            process: p,
            f,
            key,
            value: if matches!(f, OpFunction::Read | OpFunction::Get | OpFunction::Delete) {
                None
            } else {
                v
            },
            expected,
            observed: None,
            call,
            ret,
            failed,
            info,
        });
    }
    // A real run: each op that happens takes effect at a random point of its interval (a
    // pending one possibly never); reads observe the state there. A cas whose compare fails
    // in that run is recorded as failed.
    let mut points: Vec<(u64, u64, usize)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if o.failed && o.f != OpFunction::Cas {
            continue;
        }
        let end = o.ret.unwrap_or(o.call + 10);
        if o.ret.is_none() && rng.below(2) == 0 {
            continue;
        }
        // Equal times count as concurrent, so the closed interval is fair game.
        points.push((o.call + rng.below(end - o.call + 1), rng.next(), i));
    }
    points.sort_unstable();
    let mut state = State::new();
    for &(_, _, i) in &points {
        let o = ops[i].clone();
        match o.f {
            OpFunction::Read | OpFunction::Get => {
                ops[i].observed = state.get(&o.key).cloned().unwrap_or(None);
            }
            OpFunction::Cas => {
                let cur = state.get(&o.key).cloned().unwrap_or(None);
                if cur == o.expected {
                    ops[i].failed = false;
                    state.insert(o.key.clone(), o.value.clone());
                } else if o.ret.is_some() {
                    ops[i].failed = true;
                }
            }
            _ => {
                if let Some(s) = apply(&state, &o, register) {
                    state = s;
                }
            }
        }
    }
    // Half the histories: one completed read reports something else.
    if rng.below(2) == 0 {
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| {
                matches!(ops[i].f, OpFunction::Read | OpFunction::Get) && ops[i].ret.is_some()
            })
            .collect();
        if !reads.is_empty() {
            let i = reads[rng.below(reads.len() as u64) as usize];
            ops[i].observed = match rng.below(4) {
                0 => None,
                k => Some(["a", "ab", "b"][k as usize - 1].to_string()),
            };
            ops[i].failed = false;
        }
    }
    ops
}

fn events(ops: &[GenOp]) -> Vec<Event> {
    let mut timed: Vec<(u64, u8, Event)> = Vec::new();
    for o in ops {
        let mut inv = Event::new(o.process, EventType::Invoke, o.f)
            .key(o.key.clone())
            .time(o.call);
        inv.value = o.value.clone();
        inv.expected = o.expected.clone();
        timed.push((o.call, 0, inv));
        let end = match (o.ret, o.failed, o.info) {
            (Some(r), true, _) => Some((r, EventType::Fail)),
            (Some(r), false, _) => Some((r, EventType::Ok)),
            (None, _, true) => Some((o.call + 1000, EventType::Info)),
            (None, _, false) => None,
        };
        if let Some((t, kind)) = end {
            let mut e = Event::new(o.process, kind, o.f).key(o.key.clone()).time(t);
            if kind == EventType::Ok && matches!(o.f, OpFunction::Read | OpFunction::Get) {
                e.value = o.observed.clone();
            }
            timed.push((t, 1, e));
        }
    }
    timed.sort_by_key(|(t, k, _)| (*t, *k));
    timed.into_iter().map(|(_, _, e)| e).collect()
}

fn run(model: ModelKind) {
    let register = model == ModelKind::Register;
    let (mut yes, mut no) = (0, 0);
    for trial in 0..TRIALS {
        let seed = BASE_SEED + trial;
        let mut rng = Rng(seed);
        let ops = generate(&mut rng, register);
        let history = events(&ops);
        let want = oracle(&ops, register);
        let got = check_events(&history, model, &Budget::default()).unwrap_or_else(|e| {
            panic!("seed {seed}: checker rejected a valid history: {e}\n{history:#?}")
        });
        let want_verdict = if want {
            yes += 1;
            Verdict::Linearizable
        } else {
            no += 1;
            Verdict::NotLinearizable
        };
        if got.verdict != want_verdict {
            let lines: Vec<String> = history.iter().map(Event::to_json_line).collect();
            panic!(
                "seed {seed} ({}): oracle says {want_verdict}, checker says {}\n{}\n{}",
                model.name(),
                got.verdict,
                lines.join("\n"),
                got.explain()
            );
        }
    }
    println!("{}: {yes} linearizable, {no} not, all agree", model.name());
    // Both verdicts must be exercised for the comparison to mean anything.
    assert!(yes > TRIALS / 10 && no > TRIALS / 10, "yes {yes} no {no}");
}

#[test]
fn register_agrees_with_brute_force() {
    run(ModelKind::Register);
}

#[test]
fn kv_agrees_with_brute_force() {
    run(ModelKind::Kv);
}
