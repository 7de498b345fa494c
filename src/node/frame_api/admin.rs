//! The admin requests of the binary API: membership changes (add a learner, promote, remove),
//! leadership transfer and cluster status, each checked against the node's shards and run
//! through the shard's Raft core. Owned by the node.

use std::rc::Rc;

use ringraft_net::message as wire;

use crate::node::request::{ClientReply, ClientResult};
use crate::node::server::{self, CoreCtx};
use crate::raft::{ConfChange, GroupId};

fn done_or_failed(r: ClientResult) -> wire::AdminResponse {
    match r {
        Ok(ClientReply::Committed { index }) => wire::AdminResponse::Done { index },
        Ok(_) => wire::AdminResponse::Done { index: 0 },
        Err(e) => wire::AdminResponse::Failed(e),
    }
}

pub(super) async fn serve_admin(ctx: &Rc<CoreCtx>, req: wire::AdminRequest) -> wire::AdminResponse {
    let shards = ctx.cfg.runtime.shards_per_node as GroupId;
    let check = |g: GroupId| -> Result<(), wire::AdminResponse> {
        if g >= shards {
            return Err(wire::AdminResponse::Failed(wire::ClientError::WrongShard {
                shard: g as u32,
            }));
        }
        Ok(())
    };
    match req {
        wire::AdminRequest::ClusterStatus => {
            let shards = server::cluster_status(ctx).await;
            let s = ctx.st.borrow();
            let mut nodes = vec![wire::NodeStatus {
                node_id: s.node_id,
                address: ctx.cfg.cluster.listen_address.clone(),
                reachable: true,
            }];
            for (id, l) in &s.peers {
                nodes.push(wire::NodeStatus {
                    node_id: *id,
                    address: l.address.clone(),
                    reachable: l.conn.as_ref().is_some_and(|c| !c.is_closing()),
                });
            }
            let shard_status = shards.iter().map(|r| r.to_wire()).collect();
            wire::AdminResponse::Status(wire::ClusterStatus {
                reporter: s.node_id,
                nodes,
                shards: shard_status,
            })
        }
        wire::AdminRequest::AddLearner {
            group,
            node_id,
            address,
        } => {
            if let Err(r) = check(group) {
                return r;
            }
            // The address travels in the configuration entry (every replica records it from
            // there), in the canonical form of the socket address so that one member has one
            // spelling. A member's recorded address is never changed: the log refuses an
            // AddLearner that names a member at another address (`AddressConflict`).
            let Ok(sock) = address.parse::<std::net::SocketAddr>() else {
                return wire::AdminResponse::Failed(wire::ClientError::InvalidRequest(format!(
                    "learner address {address:?} is not host:port"
                )));
            };
            let change = ConfChange::AddLearner(node_id, Some(sock.to_string()));
            done_or_failed(server::change_membership(ctx, group, change).await)
        }
        wire::AdminRequest::Promote { group, node_id } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(
                server::change_membership(ctx, group, ConfChange::Promote(node_id)).await,
            )
        }
        wire::AdminRequest::Remove { group, node_id } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(server::change_membership(ctx, group, ConfChange::Remove(node_id)).await)
        }
        wire::AdminRequest::TransferLeadership { group, to } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(server::transfer_leadership(ctx, group, to).await)
        }
    }
}
