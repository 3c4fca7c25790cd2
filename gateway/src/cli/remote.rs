//! `gateway remote list | test | trust` and `gateway keygen`.

use anyhow::{bail, Result};
use certs::host_keys::fingerprint;

use crate::cluster::open_state as open_store;
use crate::config::{CertificatePolicy, FtpTlsMode, ProtocolSettings, RemoteSettings, Settings};
use crate::remotes::host_keys;
use crate::remotes::report::{find_remote, refuse_trust, test_report, trust_remote};

fn find<'s>(settings: &'s Settings, name: &str) -> Result<&'s RemoteSettings> {
    Ok(find_remote(settings, name)?)
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
                let legacy: Vec<&str> = s.ssh.legacy.iter().map(|a| a.name()).collect();
                if legacy.is_empty() {
                    format!("host key {pin}")
                } else {
                    format!(
                        "host key {pin}, LEGACY algorithms allowed: {}",
                        legacy.join(" ")
                    )
                }
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
                format!("max_connections {} (requests at once)", r.max_connections),
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

/// The state store for a tool that connects to a remote. In a cluster the
/// tool takes its connection's slot like any node, so `remote test` on a
/// busy remote waits for a free slot (another node gives one back) rather
/// than opening a connection beyond the remote's `max_connections`.
fn store_with_slots(
    settings: &Settings,
) -> Result<(
    std::sync::Arc<dyn crate::state::StateStore>,
    Option<crate::cluster::slots::PgSlots>,
)> {
    let (store, shared) = crate::cluster::open_state_shared(settings)?;
    let slots = crate::cluster::start_slots(settings, shared.as_ref());
    Ok((store, slots))
}

/// `gateway remote test NAME`.
pub async fn test(settings: &Settings, name: &str) -> Result<()> {
    let r = find(settings, name)?;
    let (store, slots) = store_with_slots(settings)?;
    let report = test_report(settings, name, store).await;
    if let Some(slots) = slots {
        slots.leave().await;
    }
    let report = report?;
    if let Some(why) = &report.error {
        bail!("remote `{name}`: FAILED: {why}");
    }
    println!("remote `{name}`: ok ({})", r.kind().as_str());
    for (label, value) in &report.details {
        println!("  {label}: {value}");
    }
    Ok(())
}

/// `gateway remote trust NAME`.
pub async fn trust(settings: &Settings, name: &str) -> Result<()> {
    refuse_trust(find(settings, name)?)?;
    let (store, slots) = store_with_slots(settings)?;
    let t = trust_remote(settings, name, store).await;
    if let Some(slots) = slots {
        slots.leave().await;
    }
    let t = t?;
    println!(
        "remote `{name}`: now trusting {} {}",
        t.presented.algorithm(),
        fingerprint(&t.presented)
    );
    match &t.previous {
        Some(k) if k.key_data() != t.presented.key_data() => {
            println!("  (replaces {})", fingerprint(k))
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
