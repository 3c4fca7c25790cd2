//! `gateway remote list | test | trust` and `gateway keygen`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use backends::sftp::HostKeyPolicy;
use backends::{BackendError, ErrorKind, StoragePath};
use certs::host_keys::fingerprint;
use futures::TryStreamExt;
use russh::keys::PublicKey;

use crate::config::{CertificatePolicy, FtpTlsMode, ProtocolSettings, RemoteSettings, Settings};
use crate::remotes::{connect_remote, host_keys, source_addresses, RemoteAccess};
use crate::state::{RedbStore, StateStore};

/// The state store of `settings`, creating its folder if needed.
pub(crate) fn open_store(settings: &Settings) -> Result<Arc<dyn StateStore>> {
    std::fs::create_dir_all(&settings.state).with_context(|| {
        format!(
            "cannot create the state folder {}",
            settings.state.display()
        )
    })?;
    Ok(Arc::new(
        RedbStore::open(&settings.state).context("cannot open the state database")?,
    ))
}

fn find<'s>(settings: &'s Settings, name: &str) -> Result<&'s RemoteSettings> {
    settings.remote(name).ok_or_else(|| {
        let known: Vec<&str> = settings.remotes.iter().map(|r| r.name.as_str()).collect();
        anyhow!(
            "no remote named `{name}` in the config (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

/// `gateway remote list`.
pub fn list(settings: &Settings) -> Result<()> {
    let store = open_store(settings)?;
    if settings.remotes.is_empty() {
        println!("no remotes configured");
    }
    for r in &settings.remotes {
        let state = match host_keys::disabled(store.as_ref(), &r.name)? {
            Some(d) => format!(
                "disabled (host key mismatch: expected {}, presented {})",
                d.expected, d.presented
            ),
            None => "enabled".to_string(),
        };
        let security = match &r.protocol {
            ProtocolSettings::Sftp(s) => {
                let pin = match (&s.host_key, host_keys::pinned(store.as_ref(), &r.name)?) {
                    (Some(k), _) => format!("{} (configured)", fingerprint(k)),
                    (None, Some(k)) => fingerprint(&k),
                    (None, None) => "none".to_string(),
                };
                format!("host key {pin}")
            }
            ProtocolSettings::Ftp(f) => format!(
                "tls {}{}",
                tls_mode_name(f.tls),
                match f.certificate {
                    CertificatePolicy::AllowAny => ", certificate allow_any (INSECURE)",
                    CertificatePolicy::RequireMatch => "",
                }
            ),
            ProtocolSettings::S3(s) => format!(
                "region {}{}",
                s.region,
                match s.certificate {
                    CertificatePolicy::AllowAny => ", certificate allow_any (INSECURE)",
                    CertificatePolicy::RequireMatch => "",
                }
            ),
        };
        let (address, limit) = match &r.protocol {
            ProtocolSettings::S3(s) => (
                format!("{} bucket {}", s.endpoint, s.bucket),
                "no connection limit".to_string(),
            ),
            _ => (
                format!("{}@{}:{}", r.username, r.host, r.port),
                format!("max_connections {}", r.max_connections),
            ),
        };
        println!(
            "{}  {}  {address}  {state}  {security}  {limit}",
            r.name,
            r.kind().as_str(),
        );
    }
    Ok(())
}

fn tls_mode_name(mode: FtpTlsMode) -> &'static str {
    match mode {
        FtpTlsMode::Never => "never",
        FtpTlsMode::IfAvailable => "if_available",
        FtpTlsMode::Require => "require",
        FtpTlsMode::RequireImplicit => "require_implicit",
    }
}

/// `gateway remote test NAME`.
pub async fn test(settings: &Settings, name: &str) -> Result<()> {
    let r = find(settings, name)?;
    let store = open_store(settings)?;
    let remote = connect_remote(r, &settings.dedicated_ips, store)?;
    let started = Instant::now();
    let mut details: Vec<(&str, String)> = Vec::new();
    match &remote.access {
        RemoteAccess::Sftp { backend, .. } => {
            let conn = backend
                .connection()
                .await
                .map_err(|e| anyhow!("remote `{name}`: FAILED: {}", reason(&e)))?;
            details.push(("source address", conn.local_addr().ip().to_string()));
        }
        RemoteAccess::Ftp { backend } => {
            let probe = backend
                .probe()
                .await
                .map_err(|e| anyhow!("remote `{name}`: FAILED: {}", reason(&e)))?;
            details.push(("source address", probe.local_addr.ip().to_string()));
            details.push(("server", probe.server_addr.to_string()));
            details.push(("welcome", probe.welcome.trim().to_string()));
            match &probe.tls {
                Some(tls) => {
                    details.push(("tls", format!("{}, {}", tls.version, tls.cipher_suite)));
                    let unchecked = matches!(
                        &r.protocol,
                        ProtocolSettings::Ftp(f) if f.certificate == CertificatePolicy::AllowAny
                    );
                    details.push((
                        "certificate",
                        if unchecked {
                            format!(
                                "{} (NOT CHECKED: certificate = \"allow_any\" is INSECURE)",
                                tls.certificate
                            )
                        } else {
                            tls.certificate.clone()
                        },
                    ));
                }
                None => details.push(("tls", "none (plain FTP)".to_string())),
            }
            details.push(("features", probe.features.join(", ")));
        }
        RemoteAccess::S3 { backend } => {
            let probe = backend
                .probe()
                .await
                .map_err(|e| anyhow!("remote `{name}`: FAILED: {}", reason(&e)))?;
            details.push((
                "source address",
                probe
                    .local_addr
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|| "unknown (a pooled connection was reused)".to_string()),
            ));
            details.push(("endpoint", probe.endpoint.clone()));
            details.push(("region", probe.region.clone()));
            details.push(("bucket", format!("{} (listed: ok)", probe.bucket)));
        }
    }
    let login = started.elapsed();
    let probe = Instant::now();
    let root = StoragePath::root();
    match remote.backend.stat(&root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "remote `{name}`: FAILED: remote path missing: `{}` is not a folder",
            shown_root(r)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "remote `{name}`: FAILED: remote path missing: `{}` does not exist",
            shown_root(r)
        ),
        Err(e) => bail!("remote `{name}`: FAILED: {}", reason(&e)),
    }
    let round_trip = probe.elapsed();
    let pages = remote.backend.list(&root).await.map_err(|e| {
        anyhow!(
            "remote `{name}`: FAILED: cannot list the remote root: {}",
            reason(&e)
        )
    })?;
    let entries: usize = pages
        .try_fold(0, |n, page| async move { Ok(n + page.len()) })
        .await
        .map_err(|e| {
            anyhow!(
                "remote `{name}`: FAILED: cannot list the remote root: {}",
                reason(&e)
            )
        })?;
    if let RemoteAccess::Sftp { host_keys, .. } = &remote.access {
        let key = host_keys
            .last_presented()
            .map(|k| format!("{} {}", k.algorithm(), fingerprint(&k)))
            .unwrap_or_else(|| "unknown".to_string());
        details.push(("host key", key));
    }
    println!("remote `{name}`: ok ({})", r.kind().as_str());
    for (label, value) in &details {
        println!("  {label}: {value}");
    }
    println!("  connect and login: {} ms", login.as_millis());
    println!("  round trip: {} ms", round_trip.as_millis());
    println!("  remote root `{}`: {entries} entries", shown_root(r));
    Ok(())
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

/// `gateway remote trust NAME`.
pub async fn trust(settings: &Settings, name: &str) -> Result<()> {
    let r = find(settings, name)?;
    let ProtocolSettings::Sftp(sftp) = &r.protocol else {
        bail!(
            "remote `{name}` is an {} remote: host keys belong to SFTP; its TLS certificate is checked against `ca_file` or the system's roots",
            r.kind().as_str()
        );
    };
    if let Some(k) = &sftp.host_key {
        bail!(
            "remote `{name}` has `host_key` set in the config ({}); change it there instead",
            fingerprint(k)
        );
    }
    let store = open_store(settings)?;
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
        host_keys: capture.clone(),
        pool: backends::pool::PoolSettings {
            max: 1,
            wait: r.pool_wait,
            idle: r.idle_timeout,
        },
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
        bail!("remote `{name}`: cannot fetch its host key: {why}");
    };
    let old = host_keys::pinned(store.as_ref(), name)?;
    host_keys::trust(store.as_ref(), name, &presented)?;
    println!(
        "remote `{name}`: now trusting {} {}",
        presented.algorithm(),
        fingerprint(&presented)
    );
    match old {
        Some(k) if k.key_data() != presented.key_data() => {
            println!("  (replaces {})", fingerprint(&k))
        }
        Some(_) => println!("  (unchanged)"),
        None => println!("  (no key was pinned before)"),
    }
    println!("  the remote is enabled; a running gateway uses it from its next connection");
    Ok(())
}

/// `gateway keygen`.
pub fn keygen(out: &std::path::Path, comment: &str) -> Result<()> {
    let generated = certs::write_new_key_pair(out, comment)?;
    println!(
        "public key (give this line to the remote server's admin for ~/.ssh/authorized_keys):"
    );
    println!("{}", generated.public_line);
    println!("fingerprint: {}", generated.fingerprint);
    println!(
        "private key written to {} (mode 0600), public key to {}.pub",
        out.display(),
        out.display()
    );
    Ok(())
}
