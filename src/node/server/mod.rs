//! The running node: start-up (config, logging, layout check, one executor per core), each
//! core's tasks (driver, persist loop, clock, inbox, peer dialer, listener, metrics endpoint),
//! request routing between cores, and orderly shutdown.
//!
//! Per core: the listener accepts on `listen_address` with SO_REUSEPORT (every core accepts), so
//! a connection may land on a core that does not own the shard it asks for; such a request is
//! forwarded over the mesh to the owning core and answered on the original connection. Peer
//! traffic is routed the same way, by group. Core 0 also serves the metrics port.
//!
//! Shutdown (SIGTERM/SIGINT): the main thread tells every core to stop; a core stops accepting
//! (the listener and its connections' reads end), waits up to [`DRAIN_TIMEOUT_MS`] for requests
//! in flight to be answered, syncs its WAL, and returns. The process then exits 0. A core that
//! fails (WAL error, port in use) makes the process exit non-zero with the reason on stderr and
//! in the log.
//! Owned by the node.
//!
//! Layout: [`mesh`] holds what one core's tasks share ([`CoreCtx`]), the messages between
//! cores and the routing of a request to the core owning its shard; [`handler`] is the
//! listener's protocol side (frames from peers and clients, HTTP hand-off) and the socket
//! settings; [`dial`] keeps connections to peers and runs a learner's join; [`core_task`] is
//! everything one core runs from start to drain; this file starts the process (checks, one
//! executor per core) and waits for signals. Public paths are re-exported here.

mod core_task;
mod dial;
mod handler;
mod mesh;

use core_task::core_main;

pub(crate) use handler::{node_connection_config, socket_options, NodeHandler};
#[cfg(test)]
pub(crate) use mesh::Started;
pub(crate) use mesh::{
    change_membership, cluster_status, execute, start, transfer_leadership, CoreCtx, CoreMsg,
};

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ringraft_net::NetMetrics;
use tracing::{error, info, warn};

use crate::node::config::Config;
use crate::node::metrics::NodeMetrics;
use crate::node::runtime::{self, Event, Mesh};

/// Longest wait for a port still held by a node that just died.
pub(crate) const PORT_PROBE_WAIT_MS: u64 = 5_000;
/// Longest wait for requests in flight at shutdown.
pub(crate) const DRAIN_TIMEOUT_MS: u64 = 2_000;
/// Longest wait for the handshake of a connection.
pub(crate) const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Bound on one blocked socket write.
pub(crate) const WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause between join attempts of a learner not yet accepted by every shard.
pub(crate) const JOIN_RETRY_MS: u64 = 1_000;
/// Pause between address re-announcements of an accepted learner.
pub(crate) const JOIN_REANNOUNCE_MS: u64 = 30_000;
/// Shard value in a client frame meaning "route by key, I do not know the shard".
pub(crate) const ANY_SHARD: u32 = u32::MAX;

/// A panic anywhere (a bug) stops the whole process at once with exit status 101: a node with
/// a dead core must not keep answering as if it were healthy (crash-stop is what Raft assumes).
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        error!("panic: {info}");
        default(info);
        std::process::exit(101);
    }));
}

/// Checks that no other process listens on our ports, waiting up to [`PORT_PROBE_WAIT_MS`]: a
/// node killed a moment ago can hold its listening socket a little longer than its process
/// lives (its io_uring instance is torn down asynchronously by the kernel). The cores bind with SO_REUSEPORT (every
/// core accepts on the same port), which would otherwise let a second node process silently
/// share the port with a stale one and lose half of the connections to it.
fn probe_ports(cfg: &Config) -> Result<(), String> {
    let mut addrs = vec![(
        cfg.listen_addr().map_err(|e| e.0)?,
        "cluster.listen_address",
    )];
    if cfg.monitoring.metrics_enabled {
        addrs.push((
            cfg.metrics_addr().map_err(|e| e.0)?,
            "monitoring.metrics_port",
        ));
    }
    for (addr, key) in addrs {
        let deadline = std::time::Instant::now() + Duration::from_millis(PORT_PROBE_WAIT_MS);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot listen on {addr} ({key}): {e}; is another node running?"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Starts the node and runs it until a termination signal or a fatal error.
pub(crate) fn run(cfg: Config) -> ExitCode {
    let cfg = Arc::new(cfg);
    let log_dir = cfg.node_log_dir();
    let log_path = match crate::node::logging::init(&log_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringraft server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::node::storage::check_layout(&cfg) {
        eprintln!("ringraft server: {e}");
        error!("{e}");
        return ExitCode::from(2);
    }
    match crate::node::storage::wal_fault_from_env() {
        Ok(None) => {}
        Ok(Some(_)) => warn!(
            "WAL fault injection is ON ({}=1, {}={:?}): WAL writes and syncs will fail on purpose; never run a real node like this",
            crate::node::storage::WAL_FAULT_ENABLE_ENV,
            ringraft_wal::fault::FAULT_ENV,
            std::env::var(ringraft_wal::fault::FAULT_ENV).unwrap_or_default()
        ),
        Err(e) => {
            eprintln!("ringraft server: {e}");
            error!("{e}");
            return ExitCode::from(2);
        }
    }
    let security = match crate::node::auth::Security::load(&cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("ringraft server: {e}");
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if security.tls().is_none() {
        let loopback = cfg.listen_addr().is_ok_and(|a| a.ip().is_loopback());
        if !loopback {
            warn!(
                listen = %cfg.cluster.listen_address,
                "serving PLAINTEXT on a non-loopback address (security.insecure = true): peers \
                 and clients are not authenticated and traffic is readable on the network"
            );
        } else {
            info!("TLS is off (loopback only)");
        }
    } else {
        info!(
            tokens = security.required(),
            "TLS on: peers need their node certificate, clients are authenticated"
        );
    }
    install_panic_hook();
    if let Err(e) = probe_ports(&cfg) {
        eprintln!("ringraft server: {e}");
        error!("{e}");
        return ExitCode::from(2);
    }
    if let Err(e) = runtime::block_termination_signals() {
        eprintln!("ringraft server: cannot block signals: {e}");
        return ExitCode::from(2);
    }
    let cores = cfg.runtime.cores;
    let metrics = Arc::new(NodeMetrics::new(
        cfg.cluster.node_id,
        cores,
        cfg.runtime.shards_per_node,
    ));
    let net_metrics = Arc::new(NetMetrics::new());
    let (mesh, inboxes) = Mesh::<CoreMsg>::new(cores, runtime::CORE_INBOX_CAPACITY);
    let (events_tx, events_rx) = flume::bounded(runtime::EVENT_CHANNEL_CAPACITY);
    if let Err(e) = runtime::spawn_signal_waiter(events_tx.clone()) {
        eprintln!("ringraft server: cannot watch signals: {e}");
        return ExitCode::from(2);
    }
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    for (core, inbox) in inboxes.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded(1);
        stops.push(stop_tx);
        let (cfg, mesh, metrics, net_metrics, security) = (
            cfg.clone(),
            mesh.clone(),
            metrics.clone(),
            net_metrics.clone(),
            security.clone(),
        );
        match runtime::spawn_core(core, &cfg.runtime.clone(), events_tx.clone(), move || {
            let shared = core_task::CoreShared {
                metrics,
                net_metrics,
                security,
            };
            core_main(cfg, core, mesh, inbox, stop_rx, shared)
        }) {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("ringraft server: {e}");
                error!("{e}");
                for s in &stops {
                    let _ = s.try_send(());
                }
                return ExitCode::from(2);
            }
        }
    }
    drop(mesh);
    info!(
        node = cfg.cluster.node_id,
        listen = %cfg.cluster.listen_address,
        cores,
        shards = cfg.runtime.shards_per_node,
        log = %log_path.display(),
        "ringraft node started"
    );
    let mut failure: Option<String> = None;
    let mut exited = 0;
    while exited < cores {
        match events_rx.recv() {
            Ok(Event::Signal(sig)) => {
                info!(signal = sig, "termination signal: shutting down");
                for s in &stops {
                    let _ = s.try_send(());
                }
            }
            Ok(Event::CoreExited { core, result }) => {
                exited += 1;
                if let Err(e) = result {
                    error!(core, "core failed: {e}");
                    eprintln!("ringraft server: {e}");
                    failure.get_or_insert(e);
                    for s in &stops {
                        let _ = s.try_send(());
                    }
                }
            }
            Err(_) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    match failure {
        None => {
            info!("ringraft node stopped cleanly");
            ExitCode::SUCCESS
        }
        Some(_) => ExitCode::from(1),
    }
}
