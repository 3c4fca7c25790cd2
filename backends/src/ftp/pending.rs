//! Partial uploads that a failed upload could not remove at once because
//! the connection to the server was gone (the server stopped, the network
//! broke). They are remembered in memory and removed through the next
//! connection that is checked out and works, so that a broken upload does
//! not stay on the remote under its name (or as a temporary file) for
//! longer than the outage.
//!
//! A new upload to, rename onto or removal of a remembered path forgets it
//! first, waiting for removals under way: the file that the new operation
//! writes is never removed afterwards.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::control::Control;
use super::error::FtpError;

/// Most paths remembered per remote (beyond that they are only logged).
const MAX_PENDING: usize = 1024;

/// The remembered removals of one remote.
#[derive(Debug)]
pub struct PendingRemovals {
    remote: String,
    paths: Mutex<BTreeSet<String>>,
    /// Held while removals are under way.
    running: tokio::sync::Mutex<()>,
}

impl PendingRemovals {
    /// None remembered yet, for remote `remote` (named in the logs).
    pub fn new(remote: &str) -> Self {
        PendingRemovals {
            remote: remote.to_string(),
            paths: Mutex::new(BTreeSet::new()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    fn paths(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.paths.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.paths().is_empty()
    }

    /// The remembered paths (for tests and logs).
    pub fn list(&self) -> Vec<String> {
        self.paths().iter().cloned().collect()
    }

    /// Remembers the absolute remote path `path` for removal; `why` is the
    /// reason it could not be removed now.
    pub fn remember(&self, path: &str, why: &str) {
        let mut paths = self.paths();
        if paths.contains(path) {
            return;
        }
        if paths.len() >= MAX_PENDING {
            tracing::error!(
                remote = %self.remote,
                "cannot remove the partial upload `{path}` ({why}), and {MAX_PENDING} others are already waiting: remove it by hand"
            );
            return;
        }
        paths.insert(path.to_string());
        tracing::warn!(
            remote = %self.remote,
            "cannot remove the partial upload `{path}` now ({why}): it will be removed through the next connection to the server"
        );
    }

    /// Forgets `path` (a new file is about to be written there), after any
    /// removal under way has finished.
    pub async fn forget(&self, path: &str) {
        if self.is_empty() {
            return;
        }
        let _running = self.running.lock().await;
        if self.paths().remove(path) {
            tracing::info!(
                remote = %self.remote,
                "the partial upload `{path}` is not removed: it is being written again"
            );
        }
    }

    /// Removes the remembered files through `c`. Paths the server no longer
    /// has, or refuses to remove, are given up; an error means `c` broke
    /// (the rest stay remembered). Does nothing while another connection
    /// is at it.
    pub async fn run(&self, c: &mut Control) -> Result<(), FtpError> {
        if self.is_empty() {
            return Ok(());
        }
        let Ok(_running) = self.running.try_lock() else {
            return Ok(());
        };
        for path in self.list() {
            match c.delete(&path).await {
                Ok(()) => tracing::info!(
                    remote = %self.remote,
                    "removed the partial upload `{path}` left by a broken transfer"
                ),
                Err(e) if e.kind().is_temporary() => return Err(e),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => tracing::info!(
                    remote = %self.remote,
                    "the partial upload `{path}` is already gone"
                ),
                Err(e) => tracing::warn!(
                    remote = %self.remote,
                    "cannot remove the partial upload `{path}`: {e}; giving up"
                ),
            }
            self.paths().remove(&path);
        }
        Ok(())
    }
}
