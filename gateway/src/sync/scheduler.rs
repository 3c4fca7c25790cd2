//! The loop inside `gateway serve` that starts each scheduled sync when it
//! is due, one run at a time per sync, on the remote's shared backend.
//!
//! When a sync is due is computed from its last recorded run, so a restart
//! neither skips a run nor runs one twice: an interval sync whose last run
//! started longer ago than its interval runs at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::records::{Outcome, RecordError, Records, RunRecord, Trigger};
use super::run::{run, LogObserver, RunFailure, SyncSides};
use super::schedule::Schedule;
use super::settings::SyncSettings;
use crate::state::StateStore;

/// How long a node waits after another claimed a due run before it looks
/// at the history again (for that run's record).
const CLAIMED_ELSEWHERE_PAUSE: Duration = Duration::from_secs(1);

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

/// The syncs in force and how to reach their two sides; a reload sends
/// a new table.
pub type SyncTable = Arc<Vec<(SyncSettings, SyncSides)>>;

/// Runs the scheduler: one task per scheduled sync, started and stopped
/// as reloads add and remove syncs; a task re-reads its sync's settings
/// before each run. Returns when `stop` turns true and every task ended.
pub async fn supervise(
    mut table: watch::Receiver<SyncTable>,
    store: Arc<dyn StateStore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        tasks.retain(|_, t| !t.is_finished());
        let current = table.borrow_and_update().clone();
        for (settings, _) in current.iter() {
            register_series(&settings.name);
            if settings.schedule == Schedule::Manual || tasks.contains_key(&settings.name) {
                continue;
            }
            tracing::info!(
                sync = settings.name.as_str(),
                "scheduled: {}",
                settings.schedule.describe()
            );
            tasks.insert(
                settings.name.clone(),
                tokio::spawn(schedule_loop(
                    settings.name.clone(),
                    table.clone(),
                    store.clone(),
                    stop.clone(),
                )),
            );
        }
        tokio::select! {
            changed = table.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, t) in tasks {
        let _ = t.await;
    }
}

/// The current settings of sync `name`, if it is still scheduled.
fn lookup(table: &watch::Receiver<SyncTable>, name: &str) -> Option<(SyncSettings, SyncSides)> {
    table
        .borrow()
        .iter()
        .find(|(s, _)| s.name == name && s.schedule != Schedule::Manual)
        .cloned()
}

async fn schedule_loop(
    name: String,
    mut table: watch::Receiver<SyncTable>,
    store: Arc<dyn StateStore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some((settings, sides)) = lookup(&table, &name) else {
            tracing::info!(sync = name.as_str(), "no longer scheduled");
            return;
        };
        let last = match Records::new(store.as_ref()).history(&name) {
            Ok(h) => h.into_iter().next(),
            Err(e) => {
                tracing::error!(sync = name.as_str(), "cannot read the sync's history: {e}");
                None
            }
        };
        let Some(due) = next_run(&settings, last.as_ref(), SystemTime::now()) else {
            tracing::warn!(sync = name.as_str(), "its schedule never fires again");
            // Wait for a reload that may change it.
            tokio::select! {
                changed = table.changed() => if changed.is_err() { return } else { continue },
                _ = stop.wait_for(|s| *s) => return,
            }
        };
        let due_unix = due
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("gateway_sync_next_run_timestamp_seconds", "sync" => name.clone())
            .set(due_unix);
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // A reload may have changed the schedule: compute it again.
            changed = table.changed() => if changed.is_err() { return } else { continue },
            _ = stop.wait_for(|s| *s) => return,
        }
        // Several nodes may schedule this sync: the one that claims the
        // run after `last` starts it; the others compute the next time
        // from the new run's record.
        match Records::new(store.as_ref()).claim_next(&name, last.as_ref()) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(
                    sync = name.as_str(),
                    "due, but another node starts this run"
                );
                tokio::select! {
                    () = tokio::time::sleep(CLAIMED_ELSEWHERE_PAUSE) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            Err(e) => {
                tracing::error!(
                    sync = name.as_str(),
                    "scheduled run could not be claimed: {e}"
                );
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
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
            Ok(record) => {
                record_metrics(&record);
                tracing::info!(
                    sync = name.as_str(),
                    copied = record.counts.copied,
                    bytes = record.counts.bytes,
                    skipped = record.counts.skipped,
                    deleted = record.counts.deleted,
                    failed = record.counts.failed,
                    "scheduled run {}",
                    record.outcome.as_str()
                )
            }
            Err(RunFailure::Records(e @ RecordError::AlreadyRunning { .. })) => {
                tracing::info!(sync = name.as_str(), "due, but {e}; skipped");
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

/// Exports the counters of sync `name` at 0 and marks it not running, so
/// that dashboards show it and an alert on `increase()` sees its first
/// failure.
pub fn register_series(name: &str) {
    for outcome in [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::TimeLimit,
        Outcome::Interrupted,
    ] {
        metrics::counter!("gateway_sync_runs_total", "sync" => name.to_string(), "outcome" => outcome.as_str())
            .increment(0);
    }
    for counter in [
        "gateway_sync_files_copied_total",
        "gateway_sync_bytes_copied_total",
        "gateway_sync_files_failed_total",
    ] {
        metrics::counter!(counter, "sync" => name.to_string()).increment(0);
    }
    let running = metrics::gauge!("gateway_sync_running", "sync" => name.to_string());
    running.increment(0.0);
}

/// The per-sync metrics of a finished run (see the README's list).
pub fn record_metrics(record: &RunRecord) {
    let sync = record.sync.clone();
    metrics::counter!("gateway_sync_runs_total", "sync" => sync.clone(), "outcome" => record.outcome.as_str())
        .increment(1);
    metrics::counter!("gateway_sync_files_copied_total", "sync" => sync.clone())
        .increment(record.counts.copied);
    metrics::counter!("gateway_sync_bytes_copied_total", "sync" => sync.clone())
        .increment(record.counts.bytes);
    metrics::counter!("gateway_sync_files_failed_total", "sync" => sync.clone())
        .increment(record.counts.failed);
    if record.outcome == Outcome::Succeeded {
        let end = record.ended_ms.unwrap_or(record.started_ms);
        metrics::gauge!("gateway_sync_last_success_timestamp_seconds", "sync" => sync)
            .set(end as f64 / 1000.0);
    }
}
