//! What the fuzzer checks after each input: a replica's Ready is handed out (its snapshot
//! request sometimes honoured, its committed entries applied in order) and its invariants hold:
//! committed entries come out contiguously and never change within an incarnation, the term and
//! the commit index never decrease, and in benign mode every index is committed with the same
//! entry everywhere.

use ringraft::raft::*;

use super::Fuzz;

impl Fuzz {
    /// Hands out `id`'s Ready and checks what it says.
    pub(super) fn drain(&mut self, id: NodeId) -> Result<(), String> {
        for _ in 0..64 {
            let rep = self.reps.get_mut(&id).expect("replica");
            let Some(r) = rep.raft.as_mut() else {
                return Ok(());
            };
            if !r.has_ready() {
                break;
            }
            let mut rd = r.ready();
            let line = format!(
                "ready {id}: hs {:?} snap {:?} entries {:?} persisted {:?} committed {:?}",
                rd.hard_state,
                rd.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)),
                rd.entries
                    .iter()
                    .map(|e| (e.index, e.term))
                    .collect::<Vec<_>>(),
                rd.persisted,
                rd.committed_entries
                    .iter()
                    .map(|e| (e.index, e.term))
                    .collect::<Vec<_>>()
            );
            self.log(line);
            let rep = self.reps.get_mut(&id).expect("replica");
            if let Some(i) = rd.snapshot_request {
                if self.rng.below(2) == 0 {
                    let r = rep.raft.as_mut().expect("live");
                    self.stats.inputs += 1;
                    let _ = r.compact(i, i.to_le_bytes().to_vec());
                }
            }
            if let Some(s) = &rd.snapshot {
                if s.meta.index >= rep.next_apply {
                    rep.next_apply = s.meta.index + 1;
                    if s.meta.index > 0 {
                        self.stats.snapshots_installed += 1;
                    }
                }
            }
            for e in &rd.committed_entries {
                if e.index != rep.next_apply {
                    return Err(format!(
                        "node {id}: committed entry {} handed out, expected {}",
                        e.index, rep.next_apply
                    ));
                }
                rep.next_apply += 1;
                if let Some(prev) = rep.applied.get(&e.index) {
                    if prev != e {
                        return Err(format!("node {id}: committed entry {} changed", e.index));
                    }
                }
                rep.applied.insert(e.index, e.clone());
                self.stats.committed += 1;
                if !self.hostile {
                    match self.chosen.get(&e.index) {
                        Some(c) if c != e => {
                            return Err(format!(
                                "index {}: node {id} committed {e:?}, another node {c:?}",
                                e.index
                            ))
                        }
                        Some(_) => {}
                        None => {
                            self.chosen.insert(e.index, e.clone());
                        }
                    }
                }
            }
            self.pool.append(&mut rd.messages);
            let after = std::mem::take(&mut rd.messages_after_persist);
            let mark = rd.persisted;
            rep.unsynced.push((rd, after, mark));
        }
        self.check(id)
    }

    pub(super) fn check(&mut self, id: NodeId) -> Result<(), String> {
        let rep = self.reps.get_mut(&id).expect("replica");
        let Some(r) = rep.raft.as_ref() else {
            return Ok(());
        };
        if r.term() < rep.last_term {
            return Err(format!(
                "node {id}: term went from {} to {}",
                rep.last_term,
                r.term()
            ));
        }
        if r.log().committed() < rep.last_commit {
            return Err(format!(
                "node {id}: commit went from {} to {}",
                rep.last_commit,
                r.log().committed()
            ));
        }
        rep.last_term = r.term();
        rep.last_commit = r.log().committed();
        let leader = r.role() == Role::Leader;
        if leader && !rep.was_leader {
            self.stats.leaders += 1;
        }
        rep.was_leader = leader;
        Ok(())
    }
}
