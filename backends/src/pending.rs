//! Partial uploads that a failed upload could not remove at once because
//! the connection to the server was gone (the server stopped, the network
//! broke). They are remembered in memory, per remote and bounded, and
//! removed through the next connection that is checked out and works, so
//! that a broken upload does not stay on the remote under its name (or as
//! a temporary file) for longer than the outage.
//!
//! A new upload to, rename onto or removal of a remembered path forgets it
//! first, waiting for removals under way: the file that the new operation
//! writes is never removed afterwards.
//!
//! The bookkeeping is the same for every remote kind that writes files by
//! name (FTP, SFTP); how one file is removed is the caller's, given to
//! [`PendingRemovals::run`] as a [`Remover`].

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

/// Most paths remembered per remote (beyond that they are only logged).
const MAX_PENDING: usize = 1024;

/// What became of one attempt to remove a remembered file.
#[derive(Debug)]
pub enum Removal<E> {
    /// Removed now.
    Removed,
    /// The server no longer has it.
    Gone,
    /// The server refused for another reason (said here): given up.
    Refused(String),
    /// The connection broke: stop, keep this path and the rest.
    Broken(E),
}

/// Removes one remembered file through the connection being checked out.
pub trait Remover: Send {
    /// What a broken connection reports.
    type Error;

    /// Removes the remote file `path`.
    fn remove(&mut self, path: &str) -> impl Future<Output = Removal<Self::Error>> + Send;
}

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

    fn paths(&self) -> MutexGuard<'_, BTreeSet<String>> {
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

    /// Removes the remembered files through `remover`. Paths the server no
    /// longer has, or refuses to remove, are given up; [`Removal::Broken`]
    /// stops the run and is returned (the rest stay remembered). Does
    /// nothing while another connection is at it.
    pub async fn run<R: Remover>(&self, mut remover: R) -> Result<(), R::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let Ok(_running) = self.running.try_lock() else {
            return Ok(());
        };
        for path in self.list() {
            match remover.remove(&path).await {
                Removal::Removed => tracing::info!(
                    remote = %self.remote,
                    "removed the partial upload `{path}` left by a broken transfer"
                ),
                Removal::Broken(e) => return Err(e),
                Removal::Gone => tracing::info!(
                    remote = %self.remote,
                    "the partial upload `{path}` is already gone"
                ),
                Removal::Refused(why) => tracing::warn!(
                    remote = %self.remote,
                    "cannot remove the partial upload `{path}`: {why}; giving up"
                ),
            }
            self.paths().remove(&path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Answers from `answer` and records the paths it was asked for.
    struct Fake<F> {
        answer: F,
        asked: Vec<String>,
    }

    impl<F: Fn(&str) -> Removal<&'static str> + Send> Remover for &mut Fake<F> {
        type Error = &'static str;

        async fn remove(&mut self, path: &str) -> Removal<&'static str> {
            self.asked.push(path.to_string());
            (self.answer)(path)
        }
    }

    /// Runs `p` with a [`Fake`] answering from `answer`: the result and
    /// the paths asked for.
    async fn run_with(
        p: &PendingRemovals,
        answer: impl Fn(&str) -> Removal<&'static str> + Send,
    ) -> (Result<(), &'static str>, Vec<String>) {
        let mut fake = Fake {
            answer,
            asked: Vec::new(),
        };
        let result = p.run(&mut fake).await;
        (result, fake.asked)
    }

    /// Tells when it starts removing, then waits to be released.
    struct Blocking {
        started: Option<tokio::sync::oneshot::Sender<()>>,
        release: Arc<tokio::sync::Notify>,
    }

    impl Remover for Blocking {
        type Error = ();

        async fn remove(&mut self, _: &str) -> Removal<()> {
            if let Some(started) = self.started.take() {
                let _ = started.send(());
            }
            self.release.notified().await;
            Removal::Removed
        }
    }

    #[tokio::test]
    async fn removes_each_remembered_path_once_in_order() {
        let p = PendingRemovals::new("r");
        assert!(p.is_empty());
        p.remember("/b", "test");
        p.remember("/a", "test");
        p.remember("/b", "again");
        assert_eq!(p.list(), ["/a", "/b"]);
        let (result, asked) = run_with(&p, |_| Removal::Removed).await;
        assert_eq!(result, Ok(()));
        assert_eq!(asked, ["/a", "/b"]);
        assert!(p.is_empty());
        let (_, asked) = run_with(&p, |_| Removal::Removed).await;
        assert!(asked.is_empty(), "nothing is removed twice");
    }

    #[tokio::test]
    async fn gone_and_refused_paths_are_given_up() {
        let p = PendingRemovals::new("r");
        p.remember("/gone", "test");
        p.remember("/refused", "test");
        let (result, asked) = run_with(&p, |path| match path {
            "/gone" => Removal::Gone,
            _ => Removal::Refused("permission denied".into()),
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(asked.len(), 2);
        assert!(p.is_empty());
    }

    #[tokio::test]
    async fn a_broken_connection_stops_the_run_and_keeps_the_rest() {
        let p = PendingRemovals::new("r");
        for path in ["/a", "/b", "/c"] {
            p.remember(path, "test");
        }
        let (result, asked) = run_with(&p, |path| match path {
            "/a" => Removal::Removed,
            _ => Removal::Broken("lost"),
        })
        .await;
        assert_eq!(result, Err("lost"));
        assert_eq!(asked, ["/a", "/b"]);
        assert_eq!(p.list(), ["/b", "/c"]);
    }

    #[tokio::test]
    async fn forgotten_paths_are_not_removed() {
        let p = PendingRemovals::new("r");
        p.remember("/written-again", "test");
        p.remember("/left", "test");
        p.forget("/written-again").await;
        p.forget("/never-remembered").await;
        let (_, asked) = run_with(&p, |_| Removal::Removed).await;
        assert_eq!(asked, ["/left"]);
    }

    #[tokio::test]
    async fn the_list_is_bounded() {
        let p = PendingRemovals::new("r");
        for i in 0..MAX_PENDING + 5 {
            p.remember(&format!("/f{i:05}"), "test");
        }
        let list = p.list();
        assert_eq!(list.len(), MAX_PENDING);
        assert!(
            !list.contains(&format!("/f{MAX_PENDING:05}")),
            "kept the first ones"
        );
    }

    /// While one connection removes, another neither starts removing the
    /// same paths nor lets a forget through before the removal ends.
    #[tokio::test]
    async fn one_run_at_a_time_and_forget_waits_for_it() {
        let p = Arc::new(PendingRemovals::new("r"));
        p.remember("/x", "test");
        let (started, started_rx) = tokio::sync::oneshot::channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let blocking = Blocking {
            started: Some(started),
            release: release.clone(),
        };
        let running = {
            let p = p.clone();
            tokio::spawn(async move { p.run(blocking).await })
        };
        started_rx.await.unwrap();
        let (result, asked) = run_with(&p, |_| Removal::Removed).await;
        assert_eq!(result, Ok(()));
        assert!(asked.is_empty(), "a second run started: {asked:?}");
        let forget = {
            let p = p.clone();
            tokio::spawn(async move { p.forget("/x").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!forget.is_finished(), "forget did not wait for the removal");
        release.notify_one();
        running.await.unwrap().unwrap();
        forget.await.unwrap();
        assert!(p.is_empty());
    }
}
