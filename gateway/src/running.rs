//! A running gateway as operations see it: the live reload (SIGHUP or the
//! admin API) and the [`Control`] the admin API drives.
//!
//! A reload reads and validates the config file again; an invalid file is
//! refused with its problems and nothing changes. A valid one replaces the
//! live configuration at once for new decisions (logins, new sessions'
//! mounts, the next sync runs) without touching open sessions; a remote
//! whose connection settings are unchanged keeps its pool, whose new cap
//! applies at once (rising) or as connections come back (falling).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use backends::{Backend, LocalBackend};
use russh::keys::PrivateKey;
use tokio::sync::watch;

use crate::admin::control::{
    ClusterHealth, Control, ControlError, ReloadReport, RemoteStatus, RemoteTestReport, RunStarted,
    SessionStatus, SyncStatus, ThroughputReport, TrustReport,
};
use crate::admin::ApiKeys;
use crate::config::{self, ProtocolSettings, RemoteKind, Settings};
use crate::core::{Live, Shared};
use crate::remotes::{create_s3_mount_folders, host_keys, Remotes};
use crate::ssh;
use crate::state::{self, StateStore};
use crate::sync::records::{Records, RunRecord, Trigger};
use crate::sync::run::{self as sync_run, LogObserver, SyncSides};
use crate::sync::scheduler::{next_run, record_metrics, SyncTable};
use crate::telemetry::figures::Figures;
use crate::telemetry::throughput::Throughput;
use crate::telemetry::Exporter;

/// The handles of a running gateway that operations need.
pub struct Running {
    /// What every connection shares (the live config among it).
    pub shared: Arc<Shared>,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    host_keys: Vec<PrivateKey>,
    sync_storage: Arc<dyn Backend>,
    syncs: watch::Sender<SyncTable>,
    stop: watch::Receiver<bool>,
    /// The admin API's keys, replaced by a reload.
    pub api_keys: Arc<ApiKeys>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// The metrics read back for the admin API (`None`: no recorder).
    pub figures: Option<Exporter>,
    /// Bytes per second per remote over the last minutes.
    pub throughput: Arc<Throughput>,
}

/// The users that may log in: the file's, else those the gateway created
/// itself (the first-start `admin`).
pub fn users_of(settings: &Settings, store: &dyn StateStore) -> anyhow::Result<Vec<policy::User>> {
    if !settings.users.is_empty() {
        return Ok(settings.users.clone());
    }
    Ok(state::stored_users(store)?
        .into_iter()
        .map(|stored| policy::User {
            name: stored.name,
            password_hash: Some(stored.password_hash),
            authorized_keys: Vec::new(),
            home: stored.home,
            permissions: policy::PathPermissions::full(),
            allowed_networks: Vec::new(),
        })
        .collect())
}

/// The live configuration for `settings`.
pub fn live_config(
    settings: Arc<Settings>,
    remotes: Arc<Remotes>,
    host_keys: &[PrivateKey],
    store: &dyn StateStore,
) -> anyhow::Result<Live> {
    let users = users_of(&settings, store)?;
    Ok(Live {
        authenticator: Arc::new(policy::Authenticator::new(
            users,
            settings.allowed_networks.clone(),
        )),
        remotes,
        ssh_config: Arc::new(ssh::ssh_config(
            host_keys.to_vec(),
            settings.idle_timeout,
            settings.max_auth_attempts,
            &settings.ssh_algorithms,
        )),
        settings,
    })
}

/// The sync table for `settings`: each sync with the gateway's storage
/// and its remote's shared backend.
pub fn sync_table(settings: &Settings, remotes: &Remotes, storage: &Arc<dyn Backend>) -> SyncTable {
    let mut table = Vec::new();
    for sync in &settings.syncs {
        // Validation guarantees the remote exists.
        if let Some(remote) = remotes.get(&sync.remote) {
            table.push((
                sync.clone(),
                SyncSides {
                    gateway: storage.clone(),
                    remote: remote.backend.clone(),
                    remote_folders_are_virtual: remote.settings.kind() == RemoteKind::S3,
                },
            ));
        }
    }
    Arc::new(table)
}

impl Running {
    /// Handles over what `serve` started.
    pub fn new(
        shared: Arc<Shared>,
        store: Arc<dyn StateStore>,
        host_keys: Vec<PrivateKey>,
        sync_storage: Arc<dyn Backend>,
        syncs: watch::Sender<SyncTable>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let api_keys = Arc::new(ApiKeys::new(shared.live().settings.ops.api_keys.clone()));
        Running {
            shared,
            store,
            host_keys,
            sync_storage,
            syncs,
            stop,
            api_keys,
            reloading: tokio::sync::Mutex::new(()),
            figures: None,
            throughput: Arc::default(),
        }
    }

    /// The same, reading connect failures and bytes per remote from
    /// `exporter`'s metrics.
    pub fn with_figures(mut self, exporter: Option<Exporter>) -> Self {
        self.figures = exporter;
        self
    }

    /// The metrics now (empty without a recorder).
    fn read_figures(&self) -> Figures {
        self.figures
            .as_ref()
            .map(|e| Figures::parse(&e.render_counters()))
            .unwrap_or_default()
    }

    /// Reads the config file again and applies it (see the module docs).
    pub async fn reload(&self) -> Result<ReloadReport, ControlError> {
        let _one = self.reloading.lock().await;
        let old = self.shared.live();
        let source = old.settings.source.clone();
        let new = match source.as_deref() {
            Some(path) => config::load(Some(path)),
            None => {
                return Err(ControlError::Conflict(
                    "the gateway runs on its built-in defaults: there is no config file to reload"
                        .to_string(),
                ))
            }
        }
        .map_err(|e| ControlError::InvalidConfig(e.0.iter().map(|p| p.to_string()).collect()))?;
        let mut report = ReloadReport {
            source: source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..ReloadReport::default()
        };
        report.needs_restart = needs_restart(&old.settings, &new);
        let (remotes, remote_changes) = old
            .remotes
            .rebuild(&old.settings.dedicated_ips, &new, self.store.clone())
            .map_err(|e| ControlError::InvalidConfig(vec![format!("{e:#}")]))?;
        let remotes = Arc::new(remotes);
        let mut changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        changes.insert("remotes".into(), remote_changes);
        changes.insert(
            "users".into(),
            name_changes(
                old.settings.users.iter().map(|u| &u.name),
                new.users.iter().map(|u| &u.name),
            ),
        );
        changes.insert(
            "syncs".into(),
            name_changes(
                old.settings.syncs.iter().map(|s| &s.name),
                new.syncs.iter().map(|s| &s.name),
            ),
        );
        let mut limits = Vec::new();
        if old.settings.limits != new.limits {
            limits.push(format!("{:?} -> {:?}", old.settings.limits, new.limits));
        }
        if old.settings.idle_timeout != new.idle_timeout {
            limits.push(format!(
                "idle_timeout {} -> {} (new connections)",
                humantime::format_duration(old.settings.idle_timeout),
                humantime::format_duration(new.idle_timeout)
            ));
        }
        changes.insert("limits".into(), limits);
        changes.retain(|_, v| !v.is_empty());
        report.changes = changes;

        for warning in &new.warnings {
            tracing::warn!("{warning}");
        }
        let settings = Arc::new(new);
        let live = live_config(
            settings.clone(),
            remotes.clone(),
            &self.host_keys,
            self.store.as_ref(),
        )
        .map_err(|e| ControlError::Internal(format!("{e:#}")))?;
        create_s3_mount_folders(&remotes, &settings.mounts);
        let table = sync_table(&settings, &remotes, &self.sync_storage);
        self.api_keys.replace(settings.ops.api_keys.clone());
        self.shared.replace_live(live);
        self.syncs.send_replace(table);
        metrics::counter!("gateway_reloads_total", "outcome" => "applied").increment(1);
        tracing::info!(source = %report.source, "config reloaded: {:?}", report.changes);
        Ok(report)
    }

    fn find_remote(&self, name: &str) -> Result<Arc<Live>, ControlError> {
        let live = self.shared.live();
        if live.remotes.get(name).is_none() {
            return Err(ControlError::NotFound {
                what: "remote",
                name: name.to_string(),
            });
        }
        Ok(live)
    }
}

fn needs_restart(old: &Settings, new: &Settings) -> Vec<String> {
    let mut v = Vec::new();
    if old.listen != new.listen {
        v.push("server.listen".to_string());
    }
    if old.storage != new.storage {
        v.push("server.storage".to_string());
    }
    let database = |s: &Settings| s.state_database.as_ref().map(|d| d.shown().to_string());
    if old.state != new.state || database(old) != database(new) {
        v.push("server.state".to_string());
    }
    if old.log_format != new.log_format {
        v.push("server.log_format".to_string());
    }
    if old.throttle != new.throttle {
        v.push("login (max_failures, failure_window, ban_duration)".to_string());
    }
    if old.connection_rate != new.connection_rate {
        v.push(
            "login (connections_per_second_per_address, connection_burst_per_address)".to_string(),
        );
    }
    if old.ops.metrics_listen != new.ops.metrics_listen {
        v.push("metrics.listen".to_string());
    }
    if old.ops.admin_listen != new.ops.admin_listen || old.ops.admin_tls != new.ops.admin_tls {
        v.push("admin (listen, certificate, private_key)".to_string());
    }
    if old.s3_endpoint != new.s3_endpoint {
        v.push("s3 (listen, certificate, private_key)".to_string());
    }
    v
}

fn name_changes<'a>(
    old: impl Iterator<Item = &'a String>,
    new: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let old: std::collections::BTreeSet<&String> = old.collect();
    let new: std::collections::BTreeSet<&String> = new.collect();
    let mut v: Vec<String> = new
        .difference(&old)
        .map(|n| format!("{n}: added"))
        .collect();
    v.extend(old.difference(&new).map(|n| format!("{n}: removed")));
    v
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn internal(e: impl std::fmt::Display) -> ControlError {
    ControlError::Internal(e.to_string())
}

#[async_trait]
impl Control for Running {
    fn remotes(&self) -> Vec<RemoteStatus> {
        let live = self.shared.live();
        let figures = self.read_figures();
        let failures = figures.by_two(backends::metrics::CONNECT_FAILURES, "remote", "reason");
        let read = figures.by(backends::metrics::BYTES_READ, "remote");
        let written = figures.by(backends::metrics::BYTES_WRITTEN, "remote");
        live.remotes
            .all()
            .into_iter()
            .map(|r| {
                let s = &r.settings;
                let disabled = host_keys::disabled(self.store.as_ref(), &s.name)
                    .ok()
                    .flatten();
                let stats = r.access.pool_stats();
                let pinned = match &s.protocol {
                    ProtocolSettings::Sftp(sftp) => sftp.host_key.clone().or_else(|| {
                        host_keys::pinned(self.store.as_ref(), &s.name)
                            .ok()
                            .flatten()
                    }),
                    _ => None,
                };
                let address = match &s.protocol {
                    ProtocolSettings::S3(s3) => format!("{} bucket {}", s3.endpoint, s3.bucket),
                    _ => format!("{}:{}", s.host, s.port),
                };
                RemoteStatus {
                    name: s.name.clone(),
                    kind: format!("{:?}", s.kind()).to_lowercase(),
                    address,
                    state: if disabled.is_some() {
                        "disabled"
                    } else {
                        "enabled"
                    }
                    .to_string(),
                    presented_fingerprint: disabled.as_ref().map(|d| d.presented.clone()),
                    disabled_reason: disabled.map(|d| {
                        format!(
                            "host key mismatch: expected {}, presented {}",
                            d.expected, d.presented
                        )
                    }),
                    host_key_fingerprint: pinned.map(|k| certs::host_keys::fingerprint(&k)),
                    max_connections: s.max_connections,
                    connections_open: stats.open,
                    connections_in_use: stats.in_use,
                    connections_idle: stats.idle,
                    waiters: stats.waiting,
                    connect_failures: failures
                        .get(&s.name)
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v as u64)).collect())
                        .unwrap_or_default(),
                    bytes_read: read.get(&s.name).copied().unwrap_or(0.0) as u64,
                    bytes_written: written.get(&s.name).copied().unwrap_or(0.0) as u64,
                }
            })
            .collect()
    }

    async fn test_remote(&self, name: &str) -> Result<RemoteTestReport, ControlError> {
        let live = self.find_remote(name)?;
        crate::remotes::report::test_report(&live.settings, name, self.store.clone())
            .await
            .map_err(ControlError::from)
    }

    async fn trust_remote(&self, name: &str) -> Result<TrustReport, ControlError> {
        let live = self.find_remote(name)?;
        crate::remotes::report::trust_report(&live.settings, name, self.store.clone())
            .await
            .map_err(ControlError::from)
    }

    fn syncs(&self) -> Result<Vec<SyncStatus>, ControlError> {
        let live = self.shared.live();
        let records = Records::new(self.store.as_ref());
        let now = SystemTime::now();
        let mut out = Vec::new();
        for s in &live.settings.syncs {
            let history = records.history(&s.name).map_err(internal)?;
            let holder = records.holder(&s.name).map_err(internal)?;
            let last = history.into_iter().next();
            out.push(SyncStatus {
                name: s.name.clone(),
                direction: format!("{:?}", s.direction)
                    .to_lowercase()
                    .replace("twoway", "two_way"),
                remote: s.remote.clone(),
                folder: format!("/{}", s.folder.as_str()),
                remote_path: s.remote_path.as_str().to_string(),
                schedule: s.schedule.describe(),
                next_run: next_run(s, last.as_ref(), now).map(rfc3339),
                running: holder.as_ref().is_some_and(|h| h.alive()),
                last_run: last.map(|mut r| {
                    r.outcome = r.shown_outcome(holder.as_ref());
                    r
                }),
            });
        }
        Ok(out)
    }

    async fn run_sync(&self, name: &str) -> Result<RunStarted, ControlError> {
        let table = self.syncs.borrow().clone();
        let Some((settings, sides)) = table.iter().find(|(s, _)| s.name == name).cloned() else {
            return Err(ControlError::NotFound {
                what: "sync",
                name: name.to_string(),
            });
        };
        let records = Records::new(self.store.as_ref());
        if let Some(h) = records
            .holder(name)
            .map_err(internal)?
            .filter(|h| h.alive())
        {
            return Err(ControlError::Conflict(format!(
                "sync {name} is already running (pid {}, run {})",
                h.pid, h.run_id
            )));
        }
        let store = self.store.clone();
        let stop = self.stop.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let observer = LogObserver {
                sync: settings.name.clone(),
            };
            // The run id is known once the run has its record; report it
            // through a wrapper observer would be more code than this:
            // the record store names the newest run.
            let result = sync_run::run(
                &settings,
                &sides,
                store.as_ref(),
                Trigger::Manual,
                &Started {
                    inner: &observer,
                    started: std::sync::Mutex::new(Some(started_tx)),
                    store: store.as_ref(),
                    sync: &settings.name,
                },
                stop,
            )
            .await;
            match result {
                Ok(record) => record_metrics(&record),
                Err(e) => tracing::warn!(sync = settings.name.as_str(), "run could not start: {e}"),
            }
        });
        match started_rx.await {
            Ok(Ok(run_id)) => Ok(RunStarted { run_id }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ControlError::Conflict(format!(
                "sync {name} could not start (already running?)"
            ))),
        }
    }

    fn sync_history(&self, name: &str, limit: usize) -> Result<Vec<RunRecord>, ControlError> {
        let live = self.shared.live();
        if !live.settings.syncs.iter().any(|s| s.name == name) {
            return Err(ControlError::NotFound {
                what: "sync",
                name: name.to_string(),
            });
        }
        let records = Records::new(self.store.as_ref());
        let holder = records.holder(name).map_err(internal)?;
        Ok(records
            .history(name)
            .map_err(internal)?
            .into_iter()
            .take(limit)
            .map(|mut r| {
                r.outcome = r.shown_outcome(holder.as_ref());
                r
            })
            .collect())
    }

    fn sessions(&self) -> Vec<SessionStatus> {
        self.shared
            .sessions
            .list()
            .into_iter()
            .map(|s| {
                let activity = s.activity.snapshot();
                SessionStatus {
                    id: s.id,
                    authenticated: s.user.is_some(),
                    user: s.user.unwrap_or_default(),
                    address: s.peer.to_string(),
                    connected_at: rfc3339(s.since),
                    protocol: activity.protocol.to_string(),
                    bytes_in: activity.bytes_in,
                    bytes_out: activity.bytes_out,
                    activity: activity.doing,
                }
            })
            .collect()
    }

    fn throughput(&self) -> ThroughputReport {
        self.throughput.report()
    }

    async fn cluster(&self) -> Option<ClusterHealth> {
        let live = self.shared.live();
        let database = live.settings.state_database.as_ref()?;
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            crate::cluster::status::read(database),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".to_string()));
        Some(match read {
            Ok(status) => ClusterHealth {
                database: status.database,
                nodes: status.nodes,
                error: None,
            },
            Err(e) => ClusterHealth {
                database: database.shown().to_string(),
                nodes: Vec::new(),
                error: Some(e),
            },
        })
    }

    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        let result = Running::reload(self).await;
        if let Err(e) = &result {
            metrics::counter!("gateway_reloads_total", "outcome" => "refused").increment(1);
            tracing::warn!("reload refused: {e}");
        }
        result
    }
}

/// Passes events on and reports the run id once the run has begun (its
/// first event comes after its record is stored).
struct Started<'a> {
    inner: &'a LogObserver,
    started: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Result<String, ControlError>>>>,
    store: &'a dyn StateStore,
    sync: &'a str,
}

impl sync_run::Observer for Started<'_> {
    fn event(&self, event: &sync_run::Event) {
        let sender = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = sender {
            let id = Records::new(self.store)
                .holder(self.sync)
                .ok()
                .flatten()
                .map(|h| h.run_id)
                .unwrap_or_default();
            let _ = tx.send(Ok(id));
        }
        self.inner.event(event);
    }
}

/// Opens the gateway's storage for syncs (a second handle on the same
/// folder as the sessions').
pub fn sync_storage(settings: &Settings) -> anyhow::Result<Arc<dyn Backend>> {
    use anyhow::Context;
    Ok(Arc::new(
        LocalBackend::open(&settings.storage).with_context(|| {
            format!(
                "cannot open the storage folder {}",
                settings.storage.display()
            )
        })?,
    ))
}
