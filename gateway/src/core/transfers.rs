//! Counts the file transfers in flight, so a graceful shutdown can wait
//! for them (and only them) to finish.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The number of open file handles across all sessions.
#[derive(Debug, Clone, Default)]
pub struct ActiveTransfers {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    /// Transfers ever begun.
    begun: AtomicU64,
    idle: Notify,
}

impl ActiveTransfers {
    /// Marks one transfer as started; it ends when the guard is dropped.
    pub fn begin(&self) -> TransferGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        self.inner.begun.fetch_add(1, Ordering::SeqCst);
        TransferGuard {
            inner: self.inner.clone(),
        }
    }

    /// Transfers in flight now.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Transfers begun since the gateway started: tells whether any ran
    /// between two looks at an idle [`ActiveTransfers::count`].
    pub fn begun(&self) -> u64 {
        self.inner.begun.load(Ordering::SeqCst)
    }

    /// Returns once no transfer is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by an open file handle while its transfer runs.
#[derive(Debug)]
pub struct TransferGuard {
    inner: Arc<Inner>,
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_transfer() {
        let t = ActiveTransfers::default();
        let g1 = t.begin();
        let g2 = t.begin();
        assert_eq!(t.count(), 2);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_idle().await }
        });
        drop(g1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g2);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
