//! A small scenario language in the style of etcd's raft interaction tests, run against the
//! simulator's [`Cluster`] in manual mode (nothing is delivered unless the script says so) with
//! the invariant checker after every step. One command per line; `#` starts a comment.
//!
//! ```text
//! cluster nodes=5 [voters=3] [groups=1] [prevote=off] [checkquorum=off] [max-entries=N]
//!         [snapshot-threshold=N] [retain=N] [seed=N] [unsafe-commit-previous-term]
//! group G                      act on group G from now on (default 1)
//! campaign N                   node N starts an election (PreVote first if on)
//! propose N DATA               leader N appends DATA (fails the script if refused)
//! put N KEY VALUE              leader N appends a KV put command
//! repeat K COMMAND             runs COMMAND K times
//! deliver [A->B ...]           delivers queued envelopes once (only those links if given)
//! drop [A->B ...]              drops queued envelopes (only those links if given)
//! stabilize                    delivers until nothing is queued
//! tick NODES K                 K times: tick each of NODES (e.g. 2,3 or all), then stabilize
//! partition 1 2 | 3 4 5        cuts every link between the sides; `heal` restores them
//! isolate N                    cuts N off from everyone
//! crash N / restart N          crash (unsynced writes lost) / restart from disk
//! add-learner L N / promote L N / remove L N / transfer L N   requests at leader L
//! compact N                    node N snapshots its state machine now
//! read N CTX [lease]           linearizable read request at N
//! expect leader N [term T]     N is leader (in term T)
//! expect role N ROLE           follower | candidate | precandidate | leader
//! expect term N T / expect commit N I / expect applied N I / expect last N I
//! expect entry N I TERM        N's log holds an entry of TERM at index I
//! expect members N VOTERS [LEARNERS]   e.g. `expect members 1 1,2,3,4 -`
//! expect read N CTX            the read CTX is ready at N
//! expect snapshot N I          N's latest snapshot is at index >= I
//! expect-violation COMMAND     COMMAND must trip the invariant checker
//! ```

use std::collections::BTreeSet;

use crate::raft::{ConfChange, NodeId, ReadMode, Role};

use super::cluster::{Answer, Cluster, Knobs};
use crate::node::kv::{Command, WriteOp};

/// Most `stabilize` rounds before a script is declared stuck.
pub const STABILIZE_ROUNDS_MAX: usize = 10_000;

/// Runs a script; `Err` names the failing line.
pub fn run_script(text: &str) -> Result<Transcript, String> {
    let mut st = State {
        c: None,
        group: 1,
        reads: BTreeSet::new(),
        waiting: Vec::new(),
        out: Vec::new(),
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        st.out.push(format!("> {line}"));
        st.exec(line)
            .map_err(|e| format!("line {}: `{line}`: {e}\n{}", n + 1, st.out.join("\n")))?;
    }
    Ok(Transcript { lines: st.out })
}

/// What a script printed.
#[derive(Debug)]
pub struct Transcript {
    /// Commands and their outputs.
    pub lines: Vec<String>,
}

struct State {
    c: Option<Cluster>,
    group: u64,
    /// Reads answered, by (node, ctx).
    reads: BTreeSet<(NodeId, u64)>,
    /// Reads waiting for their answer.
    waiting: Vec<(NodeId, u64, Answer)>,
    out: Vec<String>,
}

fn num(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("`{s}` is not a number"))
}

fn link(s: &str) -> Result<(NodeId, NodeId), String> {
    let (a, b) = s
        .split_once("->")
        .ok_or_else(|| format!("`{s}` is not a link A->B"))?;
    Ok((num(a)?, num(b)?))
}

impl State {
    fn c(&mut self) -> Result<&mut Cluster, String> {
        self.c
            .as_mut()
            .ok_or_else(|| "no cluster: start with `cluster`".to_string())
    }

    fn exec(&mut self, line: &str) -> Result<(), String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let g = self.group;
        match w[0] {
            "cluster" => {
                let mut k = Knobs::new(3, 1);
                let mut seed = 1;
                let mut voters = None;
                for opt in &w[1..] {
                    let (key, val) = opt.split_once('=').unwrap_or((opt, ""));
                    match key {
                        "nodes" => k.nodes = num(val)?,
                        "voters" => voters = Some(num(val)?),
                        "groups" => k.groups = num(val)?,
                        "prevote" => k.pre_vote = val != "off",
                        "checkquorum" => k.check_quorum = val != "off",
                        "max-entries" => k.max_entries_per_msg = num(val)? as usize,
                        "snapshot-threshold" => k.snapshot_threshold_entries = num(val)?,
                        "retain" => k.log_retain_entries = num(val)?,
                        "seed" => seed = num(val)?,
                        "unsafe-commit-previous-term" => k.unsafe_commit_previous_term = true,
                        _ => return Err(format!("unknown cluster option `{opt}`")),
                    }
                }
                k.initial_voters = voters.unwrap_or(k.nodes);
                k.snapshot_threshold_entries = k.snapshot_threshold_entries.max(1);
                self.c = Some(Cluster::new(k, seed, true).map_err(|v| v.0)?);
            }
            "group" => self.group = num(w.get(1).ok_or("group needs an id")?)?,
            "campaign" => {
                let n = num(w.get(1).ok_or("campaign needs a node")?)?;
                let c = self.c()?;
                c.raft_mut(n, g).ok_or("node down")?.campaign();
                c.process(n).map_err(|v| v.0)?;
            }
            "propose" | "put" => {
                let n = num(w.get(1).ok_or("needs a node")?)?;
                let data = if w[0] == "put" {
                    let key = num(w.get(2).ok_or("put needs a key")?)? as u8;
                    let value = num(w.get(3).ok_or("put needs a value")?)?;
                    Command {
                        client_id: 0,
                        seq: 0,
                        op: WriteOp::Put {
                            key: vec![key],
                            value: value.to_le_bytes().to_vec(),
                        },
                    }
                    .encode()
                } else {
                    w.get(2).ok_or("propose needs data")?.as_bytes().to_vec()
                };
                let r = self.c()?.propose(n, g, data).map_err(|v| v.0)?;
                let (i, _answer) = r.map_err(|e| format!("proposal refused: {e}"))?;
                self.out.push(format!("index {i}"));
            }
            "repeat" => {
                let k = num(w.get(1).ok_or("repeat needs a count")?)?;
                let rest = w[2..].join(" ");
                for _ in 0..k {
                    self.exec(&rest)?;
                }
            }
            "deliver" | "drop" => {
                let links: Vec<(NodeId, NodeId)> =
                    w[1..].iter().map(|s| link(s)).collect::<Result<_, _>>()?;
                let c = self.c()?;
                let queued: Vec<_> = c.outbox.drain(..).collect();
                let mut chosen = Vec::new();
                for env in queued {
                    if links.is_empty() || links.contains(&(env.from, env.to)) {
                        chosen.push(env);
                    } else {
                        c.outbox.push_back(env);
                    }
                }
                let mut lines = Vec::new();
                for env in chosen {
                    let d = super::cluster::describe(&env);
                    if w[0] == "deliver" {
                        lines.push(format!("  {d}"));
                        c.deliver(env).map_err(|v| v.0)?;
                    } else {
                        lines.push(format!("  dropped {d}"));
                    }
                }
                self.out.extend(lines);
                self.collect_notes();
            }
            "stabilize" => {
                let mut rounds = 0;
                while !self.c()?.outbox.is_empty() {
                    rounds += 1;
                    if rounds > STABILIZE_ROUNDS_MAX {
                        return Err("stabilize did not converge".into());
                    }
                    self.exec("deliver")?;
                }
            }
            "tick" => {
                let which = w.get(1).ok_or("tick needs nodes")?;
                let k = num(w.get(2).unwrap_or(&"1"))?;
                let c = self.c()?;
                let nodes: Vec<NodeId> = if *which == "all" {
                    c.nodes.keys().copied().collect()
                } else {
                    which.split(',').map(num).collect::<Result<_, _>>()?
                };
                for _ in 0..k {
                    for &n in &nodes {
                        self.c()?.tick(n).map_err(|v| v.0)?;
                    }
                    self.exec("stabilize")?;
                }
            }
            "partition" => {
                let text = w[1..].join(" ");
                let (a, b) = text.split_once('|').ok_or("partition needs `|`")?;
                let side = |s: &str| -> Result<Vec<NodeId>, String> {
                    s.split_whitespace().map(num).collect()
                };
                let (a, b) = (side(a)?, side(b)?);
                let c = self.c()?;
                for &x in &a {
                    for &y in &b {
                        c.blocked.insert((x, y));
                        c.blocked.insert((y, x));
                    }
                }
            }
            "isolate" => {
                let n = num(w.get(1).ok_or("isolate needs a node")?)?;
                let c = self.c()?;
                let all: Vec<NodeId> = c.nodes.keys().copied().collect();
                for m in all {
                    if m != n {
                        c.blocked.insert((n, m));
                        c.blocked.insert((m, n));
                    }
                }
            }
            "heal" => self.c()?.blocked.clear(),
            "crash" => {
                let n = num(w.get(1).ok_or("crash needs a node")?)?;
                self.c()?.crash(n);
                self.collect_notes();
            }
            "restart" => {
                let n = num(w.get(1).ok_or("restart needs a node")?)?;
                self.c()?.restart(n).map_err(|v| v.0)?;
            }
            "add-learner" | "promote" | "remove" | "transfer" => {
                let l = num(w.get(1).ok_or("needs a leader")?)?;
                let n = num(w.get(2).ok_or("needs a node")?)?;
                let c = self.c()?;
                let r = c.raft_mut(l, g).ok_or("node down")?;
                let res = match w[0] {
                    "add-learner" => r
                        .propose_conf_change(ConfChange::AddLearner(n, None))
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    "promote" => r
                        .propose_conf_change(ConfChange::Promote(n))
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    "remove" => r
                        .propose_conf_change(ConfChange::Remove(n))
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    _ => r.transfer_leadership(n).map_err(|e| e.to_string()),
                };
                res.map_err(|e| format!("refused: {e}"))?;
                c.process(l).map_err(|v| v.0)?;
            }
            "compact" => {
                let n = num(w.get(1).ok_or("compact needs a node")?)?;
                let c = self.c()?;
                let kv = c.kv(n, g).cloned().ok_or("node down")?;
                let r = c.raft_mut(n, g).ok_or("node down")?;
                r.compact(kv.applied_index(), kv.snapshot())
                    .map_err(|e| e.to_string())?;
            }
            "read" => {
                let n = num(w.get(1).ok_or("read needs a node")?)?;
                let ctx = num(w.get(2).ok_or("read needs a ctx")?)?;
                let mode = if w.get(3) == Some(&"lease") {
                    ReadMode::Lease
                } else {
                    ReadMode::ReadIndex
                };
                let r = self
                    .c()?
                    .read(n, g, ctx, Vec::new(), mode)
                    .map_err(|v| v.0)?;
                let answer = r.map_err(|e| format!("read refused: {e}"))?;
                self.waiting.push((n, ctx, answer));
                self.collect_notes();
            }
            "expect-violation" => {
                let rest = w[1..].join(" ");
                match self.exec(&rest) {
                    Err(e)
                        if e.contains("leader")
                            || e.contains("commit")
                            || e.contains("entry")
                            || e.contains("overwrite") =>
                    {
                        self.out.push(format!("violation caught: {e}"));
                        self.c = None;
                    }
                    Err(e) => return Err(format!("failed, but not with a safety violation: {e}")),
                    Ok(()) => return Err("expected a safety violation, none was detected".into()),
                }
            }
            "expect" => self.expect(&w[1..])?,
            other => return Err(format!("unknown command `{other}`")),
        }
        Ok(())
    }

    /// Moves the reads the drivers answered (successfully) into `reads`.
    fn collect_notes(&mut self) {
        let reads = &mut self.reads;
        self.waiting
            .retain_mut(|(node, ctx, answer)| match answer.try_recv() {
                Ok(Some(Ok(_))) => {
                    reads.insert((*node, *ctx));
                    false
                }
                Ok(Some(Err(_))) | Err(_) => false,
                Ok(None) => true,
            });
    }

    fn expect(&mut self, w: &[&str]) -> Result<(), String> {
        let g = self.group;
        let what = *w.first().ok_or("expect what?")?;
        let n = num(w.get(1).ok_or("expect needs a node")?)?;
        if what == "read" {
            let ctx = num(w.get(2).ok_or("needs ctx")?)?;
            self.collect_notes();
            return if self.reads.contains(&(n, ctx)) {
                Ok(())
            } else {
                Err(format!("read {ctx} not ready at {n}"))
            };
        }
        let c = self.c()?;
        let r = c.raft(n, g).ok_or_else(|| format!("node {n} is down"))?;
        let arg = |i: usize| -> Result<u64, String> { num(w.get(i).ok_or("missing argument")?) };
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(msg) };
        match what {
            "leader" => {
                check(
                    r.role() == Role::Leader,
                    format!("node {n} is {:?} in term {}", r.role(), r.term()),
                )?;
                if w.get(2) == Some(&"term") {
                    let t = arg(3)?;
                    check(
                        r.term() == t,
                        format!("leader {n} is in term {}, not {t}", r.term()),
                    )?;
                }
                Ok(())
            }
            "role" => {
                let want = match *w.get(2).ok_or("needs a role")? {
                    "follower" => Role::Follower,
                    "candidate" => Role::Candidate,
                    "precandidate" => Role::PreCandidate,
                    "leader" => Role::Leader,
                    x => return Err(format!("unknown role {x}")),
                };
                check(r.role() == want, format!("node {n} is {:?}", r.role()))
            }
            "term" => check(
                r.term() == arg(2)?,
                format!("node {n} term is {}", r.term()),
            ),
            "commit" => check(
                r.log().committed() == arg(2)?,
                format!("node {n} commit is {}", r.log().committed()),
            ),
            "applied" => {
                let a = c.kv(n, g).map_or(0, |k| k.applied_index());
                check(a == arg(2)?, format!("node {n} applied {a}"))
            }
            "last" => check(
                r.log().last_index() == arg(2)?,
                format!("node {n} last index is {}", r.log().last_index()),
            ),
            "entry" => {
                let i = arg(2)?;
                let t = arg(3)?;
                check(
                    r.log().term(i) == Some(t),
                    format!("node {n} has term {:?} at {i}", r.log().term(i)),
                )
            }
            "members" => {
                let parse = |s: Option<&&str>| -> Result<BTreeSet<NodeId>, String> {
                    match s {
                        None | Some(&"-") => Ok(BTreeSet::new()),
                        Some(s) => s.split(',').map(num).collect(),
                    }
                };
                let voters = parse(w.get(2))?;
                let learners = parse(w.get(3))?;
                let m = r.membership();
                check(
                    m.voters == voters && m.learners == learners,
                    format!(
                        "node {n} has voters {:?} learners {:?}",
                        m.voters, m.learners
                    ),
                )
            }
            "snapshot" => {
                let i = r.snapshot().map_or(0, |s| s.meta.index);
                check(i >= arg(2)?, format!("node {n} snapshot is at {i}"))
            }
            x => Err(format!("unknown expectation `{x}`")),
        }
    }
}
