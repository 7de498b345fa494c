//! Outgoing peer connections: one dialer per core keeps one connection per peer (redialing
//! with backoff when it closes), and a learner's join loop announces it to the voters until
//! every shard accepted it. Owned by the node's server.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ringraft_net::listener;
use ringraft_net::message as wire;
use tracing::{debug, info, warn};

use crate::node::metrics::ErrorKind;
use crate::raft::{GroupId, NodeId};

use super::*;

/// Keeps one outgoing connection per peer: dials (with backoff) whenever asked.
pub(super) async fn dialer_loop(
    ctx: Rc<CoreCtx>,
    handler: Rc<NodeHandler>,
    rx: flume::Receiver<NodeId>,
) {
    let cfg = node_connection_config(&ctx.cfg, &ctx.security);
    let dialing: Rc<RefCell<std::collections::BTreeSet<NodeId>>> = Rc::default();
    while let Ok(peer) = rx.recv_async().await {
        if ctx.stopping.get() {
            return;
        }
        if !dialing.borrow_mut().insert(peer) {
            continue;
        }
        let (ctx, handler, cfg, dialing) =
            (ctx.clone(), handler.clone(), cfg.clone(), dialing.clone());
        glommio::spawn_local(async move {
            let mut backoff =
                ringraft_net::backoff::Backoff::new(ringraft_net::backoff::BackoffConfig {
                    initial_ms: ctx.cfg.network.reconnect_backoff_ms_min,
                    max_ms: ctx.cfg.network.reconnect_backoff_ms_max,
                    max_attempts: None,
                    seed: ctx.cfg.cluster.node_id ^ peer,
                });
            loop {
                if ctx.stopping.get() {
                    break;
                }
                let live = ctx
                    .st
                    .borrow()
                    .peers
                    .get(&peer)
                    .and_then(|p| p.conn.as_ref().map(|c| !c.is_closing()))
                    .unwrap_or(false);
                if live {
                    break;
                }
                let addr = ctx.st.borrow().peers.get(&peer).map(|p| p.address.clone());
                let Some(Ok(sock)) = addr.map(|a| a.parse::<std::net::SocketAddr>()) else {
                    warn!(peer, "no usable address; not dialing");
                    break;
                };
                match listener::dial_node(
                    sock,
                    Some(peer),
                    &cfg,
                    handler.clone(),
                    ctx.net_metrics.clone(),
                )
                .await
                {
                    Ok(conn) => {
                        info!(peer, %sock, "connected to peer");
                        if let Some(l) = ctx.st.borrow_mut().peers.get_mut(&peer) {
                            l.conn = Some(conn);
                        }
                        break;
                    }
                    Err(e) => {
                        ctx.st.borrow().metrics.error(ErrorKind::PeerConnection);
                        debug!(peer, %sock, "dial failed: {e}");
                        let d = backoff.next_delay().unwrap_or(Duration::from_millis(500));
                        glommio::timer::sleep(d).await;
                    }
                }
            }
            dialing.borrow_mut().remove(&peer);
        })
        .detach();
    }
}

/// Watches peer links and redials closed ones.
pub(super) async fn link_watch_loop(ctx: Rc<CoreCtx>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(
            ctx.cfg.network.reconnect_backoff_ms_min.max(10),
        ))
        .await;
        if ctx.stopping.get() {
            return;
        }
        let s = &mut *ctx.st.borrow_mut();
        let mut redial = Vec::new();
        for (id, l) in s.peers.iter_mut() {
            let dead = l.conn.as_ref().is_none_or(|c| c.is_closing());
            if dead {
                l.conn = None;
                redial.push(*id);
            }
        }
        for id in redial {
            let _ = s.dial_tx.try_send(id);
        }
    }
}

/// A learner announces itself to every voter of `initial_cluster` until one leader accepted it
/// for every shard (AddLearner with its address, which the configuration entry carries to
/// every replica), then re-announces now and then: a no-op once the address is recorded, and
/// the way a member admitted before its shard's configuration recorded addresses gets one.
pub(super) async fn join_loop(ctx: Rc<CoreCtx>, handler: Rc<NodeHandler>) {
    let cfg = node_connection_config(&ctx.cfg, &ctx.security);
    let me = ctx.cfg.cluster.node_id;
    let voters: Vec<(NodeId, String)> = ctx
        .cfg
        .cluster
        .initial_cluster
        .iter()
        .filter(|m| m.role == crate::node::config::ROLE_FOLLOWER)
        .map(|m| (m.id, m.address.clone()))
        .collect();
    let mut next_id: u64 = 1;
    loop {
        let mut accepted = 0usize;
        for (voter, address) in &voters {
            let Ok(sock) = address.parse::<std::net::SocketAddr>() else {
                continue;
            };
            let Ok(conn) = listener::dial_node(
                sock,
                Some(*voter),
                &cfg,
                handler.clone(),
                ctx.net_metrics.clone(),
            )
            .await
            else {
                continue;
            };
            for g in 0..ctx.cfg.runtime.shards_per_node as GroupId {
                let req = wire::AdminRequest::AddLearner {
                    group: g,
                    node_id: me,
                    address: ctx.cfg.cluster.listen_address.clone(),
                };
                let (tx, rx) = flume::bounded(1);
                next_id += 1;
                handler.awaiting.borrow_mut().insert(next_id, tx);
                if conn.send_request(next_id, &req).is_err() {
                    continue;
                }
                let got =
                    glommio::timer::timeout(Duration::from_millis(JOIN_RETRY_MS * 3), async {
                        Ok(rx.recv_async().await.ok())
                    })
                    .await;
                handler.awaiting.borrow_mut().remove(&next_id);
                if let Ok(Some(wire::Message::AdminResponse(r))) = got {
                    debug!(voter, shard = g, "join answer: {r:?}");
                    if matches!(r, wire::AdminResponse::Done { .. }) {
                        accepted += 1;
                    }
                }
            }
            conn.close();
        }
        // Until every shard accepted us, retry soon; afterwards re-announce now and then.
        let every_shard = accepted >= ctx.cfg.runtime.shards_per_node;
        let pause = if every_shard {
            JOIN_REANNOUNCE_MS
        } else {
            JOIN_RETRY_MS
        };
        glommio::timer::sleep(Duration::from_millis(pause)).await;
        if ctx.stopping.get() {
            return;
        }
    }
}
