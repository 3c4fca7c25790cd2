//! What the gateway remembers about sync runs: one record per run (kept
//! in the state store, so `gateway sync history` works across restarts)
//! and one lock per sync, so at most one run of a sync happens at a time
//! whichever process (the server's scheduler or the CLI) starts it.
//!
//! A lock names the process holding it (pid and the kernel's start time of
//! that process, so a recycled pid is not mistaken for the holder). A lock
//! whose process is gone was left by a crash: the next run takes it over
//! and marks the run it belonged to as interrupted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, Table};

/// Runs kept per sync; older records are dropped when a run starts.
pub const KEPT_RUNS: usize = 200;

/// Error lines kept in one run record (the count is always exact).
pub const KEPT_ERRORS: usize = 1000;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `gateway sync run`.
    Manual,
    /// The scheduler inside `gateway serve`.
    Schedule,
}

impl Trigger {
    /// The word shown in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still going (or its process died: see [`RunRecord::shown_outcome`]).
    Running,
    /// Every planned file was handled without an error.
    Succeeded,
    /// At least one file failed, or the run could not start.
    Failed,
    /// The time limit stopped it; what was done is kept.
    TimeLimit,
    /// The process running it died (a crash, `kill -9`).
    Interrupted,
}

impl Outcome {
    /// The words shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimeLimit => "stopped at the time limit",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One file that failed in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The path relative to the sync's folder ("" for the run itself).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Files copied and verified.
    pub copied: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files left for a later run (settling, changed during the run).
    pub skipped: u64,
    /// Source files deleted after their copy was verified.
    pub deleted: u64,
    /// Files that failed.
    pub failed: u64,
    /// Listed files that were gone when their copy began (a writer's
    /// temporary file renamed or removed): nothing to copy, not a failure.
    #[serde(default)]
    pub vanished: u64,
}

/// One run of one sync, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `sync/start` key (unique per sync).
    pub id: String,
    /// The sync's name.
    pub sync: String,
    /// What started it.
    pub trigger: Trigger,
    /// Start, in milliseconds since the epoch.
    pub started_ms: u64,
    /// End, when it has ended.
    pub ended_ms: Option<u64>,
    /// When the counts were last saved during the run (a run that dies
    /// keeps the counts and time of its last save).
    #[serde(default)]
    pub updated_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The process that ran it.
    pub pid: u32,
    /// What it did.
    pub counts: Counts,
    /// The first [`KEPT_ERRORS`] errors.
    pub errors: Vec<RunError>,
    /// A file being copied at the last save, while the run goes on (the
    /// console shows it as the run's progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_file: Option<String>,
}

impl RunRecord {
    /// The outcome to show: a record still "running" whose process is
    /// gone was interrupted.
    pub fn shown_outcome(&self, lock: Option<&LockHolder>) -> Outcome {
        if self.outcome == Outcome::Running
            && !lock.is_some_and(|l| l.run_id == self.id && l.alive())
        {
            Outcome::Interrupted
        } else {
            self.outcome
        }
    }

    /// When it started.
    pub fn started(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_ms)
    }

    /// How long it took (up to its last save for a run that died; so far,
    /// roughly, for one still going).
    pub fn duration(&self) -> Duration {
        let end = self
            .ended_ms
            .or(self.updated_ms)
            .unwrap_or_else(|| millis(SystemTime::now()));
        Duration::from_millis(end.saturating_sub(self.started_ms))
    }
}

/// Who holds a sync's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The run it belongs to.
    pub run_id: String,
    /// The holding process.
    pub pid: u32,
    /// That process's start time in clock ticks since boot (guards
    /// against a recycled pid); `None` where `/proc` is unavailable.
    pub process_start: Option<u64>,
    /// The cluster node of the process, with a shared state store
    /// (`None`: the embedded store, one machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether another node's heartbeat says it is alive, as found by
    /// [`Records::holder`] (its process cannot be looked for here).
    #[serde(skip)]
    pub node_alive: Option<bool>,
}

impl LockHolder {
    fn for_this_process(run_id: String, node: Option<String>) -> Self {
        let pid = std::process::id();
        LockHolder {
            run_id,
            pid,
            process_start: process_start(pid),
            node,
            node_alive: None,
        }
    }

    /// Whether the holding process still runs (on another node: whether
    /// that node's heartbeat is recent).
    pub fn alive(&self) -> bool {
        if let Some(alive) = self.node_alive {
            return alive;
        }
        match process_start(self.pid) {
            Some(now) => self.process_start.is_none_or(|then| then == now),
            None => pid_exists(self.pid),
        }
    }
}

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Another run of the sync is in progress.
    #[error("sync {sync} is already running (pid {pid}{}, run {run_id})", node.as_deref().map(|n| format!(" on node {n}")).unwrap_or_default())]
    AlreadyRunning {
        /// The sync.
        sync: String,
        /// The process running it.
        pid: u32,
        /// Its cluster node, with a shared store.
        node: Option<String>,
        /// Its run.
        run_id: String,
    },
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt {
        table,
        message: e.to_string(),
    }
}

fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| corrupt(table, e))
}

/// Milliseconds since the epoch.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sync runs in the state store.
pub struct Records<'a> {
    store: &'a dyn StateStore,
}

impl<'a> Records<'a> {
    /// Records kept in `store`.
    pub fn new(store: &'a dyn StateStore) -> Self {
        Records { store }
    }

    /// Takes the lock of `sync` and stores a new "running" record; a lock
    /// left by a dead process is taken over and its run marked
    /// interrupted.
    pub fn begin(&self, sync: &str, trigger: Trigger) -> Result<RunRecord, RecordError> {
        let now = SystemTime::now();
        let record = RunRecord {
            id: format!("{sync}/{:016}", millis(now)),
            sync: sync.to_string(),
            trigger,
            started_ms: millis(now),
            ended_ms: None,
            updated_ms: None,
            outcome: Outcome::Running,
            pid: std::process::id(),
            counts: Counts::default(),
            errors: Vec::new(),
            current_file: None,
        };
        let holder =
            LockHolder::for_this_process(record.id.clone(), self.store.node_id().map(String::from));
        let value = encode("sync_locks", &holder)?;
        // The record goes first: a process killed right after taking the
        // lock still leaves a run that shows as interrupted.
        self.save(&record)?;
        let lost = |e: RecordError| {
            let _ = self.store.delete(Table::SyncRuns, &record.id);
            e
        };
        for _ in 0..3 {
            if self.store.put_if_absent(Table::SyncLocks, sync, &value)? {
                self.prune(sync)?;
                return Ok(record);
            }
            match self.holder(sync)? {
                Some(h) if h.alive() => {
                    return Err(lost(RecordError::AlreadyRunning {
                        sync: sync.to_string(),
                        pid: h.pid,
                        node: h.node,
                        run_id: h.run_id,
                    }))
                }
                Some(stale) => {
                    self.mark_interrupted(&stale)?;
                    self.store.delete(Table::SyncLocks, sync)?;
                }
                None => {}
            }
        }
        // Three lost races in a row: someone else keeps winning.
        Err(lost(match self.holder(sync)? {
            Some(h) => RecordError::AlreadyRunning {
                sync: sync.to_string(),
                pid: h.pid,
                node: h.node,
                run_id: h.run_id,
            },
            None => RecordError::State(corrupt("sync_locks", "the lock could not be taken")),
        }))
    }

    /// Saves a running record's progress.
    pub fn update(&self, record: &RunRecord) -> Result<(), StateError> {
        self.save(record)
    }

    /// Stores the final record and releases the lock.
    pub fn finish(&self, record: &RunRecord) -> Result<(), StateError> {
        self.save(record)?;
        if self
            .holder(&record.sync)?
            .is_some_and(|h| h.run_id == record.id)
        {
            self.store.delete(Table::SyncLocks, &record.sync)?;
        }
        Ok(())
    }

    /// Claims the scheduled run of `sync` that follows `last` (its newest
    /// run, if any): true for exactly one node of a cluster, the one that
    /// should start it, so a scheduled run happens once however many
    /// nodes schedule it. A claim of this node (an earlier attempt) or of
    /// a node whose heartbeat stopped is taken over.
    pub fn claim_next(&self, sync: &str, last: Option<&RunRecord>) -> Result<bool, StateError> {
        let key = format!("{sync}/after/{}", last.map_or("none", |r| r.id.as_str()));
        let me = self
            .store
            .node_id()
            .map_or_else(|| format!("pid {}", std::process::id()), String::from);
        for _ in 0..2 {
            if self
                .store
                .put_if_absent(Table::SyncClaims, &key, me.as_bytes())?
            {
                self.forget_claims(sync, &key)?;
                return Ok(true);
            }
            let Some(holder) = self.store.get(Table::SyncClaims, &key)? else {
                continue;
            };
            let holder = String::from_utf8_lossy(&holder).into_owned();
            if holder == me {
                return Ok(true);
            }
            if self.store.node_alive(&holder)? == Some(false) {
                self.store.put(Table::SyncClaims, &key, me.as_bytes())?;
                return Ok(true);
            }
            return Ok(false);
        }
        Ok(false)
    }

    /// Removes the claims of `sync` other than `keep` (older runs').
    fn forget_claims(&self, sync: &str, keep: &str) -> Result<(), StateError> {
        let prefix = format!("{sync}/after/");
        for (key, _) in self.store.list(Table::SyncClaims)? {
            if key.starts_with(&prefix) && key != keep {
                self.store.delete(Table::SyncClaims, &key)?;
            }
        }
        Ok(())
    }

    /// Who holds the lock of `sync`, if anyone; for a holder on another
    /// node, whether that node is alive is asked of the store.
    pub fn holder(&self, sync: &str) -> Result<Option<LockHolder>, StateError> {
        let Some(v) = self.store.get(Table::SyncLocks, sync)? else {
            return Ok(None);
        };
        let mut holder: LockHolder =
            serde_json::from_slice(&v).map_err(|e| corrupt("sync_locks", e))?;
        if let Some(node) = &holder.node {
            if self.store.node_id() != Some(node.as_str()) {
                holder.node_alive = self.store.node_alive(node)?;
            }
        }
        Ok(Some(holder))
    }

    /// The runs of `sync`, newest first.
    pub fn history(&self, sync: &str) -> Result<Vec<RunRecord>, StateError> {
        let prefix = format!("{sync}/");
        let mut runs = Vec::new();
        for (key, value) in self.store.list(Table::SyncRuns)? {
            if key.starts_with(&prefix) {
                runs.push(
                    serde_json::from_slice::<RunRecord>(&value)
                        .map_err(|e| corrupt("sync_runs", e))?,
                );
            }
        }
        runs.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(runs)
    }

    fn save(&self, record: &RunRecord) -> Result<(), StateError> {
        self.store
            .put(Table::SyncRuns, &record.id, &encode("sync_runs", record)?)
    }

    /// Marks the run of a dead lock holder interrupted, saying why when
    /// its node stopped (a cluster).
    fn mark_interrupted(&self, holder: &LockHolder) -> Result<(), StateError> {
        let Some(v) = self.store.get(Table::SyncRuns, &holder.run_id)? else {
            return Ok(());
        };
        let mut record: RunRecord =
            serde_json::from_slice(&v).map_err(|e| corrupt("sync_runs", e))?;
        if record.outcome == Outcome::Running {
            record.outcome = Outcome::Interrupted;
            if let Some(node) = &holder.node {
                let by = self
                    .store
                    .node_id()
                    .map(|me| format!("; taken over by node {me}"))
                    .unwrap_or_default();
                record.errors.push(RunError {
                    path: String::new(),
                    message: format!("node {node} stopped while running it (no heartbeat){by}"),
                });
            }
            self.save(&record)?;
        }
        Ok(())
    }

    fn prune(&self, sync: &str) -> Result<(), StateError> {
        for old in self.history(sync)?.iter().skip(KEPT_RUNS) {
            self.store.delete(Table::SyncRuns, &old.id)?;
        }
        Ok(())
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start behind its last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn pid_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0 only checks that the process exists; EPERM: it does, as
    // another user's.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RedbStore;

    #[test]
    fn one_run_at_a_time_and_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = RedbStore::open(dir.path()).unwrap();
            let records = Records::new(&store);
            let mut run = records.begin("s", Trigger::Manual).unwrap();
            assert!(matches!(
                records.begin("s", Trigger::Schedule),
                Err(RecordError::AlreadyRunning { .. })
            ));
            // Another sync is independent.
            let other = records.begin("t", Trigger::Manual).unwrap();
            records.finish(&other).unwrap();
            run.outcome = Outcome::Succeeded;
            run.counts.copied = 3;
            run.ended_ms = Some(run.started_ms + 5);
            records.finish(&run).unwrap();
            run.id
        };
        let store = RedbStore::open(dir.path()).unwrap();
        let records = Records::new(&store);
        let history = records.history("s").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, id);
        assert_eq!(history[0].counts.copied, 3);
        assert!(records.holder("s").unwrap().is_none());
        std::thread::sleep(Duration::from_millis(2));
        records.begin("s", Trigger::Manual).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over_and_its_run_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let records = Records::new(&store);
        let crashed = records.begin("s", Trigger::Schedule).unwrap();
        // Pretend the holder was another process that has since died.
        let dead = LockHolder {
            run_id: crashed.id.clone(),
            pid: u32::MAX - 1,
            process_start: Some(1),
            node: None,
            node_alive: None,
        };
        store
            .put(Table::SyncLocks, "s", &serde_json::to_vec(&dead).unwrap())
            .unwrap();
        assert_eq!(
            records.history("s").unwrap()[0].shown_outcome(Some(&dead)),
            Outcome::Interrupted
        );
        std::thread::sleep(Duration::from_millis(2));
        let next = records.begin("s", Trigger::Manual).unwrap();
        let history = records.history("s").unwrap();
        assert_eq!(history[0].id, next.id);
        assert_eq!(history[1].outcome, Outcome::Interrupted);
    }

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = LockHolder::for_this_process("x".into(), None);
        assert!(me.alive());
        let recycled = LockHolder {
            process_start: me.process_start.map(|s| s + 1),
            ..me
        };
        assert!(!recycled.alive());
    }
}
