//! Transactions and leases on the blocking [`Client`]: typed wrappers over [`Client::execute`]
//! (so routing, retries and exactly-once sessions are those of every write).
//!
//! A transaction's keys must share a shard (give them a common hash tag, `{tag}`); the node
//! refuses one that spans shards, naming the keys per shard. A lease lives in one shard (its
//! id's top bits say which, [`lease_shard`]) and holds keys of that shard only:
//! [`Client::lease_grant`] grants it in the shard of a key you name. Owned by the client.

use ringraft_net::message::{lease_id, ClientOp, LeaseInfo, Txn, TxnOpResult};

use crate::client::blocking::Client;
use crate::client::error::Result;
use crate::client::op::{unexpected, Reply};
use crate::node::kv::route::nonce as lease_nonce;

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every compare held (the success branch ran).
    pub succeeded: bool,
    /// Results of the branch's ops, in order.
    pub results: Vec<TxnOpResult>,
    /// The transaction's log index (the version of every key it put).
    pub(crate) version: u64,
}

impl Client {
    /// Runs `txn` atomically (one log entry): the success ops if every compare holds, else
    /// the failure ops.
    pub fn txn(&mut self, txn: Txn) -> Result<TxnResult> {
        match self.execute(ClientOp::Txn { txn, session: None })? {
            Reply::Txn {
                succeeded,
                results,
                version,
            } => Ok(TxnResult {
                succeeded,
                results,
                version,
            }),
            other => Err(unexpected("txn", &other)),
        }
    }

    fn shard_count(&mut self) -> Result<u32> {
        if !self.topology().is_known() {
            self.cluster_status()?;
        }
        Ok(self.topology().shard_count().unwrap_or(1))
    }

    /// Grants a lease of `ttl_ms` in the shard of `key` (shard 0 when `None`); returns its id.
    pub(crate) fn lease_grant(&mut self, ttl_ms: u64, key: Option<&[u8]>) -> Result<u64> {
        self.shard_count()?;
        let shard = key.map_or(0, |k| self.topology().shard_of(k));
        let id = lease_id(shard, lease_nonce());
        match self.execute(ClientOp::LeaseGrant {
            id,
            ttl_ms,
            session: None,
        })? {
            Reply::Lease { id, .. } => Ok(id),
            other => Err(unexpected("lease grant", &other)),
        }
    }

    /// Restarts lease `id`'s time to live; returns its TTL in ms.
    pub(crate) fn lease_keepalive(&mut self, id: u64) -> Result<u64> {
        match self.execute(ClientOp::LeaseKeepAlive { id, session: None })? {
            Reply::Lease { ttl_ms, .. } => Ok(ttl_ms),
            other => Err(unexpected("lease keepalive", &other)),
        }
    }

    /// Revokes lease `id`; returns how many keys it deleted.
    pub(crate) fn lease_revoke(&mut self, id: u64) -> Result<u32> {
        match self.execute(ClientOp::LeaseRevoke { id, session: None })? {
            Reply::Lease { keys, .. } => Ok(keys),
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    /// Every lease of every shard with its remaining time (as each shard's leader sees it).
    pub(crate) fn lease_list(&mut self) -> Result<Vec<LeaseInfo>> {
        let shards = self.shard_count()?;
        let mut out = Vec::new();
        for shard in 0..shards {
            match self.execute_on(ClientOp::LeaseList, Some(shard))? {
                Reply::Leases(l) => out.extend(l),
                other => return Err(unexpected("lease list", &other)),
            }
        }
        out.sort_by_key(|l| l.id);
        Ok(out)
    }

    /// Sets `key` to `value` attached to the existing lease `lease`; returns the version.
    pub(crate) fn put_with_lease(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: u64,
    ) -> Result<u64> {
        self.put_lease(key.as_ref(), value.as_ref(), lease, 0)
    }

    /// Sets `key` to `value` under a new lease of `ttl_ms` granted for it in the same step;
    /// returns `(version, lease id)`.
    pub fn put_ttl(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl_ms: u64,
    ) -> Result<(u64, u64)> {
        self.shard_count()?;
        let id = lease_id(self.topology().shard_of(key.as_ref()), lease_nonce());
        let v = self.put_lease(key.as_ref(), value.as_ref(), id, ttl_ms.max(1))?;
        Ok((v, id))
    }

    fn put_lease(&mut self, key: &[u8], value: &[u8], lease: u64, ttl_ms: u64) -> Result<u64> {
        match self.execute(ClientOp::PutLease {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ttl_ms,
            session: None,
        })? {
            Reply::Written { version } => Ok(version),
            other => Err(unexpected("put", &other)),
        }
    }
}
