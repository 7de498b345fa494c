//! The simulated clients of a run: each client of a group calls one operation at a time (put,
//! delete, compare-and-swap, linearizable reads through ReadIndex or the lease, eventual reads)
//! at a node (usually the leader), waits for the node driver's answer, and records the call and
//! its end in the run's history for the checker.
//!
//! Invariants: an answer is recorded as the driver gave it (applied: ok; superseded or a cas
//! that did not swap: fail; anything else or a timeout: unknown, and the process never calls
//! again); values are unique 8-byte numbers per process; history times strictly increase.
//! Owned by the simulator.

use crate::checker::{Event as HEvent, EventType, OpFunction};
use crate::raft::{GroupId, NodeId, ProposeError, ReadMode};

use super::super::cluster::{Answer, Event};
use super::super::invariants::Violation;
use super::{Run, KEYS_PER_GROUP, OP_TIMEOUT_TICKS};
use crate::node::kv::{ApplyResult, Command, WriteOp};
use crate::node::request::{ClientError, ClientReply};
use crate::sim::cluster::TICK_PERIOD_NOMINAL;

#[derive(Debug)]
pub(super) enum Pending {
    Idle,
    Write {
        group: GroupId,
        cmd: Command,
        answer: Answer,
        deadline: u64,
    },
    Read {
        group: GroupId,
        key: u8,
        answer: Answer,
        deadline: u64,
    },
}

#[derive(Debug)]
pub(super) struct Client {
    pub(super) group: GroupId,
    pub(super) process: u64,
    pub(super) seq: u64,
    pub(super) pending: Pending,
}

fn key_name(g: GroupId, k: u8) -> String {
    format!("g{g}k{k}")
}

impl Run {
    fn record(&mut self, process: u64, kind: EventType, f: OpFunction, key: String) -> &mut HEvent {
        // Strictly increasing times: equal times would count as concurrent.
        self.last_time = (self.last_time + 1).max(self.c.now * 1_000);
        self.history
            .push(HEvent::new(process, kind, f).key(key).time(self.last_time));
        let n = self.history.len();
        &mut self.history[n - 1]
    }

    fn pick_node(&mut self, g: GroupId) -> NodeId {
        match self.c.leader_of(g) {
            Some(l) if self.rng.below(10) < 8 => l,
            _ => 1 + self.rng.below(self.c.knobs.nodes),
        }
    }

    pub(super) fn client_event(&mut self, i: usize) -> Result<(), Violation> {
        let d = self
            .rng
            .range(TICK_PERIOD_NOMINAL / 2, 3 * TICK_PERIOD_NOMINAL);
        self.c.schedule(d, Event::Client(i as u64));
        let now = self.c.now;
        let timed_out = match self.clients[i].pending {
            Pending::Idle => return self.start_op(i),
            Pending::Write { deadline, .. } | Pending::Read { deadline, .. } => now > deadline,
        };
        if timed_out {
            self.finish_open(i);
        }
        Ok(())
    }

    pub(super) fn finish_open(&mut self, i: usize) {
        let pending = std::mem::replace(&mut self.clients[i].pending, Pending::Idle);
        self.finish_pending(i, pending);
    }

    /// Records the open operation `pending` of client `i` (already taken from it) as unknown
    /// (a write) or failed (a read).
    fn finish_pending(&mut self, i: usize, pending: Pending) {
        let process = self.clients[i].process;
        match pending {
            Pending::Idle => {}
            Pending::Write { group, cmd, .. } => {
                let (f, key) = write_key(group, &cmd);
                self.record(process, EventType::Info, f, key);
                self.ops_info += 1;
                // A process with an unknown operation never calls again.
                self.clients[i].process = self.next_process;
                self.next_process += 1;
            }
            Pending::Read { group, key, .. } => {
                self.record(
                    process,
                    EventType::Fail,
                    OpFunction::Get,
                    key_name(group, key),
                );
                self.ops_fail += 1;
            }
        }
        self.clients[i].pending = Pending::Idle;
    }

    fn start_op(&mut self, i: usize) -> Result<(), Violation> {
        let g = self.clients[i].group;
        let node = self.pick_node(g);
        let key = self.rng.below(u64::from(KEYS_PER_GROUP)) as u8;
        let deadline = self.c.now + OP_TIMEOUT_TICKS * TICK_PERIOD_NOMINAL;
        let process = self.clients[i].process;
        let roll = self.rng.below(100);
        if roll < 40 {
            // Linearizable read: ReadIndex or lease.
            let mode = if self.rng.below(2) == 0 {
                ReadMode::ReadIndex
            } else {
                ReadMode::Lease
            };
            self.next_ctx += 1;
            let ctx = self.next_ctx;
            if let Ok(answer) = self.c.read(node, g, ctx, vec![key], mode)? {
                self.record(
                    process,
                    EventType::Invoke,
                    OpFunction::Get,
                    key_name(g, key),
                );
                self.clients[i].pending = Pending::Read {
                    group: g,
                    key,
                    answer,
                    deadline,
                };
            }
            return Ok(());
        }
        if roll < 50 {
            // Eventual read: local state of any live node, not linearizable by design.
            if let Some(kv) = self.c.kv(node, g) {
                std::hint::black_box(kv.get(&[key]));
                self.eventual_reads += 1;
            }
            return Ok(());
        }
        self.clients[i].seq += 1;
        let seq = self.clients[i].seq;
        let value = ((process << 20) | seq).to_le_bytes().to_vec();
        let k = vec![key];
        let op = match self.rng.below(10) {
            0..=5 => WriteOp::Put { key: k, value },
            6 => WriteOp::Delete { key: k },
            _ => {
                let expected = self
                    .c
                    .kv(node, g)
                    .and_then(|kv| kv.get(&k))
                    .map(|v| v.value.clone());
                WriteOp::CasValue {
                    key: k,
                    expected,
                    new: value,
                }
            }
        };
        // Every process is its own exactly-once client (ids from 1: 0 means "no session").
        let cmd = Command {
            client_id: process + 1,
            seq,
            op,
        };
        match self.c.propose(node, g, cmd.encode())? {
            Ok((_index, answer)) => {
                let (f, k) = write_key(g, &cmd);
                let ev = self.record(process, EventType::Invoke, f, k);
                match &cmd.op {
                    WriteOp::Put { value, .. } => ev.value = Some(number(value)?.to_string()),
                    WriteOp::CasValue { expected, new, .. } => {
                        ev.value = Some(number(new)?.to_string());
                        ev.expected = match expected {
                            Some(v) => Some(number(v)?.to_string()),
                            None => None,
                        };
                    }
                    _ => {}
                }
                self.clients[i].pending = Pending::Write {
                    group: g,
                    cmd,
                    answer,
                    deadline,
                };
            }
            Err(ProposeError::NotLeader { .. })
            | Err(ProposeError::TransferInProgress)
            | Err(ProposeError::TooManyUncommitted) => {}
            Err(e) => return Err(Violation(format!("unexpected proposal error: {e}"))),
        }
        Ok(())
    }

    /// Records the answers the nodes' drivers gave since the last step. A closed answer channel
    /// (the node crashed) leaves a write unknown and fails a read.
    pub(super) fn collect_answers(&mut self) -> Result<(), Violation> {
        for i in 0..self.clients.len() {
            let got = match &mut self.clients[i].pending {
                Pending::Idle => continue,
                Pending::Write { answer, .. } | Pending::Read { answer, .. } => answer.try_recv(),
            };
            let got = match got {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(_) => {
                    self.finish_open(i);
                    continue;
                }
            };
            let process = self.clients[i].process;
            let pending = std::mem::replace(&mut self.clients[i].pending, Pending::Idle);
            match &pending {
                Pending::Idle => {}
                Pending::Write { group, cmd, .. } => {
                    let group = *group;
                    let (f, key) = write_key(group, cmd);
                    match got {
                        // Another entry won this index (ours can never commit), or a
                        // compare-and-swap that did not swap.
                        Err(ClientError::Superseded)
                        | Ok(ClientReply::Applied(ApplyResult::Cas { swapped: false, .. })) => {
                            self.record(process, EventType::Fail, f, key);
                            self.ops_fail += 1;
                        }
                        Ok(ClientReply::Applied(
                            ApplyResult::Put { .. }
                            | ApplyResult::Deleted { .. }
                            | ApplyResult::Cas { swapped: true, .. },
                        )) => {
                            self.record(process, EventType::Ok, f, key);
                            self.ops_ok += 1;
                        }
                        // Outcome unknown.
                        Err(_) => {
                            self.finish_pending(i, pending);
                            continue;
                        }
                        Ok(other) => {
                            return Err(Violation(format!(
                                "group {group}: a valid write answered {other:?}"
                            )))
                        }
                    }
                }
                &Pending::Read { group, key, .. } => match got {
                    Ok(ClientReply::Value(v)) => {
                        let value = v.map(|v| number(&v.value)).transpose()?;
                        let ev = self.record(
                            process,
                            EventType::Ok,
                            OpFunction::Get,
                            key_name(group, key),
                        );
                        ev.value = value.map(|v| v.to_string());
                        self.ops_ok += 1;
                    }
                    Ok(other) => {
                        return Err(Violation(format!(
                            "group {group}: a read answered {other:?}"
                        )))
                    }
                    Err(_) => {
                        self.finish_pending(i, pending);
                        continue;
                    }
                },
            }
        }
        Ok(())
    }
}

fn write_key(g: GroupId, cmd: &Command) -> (OpFunction, String) {
    let key = cmd.op.key().and_then(|k| k.first().copied()).unwrap_or(0);
    let f = match cmd.op {
        WriteOp::Put { .. } => OpFunction::Put,
        WriteOp::Delete { .. } => OpFunction::Delete,
        _ => OpFunction::Cas,
    };
    (f, key_name(g, key))
}

/// The workload's values are 8-byte little-endian numbers (the checker compares numbers).
fn number(v: &[u8]) -> Result<u64, Violation> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_le_bytes)
        .map_err(|_| Violation(format!("a value of {} bytes, not 8", v.len())))
}
