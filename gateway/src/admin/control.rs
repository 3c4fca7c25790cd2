//! What the admin API can see and do in a running gateway, behind one
//! trait so the HTTP layer can be tested without a gateway and the
//! gateway can change without touching the HTTP layer.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::sync::records::RunRecord;
pub use crate::telemetry::throughput::ThroughputReport;

/// Why a control action failed; the HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such remote, sync or other named thing (404).
    #[error("{what} `{name}` not found")]
    NotFound {
        /// `remote`, `sync`, ...
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The thing exists but cannot do this now (409): a sync already
    /// running, a remote that is not SFTP asked to trust a host key.
    #[error("{0}")]
    Conflict(String),
    /// A reload found the new config invalid (422); the running config
    /// stays. Each entry is one problem with its file, line and key.
    #[error("the new config is invalid")]
    InvalidConfig(Vec<String>),
    /// The remote could not be reached or refused us (502), with one
    /// reason a person can act on.
    #[error("{0}")]
    Remote(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

/// A remote as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteStatus {
    /// Its name.
    pub name: String,
    /// `sftp`, `ftp` or `s3`.
    pub kind: String,
    /// `host:port`, or the endpoint and bucket for S3.
    pub address: String,
    /// `enabled`, or `disabled` (host key mismatch).
    pub state: String,
    /// Why it is disabled, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The SHA-256 fingerprint of the pinned host key (SFTP, once pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// The fingerprint the server presented instead, while it is disabled
    /// for a mismatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presented_fingerprint: Option<String>,
    /// The connection cap (S3: the request cap).
    pub max_connections: usize,
    /// Connections open now (in use + idle + being set up).
    pub connections_open: usize,
    /// Connections checked out by work now (S3: requests in flight).
    pub connections_in_use: usize,
    /// Connections idle now.
    pub connections_idle: usize,
    /// Requests waiting for a connection.
    pub waiters: usize,
    /// Failed connection attempts since start, by reason (`refused`,
    /// `timeout`, `auth`, ...).
    pub connect_failures: BTreeMap<String, u64>,
    /// Bytes read from the remote since start.
    pub bytes_read: u64,
    /// Bytes written to the remote since start.
    pub bytes_written: u64,
}

/// What `test` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteTestReport {
    /// The remote.
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// Milliseconds from start to the listed root.
    pub round_trip_ms: u64,
    /// What `gateway remote test` prints, as ordered label/value pairs
    /// (`source address`, `host key`, `tls`, ...); JSON:
    /// `[{"label": ..., "value": ...}]`.
    #[serde(serialize_with = "labelled")]
    pub details: Vec<(String, String)>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes label/value pairs as `[{"label": ..., "value": ...}]`: plainer
/// JSON (and OpenAPI schema) than two-element arrays.
fn labelled<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Item<'a> {
        label: &'a str,
        value: &'a str,
    }
    let mut seq = s.serialize_seq(Some(pairs.len()))?;
    for (label, value) in pairs {
        seq.serialize_element(&Item { label, value })?;
    }
    seq.end()
}

/// What `trust` did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrustReport {
    /// The remote.
    pub name: String,
    /// The pinned key's SHA-256 fingerprint.
    pub fingerprint: String,
    /// Whether the remote was disabled before and is enabled now.
    pub re_enabled: bool,
}

/// A sync as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncStatus {
    /// Its name.
    pub name: String,
    /// `push`, `pull` or `two_way`.
    pub direction: String,
    /// The remote's name.
    pub remote: String,
    /// The folder of the gateway's storage.
    pub folder: String,
    /// The path on the remote.
    pub remote_path: String,
    /// `manual`, `every 15m`, ``cron `0 2 * * *` UTC``.
    pub schedule: String,
    /// RFC 3339, when scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Whether a run is going on now.
    pub running: bool,
    /// The newest run, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
}

/// A run started through the API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunStarted {
    /// The run's id (see the sync's history for its record).
    pub run_id: String,
}

/// One open inbound session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionStatus {
    /// The gateway's id for it.
    pub id: u64,
    /// Who logged in (empty until authenticated).
    pub user: String,
    /// The client's address.
    pub address: String,
    /// RFC 3339.
    pub connected_at: String,
    /// Whether it has logged in.
    pub authenticated: bool,
    /// `sftp`, `exec` (a checksum command), or `ssh` before either.
    pub protocol: String,
    /// Bytes the client uploaded.
    pub bytes_in: u64,
    /// Bytes the client downloaded.
    pub bytes_out: u64,
    /// `idle`, or the transfers it has open (`downloading /a/b`).
    pub activity: String,
}

/// The cluster as the health page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterHealth {
    /// The state database, without its password.
    pub database: String,
    /// Nodes seen in the last hour.
    pub nodes: Vec<crate::cluster::status::NodeStatus>,
    /// Why the nodes could not be read, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `GET /api/v1/health` answers: readiness and what bears on it.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// Whether `/readyz` answers ready.
    pub ready: bool,
    /// Why not, when not ready.
    pub reasons: Vec<String>,
    /// The state store's check.
    pub state_store: StoreHealth,
    /// Remotes disabled (host key mismatch).
    pub remotes_disabled: Vec<String>,
    /// The cluster's nodes; `null` for a single node.
    pub cluster: Option<ClusterHealth>,
    /// The gateway's version.
    pub version: String,
}

/// The state store's check.
#[derive(Debug, Clone, Serialize)]
pub struct StoreHealth {
    /// Whether it took a write.
    pub ok: bool,
    /// What was checked, or what failed.
    pub detail: String,
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ReloadReport {
    /// The config file read.
    pub source: String,
    /// What changed, by area (`remotes`, `users`, `syncs`, `limits`):
    /// one line per change.
    pub changes: BTreeMap<String, Vec<String>>,
    /// Settings that changed but only take effect after a restart
    /// (listen addresses, storage and state folders).
    pub needs_restart: Vec<String>,
}

/// What the admin API drives. Implemented by the running gateway.
#[async_trait]
pub trait Control: Send + Sync {
    /// Every remote with its state and pool use.
    fn remotes(&self) -> Vec<RemoteStatus>;
    /// Connects, logs in and lists the remote's root (as `gateway remote
    /// test`).
    async fn test_remote(&self, name: &str) -> Result<RemoteTestReport, ControlError>;
    /// Pins the host key an SFTP remote presents now and re-enables it.
    async fn trust_remote(&self, name: &str) -> Result<TrustReport, ControlError>;
    /// Every sync with its schedule and last run.
    fn syncs(&self) -> Result<Vec<SyncStatus>, ControlError>;
    /// Starts a run of a sync now, in the server (sharing the remote's
    /// pool); returns at once. `Conflict` if it is already running.
    async fn run_sync(&self, name: &str) -> Result<RunStarted, ControlError>;
    /// A sync's runs, newest first.
    fn sync_history(&self, name: &str, limit: usize) -> Result<Vec<RunRecord>, ControlError>;
    /// The open inbound sessions.
    fn sessions(&self) -> Vec<SessionStatus>;
    /// Bytes per second per remote over the last minutes.
    fn throughput(&self) -> ThroughputReport;
    /// The cluster's nodes, when the state is shared (`None`: one node).
    async fn cluster(&self) -> Option<ClusterHealth>;
    /// Reads and validates the config file again and applies it; an
    /// invalid config is refused and the running one stays.
    async fn reload(&self) -> Result<ReloadReport, ControlError>;
}
