//! The remotes of a running gateway: one backend (and so one connection
//! pool) per configured remote, shared by every session and mount.

pub mod host_keys;
pub mod report;

use std::collections::HashMap;
use std::sync::Arc;

use backends::dial::SourceAddresses;
use backends::ftp::{CertificateCheck, FtpBackend, FtpSettings, FtpTls};
use backends::pool::PoolSettings;
use backends::s3::{S3Backend, S3Settings};
use backends::sftp::{SftpBackend, SftpSettings};
use backends::Backend;

use crate::config::{
    CertificatePolicy, FtpRemoteSettings, FtpTlsMode, ProtocolSettings, RemoteSettings,
    S3RemoteSettings, Settings, SftpRemoteSettings,
};
use crate::state::StateStore;
use host_keys::PinnedHostKeys;

/// One remote, ready to use.
pub struct Remote {
    /// What the config says about it.
    pub settings: RemoteSettings,
    /// Its backend, as mounts use it.
    pub backend: Arc<dyn Backend>,
    /// The same backend with what only its protocol offers.
    pub access: RemoteAccess,
}

/// A remote's backend by protocol, for what the generic [`Backend`] does
/// not cover (host keys, TLS probes, pool figures).
#[derive(Clone)]
pub enum RemoteAccess {
    /// An SFTP remote and its host key policy.
    Sftp {
        /// The backend.
        backend: Arc<SftpBackend>,
        /// Its host key policy (for reporting the presented key).
        host_keys: Arc<PinnedHostKeys>,
    },
    /// An FTP remote.
    Ftp {
        /// The backend.
        backend: Arc<FtpBackend>,
    },
    /// An S3 remote (no connection pool: requests are capped instead).
    S3 {
        /// The backend.
        backend: Arc<S3Backend>,
    },
}

/// Every configured remote, by name.
#[derive(Default)]
pub struct Remotes {
    by_name: HashMap<String, Arc<Remote>>,
}

impl Remotes {
    /// Builds a backend per remote. Must run inside the tokio runtime.
    pub fn build(settings: &Settings, store: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for r in &settings.remotes {
            let remote = connect_remote(r, &settings.dedicated_ips, store.clone())?;
            by_name.insert(r.name.clone(), Arc::new(remote));
        }
        Ok(Remotes { by_name })
    }

    /// The remotes of `settings`, keeping the backend (and so the pool and
    /// its open connections) of every remote whose connection settings
    /// did not change; a changed cap or timeout is applied to the live
    /// pool. Returns one line per change.
    pub fn rebuild(
        &self,
        old_ips: &[std::net::IpAddr],
        settings: &Settings,
        store: Arc<dyn StateStore>,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let mut by_name = HashMap::new();
        let mut changes = Vec::new();
        for r in &settings.remotes {
            let kept = self.by_name.get(&r.name).filter(|old| {
                old_ips == settings.dedicated_ips.as_slice() && same_connection(&old.settings, r)
            });
            let remote = match kept {
                Some(old) => {
                    let (was, now) = (pool_settings(&old.settings), pool_settings(r));
                    if (was.max, was.wait, was.idle) != (now.max, now.wait, now.idle) {
                        old.access.set_pool_settings(now);
                        changes.push(format!(
                            "{}: {}",
                            r.name,
                            pool_changes(&was, &now).join(", ")
                        ));
                    }
                    Remote {
                        settings: r.clone(),
                        backend: old.backend.clone(),
                        access: old.access.clone(),
                    }
                }
                None => {
                    changes.push(if self.by_name.contains_key(&r.name) {
                        format!(
                            "{}: connection settings changed; new work uses new connections",
                            r.name
                        )
                    } else {
                        format!("{}: added", r.name)
                    });
                    connect_remote(r, &settings.dedicated_ips, store.clone())?
                }
            };
            by_name.insert(r.name.clone(), Arc::new(remote));
        }
        for name in self.by_name.keys() {
            if !by_name.contains_key(name) {
                changes.push(format!(
                    "{name}: removed (sessions using it keep it until they end)"
                ));
            }
        }
        changes.sort();
        Ok((Remotes { by_name }, changes))
    }

    /// The remote called `name`.
    pub fn get(&self, name: &str) -> Option<&Remote> {
        self.by_name.get(name).map(Arc::as_ref)
    }

    /// Every remote, in name order.
    pub fn all(&self) -> Vec<&Remote> {
        let mut v: Vec<&Remote> = self.by_name.values().map(Arc::as_ref).collect();
        v.sort_by(|a, b| a.settings.name.cmp(&b.settings.name));
        v
    }
}

/// Whether two settings of one remote connect the same way (only the pool
/// figures differ).
fn same_connection(a: &RemoteSettings, b: &RemoteSettings) -> bool {
    let mut b = b.clone();
    // An S3 remote's cap lives in its HTTP client: a new cap, a new client.
    if !matches!(a.protocol, ProtocolSettings::S3(_)) {
        b.max_connections = a.max_connections;
    }
    b.pool_wait = a.pool_wait;
    b.idle_timeout = a.idle_timeout;
    *a == b
}

impl RemoteAccess {
    /// Makes the remote's cap hold over every node of a cluster
    /// (connections for SFTP and FTP, requests in flight for S3).
    fn use_slot_gate(&self, gate: Arc<dyn backends::slots::SlotGate>) {
        match self {
            RemoteAccess::Sftp { backend, .. } => backend.use_slot_gate(gate),
            RemoteAccess::Ftp { backend } => backend.use_slot_gate(gate),
            RemoteAccess::S3 { backend } => backend.use_slot_gate(gate),
        }
    }

    /// Applies new pool figures to the live pool (S3 has none).
    pub fn set_pool_settings(&self, settings: PoolSettings) {
        match self {
            RemoteAccess::Sftp { backend, .. } => backend.set_pool_settings(settings),
            RemoteAccess::Ftp { backend } => backend.set_pool_settings(settings),
            RemoteAccess::S3 { .. } => {}
        }
    }

    /// The pool's figures now (S3: requests in flight count as in use).
    pub fn pool_stats(&self) -> backends::pool::PoolStats {
        match self {
            RemoteAccess::Sftp { backend, .. } => backend.pool_stats(),
            RemoteAccess::Ftp { backend } => backend.pool_stats(),
            RemoteAccess::S3 { .. } => backends::pool::PoolStats::default(),
        }
    }
}

/// Creates, in the background, the folders that mounts on S3 remotes
/// point at. On S3 a folder exists only through a marker or objects
/// under it, so a mount on a fresh prefix would list as "not found" and
/// refuse `mkdir` until something was uploaded; a marker makes it an
/// ordinary empty folder. Failures are logged and retried at no later
/// time: the mount then behaves as before.
pub fn create_s3_mount_folders(
    remotes: &Remotes,
    mounts: &HashMap<String, Vec<crate::config::MountSettings>>,
) {
    let mut wanted = std::collections::BTreeSet::new();
    for m in mounts.values().flatten() {
        if let Some(remote) = remotes.get(&m.remote) {
            if matches!(remote.access, RemoteAccess::S3 { .. }) && !m.remote_path.is_root() {
                wanted.insert((m.remote.clone(), m.remote_path.clone()));
            }
        }
    }
    for (name, path) in wanted {
        let Some(remote) = remotes.get(&name) else {
            continue;
        };
        let backend = remote.backend.clone();
        tokio::spawn(async move {
            // Each level in turn, from the top: mkdir needs its parent.
            let mut levels = Vec::new();
            let mut at = Some(path.clone());
            while let Some(p) = at {
                if p.is_root() {
                    break;
                }
                at = p.parent();
                levels.push(p);
            }
            for level in levels.into_iter().rev() {
                match backend.mkdir(&level).await {
                    Ok(()) => {
                        tracing::info!(remote = %name, folder = %level, "created the mounted folder")
                    }
                    Err(e) if e.kind() == backends::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        tracing::warn!(remote = %name, folder = %level, "cannot create the mounted folder: {e}");
                        return;
                    }
                }
            }
        });
    }
}

/// Where connections to `r` come from: the dedicated IPs unless it opts out.
pub fn source_addresses(r: &RemoteSettings, dedicated_ips: &[std::net::IpAddr]) -> SourceAddresses {
    if r.use_dedicated_ips && !dedicated_ips.is_empty() {
        SourceAddresses::dedicated(dedicated_ips.to_vec())
    } else {
        SourceAddresses::system()
    }
}

/// The pool limits of `r`.
fn pool_settings(r: &RemoteSettings) -> PoolSettings {
    PoolSettings {
        max: r.max_connections,
        wait: r.pool_wait,
        idle: r.idle_timeout,
    }
}

/// A backend for one remote with the gateway's source addresses and pins.
/// Fails only on local set-up problems (an unreadable CA file).
pub fn connect_remote(
    r: &RemoteSettings,
    dedicated_ips: &[std::net::IpAddr],
    store: Arc<dyn StateStore>,
) -> anyhow::Result<Remote> {
    let sources = source_addresses(r, dedicated_ips);
    // In a cluster, the cap holds over every node's connections.
    let gate = store.slot_gate();
    let access = match &r.protocol {
        ProtocolSettings::Sftp(s) => sftp_remote(r, s, sources, store),
        ProtocolSettings::Ftp(f) => RemoteAccess::Ftp {
            backend: Arc::new(
                FtpBackend::new(ftp_settings(r, f, sources))
                    .map_err(|e| anyhow::anyhow!("remote `{}`: {}", r.name, e.message()))?,
            ),
        },
        ProtocolSettings::S3(s3) => RemoteAccess::S3 {
            backend: Arc::new(
                S3Backend::new(s3_settings(r, s3, sources))
                    .map_err(|e| anyhow::anyhow!("remote `{}`: {}", r.name, e.message()))?,
            ),
        },
    };
    if let Some(gate) = gate {
        access.use_slot_gate(gate);
    }
    let backend: Arc<dyn Backend> = match &access {
        RemoteAccess::Sftp { backend, .. } => backend.clone(),
        RemoteAccess::Ftp { backend } => backend.clone(),
        RemoteAccess::S3 { backend } => backend.clone(),
    };
    // Bytes and operation latencies are counted for every user of the
    // remote (mounts and syncs) through this one wrapper.
    let backend: Arc<dyn Backend> =
        Arc::new(backends::metrics::Instrumented::new(&r.name, backend));
    Ok(Remote {
        settings: r.clone(),
        backend,
        access,
    })
}

fn sftp_remote(
    r: &RemoteSettings,
    s: &SftpRemoteSettings,
    sources: SourceAddresses,
    store: Arc<dyn StateStore>,
) -> RemoteAccess {
    let host_keys = Arc::new(PinnedHostKeys::new(
        &r.name,
        s.host_key.clone(),
        s.allow_mismatched_host_key,
        store,
    ));
    let backend = SftpBackend::new(SftpSettings {
        name: r.name.clone(),
        host: r.host.clone(),
        port: r.port,
        username: r.username.clone(),
        password: r.password.as_ref().map(|p| p.expose().to_string()),
        private_key: s.private_key.clone(),
        root: r.root.clone(),
        sources,
        connect_timeout: r.connect_timeout,
        io_timeout: s.io_timeout,
        host_keys: host_keys.clone(),
        pool: pool_settings(r),
        ssh: s.ssh.clone(),
        atomic_uploads: s.atomic_uploads,
    });
    RemoteAccess::Sftp {
        backend: Arc::new(backend),
        host_keys,
    }
}

/// How an FTP or S3 remote's TLS certificate is checked.
fn certificate_check(
    policy: CertificatePolicy,
    ca_file: &Option<std::path::PathBuf>,
) -> CertificateCheck {
    match policy {
        CertificatePolicy::RequireMatch => CertificateCheck::RequireMatch {
            ca_file: ca_file.clone(),
        },
        CertificatePolicy::AllowAny => CertificateCheck::AllowAny,
    }
}

/// The backend settings of an S3 remote.
pub fn s3_settings(
    r: &RemoteSettings,
    s: &S3RemoteSettings,
    sources: SourceAddresses,
) -> S3Settings {
    let mut settings = S3Settings::new(
        &r.name,
        &s.endpoint,
        &s.bucket,
        &s.access_key_id,
        s.secret_access_key.expose(),
    );
    settings.region = s.region.clone();
    settings.path_style = s.path_style;
    settings.root = r.root.clone();
    settings.sources = sources;
    settings.certificate = certificate_check(s.certificate, &s.ca_file);
    settings.connect_timeout = r.connect_timeout;
    settings.io_timeout = s.io_timeout;
    settings.recursive_folder_rename = s.recursive_folder_rename;
    settings.folder_markers = s.folder_markers;
    settings.max_requests = r.max_connections;
    settings.read_ahead = s.read_ahead;
    settings
}

/// The backend settings of an FTP remote.
pub fn ftp_settings(
    r: &RemoteSettings,
    f: &FtpRemoteSettings,
    sources: SourceAddresses,
) -> FtpSettings {
    FtpSettings {
        name: r.name.clone(),
        host: r.host.clone(),
        port: r.port,
        username: r.username.clone(),
        password: r
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        tls: match f.tls {
            FtpTlsMode::Never => FtpTls::Never,
            FtpTlsMode::IfAvailable => FtpTls::IfAvailable,
            FtpTlsMode::Require => FtpTls::Require,
            FtpTlsMode::RequireImplicit => FtpTls::RequireImplicit,
        },
        certificate: certificate_check(f.certificate, &f.ca_file),
        root: r.root.clone(),
        sources,
        connect_timeout: r.connect_timeout,
        io_timeout: f.io_timeout,
        atomic_uploads: f.atomic_uploads,
        pool: pool_settings(r),
    }
}

/// What changed between two pool settings, one `key old -> new` per
/// changed key (a reload's report names only what it changes).
fn pool_changes(was: &PoolSettings, now: &PoolSettings) -> Vec<String> {
    let mut out = Vec::new();
    if was.max != now.max {
        out.push(format!("max_connections {} -> {}", was.max, now.max));
    }
    let duration = |d| humantime::format_duration(d).to_string();
    if was.wait != now.wait {
        out.push(format!(
            "pool_wait {} -> {}",
            duration(was.wait),
            duration(now.wait)
        ));
    }
    if was.idle != now.idle {
        out.push(format!(
            "idle_timeout {} -> {}",
            duration(was.idle),
            duration(now.idle)
        ));
    }
    out
}

#[cfg(test)]
mod pool_change_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reload_report_names_only_what_changed() {
        let was = PoolSettings {
            max: 5,
            wait: Duration::from_secs(120),
            idle: Duration::from_secs(60),
        };
        let now = PoolSettings { max: 2, ..was };
        assert_eq!(pool_changes(&was, &now), ["max_connections 5 -> 2"]);
        let now = PoolSettings {
            wait: Duration::from_secs(30),
            idle: Duration::from_secs(600),
            ..was
        };
        assert_eq!(
            pool_changes(&was, &now),
            ["pool_wait 2m -> 30s", "idle_timeout 1m -> 10m"]
        );
        assert!(pool_changes(&was, &was).is_empty());
    }
}
