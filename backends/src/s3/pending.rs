//! Multipart uploads that a failed or dropped upload could not abort at
//! once, because the server could not be reached at that moment (it was
//! stopped, the network broke). Until they are aborted their parts stay on
//! the server (most servers keep them until a lifecycle rule removes
//! them, and they count towards the bucket's storage). They are
//! remembered in memory, per remote and bounded, and aborted in the
//! background after the next request to the server that works.
//!
//! An upload id names one upload only: a new upload of the same key gets
//! another id, so aborting a remembered one never touches newer data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Most uploads remembered per remote (beyond that they are only logged).
pub const MAX_PENDING: usize = 1024;

/// The remembered aborts of one remote.
#[derive(Debug)]
pub struct PendingAborts {
    remote: String,
    /// Upload id → key.
    uploads: Mutex<BTreeMap<String, String>>,
    /// Set while a run is under way.
    running: AtomicBool,
}

/// What became of one retried abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Aborted now.
    Aborted,
    /// The server no longer has it.
    Gone,
    /// The server could not be reached again: stop for now, keep the rest.
    Unreachable,
    /// The server refused for another reason: given up.
    Refused,
}

impl PendingAborts {
    /// None remembered yet, for remote `remote` (named in the logs).
    pub fn new(remote: &str) -> Self {
        PendingAborts {
            remote: remote.to_string(),
            uploads: Mutex::new(BTreeMap::new()),
            running: AtomicBool::new(false),
        }
    }

    fn uploads(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.uploads().is_empty()
    }

    /// The remembered uploads as (key, upload id), for tests and logs.
    pub fn list(&self) -> Vec<(String, String)> {
        self.uploads()
            .iter()
            .map(|(id, key)| (key.clone(), id.clone()))
            .collect()
    }

    /// Remembers the upload `upload_id` of `key` for a later abort; `why`
    /// is the reason it could not be aborted now.
    pub fn remember(&self, key: &str, upload_id: &str, why: &str) {
        let mut uploads = self.uploads();
        if uploads.contains_key(upload_id) {
            return;
        }
        if uploads.len() >= MAX_PENDING {
            tracing::error!(
                remote = %self.remote,
                key,
                upload_id,
                "cannot abort the multipart upload of `{key}` ({why}), and {MAX_PENDING} others are \
                 already waiting: its parts stay until the bucket's lifecycle rules remove them"
            );
            return;
        }
        uploads.insert(upload_id.to_string(), key.to_string());
        tracing::warn!(
            remote = %self.remote,
            key,
            upload_id,
            "cannot abort the multipart upload of `{key}` now ({why}): it will be aborted through \
             the next request that reaches the server"
        );
    }

    /// Marks a run as started; false when one is already under way or
    /// nothing is remembered. [`PendingAborts::finish_run`] ends it.
    pub fn start_run(&self) -> bool {
        !self.is_empty()
            && self
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Ends the run [`PendingAborts::start_run`] began.
    pub fn finish_run(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Notes what a retried abort of `upload_id` came to (logged) and
    /// forgets it unless the server was unreachable again.
    pub fn settle(&self, key: &str, upload_id: &str, outcome: Retried, detail: &str) {
        match outcome {
            Retried::Aborted => tracing::info!(
                remote = %self.remote,
                key,
                upload_id,
                "aborted the multipart upload of `{key}` left by a broken upload"
            ),
            Retried::Gone => tracing::info!(
                remote = %self.remote,
                key,
                upload_id,
                "the multipart upload of `{key}` left by a broken upload is already gone"
            ),
            Retried::Refused => tracing::warn!(
                remote = %self.remote,
                key,
                upload_id,
                "cannot abort the multipart upload of `{key}` left by a broken upload: {detail}; \
                 giving up (its parts stay until the bucket's lifecycle rules remove them)"
            ),
            Retried::Unreachable => return,
        }
        self.uploads().remove(upload_id);
    }
}

impl Drop for PendingAborts {
    fn drop(&mut self) {
        let uploads = self.uploads();
        if uploads.is_empty() {
            return;
        }
        let shown: Vec<String> = uploads
            .iter()
            .map(|(id, key)| format!("`{key}` (upload id {id})"))
            .collect();
        tracing::warn!(
            remote = %self.remote,
            "{} multipart upload(s) could not be aborted and stay on the server until the bucket's \
             lifecycle rules remove them: {}",
            uploads.len(),
            shown.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_settled_and_bounded() {
        let p = PendingAborts::new("r");
        assert!(p.is_empty());
        assert!(!p.start_run(), "nothing to do");
        p.remember("a", "id-1", "down");
        p.remember("a", "id-1", "down");
        p.remember("b", "id-2", "down");
        assert_eq!(
            p.list(),
            [
                ("a".to_string(), "id-1".to_string()),
                ("b".into(), "id-2".into())
            ]
        );
        assert!(p.start_run());
        assert!(!p.start_run(), "one run at a time");
        p.settle("a", "id-1", Retried::Unreachable, "");
        assert_eq!(p.list().len(), 2, "kept while unreachable");
        p.settle("a", "id-1", Retried::Aborted, "");
        p.settle("b", "id-2", Retried::Refused, "403");
        assert!(p.is_empty());
        p.finish_run();
        for i in 0..MAX_PENDING + 10 {
            p.remember("k", &format!("id-{i}"), "down");
        }
        assert_eq!(p.list().len(), MAX_PENDING);
        assert!(p.start_run());
    }
}
