//! Watch registration on the core that owns the shard: the shard's hub is caught up with the
//! store's applied index and the watcher registered (see [`crate::node::watch::hub`]).

use super::*;
use crate::node::watch::{Subscription, WatchCancel, WatchFilter};

/// Where a registration's answer goes (the asking task may live on another core).
pub type WatchReplyTx = flume::Sender<Result<Subscription, WatchCancel>>;

impl CoreState {
    /// Registers a watcher of `filter` on shard `group` from revision `from` (0 = from now).
    pub fn start_watch(
        &mut self,
        group: GroupId,
        filter: WatchFilter,
        from: u64,
        reply: WatchReplyTx,
    ) {
        let answer = if let Some(f) = &self.fatal {
            Err(WatchCancel::Failed(ClientError::Unavailable(f.clone())))
        } else {
            match self.shards.get_mut(&group) {
                Some(shard) => {
                    let applied = shard.kv.applied_index();
                    shard.watch.register(filter, from, applied)
                }
                None => Err(WatchCancel::Failed(ClientError::WrongShard {
                    shard: group as u32,
                })),
            }
        };
        let _ = reply.try_send(answer);
    }

    /// Watchers registered on this core's shards, and the events their histories hold.
    pub fn watch_counts(&self) -> (usize, usize) {
        self.shards.values().fold((0, 0), |(w, e), s| {
            (w + s.watch.watchers(), e + s.watch.history().len())
        })
    }
}
