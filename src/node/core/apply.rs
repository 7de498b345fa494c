//! The node's side of the apply step: the per-shard gauges after each round (the step itself is
//! [`crate::node::driver::Driver::apply`]).

use super::*;

impl CoreState {
    /// The gauges of shard `g`, if it is on this core.
    pub(super) fn gauges(&self, g: GroupId) -> Option<&ShardGauges> {
        self.local.get(&g).map(|l| l.gauges.as_ref())
    }
}
