//! What the remotes reached through a connection pool (SFTP, FTP) share:
//! checking a connection out in working order (a protocol-specific check,
//! then the partial uploads that broken connections left behind removed
//! through it), a few attempts before giving up, and dropping a connection
//! that broke during an operation instead of giving it back for reuse.

use std::future::Future;

use crate::pool::{Connector, Pool, Pooled};
use crate::Result;

/// How many checked-out connections may fail their check in a row before
/// the next one is handed out unchecked (its operation then fails with
/// its own error).
const CHECKOUT_ATTEMPTS: usize = 3;

/// A remote backend over a [`Pool`].
pub(crate) trait PooledRemote: Sync {
    /// Opens its connections.
    type Connector: Connector;

    /// The remote's pool.
    fn pool(&self) -> &Pool<Self::Connector>;

    /// Readies a connection just taken from the pool: checks it still
    /// answers if it must, and removes pending partial uploads through it.
    /// `false`: it is broken and must not be used.
    fn ready(&self, conn: &mut Pooled<Self::Connector>) -> impl Future<Output = bool> + Send;
}

/// A connection from `remote`'s pool in working order; one that fails
/// [`PooledRemote::ready`] is dropped and another one tried.
pub(crate) async fn checkout<R: PooledRemote>(remote: &R) -> Result<Pooled<R::Connector>> {
    for _ in 0..CHECKOUT_ATTEMPTS {
        let mut conn = remote.pool().get().await?;
        if remote.ready(&mut conn).await {
            return Ok(conn);
        }
        conn.mark_broken();
    }
    remote.pool().get().await
}

/// Drops a connection that broke during an operation (a temporary error:
/// lost, timed out) instead of reusing it.
pub(crate) fn settle<C: Connector, T>(conn: &mut Pooled<C>, result: &Result<T>) {
    if let Err(e) = result {
        if e.is_temporary() {
            conn.mark_broken();
        }
    }
}

/// Checks out a connection, runs `op` on it, and settles it by the result.
pub(crate) async fn with_conn<R: PooledRemote, T>(
    remote: &R,
    op: impl AsyncFnOnce(&mut Pooled<R::Connector>) -> Result<T>,
) -> Result<T> {
    let mut conn = checkout(remote).await?;
    let result = op(&mut conn).await;
    settle(&mut conn, &result);
    result
}
