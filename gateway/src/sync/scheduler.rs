//! The loop inside `gateway serve` that starts each scheduled sync when it
//! is due, one run at a time per sync, on the remote's shared backend.
//!
//! When a sync is due is computed from its last recorded run, so a restart
//! neither skips a run nor runs one twice: an interval sync whose last run
//! started longer ago than its interval runs at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::records::{RecordError, Records, RunRecord, Trigger};
use super::run::{run, LogObserver, RunFailure, SyncSides};
use super::schedule::Schedule;
use crate::config::SyncSettings;
use crate::state::StateStore;

/// When `settings` is next due, given its newest run (if any) and `now`:
/// `None` for a manual sync.
pub fn next_run(
    settings: &SyncSettings,
    last: Option<&RunRecord>,
    now: SystemTime,
) -> Option<SystemTime> {
    match &settings.schedule {
        Schedule::Manual => None,
        Schedule::Every(_) => {
            let due = match last {
                Some(r) => settings.schedule.next_after(r.started())?,
                None => now,
            };
            Some(due.max(now))
        }
        Schedule::Cron(_) => {
            let from = last.map_or(now, |r| r.started().max(now));
            settings.schedule.next_after(from)
        }
    }
}

/// Starts one task per scheduled sync; they stop when `stop` turns true.
pub fn start(
    syncs: Vec<(SyncSettings, SyncSides)>,
    store: Arc<dyn StateStore>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    syncs
        .into_iter()
        .filter(|(s, _)| s.schedule != Schedule::Manual)
        .map(|(settings, sides)| {
            tracing::info!(
                sync = settings.name.as_str(),
                "scheduled: {}",
                settings.schedule.describe()
            );
            tokio::spawn(schedule_loop(settings, sides, store.clone(), stop.clone()))
        })
        .collect()
}

async fn schedule_loop(
    settings: SyncSettings,
    sides: SyncSides,
    store: Arc<dyn StateStore>,
    mut stop: watch::Receiver<bool>,
) {
    let name = settings.name.clone();
    loop {
        let last = match Records::new(store.as_ref()).history(&name) {
            Ok(h) => h.into_iter().next(),
            Err(e) => {
                tracing::error!(sync = name.as_str(), "cannot read the sync's history: {e}");
                None
            }
        };
        let Some(due) = next_run(&settings, last.as_ref(), SystemTime::now()) else {
            tracing::warn!(sync = name.as_str(), "its schedule never fires again");
            return;
        };
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let observer = LogObserver { sync: name.clone() };
        match run(
            &settings,
            &sides,
            store.as_ref(),
            Trigger::Schedule,
            &observer,
            stop.clone(),
        )
        .await
        {
            Ok(record) => tracing::info!(
                sync = name.as_str(),
                copied = record.counts.copied,
                bytes = record.counts.bytes,
                skipped = record.counts.skipped,
                deleted = record.counts.deleted,
                failed = record.counts.failed,
                "scheduled run {}",
                record.outcome.as_str()
            ),
            Err(RunFailure::Records(RecordError::AlreadyRunning { pid, .. })) => {
                tracing::info!(
                    sync = name.as_str(),
                    "due, but already running (pid {pid}); skipped"
                );
                // Wait a little before asking again: the history has no
                // new record to compute the next time from.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            Err(e) => {
                tracing::error!(sync = name.as_str(), "scheduled run could not start: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}
