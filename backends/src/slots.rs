//! Connection slots shared by several gateway nodes.
//!
//! A remote's `max_connections` is a limit over the whole cluster. Each
//! [`crate::pool::Pool`] keeps its own cap and queue; with a [`SlotGate`]
//! it also holds one cluster-wide [`SlotLease`] for every connection it
//! has open (being set up, in use, idle or being closed), taken before a
//! connection is opened and given back when its slot is freed. The gate
//! decides how leases are kept (the gateway's is PostgreSQL advisory
//! locks); the pool only takes and drops them.
//!
//! A pool keeps idle connections for reuse, so a node that got its slots
//! first could keep them for as long as it has work. The gate's
//! [`SlotGate::demand`] says when another node waits for a slot of a
//! remote: the pool then gives one connection back (an idle one at once,
//! else the next one returned), so nodes share the cap.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::Result;

/// One cluster-wide slot of a remote, held while a connection is open;
/// dropping it gives the slot back.
pub struct SlotLease {
    _held: Box<dyn Send + Sync>,
}

impl SlotLease {
    /// A lease that releases its slot when `held` is dropped.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        SlotLease {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for SlotLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotLease")
    }
}

/// Hands out the cluster-wide slots of remotes.
#[async_trait]
pub trait SlotGate: Send + Sync + 'static {
    /// Takes one of the `max` slots of `remote`, waiting up to `wait` for
    /// one to be free. Fails with a temporary error when none came in
    /// time, and with a clear error (never a slot) when the gate cannot
    /// tell whether one is free, so the cap is never exceeded.
    async fn acquire(&self, remote: &str, max: usize, wait: Duration) -> Result<SlotLease>;

    /// Changes (its value grows) each time another node asks for a slot
    /// of `remote`; a pool then gives back a connection it can spare.
    fn demand(&self, remote: &str) -> watch::Receiver<u64>;
}
