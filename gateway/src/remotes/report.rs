//! What `gateway remote test` and `gateway remote trust` find out, as
//! data: the command line prints it and the admin API returns it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use backends::sftp::HostKeyPolicy;
use backends::{BackendError, ErrorKind, StoragePath};
use certs::host_keys::fingerprint;
use futures::TryStreamExt;
use russh::keys::PublicKey;

use crate::admin::control::{ControlError, RemoteTestReport, TrustReport};
use crate::config::{CertificatePolicy, ProtocolSettings, RemoteSettings, Settings};
use crate::remotes::{connect_remote, host_keys, source_addresses, RemoteAccess};
use crate::state::StateStore;

/// Why `remote test` or `remote trust` could not give an answer (a test
/// that reached the remote and failed is a [`RemoteTestReport`] with
/// `ok: false`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RemoteToolError {
    /// No remote of that name in the config.
    #[error("{message}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The sentence for a person (names the known remotes).
        message: String,
    },
    /// The action does not apply to this remote (not SFTP; host key set
    /// in the config).
    #[error("{0}")]
    Refused(String),
    /// The remote did not answer as needed (its host key could not be
    /// fetched).
    #[error("{0}")]
    Remote(String),
    /// The gateway's own side failed (state store, backend set-up).
    #[error("{0}")]
    Local(String),
}

impl From<RemoteToolError> for ControlError {
    fn from(e: RemoteToolError) -> Self {
        match e {
            RemoteToolError::NotFound { name, .. } => ControlError::NotFound {
                what: "remote",
                name,
            },
            RemoteToolError::Refused(m) => ControlError::Conflict(m),
            RemoteToolError::Remote(m) => ControlError::Remote(m),
            RemoteToolError::Local(m) => ControlError::Internal(m),
        }
    }
}

fn local(e: impl Into<anyhow::Error>) -> RemoteToolError {
    RemoteToolError::Local(format!("{:#}", e.into()))
}

/// Connects to remote `name` with the configured settings (a fresh
/// connection, not a pooled one), logs in and lists the remote root: what
/// `gateway remote test` prints and the admin API returns. A remote that
/// fails the test gives `ok: false` and the reason; `Err` means the test
/// could not be made at all. `store` is the state store holding the
/// pinned host keys (the running gateway's own, or one the CLI opened).
pub async fn test_report(
    settings: &Settings,
    name: &str,
    store: Arc<dyn StateStore>,
) -> std::result::Result<RemoteTestReport, RemoteToolError> {
    let r = find_remote(settings, name)?;
    let remote = connect_remote(r, &settings.dedicated_ips, store).map_err(local)?;
    let started = Instant::now();
    let mut details: Vec<(String, String)> = Vec::new();
    let failed = |details: Vec<(String, String)>, why: String| RemoteTestReport {
        name: name.to_string(),
        ok: false,
        round_trip_ms: millis(started.elapsed()),
        details,
        error: Some(why),
    };
    fn push(details: &mut Vec<(String, String)>, label: &str, value: String) {
        details.push((label.to_string(), value));
    }
    match &remote.access {
        RemoteAccess::Sftp { backend, .. } => match backend.connection().await {
            Ok(conn) => {
                push(
                    &mut details,
                    "source address",
                    conn.local_addr().ip().to_string(),
                );
                let negotiated = conn.negotiated();
                let legacy = negotiated.legacy();
                push(
                    &mut details,
                    "algorithms",
                    if legacy.is_empty() {
                        negotiated.to_string()
                    } else {
                        format!(
                            "{negotiated} (LEGACY: {}; ask the server's admin to enable modern algorithms)",
                            legacy.join(", ")
                        )
                    },
                );
            }
            Err(e) => return Ok(failed(details, reason(&e))),
        },
        RemoteAccess::Ftp { backend } => {
            let probe = match backend.probe().await {
                Ok(p) => p,
                Err(e) => return Ok(failed(details, reason(&e))),
            };
            push(
                &mut details,
                "source address",
                probe.local_addr.ip().to_string(),
            );
            push(&mut details, "server", probe.server_addr.to_string());
            push(&mut details, "welcome", probe.welcome.trim().to_string());
            match &probe.tls {
                Some(tls) => {
                    push(
                        &mut details,
                        "tls",
                        format!("{}, {}", tls.version, tls.cipher_suite),
                    );
                    let unchecked = matches!(
                        &r.protocol,
                        ProtocolSettings::Ftp(f) if f.certificate == CertificatePolicy::AllowAny
                    );
                    push(
                        &mut details,
                        "certificate",
                        if unchecked {
                            format!(
                                "{} (NOT CHECKED: certificate = \"allow_any\" is INSECURE)",
                                tls.certificate
                            )
                        } else {
                            tls.certificate.clone()
                        },
                    );
                }
                None => push(&mut details, "tls", "none (plain FTP)".to_string()),
            }
            push(&mut details, "features", probe.features.join(", "));
        }
        RemoteAccess::S3 { backend } => {
            let probe = match backend.probe().await {
                Ok(p) => p,
                Err(e) => return Ok(failed(details, reason(&e))),
            };
            push(
                &mut details,
                "source address",
                probe
                    .local_addr
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|| "unknown (a pooled connection was reused)".to_string()),
            );
            push(&mut details, "endpoint", probe.endpoint.clone());
            push(&mut details, "region", probe.region.clone());
            push(
                &mut details,
                "bucket",
                format!("{} (listed: ok)", probe.bucket),
            );
        }
    }
    let login = started.elapsed();
    let probe = Instant::now();
    let root = StoragePath::root();
    match remote.backend.stat(&root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Ok(failed(
                details,
                format!("remote path missing: `{}` is not a folder", shown_root(r)),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(failed(
                details,
                format!("remote path missing: `{}` does not exist", shown_root(r)),
            ))
        }
        Err(e) => return Ok(failed(details, reason(&e))),
    }
    let round_trip = probe.elapsed();
    let listed = async {
        let pages = remote.backend.list(&root).await?;
        pages
            .try_fold(0usize, |n, page| async move { Ok(n + page.len()) })
            .await
    };
    let entries = match listed.await {
        Ok(n) => n,
        Err(e) => {
            return Ok(failed(
                details,
                format!("cannot list the remote root: {}", reason(&e)),
            ))
        }
    };
    if let RemoteAccess::Sftp { host_keys, .. } = &remote.access {
        let key = host_keys
            .last_presented()
            .map(|k| format!("{} {}", k.algorithm(), fingerprint(&k)))
            .unwrap_or_else(|| "unknown".to_string());
        push(&mut details, "host key", key);
    }
    push(
        &mut details,
        "connect and login",
        format!("{} ms", login.as_millis()),
    );
    push(
        &mut details,
        "round trip",
        format!("{} ms", round_trip.as_millis()),
    );
    push(
        &mut details,
        &format!("remote root `{}`", shown_root(r)),
        format!("{entries} entries"),
    );
    Ok(RemoteTestReport {
        name: name.to_string(),
        ok: true,
        round_trip_ms: millis(started.elapsed()),
        details,
        error: None,
    })
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn shown_root(r: &RemoteSettings) -> String {
    match (r.root.is_empty(), &r.protocol) {
        (false, _) => r.root.clone(),
        (true, ProtocolSettings::S3(_)) => "(bucket root)".to_string(),
        (true, _) => "(login folder)".to_string(),
    }
}

/// The one-line reason for a failed connection, without the remote's
/// name that backends put first (the caller already says it).
fn reason(e: &BackendError) -> String {
    let message = e.message();
    match message.strip_prefix("remote `") {
        Some(rest) => match rest.split_once("`: ") {
            Some((_, reason)) => reason.to_string(),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// Accepts any host key and remembers it, then stops the connection.
#[derive(Debug, Default)]
struct CaptureKey {
    key: Mutex<Option<PublicKey>>,
}

impl HostKeyPolicy for CaptureKey {
    fn check_enabled(&self) -> backends::Result<()> {
        Ok(())
    }
    fn verify(&self, presented: &PublicKey) -> backends::Result<()> {
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented.clone());
        Err(BackendError::new(
            ErrorKind::Other,
            "connect",
            "",
            "host key captured",
        ))
    }
}

/// What `remote trust` did.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// The remote.
    pub name: String,
    /// The key now pinned.
    pub presented: PublicKey,
    /// The key pinned before, if any.
    pub previous: Option<PublicKey>,
    /// Whether the remote was disabled (host key mismatch) before.
    pub was_disabled: bool,
}

impl Trusted {
    /// The admin API's view of it.
    pub fn report(&self) -> TrustReport {
        TrustReport {
            name: self.name.clone(),
            fingerprint: fingerprint(&self.presented),
            re_enabled: self.was_disabled,
        }
    }
}

/// Why remote `r` cannot have its host key trusted, if it cannot.
pub fn refuse_trust(r: &RemoteSettings) -> std::result::Result<(), RemoteToolError> {
    let name = &r.name;
    let ProtocolSettings::Sftp(sftp) = &r.protocol else {
        return Err(RemoteToolError::Refused(format!(
            "remote `{name}` is an {} remote: host keys belong to SFTP; its TLS certificate is checked against `ca_file` or the system's roots",
            r.kind().as_str()
        )));
    };
    if let Some(k) = &sftp.host_key {
        return Err(RemoteToolError::Refused(format!(
            "remote `{name}` has `host_key` set in the config ({}); change it there instead",
            fingerprint(k)
        )));
    }
    Ok(())
}

/// Fetches the host key SFTP remote `name` presents now, pins it in
/// `store` and re-enables the remote: what `gateway remote trust` does.
/// A running gateway checks the pin on its next connection.
pub async fn trust_remote(
    settings: &Settings,
    name: &str,
    store: Arc<dyn StateStore>,
) -> std::result::Result<Trusted, RemoteToolError> {
    let r = find_remote(settings, name)?;
    refuse_trust(r)?;
    let capture = Arc::new(CaptureKey::default());
    let sources = source_addresses(r, &settings.dedicated_ips);
    let backend = backends::sftp::SftpBackend::new(backends::sftp::SftpSettings {
        name: r.name.clone(),
        host: r.host.clone(),
        port: r.port,
        username: r.username.clone(),
        password: None,
        private_key: None,
        root: r.root.clone(),
        sources,
        connect_timeout: r.connect_timeout,
        io_timeout: backends::sftp::DEFAULT_IO_TIMEOUT,
        host_keys: capture.clone(),
        pool: backends::pool::PoolSettings {
            max: 1,
            wait: r.pool_wait,
            idle: r.idle_timeout,
        },
        ssh: match &r.protocol {
            ProtocolSettings::Sftp(s) => s.ssh.clone(),
            _ => backends::sftp::SshOptions::default(),
        },
        // Only the host key is fetched: nothing is written.
        atomic_uploads: true,
    });
    let attempt = backend.connection().await;
    let presented = capture
        .key
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(presented) = presented else {
        let why = attempt
            .err()
            .map(|e| reason(&e))
            .unwrap_or_else(|| "no host key received".to_string());
        return Err(RemoteToolError::Remote(format!(
            "remote `{name}`: cannot fetch its host key: {why}"
        )));
    };
    let previous = host_keys::pinned(store.as_ref(), name).map_err(local)?;
    let was_disabled = host_keys::disabled(store.as_ref(), name)
        .map_err(local)?
        .is_some();
    host_keys::trust(store.as_ref(), name, &presented).map_err(local)?;
    Ok(Trusted {
        name: name.to_string(),
        presented,
        previous,
        was_disabled,
    })
}

/// [`trust_remote`] as the admin API reports it.
pub async fn trust_report(
    settings: &Settings,
    name: &str,
    store: Arc<dyn StateStore>,
) -> std::result::Result<TrustReport, RemoteToolError> {
    Ok(trust_remote(settings, name, store).await?.report())
}

/// Remote `name` of `settings`, or [`RemoteToolError::NotFound`] naming
/// the remotes there are.
pub fn find_remote<'s>(
    settings: &'s Settings,
    name: &str,
) -> std::result::Result<&'s RemoteSettings, RemoteToolError> {
    settings.remote(name).ok_or_else(|| {
        let known: Vec<&str> = settings.remotes.iter().map(|r| r.name.as_str()).collect();
        RemoteToolError::NotFound {
            name: name.to_string(),
            message: format!(
                "no remote named `{name}` in the config (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }
    })
}
