//! Tests of the pure Raft core through its public API, one test binary; most modules drive
//! replicas with the shared deterministic driver (`raft_support`: explicit persistence, a
//! message queue the test filters, crashes, a clock the test moves). By concept: [`election`],
//! [`replication`] (with the durability order), [`reads`] (ReadIndex and the lease),
//! [`log_state`] (membership, snapshots, restart), [`input`] (bad input, the multi-group
//! heartbeat merge), [`hostile`] (hostile numbers from peers), [`safety`] (vote durability,
//! the clock-checked lease, a rejoining old leader), [`fuzz`] (seeded random schedules) and
//! [`scenarios`] (scripted message-by-message scenarios in the simulator's manual mode).

#[path = "../raft_support/mod.rs"]
mod raft_support;

mod election;
mod fuzz;
mod hostile;
mod input;
mod log_state;
mod reads;
mod replication;
mod safety;
mod scenarios;
