//! Everything one core runs, from opening its shards to draining at shutdown: the Raft driver,
//! the persist loop, the clock, the inbox, the dialer, the listener and (core 0) the metrics
//! endpoint. A core stops when told to or when its state reports a fatal error.
//! Owned by the node's server.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringraft_net::listener::{self, ListenerConfig};
use ringraft_net::message::{LocalIdentity, PeerRole};
use ringraft_net::NetMetrics;
use tracing::info;

use crate::node::config::Config;
use crate::node::core::{self as node_core, CoreState};
use crate::node::http_api::ReadSettings;
use crate::node::metrics::NodeMetrics;
use crate::node::request::Consistency;
use crate::node::runtime::{shards_of_core, Mesh};
use crate::raft::GroupId;

use super::dial::{dialer_loop, join_loop, link_watch_loop};
use super::mesh::inbox_loop;
use super::*;

/// What every core shares with the others (one instance per process).
pub(super) struct CoreShared {
    /// Node metrics.
    pub(super) metrics: Arc<NodeMetrics>,
    /// Wire metrics.
    pub(super) net_metrics: Arc<NetMetrics>,
    /// TLS and client authentication.
    pub(super) security: Arc<crate::node::auth::Security>,
}

/// Everything one core runs, until `stop_rx` fires.
pub(super) async fn core_main(
    cfg: Arc<Config>,
    core: usize,
    mesh: Mesh<CoreMsg>,
    inbox: flume::Receiver<CoreMsg>,
    stop_rx: flume::Receiver<()>,
    shared: CoreShared,
) -> Result<(), String> {
    let CoreShared {
        metrics,
        net_metrics,
        security,
    } = shared;
    let groups: Vec<GroupId> = shards_of_core(core, cfg.runtime.cores, cfg.runtime.shards_per_node)
        .into_iter()
        .map(|g| g as GroupId)
        .collect();
    let core_metrics = metrics.cores[core].clone();
    let (st, chans) = CoreState::open(cfg.clone(), core, &groups, core_metrics, &metrics.shards)?;
    let durability = st.durability();
    let st = Rc::new(RefCell::new(st));
    let ctx = Rc::new(CoreCtx {
        st: st.clone(),
        cfg: cfg.clone(),
        core,
        mesh,
        metrics: metrics.clone(),
        net_metrics: net_metrics.clone(),
        reads: ReadSettings {
            default: Consistency::from_policy(cfg.raft.read_consistency.default_policy),
            allow_override: cfg.raft.read_consistency.allow_client_override,
        },
        stopping: Cell::new(false),
        inflight: Cell::new(0),
        forwards: RefCell::new(crate::node::forward::ForwardTable::for_config(&cfg)),
        security: security.clone(),
    });
    let handler = Rc::new_cyclic(|me| NodeHandler {
        ctx: ctx.clone(),
        awaiting: RefCell::new(BTreeMap::new()),
        inflight: RefCell::new(std::collections::HashMap::new()),
        me: me.clone(),
    });
    let listen = cfg.listen_addr().map_err(|e| e.0)?;
    let sock_opts = socket_options(&cfg);
    let tcp = listener::bind(listen, &sock_opts)
        .map_err(|e| format!("cannot listen on {listen} (cluster.listen_address): {e}"))?;
    let metrics_listener = if core == 0 && cfg.monitoring.metrics_enabled {
        let addr = cfg.metrics_addr().map_err(|e| e.0)?;
        Some(
            listener::bind(addr, &sock_opts)
                .map_err(|e| format!("cannot listen on {addr} (monitoring.metrics_port): {e}"))?,
        )
    } else {
        None
    };

    let mut tasks = vec![
        glommio::spawn_local(node_core::drive(st.clone(), chans.kick_rx)),
        glommio::spawn_local(node_core::persist_loop(
            st.clone(),
            chans.persist_rx,
            durability,
        )),
        glommio::spawn_local(node_core::tick_loop(
            st.clone(),
            Duration::from_millis(cfg.raft.tick_interval_ms),
        )),
        glommio::spawn_local(inbox_loop(ctx.clone(), inbox)),
        glommio::spawn_local(node_core::leases::lease_loop(st.clone())),
        glommio::spawn_local(dialer_loop(ctx.clone(), handler.clone(), chans.dial_rx)),
        glommio::spawn_local(link_watch_loop(ctx.clone())),
        glommio::spawn_local(crate::node::metrics::sample_executor(
            metrics.cores[core].clone(),
        )),
    ];
    if core == 0 && cfg.is_joining_learner() {
        tasks.push(glommio::spawn_local(join_loop(
            ctx.clone(),
            handler.clone(),
        )));
    }
    {
        let s = st.borrow();
        for id in s.peers.keys() {
            let _ = s.dial_tx.try_send(*id);
        }
        s.kick();
    }
    let (listener_stop_tx, listener_stop_rx) = flume::bounded::<()>(1);
    let mut lcfg = ListenerConfig::new(LocalIdentity {
        cluster_id: cfg.cluster.cluster_id,
        role: PeerRole::Node {
            node_id: cfg.cluster.node_id,
        },
    });
    lcfg.connection = node_connection_config(&cfg, &security);
    lcfg.max_connections = cfg.network.max_connections;
    let serve = glommio::spawn_local(listener::serve(
        tcp,
        Rc::new(lcfg),
        handler.clone(),
        net_metrics.clone(),
        async move {
            let _ = listener_stop_rx.recv_async().await;
        },
    ));
    let metrics_task = metrics_listener.map(|l| {
        glommio::spawn_local(crate::node::http_server::serve_metrics_port(ctx.clone(), l))
    });
    info!(core, shards = ?groups, %listen, "core started");

    // Run until told to stop, or until the core failed.
    loop {
        let stop = glommio::timer::timeout(Duration::from_millis(200), async {
            Ok(stop_rx.recv_async().await.ok())
        })
        .await;
        if stop.is_ok() {
            break;
        }
        let fatal = st.borrow().fatal.clone();
        if let Some(f) = fatal {
            ctx.stopping.set(true);
            let _ = listener_stop_tx.try_send(());
            return Err(f);
        }
    }
    info!(
        core,
        "stopping: no new connections, draining requests in flight"
    );
    ctx.stopping.set(true);
    let _ = listener_stop_tx.try_send(());
    serve.await;
    drop(metrics_task);
    let deadline = std::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while (ctx.inflight.get() > 0 || st.borrow().waiting() > 0)
        && std::time::Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    st.borrow_mut().fail_all("the node is shutting down");
    let synced = node_core::sync_wal(&st).await;
    for l in st.borrow_mut().peers.values_mut() {
        if let Some(c) = l.conn.take() {
            c.close();
        }
    }
    drop(tasks);
    synced.map_err(|e| format!("core {core}: final WAL sync: {e}"))?;
    info!(core, "stopped");
    Ok(())
}
