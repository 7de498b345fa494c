//! Real-process tests of the ringraft node: clusters of `ringraft server` processes on
//! loopback, driven over HTTP (curl-style raw requests), over the binary frame protocol and,
//! in [`tls`], over mutual TLS. One test binary; its modules by concept: [`serve`] (elect, serve,
//! fail over, restart), [`quorum`] (what a node without a quorum refuses), [`catch_up`]
//! (snapshots and a joining learner), [`layout`] (configuration errors, cores and shards),
//! [`tls`] (authentication and authorization), [`wal_fault`] (a failing write-ahead log).
//!
//! Every cluster is the shared harness's (`client_support`): its own free ports and temporary
//! directory, every wait bounded, the processes killed by PID (also on panic, through `Drop`).
//! Timing claims (elect within 3 s, fail over within 2 s) are asserted with those bounds.

#[path = "../client_support/mod.rs"]
mod client_support;

mod catch_up;
mod layout;
mod quorum;
mod serve;
mod tls;
mod wal_fault;

use std::net::SocketAddr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use client_support::http::{eventually, get, value_of};
use client_support::{Settings, TestCluster};
use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::{self as wire, LocalIdentity, PeerRole};

/// The cluster tests run one at a time: they share two CPUs with everything else, and timing
/// bounds are part of what they assert. Tests of one-node clusters that assert no timing take
/// turns as a group: they run alongside each other, never alongside a cluster test.
static SERIAL: RwLock<()> = RwLock::new(());
/// Longest time any single wait in these tests may take.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// Holds a cluster test's turn, alone (a test that panicked while holding it does not block
/// the rest).
fn serial() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// Holds the turn of the group of tests that may run alongside each other.
fn shared_turn() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// A fast tick, logs at info (tests read them), each request bounded by `request_timeout_ms`;
/// otherwise the harness's defaults.
fn settings(request_timeout_ms: u64) -> Settings {
    Settings {
        tick_interval_ms: Some(10),
        request_timeout_ms,
        ..Settings::default()
    }
    .with_env("LOG_LEVEL", "info")
}

/// Waits (bounded by `limit`) until node `id` answers an eventual read of `key` with `want`
/// (it applied the write); whether it did.
fn applied(c: &TestCluster, id: u16, key: &str, want: &str, limit: Duration) -> bool {
    eventually(limit, || {
        let (s, b) = get(c.client_addr(id), key, "eventual")?;
        (s == 200 && value_of(&b).as_deref() == Some(want)).then_some(())
    })
    .is_some()
}

/// A plain (no TLS) frame-protocol client of `client_id`.
fn net_client(addr: SocketAddr, client_id: u64) -> BlockingClient {
    let cfg = ClientConfig::new(LocalIdentity {
        cluster_id: 1,
        role: PeerRole::Client { client_id },
    });
    BlockingClient::connect(addr, cfg).unwrap()
}

/// One operation routed by key (`shard: u32::MAX`); its outcome.
fn net_call(c: &mut BlockingClient, op: wire::ClientOp) -> wire::OpOutcome {
    let req = wire::ClientRequest {
        shard: u32::MAX,
        command: wire::ClientCommand::Single(op),
    };
    match c.call(&req).unwrap() {
        wire::Message::ClientResponse(wire::ClientResponse {
            outcome: wire::ClientOutcome::Single(o),
            ..
        }) => o,
        other => panic!("unexpected answer {other:?}"),
    }
}
