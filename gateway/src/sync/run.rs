//! One run of a sync: list both sides, plan, copy (verified), delete the
//! sources of verified copies when asked, tidy emptied folders, write the
//! trigger file, and keep the run's record.
//!
//! What keeps files safe when the process dies at any instant: copies are
//! published whole or not at all ([`super::copy`]), a source is deleted
//! only after its copy was verified, and a run never deletes at the
//! destination. A file that was copied but whose source was not yet
//! deleted is found again by the next run, confirmed identical and then
//! deleted ([`Action::ConfirmAndRemove`]), so re-running converges.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use backends::{Backend, BackendError, ErrorKind, HashKind, StoragePath, WriteMode};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use super::copy::{copy_file, CopyOutcome, CopyRequest};
use super::plan::{self, Direction, FileState, HoldReason, PlanSettings, Side, Step};
use super::records::{
    millis, Counts, Outcome, RecordError, Records, RunError, RunRecord, Trigger, KEPT_ERRORS,
};
use super::settings::{AfterCopy, SyncDirection, SyncSettings};
use super::walk::{join, walk, Snapshot, WalkOptions};
use crate::state::StateStore;

/// How often a run saves its counts while it goes.
const PROGRESS_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// The shortest time between two saves of a run's progress: a file done
/// is saved within about this long.
const PROGRESS_SAVE_GAP: std::time::Duration = std::time::Duration::from_millis(200);

/// The two storages a sync runs between.
#[derive(Clone)]
pub struct SyncSides {
    /// The gateway's own storage.
    pub gateway: Arc<dyn Backend>,
    /// The remote's backend (in `serve`, the one live sessions use, so
    /// the sync shares its connection pool).
    pub remote: Arc<dyn Backend>,
    /// The remote's folders exist only through what is in them (S3): a
    /// missing remote folder is an empty one, not a mistake in the config.
    pub remote_folders_are_virtual: bool,
}

/// What a run does, file by file, as decided before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy the file from `from` to the other side (then delete the
    /// source with `after_copy = delete`).
    Copy {
        /// The path relative to the sync's folders.
        path: String,
        /// The side it is copied from.
        from: Side,
        /// Its listed size and time.
        state: FileState,
    },
    /// The destination already has the file (a run that copied it was
    /// interrupted before deleting the source): confirm it is the same,
    /// then delete the source. If it is not the same, copy it first.
    ConfirmAndRemove {
        /// The path relative to the sync's folders.
        path: String,
        /// The source side.
        from: Side,
        /// The source as listed.
        source: FileState,
        /// The destination as listed.
        destination: FileState,
    },
    /// Left for a later run.
    Hold {
        /// The path relative to the sync's folders.
        path: String,
        /// Why.
        why: String,
    },
}

/// What a run reports as it goes (the CLI prints it; the scheduler logs
/// it).
#[derive(Debug, Clone)]
pub enum Event {
    /// The plan is made: this many copies and bytes.
    Planned {
        /// Files to copy.
        files: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// A planned action (a dry run prints each), or a file held back in a
    /// real run.
    Action(Action),
    /// A file was copied and verified.
    Copied {
        /// Its path.
        path: String,
        /// Where it came from.
        from: Side,
        /// Its size.
        bytes: u64,
    },
    /// A source file was deleted after its copy was verified.
    Deleted {
        /// Its path.
        path: String,
        /// The side it was deleted from.
        side: Side,
    },
    /// A file was left for a later run.
    Skipped {
        /// Its path.
        path: String,
        /// Why.
        why: String,
    },
    /// Bytes of a file being copied reached its destination (for progress
    /// only: a copy that is later discarded counted too).
    Transferred {
        /// How many more bytes.
        bytes: u64,
    },
    /// A file failed.
    Failed {
        /// Its path ("" for the run as a whole).
        path: String,
        /// The error.
        error: String,
    },
}

/// Receives a run's events.
pub trait Observer: Send + Sync {
    /// Called for each event, from the run's task.
    fn event(&self, event: &Event);
}

/// An observer that logs (the scheduler's).
pub struct LogObserver {
    /// The sync's name, for each line.
    pub sync: String,
}

impl Observer for LogObserver {
    fn event(&self, event: &Event) {
        let sync = self.sync.as_str();
        match event {
            Event::Copied { path, from, bytes } => {
                tracing::info!(sync, path = path.as_str(), bytes, "copied {}", arrow(*from))
            }
            Event::Deleted { path, side } => {
                tracing::info!(
                    sync,
                    path = path.as_str(),
                    "deleted from {}",
                    side_name(*side)
                )
            }
            Event::Skipped { path, why } => {
                tracing::info!(sync, path = path.as_str(), "skipped: {why}")
            }
            Event::Failed { path, error } => {
                tracing::warn!(sync, path = path.as_str(), "failed: {error}")
            }
            Event::Action(Action::Hold { path, why }) => {
                tracing::info!(sync, path = path.as_str(), "held: {why}")
            }
            Event::Planned { .. } | Event::Action(_) | Event::Transferred { .. } => {}
        }
    }
}

/// `push` for gateway → remote, `pull` for remote → gateway.
pub fn arrow(from: Side) -> &'static str {
    match from {
        Side::Gateway => "push",
        Side::Remote => "pull",
    }
}

/// `gateway` or `remote`.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Gateway => "gateway",
        Side::Remote => "remote",
    }
}

/// Errors that stop a run before it does anything.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The lock or the record store.
    #[error(transparent)]
    Records(#[from] RecordError),
}

/// Plans the run without changing anything: the actions a real run would
/// take now.
pub async fn dry_run(
    settings: &SyncSettings,
    sides: &SyncSides,
    observer: &dyn Observer,
) -> Result<Vec<Action>, BackendError> {
    let (actions, _) = prepare(settings, sides, false).await?;
    let (files, bytes) = copy_totals(&actions);
    observer.event(&Event::Planned { files, bytes });
    for a in &actions {
        observer.event(&Event::Action(a.clone()));
    }
    Ok(actions)
}

/// Runs a sync once and returns its record (also stored). When `stop`
/// turns true (shutdown, Ctrl-C) the run ends as at its time limit, and
/// its record says "interrupted".
/// `gateway_sync_running` of one sync: 1 from the start of a run until
/// the guard drops, however the run ends.
struct RunningGauge(metrics::Gauge);

impl RunningGauge {
    fn set(sync: &str) -> Self {
        let gauge = metrics::gauge!("gateway_sync_running", "sync" => sync.to_string());
        gauge.set(1.0);
        RunningGauge(gauge)
    }
}

impl Drop for RunningGauge {
    fn drop(&mut self) {
        self.0.set(0.0);
    }
}

pub async fn run(
    settings: &SyncSettings,
    sides: &SyncSides,
    store: &dyn StateStore,
    trigger: Trigger,
    observer: &dyn Observer,
    mut stop: watch::Receiver<bool>,
) -> Result<RunRecord, RunFailure> {
    let records = Records::new(store);
    let mut record = records.begin(&settings.name, trigger)?;
    let _running = RunningGauge::set(&settings.name);
    let state = RunState::default();
    let deadline = Instant::now() + settings.time_limit;
    let work = async {
        // Save the counts soon after each change (at most every
        // PROGRESS_SAVE_GAP) and every PROGRESS_SAVE_INTERVAL, so a run
        // that dies (a node killed) shows what it did up to its last
        // fraction of a second.
        let saves = async {
            let mut progress = record.clone();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PROGRESS_SAVE_INTERVAL) => {}
                    () = state.changed.notified() => {}
                }
                tokio::time::sleep(PROGRESS_SAVE_GAP).await;
                progress.counts = state.counts();
                progress.errors = state.errors();
                progress.current_file = state.current_file();
                progress.updated_ms = Some(millis(SystemTime::now()));
                if let Err(e) = records.update(&progress) {
                    tracing::warn!(
                        sync = settings.name.as_str(),
                        "cannot save the run's progress: {e}"
                    );
                }
            }
        };
        tokio::select! {
            r = execute(settings, sides, &state, observer) => r,
            () = saves => unreachable!("the progress loop never ends"),
        }
    };
    let stopped = async {
        if stop.wait_for(|s| *s).await.is_err() {
            // The sender is gone: nobody can ask for a stop any more.
            std::future::pending::<()>().await;
        }
    };
    let finished = tokio::select! {
        r = tokio::time::timeout_at(deadline.into(), work) => Some(r),
        () = stopped => None,
    };
    let outcome = match finished {
        None => Outcome::Interrupted,
        Some(Ok(Ok(()))) => {
            if state.counts().failed > 0 {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            }
        }
        Some(Ok(Err(e))) => {
            let error = e.to_string();
            observer.event(&Event::Failed {
                path: String::new(),
                error: error.clone(),
            });
            state.fail(String::new(), error);
            Outcome::Failed
        }
        Some(Err(_)) => Outcome::TimeLimit,
    };
    record.outcome = outcome;
    record.ended_ms = Some(millis(SystemTime::now()));
    record.counts = state.counts();
    record.errors = state.errors();
    if let Err(e) = records.finish(&record) {
        tracing::error!(
            sync = settings.name.as_str(),
            "cannot store the run's record: {e}"
        );
    }
    Ok(record)
}

/// Counts and errors shared by the run's parallel tasks.
#[derive(Default)]
struct RunState {
    inner: Mutex<(Counts, Vec<RunError>)>,
    /// Files being copied now, in the order they began.
    copying: Mutex<Vec<String>>,
    /// Told of every change, so the progress is saved soon after it.
    changed: tokio::sync::Notify,
}

impl RunState {
    fn update(&self, f: impl FnOnce(&mut Counts)) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g.0);
        self.changed.notify_one();
    }

    fn fail(&self, path: String, message: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.failed += 1;
        if g.1.len() < KEPT_ERRORS {
            g.1.push(RunError { path, message });
        }
        self.changed.notify_one();
    }

    /// Marks `path` as being copied until the guard is dropped.
    fn copying(&self, path: &str) -> Copying<'_> {
        self.copying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.to_string());
        self.changed.notify_one();
        Copying {
            state: self,
            path: path.to_string(),
        }
    }

    /// The oldest file still being copied.
    fn current_file(&self) -> Option<String> {
        self.copying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    }

    fn counts(&self) -> Counts {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    fn errors(&self) -> Vec<RunError> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}

fn direction(settings: &SyncSettings) -> Direction {
    match settings.direction {
        SyncDirection::Push => Direction::Push,
        SyncDirection::Pull => Direction::Pull,
        SyncDirection::TwoWay => Direction::TwoWay,
    }
}

/// The backend and top folder of one side.
fn side<'a>(
    settings: &'a SyncSettings,
    sides: &'a SyncSides,
    s: Side,
) -> (&'a dyn Backend, &'a StoragePath) {
    match s {
        Side::Gateway => (sides.gateway.as_ref(), &settings.folder),
        Side::Remote => (sides.remote.as_ref(), &settings.remote_path),
    }
}

/// Lists both sides and decides the actions. With `create`, a missing
/// destination folder is created (a real run); otherwise it counts as
/// empty.
async fn prepare(
    settings: &SyncSettings,
    sides: &SyncSides,
    create: bool,
) -> Result<(Vec<Action>, [Snapshot; 2]), BackendError> {
    let dir = direction(settings);
    let options = WalkOptions {
        skip_top_file: settings.trigger_file.as_deref(),
    };
    let mut trees = [Snapshot::default(), Snapshot::default()];
    for (i, s) in [Side::Gateway, Side::Remote].into_iter().enumerate() {
        let (backend, top) = side(settings, sides, s);
        // A missing source folder is an error (a typo in the config would
        // otherwise look like a quiet sync), except where folders are
        // virtual: an S3 prefix whose last file was pulled is gone.
        let is_source = match dir {
            Direction::Push => s == Side::Gateway,
            Direction::Pull => s == Side::Remote,
            Direction::TwoWay => false,
        } && !(s == Side::Remote && sides.remote_folders_are_virtual);
        trees[i] = match walk(backend, top, &settings.filter, options).await {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound && !is_source => {
                if create {
                    make_folders(backend, top).await?;
                }
                Snapshot::default()
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BackendError::new(
                    ErrorKind::NotFound,
                    "sync",
                    top.as_str(),
                    format!("the {} folder of the sync does not exist", side_name(s)),
                ))
            }
            Err(e) => return Err(e),
        };
    }
    let now = SystemTime::now();
    let steps = plan::plan(
        &trees[0].files,
        &trees[1].files,
        &PlanSettings {
            direction: dir,
            settle: settings.settle,
            now,
        },
    );
    let mut actions = Vec::new();
    let mut planned: HashSet<String> = HashSet::new();
    for step in steps {
        match step {
            Step::Copy { path, from, .. } => {
                let listing = if from == Side::Gateway {
                    &trees[0]
                } else {
                    &trees[1]
                };
                if let Some(state) = listing.files.get(&path) {
                    planned.insert(path.clone());
                    actions.push(Action::Copy {
                        path,
                        from,
                        state: *state,
                    });
                }
            }
            Step::Hold { path, reason } => {
                planned.insert(path.clone());
                actions.push(Action::Hold {
                    path,
                    why: match reason {
                        HoldReason::Settling => format!(
                            "modified less than {} ago",
                            humantime::format_duration(settings.settle)
                        ),
                        HoldReason::NoNewerSide => {
                            "different sizes and neither side is newer".to_string()
                        }
                    },
                });
            }
        }
    }
    // With `after_copy = delete`, a source already at the destination
    // (copied by a run that stopped before deleting it) is confirmed and
    // deleted.
    if settings.after_copy == AfterCopy::Delete && dir != Direction::TwoWay {
        let (from, source, destination) = match dir {
            Direction::Pull => (Side::Remote, &trees[1], &trees[0]),
            _ => (Side::Gateway, &trees[0], &trees[1]),
        };
        for (path, s) in &source.files {
            if planned.contains(path) {
                continue;
            }
            let Some(d) = destination.files.get(path) else {
                continue;
            };
            let fresh = s.modified.is_some_and(|m| {
                now.duration_since(m)
                    .map_or(true, |age| age < settings.settle)
            });
            actions.push(if fresh {
                Action::Hold {
                    path: path.clone(),
                    why: format!(
                        "modified less than {} ago",
                        humantime::format_duration(settings.settle)
                    ),
                }
            } else {
                Action::ConfirmAndRemove {
                    path: path.clone(),
                    from,
                    source: *s,
                    destination: *d,
                }
            });
        }
        actions.sort_by(|a, b| action_path(a).cmp(action_path(b)));
    }
    Ok((actions, trees))
}

fn action_path(a: &Action) -> &str {
    match a {
        Action::Copy { path, .. }
        | Action::ConfirmAndRemove { path, .. }
        | Action::Hold { path, .. } => path,
    }
}

fn copy_totals(actions: &[Action]) -> (u64, u64) {
    actions.iter().fold((0, 0), |(n, b), a| match a {
        Action::Copy { state, .. } => (n + 1, b + state.size),
        _ => (n, b),
    })
}

async fn execute(
    settings: &SyncSettings,
    sides: &SyncSides,
    state: &RunState,
    observer: &dyn Observer,
) -> Result<(), BackendError> {
    let (actions, trees) = prepare(settings, sides, true).await?;
    let (files, bytes) = copy_totals(&actions);
    observer.event(&Event::Planned { files, bytes });
    let known_folders = KnownFolders::new(settings, &trees);
    let delete = settings.after_copy == AfterCopy::Delete;
    futures::stream::iter(actions)
        .for_each_concurrent(settings.parallel, |action| {
            let known = &known_folders;
            async move {
                match action {
                    hold @ Action::Hold { .. } => {
                        state.update(|c| c.skipped += 1);
                        observer.event(&Event::Action(hold));
                    }
                    Action::Copy {
                        path,
                        from,
                        state: listed,
                    } => {
                        let copied =
                            copy_one(settings, sides, known, &path, from, listed, state, observer)
                                .await;
                        if let (true, Some(source)) = (delete, copied) {
                            remove_source(settings, sides, &path, from, source, state, observer)
                                .await;
                        }
                    }
                    Action::ConfirmAndRemove {
                        path,
                        from,
                        source,
                        destination,
                    } => {
                        let same =
                            match confirm_same(settings, sides, &path, from, source, destination)
                                .await
                            {
                                Ok(same) => same,
                                Err(e) => {
                                    fail(state, observer, &path, e.to_string());
                                    return;
                                }
                            };
                        let confirmed = if let Some(baseline) = same {
                            Some(baseline)
                        } else {
                            copy_one(settings, sides, known, &path, from, source, state, observer)
                                .await
                        };
                        if let Some(source) = confirmed {
                            remove_source(settings, sides, &path, from, source, state, observer)
                                .await;
                        }
                    }
                }
            }
        })
        .await;
    let counts = state.counts();
    if delete && settings.delete_empty_folders && counts.deleted > 0 {
        let from = if direction(settings) == Direction::Pull {
            Side::Remote
        } else {
            Side::Gateway
        };
        let tree = if from == Side::Gateway {
            &trees[0]
        } else {
            &trees[1]
        };
        remove_empty_folders(settings, sides, from, tree).await;
    }
    if counts.failed == 0 && counts.copied > 0 {
        if let Some(name) = &settings.trigger_file {
            write_trigger(settings, sides, name, &counts, state, observer).await;
        }
    }
    Ok(())
}

fn fail(state: &RunState, observer: &dyn Observer, path: &str, error: String) {
    observer.event(&Event::Failed {
        path: path.to_string(),
        error: error.clone(),
    });
    state.fail(path.to_string(), error);
}

/// A file of [`RunState::copying`], forgotten on drop.
struct Copying<'a> {
    state: &'a RunState,
    path: String,
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        let mut copying = self.state.copying.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = copying.iter().position(|p| *p == self.path) {
            copying.remove(i);
        }
    }
}

/// Copies one file; returns the source's state as copied when the copy is
/// verified (what a later delete must still find).
#[allow(clippy::too_many_arguments)]
async fn copy_one(
    settings: &SyncSettings,
    sides: &SyncSides,
    known: &KnownFolders,
    path: &str,
    from: Side,
    listed: FileState,
    state: &RunState,
    observer: &dyn Observer,
) -> Option<FileState> {
    let (src, src_top) = side(settings, sides, from);
    let (dst, dst_top) = side(settings, sides, from.other());
    let _copying = state.copying(path);
    let result = async {
        let from_path = join(src_top, path)?;
        let to_path = join(dst_top, path)?;
        if let Some(parent) = to_path.parent() {
            known.ensure(dst, from.other(), &parent).await?;
        }
        let progress = |bytes| observer.event(&Event::Transferred { bytes });
        copy_file(&CopyRequest {
            from: src,
            from_path: &from_path,
            to: dst,
            to_path: &to_path,
            planned_size: listed.size,
            modified: listed.modified,
            progress: Some(&progress),
        })
        .await
    }
    .await;
    match result {
        Ok(CopyOutcome::Copied { bytes, source, .. }) => {
            state.update(|c| {
                c.copied += 1;
                c.bytes += bytes;
            });
            observer.event(&Event::Copied {
                path: path.to_string(),
                from,
                bytes,
            });
            Some(FileState {
                size: source.size,
                modified: source.modified,
            })
        }
        Ok(CopyOutcome::SourceVanished) => {
            state.update(|c| c.vanished += 1);
            observer.event(&Event::Skipped {
                path: path.to_string(),
                why: "vanished since it was listed (renamed or removed by its writer); nothing to copy"
                    .to_string(),
            });
            None
        }
        Ok(CopyOutcome::SourceChanged(why)) => {
            state.update(|c| c.skipped += 1);
            observer.event(&Event::Skipped {
                path: path.to_string(),
                why: format!("changed during the run ({why}); left for the next run"),
            });
            None
        }
        Err(e) => {
            fail(state, observer, path, e.to_string());
            None
        }
    }
}

/// Whether the destination's file is the source's: the same checksum
/// where both sides give one, else the same size and second. When it is,
/// returns the source as stat shows it now (what the delete must still
/// find).
async fn confirm_same(
    settings: &SyncSettings,
    sides: &SyncSides,
    path: &str,
    from: Side,
    source: FileState,
    destination: FileState,
) -> Result<Option<FileState>, BackendError> {
    if source.size != destination.size {
        return Ok(None);
    }
    let (src, src_top) = side(settings, sides, from);
    let (dst, dst_top) = side(settings, sides, from.other());
    let (from_path, to_path) = (join(src_top, path)?, join(dst_top, path)?);
    let now = src.stat(&from_path).await?;
    let baseline = FileState {
        size: now.size,
        modified: now.modified,
    };
    if now.size != source.size {
        return Ok(None);
    }
    for kind in HashKind::ALL {
        let Some(theirs) = dst.checksum(&to_path, kind).await? else {
            continue;
        };
        let Some(ours) = src.checksum(&from_path, kind).await? else {
            continue;
        };
        return Ok(theirs.eq_ignore_ascii_case(&ours).then_some(baseline));
    }
    let same_second = second(source.modified).is_some()
        && second(source.modified) == second(destination.modified);
    Ok(same_second.then_some(baseline))
}

/// Deletes a source whose copy was verified, unless it changed since.
async fn remove_source(
    settings: &SyncSettings,
    sides: &SyncSides,
    path: &str,
    from: Side,
    copied: FileState,
    state: &RunState,
    observer: &dyn Observer,
) {
    let (src, top) = side(settings, sides, from);
    let result = async {
        let p = join(top, path)?;
        let now = src.stat(&p).await?;
        if now.size != copied.size || second(now.modified) != second(copied.modified) {
            return Ok(false);
        }
        src.remove(&p).await.map(|()| true)
    }
    .await;
    match result {
        Ok(true) => {
            state.update(|c| c.deleted += 1);
            observer.event(&Event::Deleted {
                path: path.to_string(),
                side: from,
            });
        }
        Ok(false) => {
            state.update(|c| c.skipped += 1);
            observer.event(&Event::Skipped {
                path: path.to_string(),
                why: "changed after it was copied; kept for the next run".to_string(),
            });
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => fail(
            state,
            observer,
            path,
            format!("copied, but the source could not be deleted: {e}"),
        ),
    }
}

fn second(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// Removes the source side's folders that are empty now, deepest first.
async fn remove_empty_folders(
    settings: &SyncSettings,
    sides: &SyncSides,
    from: Side,
    tree: &Snapshot,
) {
    let (backend, top) = side(settings, sides, from);
    let mut folders: Vec<&String> = tree.folders.iter().collect();
    folders.sort_by_key(|f| std::cmp::Reverse(f.matches('/').count()));
    for folder in folders {
        let Ok(p) = join(top, folder) else { continue };
        match backend.rmdir(&p).await {
            Ok(()) => tracing::info!(
                sync = settings.name.as_str(),
                folder = folder.as_str(),
                "removed an empty folder"
            ),
            Err(e) if matches!(e.kind(), ErrorKind::DirectoryNotEmpty | ErrorKind::NotFound) => {}
            Err(e) => tracing::warn!(
                sync = settings.name.as_str(),
                folder = folder.as_str(),
                "cannot remove an emptied folder: {e}"
            ),
        }
    }
}

/// Writes the trigger file on each side that received files.
async fn write_trigger(
    settings: &SyncSettings,
    sides: &SyncSides,
    name: &str,
    counts: &Counts,
    state: &RunState,
    observer: &dyn Observer,
) {
    let targets: &[Side] = match direction(settings) {
        Direction::Push => &[Side::Remote],
        Direction::Pull => &[Side::Gateway],
        Direction::TwoWay => &[Side::Remote, Side::Gateway],
    };
    let text = format!(
        "sync {} finished at {}: {} file(s), {} byte(s) copied\n",
        settings.name,
        humantime::format_rfc3339_seconds(SystemTime::now()),
        counts.copied,
        counts.bytes
    );
    for &s in targets {
        let (backend, top) = side(settings, sides, s);
        let result = async {
            let p = join(top, name)?;
            let mut w = backend
                .open_write(&p, WriteMode::Replace { exclusive: false })
                .await?;
            w.write(Bytes::from(text.clone())).await?;
            w.close().await
        }
        .await;
        if let Err(e) = result {
            fail(
                state,
                observer,
                name,
                format!("cannot write the trigger file: {e}"),
            );
        }
    }
}

/// Folders known to exist at each side's top, so a copy creates a missing
/// parent once.
struct KnownFolders {
    known: Mutex<[HashSet<String>; 2]>,
}

impl KnownFolders {
    fn new(settings: &SyncSettings, trees: &[Snapshot; 2]) -> Self {
        let set = |top: &StoragePath, t: &Snapshot| {
            let mut set: HashSet<String> = t
                .folders
                .iter()
                .filter_map(|rel| join(top, rel).ok())
                .map(|p| p.as_str().to_string())
                .collect();
            set.insert(top.as_str().to_string());
            set
        };
        KnownFolders {
            known: Mutex::new([
                set(&settings.folder, &trees[0]),
                set(&settings.remote_path, &trees[1]),
            ]),
        }
    }

    /// Makes sure `folder` (a full path on that side) exists.
    async fn ensure(
        &self,
        backend: &dyn Backend,
        s: Side,
        folder: &StoragePath,
    ) -> Result<(), BackendError> {
        let i = if s == Side::Gateway { 0 } else { 1 };
        let key = folder.as_str().to_string();
        if self.known.lock().unwrap_or_else(|p| p.into_inner())[i].contains(&key) {
            return Ok(());
        }
        make_folders(backend, folder).await?;
        self.known.lock().unwrap_or_else(|p| p.into_inner())[i].insert(key);
        Ok(())
    }
}

/// `mkdir -p`.
async fn make_folders(backend: &dyn Backend, folder: &StoragePath) -> Result<(), BackendError> {
    let mut path = StoragePath::root();
    for name in folder.names().map(str::to_string).collect::<Vec<_>>() {
        path = path.child(&name).map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidPath,
                "mkdir",
                folder.as_str(),
                e.to_string(),
            )
        })?;
        match backend.mkdir(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                // Some servers refuse mkdir of an existing folder with a
                // generic error: accept it if the folder is there.
                match backend.stat(&path).await {
                    Ok(m) if m.is_dir() => {}
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RedbStore;
    use crate::sync::filter::PathFilter;
    use crate::sync::schedule::Schedule;
    use backends::LocalBackend;
    use std::path::Path;
    use std::time::Duration;

    /// Collects events for assertions.
    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl Observer for Collect {
        fn event(&self, event: &Event) {
            let line = match event {
                Event::Copied { path, from, .. } => format!("copied {} {path}", arrow(*from)),
                Event::Deleted { path, side } => format!("deleted {} {path}", side_name(*side)),
                Event::Skipped { path, .. } => format!("skipped {path}"),
                Event::Failed { path, error } => format!("failed {path}: {error}"),
                Event::Action(Action::Hold { path, .. }) => format!("held {path}"),
                Event::Action(Action::Copy { path, from, .. }) => {
                    format!("would copy {} {path}", arrow(*from))
                }
                Event::Action(Action::ConfirmAndRemove { path, from, .. }) => {
                    format!("would delete {} {path}", side_name(*from))
                }
                Event::Planned { .. } | Event::Transferred { .. } => return,
            };
            self.0.lock().unwrap().push(line);
        }
    }

    impl Collect {
        fn take(&self) -> Vec<String> {
            let mut v = std::mem::take(&mut *self.0.lock().unwrap());
            v.sort();
            v
        }
    }

    struct Fixture {
        _dirs: [tempfile::TempDir; 3],
        gateway: std::path::PathBuf,
        remote: std::path::PathBuf,
        sides: SyncSides,
        store: RedbStore,
    }

    fn fixture() -> Fixture {
        let dirs = [
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        ];
        let gateway = dirs[0].path().to_path_buf();
        let remote = dirs[1].path().to_path_buf();
        let sides = SyncSides {
            gateway: Arc::new(LocalBackend::open(&gateway).unwrap()),
            remote: Arc::new(LocalBackend::open(&remote).unwrap()),
            remote_folders_are_virtual: false,
        };
        let store = RedbStore::open(dirs[2].path()).unwrap();
        Fixture {
            _dirs: dirs,
            gateway,
            remote,
            sides,
            store,
        }
    }

    fn settings(direction: SyncDirection, after_copy: AfterCopy) -> SyncSettings {
        SyncSettings {
            name: "t".into(),
            folder: StoragePath::parse("out").unwrap(),
            remote: "r".into(),
            remote_path: StoragePath::parse("in/box").unwrap(),
            direction,
            after_copy,
            schedule: Schedule::Manual,
            filter: PathFilter::default(),
            settle: Duration::ZERO,
            time_limit: Duration::from_secs(60),
            parallel: 3,
            delete_empty_folders: true,
            trigger_file: Some("DONE".into()),
        }
    }

    fn write(path: &Path, content: &str, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    async fn run_once(f: &Fixture, s: &SyncSettings, seen: &Collect) -> RunRecord {
        let (_tx, rx) = watch::channel(false);
        // Run ids are per millisecond.
        tokio::time::sleep(Duration::from_millis(2)).await;
        run(s, &f.sides, &f.store, Trigger::Manual, seen, rx)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn push_with_delete_moves_everything_and_a_dry_run_said_so() {
        let f = fixture();
        write(&f.gateway.join("out/a b.txt"), "alpha", 100);
        write(&f.gateway.join("out/sub/ü/é.txt"), "nested", 100);
        write(&f.gateway.join("out/empty"), "", 100);
        let s = settings(SyncDirection::Push, AfterCopy::Delete);
        let seen = Collect::default();
        dry_run(&s, &f.sides, &seen).await.unwrap();
        let planned = seen.take();
        assert_eq!(
            planned,
            vec![
                "would copy push a b.txt",
                "would copy push empty",
                "would copy push sub/ü/é.txt"
            ]
        );
        let record = run_once(&f, &s, &seen).await;
        assert_eq!(record.outcome, Outcome::Succeeded, "{:?}", record.errors);
        assert_eq!(
            seen.take(),
            vec![
                "copied push a b.txt",
                "copied push empty",
                "copied push sub/ü/é.txt",
                "deleted gateway a b.txt",
                "deleted gateway empty",
                "deleted gateway sub/ü/é.txt",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(f.remote.join("in/box/a b.txt")).unwrap(),
            "alpha"
        );
        assert_eq!(
            std::fs::read_to_string(f.remote.join("in/box/sub/ü/é.txt")).unwrap(),
            "nested"
        );
        assert!(std::fs::read_to_string(f.remote.join("in/box/DONE"))
            .unwrap()
            .contains("3 file(s)"));
        // The source folder is empty: files gone, emptied folders removed.
        assert_eq!(std::fs::read_dir(f.gateway.join("out")).unwrap().count(), 0);
        let again = run_once(&f, &s, &seen).await;
        assert_eq!((again.counts.copied, again.counts.deleted), (0, 0));
    }

    #[tokio::test]
    async fn a_source_copied_by_an_interrupted_run_is_confirmed_then_deleted() {
        let f = fixture();
        write(&f.gateway.join("out/x"), "same", 100);
        write(&f.gateway.join("out/y"), "differs", 100);
        // A previous run copied x (with its time) and died before deleting it;
        // y at the destination has the same size but other bytes.
        write(&f.remote.join("in/box/x"), "same", 100);
        write(&f.remote.join("in/box/y"), "DIFFERS", 50);
        let s = settings(SyncDirection::Push, AfterCopy::Delete);
        let seen = Collect::default();
        let record = run_once(&f, &s, &seen).await;
        assert_eq!(record.outcome, Outcome::Succeeded, "{:?}", record.errors);
        assert_eq!(
            seen.take(),
            vec!["copied push y", "deleted gateway x", "deleted gateway y"]
        );
        assert_eq!(
            std::fs::read_to_string(f.remote.join("in/box/y")).unwrap(),
            "differs"
        );
    }

    #[tokio::test]
    async fn pull_keeps_sources_and_two_way_takes_the_newer_side() {
        let f = fixture();
        write(&f.remote.join("in/box/r.txt"), "remote", 100);
        let s = settings(SyncDirection::Pull, AfterCopy::Keep);
        let seen = Collect::default();
        let record = run_once(&f, &s, &seen).await;
        assert_eq!(record.outcome, Outcome::Succeeded, "{:?}", record.errors);
        assert_eq!(
            std::fs::read_to_string(f.gateway.join("out/r.txt")).unwrap(),
            "remote"
        );
        assert!(f.remote.join("in/box/r.txt").exists());
        // The copy has the source's time: nothing to do the second time.
        seen.take();
        assert_eq!(run_once(&f, &s, &seen).await.counts.copied, 0);

        write(&f.gateway.join("out/newer-here"), "gateway wins", 10);
        write(&f.remote.join("in/box/newer-here"), "old", 1000);
        write(&f.gateway.join("out/newer-there"), "old", 1000);
        write(&f.remote.join("in/box/newer-there"), "remote wins", 10);
        write(&f.gateway.join("out/same-size"), "aaaa", 10);
        write(&f.remote.join("in/box/same-size"), "bbbb", 1000);
        let two_way = settings(SyncDirection::TwoWay, AfterCopy::Keep);
        seen.take();
        let record = run_once(&f, &two_way, &seen).await;
        assert_eq!(record.outcome, Outcome::Succeeded, "{:?}", record.errors);
        assert_eq!(
            seen.take(),
            vec!["copied pull newer-there", "copied push newer-here"]
        );
        assert_eq!(
            std::fs::read_to_string(f.remote.join("in/box/newer-here")).unwrap(),
            "gateway wins"
        );
        assert_eq!(
            std::fs::read_to_string(f.gateway.join("out/newer-there")).unwrap(),
            "remote wins"
        );
        assert_eq!(
            std::fs::read_to_string(f.gateway.join("out/same-size")).unwrap(),
            "aaaa"
        );
        assert_eq!(
            std::fs::read_to_string(f.remote.join("in/box/same-size")).unwrap(),
            "bbbb"
        );
        // The trigger file went to both sides and is never synced itself.
        assert!(f.gateway.join("out/DONE").exists() && f.remote.join("in/box/DONE").exists());
        assert_eq!(run_once(&f, &two_way, &seen).await.counts.copied, 0);
    }

    #[tokio::test]
    async fn fresh_files_are_held_and_a_missing_source_folder_fails_the_run() {
        let f = fixture();
        write(&f.gateway.join("out/fresh"), "x", 0);
        let mut s = settings(SyncDirection::Push, AfterCopy::Delete);
        s.settle = Duration::from_secs(60);
        let seen = Collect::default();
        let record = run_once(&f, &s, &seen).await;
        assert_eq!(seen.take(), vec!["held fresh"]);
        assert_eq!(record.counts.skipped, 1);
        assert!(f.gateway.join("out/fresh").exists());

        let mut missing = settings(SyncDirection::Pull, AfterCopy::Keep);
        missing.remote_path = StoragePath::parse("nowhere").unwrap();
        let record = run_once(&f, &missing, &seen).await;
        assert_eq!(record.outcome, Outcome::Failed);
        assert!(
            record.errors[0].message.contains("does not exist"),
            "{:?}",
            record.errors
        );
    }
}

/// Run records that add up: a source file renamed away by its writer
/// after the listing is vanished, not a failure; copies are in the stored
/// record while the run goes on and after it is stopped.
#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::state::RedbStore;
    use crate::sync::filter::PathFilter;
    use crate::sync::schedule::Schedule;
    use async_trait::async_trait;
    use backends::{
        Capabilities, FileReader, FileWriter, ListStream, LocalBackend, Metadata, RenameMode,
        StoragePath, WriteMode,
    };
    use std::time::Duration;

    /// The local backend as a source whose files live on: the first `stat`
    /// of a `.part` file renames it to its final name first (a writer
    /// finishing it), and reading `z-blocked.bin` never starts (a run
    /// copying it lasts until it is stopped).
    #[derive(Debug)]
    struct LivelySource {
        inner: LocalBackend,
        root: std::path::PathBuf,
    }

    #[async_trait]
    impl Backend for LivelySource {
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn stat(&self, path: &StoragePath) -> backends::Result<Metadata> {
            if let Some(done) = path.as_str().strip_suffix(".part") {
                let on_disk = self.root.join(path.as_str());
                if on_disk.exists() {
                    std::fs::rename(&on_disk, self.root.join(done)).expect("rename");
                }
            }
            self.inner.stat(path).await
        }
        async fn list(&self, path: &StoragePath) -> backends::Result<ListStream> {
            self.inner.list(path).await
        }
        async fn open_read(&self, path: &StoragePath) -> backends::Result<Box<dyn FileReader>> {
            if path.as_str().ends_with("z-blocked.bin") {
                std::future::pending::<()>().await;
            }
            self.inner.open_read(path).await
        }
        async fn open_write(
            &self,
            path: &StoragePath,
            mode: WriteMode,
        ) -> backends::Result<Box<dyn FileWriter>> {
            self.inner.open_write(path, mode).await
        }
        async fn mkdir(&self, path: &StoragePath) -> backends::Result<()> {
            self.inner.mkdir(path).await
        }
        async fn remove(&self, path: &StoragePath) -> backends::Result<()> {
            self.inner.remove(path).await
        }
        async fn rmdir(&self, path: &StoragePath) -> backends::Result<()> {
            self.inner.rmdir(path).await
        }
        async fn rename(
            &self,
            from: &StoragePath,
            to: &StoragePath,
            mode: RenameMode,
        ) -> backends::Result<()> {
            self.inner.rename(from, to, mode).await
        }
    }

    /// A push of `out/` from a [`LivelySource`] holding `files` to a local
    /// remote folder, one copy at a time.
    struct Rig {
        dirs: [tempfile::TempDir; 3],
        sides: SyncSides,
        store: RedbStore,
        settings: SyncSettings,
    }

    impl Rig {
        fn new(files: &[(&str, &str)]) -> Rig {
            let dirs = [
                tempfile::tempdir().unwrap(),
                tempfile::tempdir().unwrap(),
                tempfile::tempdir().unwrap(),
            ];
            let out = dirs[0].path().join("out");
            std::fs::create_dir_all(&out).unwrap();
            for (name, content) in files {
                std::fs::write(out.join(name), content).unwrap();
            }
            let sides = SyncSides {
                gateway: Arc::new(LivelySource {
                    inner: LocalBackend::open(dirs[0].path()).unwrap(),
                    root: dirs[0].path().to_path_buf(),
                }),
                remote: Arc::new(LocalBackend::open(dirs[1].path()).unwrap()),
                remote_folders_are_virtual: false,
            };
            let store = RedbStore::open(dirs[2].path()).unwrap();
            let settings = SyncSettings {
                name: "t".into(),
                folder: StoragePath::parse("out").unwrap(),
                remote: "r".into(),
                remote_path: StoragePath::parse("in").unwrap(),
                direction: SyncDirection::Push,
                after_copy: AfterCopy::Keep,
                schedule: Schedule::Manual,
                filter: PathFilter::default(),
                settle: Duration::ZERO,
                time_limit: Duration::from_secs(60),
                parallel: 1,
                delete_empty_folders: false,
                trigger_file: None,
            };
            Rig {
                dirs,
                sides,
                store,
                settings,
            }
        }

        fn remote(&self, name: &str) -> std::path::PathBuf {
            self.dirs[1].path().join("in").join(name)
        }

        async fn run(&self, stop: watch::Receiver<bool>) -> RunRecord {
            let (s, sides) = (&self.settings, &self.sides);
            run(s, sides, &self.store, Trigger::Manual, &NoObserver, stop)
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_file_renamed_away_after_the_listing_is_vanished_not_failed() {
        let rig = Rig::new(&[("a.bin", "a"), ("f7.bin.part", "seven")]);
        let (_tx, rx) = watch::channel(false);
        let record = rig.run(rx).await;
        assert_eq!(record.outcome, Outcome::Succeeded, "{:?}", record.errors);
        assert_eq!(
            (
                record.counts.copied,
                record.counts.vanished,
                record.counts.failed
            ),
            (1, 1, 0),
            "{:?}",
            record.counts
        );
        assert!(rig.remote("a.bin").exists());
        assert!(!rig.remote("f7.bin.part").exists());
        // The next run copies the finished file.
        let (_tx, rx) = watch::channel(false);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let again = rig.run(rx).await;
        assert_eq!((again.counts.copied, again.counts.vanished), (1, 0));
        assert_eq!(
            std::fs::read_to_string(rig.remote("f7.bin")).unwrap(),
            "seven"
        );
    }

    /// What a run did is in its stored record within a second of doing it
    /// (what a node killed mid-run leaves), and a stopped run records it.
    #[tokio::test]
    async fn a_run_records_its_copies_while_it_runs_and_when_stopped() {
        let rig = Rig::new(&[("a.bin", "aaaa"), ("z-blocked.bin", "zz")]);
        let (stop, rx) = watch::channel(false);
        let watch_store = async {
            let records = Records::new(&rig.store);
            let started = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let newest = records.history("t").unwrap().into_iter().next();
                if let Some(r) = newest.filter(|r| r.counts.copied == 1) {
                    assert_eq!(r.outcome, Outcome::Running);
                    assert_eq!(r.counts.bytes, 4);
                    // The copy still going shows as the current file.
                    assert_eq!(r.current_file.as_deref(), Some("z-blocked.bin"));
                    break started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the copy of a.bin is not in the stored record"
                );
            }
        };
        let (record, seen_after) = tokio::join!(rig.run(rx), async {
            let seen_after = watch_store.await;
            let _ = stop.send(true);
            seen_after
        });
        assert!(seen_after < Duration::from_secs(1), "{seen_after:?}");
        assert_eq!(record.outcome, Outcome::Interrupted);
        assert_eq!((record.counts.copied, record.counts.bytes), (1, 4));
        let stored = Records::new(&rig.store).history("t").unwrap();
        assert_eq!(stored[0].outcome, Outcome::Interrupted);
        assert_eq!(stored[0].counts.copied, 1);
        assert_eq!(stored[0].current_file, None, "an ended run copies nothing");
    }

    struct NoObserver;

    impl Observer for NoObserver {
        fn event(&self, _: &Event) {}
    }
}
