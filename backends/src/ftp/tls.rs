//! TLS for FTPS: the rustls client configuration of one remote (trusted
//! roots or certificate checks off), handshakes with readable failure
//! reasons, and the summary `remote test` prints.
//!
//! The configuration (provider, roots, verifier) is built once per remote.
//! Each control connection gets a shallow copy of it with a session store
//! of its own ([`TicketStore`]): its data connections then resume the
//! control connection's TLS session, which servers such as vsftpd
//! (`require_ssl_reuse=YES`) and ProFTPD (mod_tls' default) demand. A store
//! shared by all connections would make a data connection offer the
//! session of another control connection, which a server with one process
//! per control connection cannot resume, and refuses.
//!
//! TLS 1.2 sessions can be resumed any number of times. A TLS 1.3 ticket
//! is meant for one connection (rustls hands each out once), and servers
//! renew the supply unevenly: the control connection's full handshake
//! brings two tickets (OpenSSL's default); vsftpd sends a fresh ticket on
//! every resumed data connection (taken in by `MaybeTls::take_pending` and
//! `MaybeTls::drain`); ProFTPD 1.3.8 (OpenSSL 3) sends it only when it
//! writes to the data connection (downloads, listings), never on an upload.
//! With single-use tickets a ProFTPD control connection would carry two
//! TLS 1.3 uploads, and refuse the third data connection (`425`; mod_tls:
//! "client did not reuse TLS session"). [`TicketStore`] therefore offers
//! fresh tickets first and keeps a copy of the last one to offer again, as
//! OpenSSL, GnuTLS and JSSE FTPS clients do (ProFTPD tags its tickets to
//! check they belong to this FTP session). Copying a ticket needs a patched
//! rustls (`vendor/rustls/PATCHED.md`). (The first answer to empty stores
//! was to log in again before the next data connection; that renewal could
//! overlap the old connection at the server, beyond the pool's cap, and is
//! gone.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use rustls::NamedGroup;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_cert::der::Decode;

use super::error::FtpError;
use super::probe::TlsSummary;
use crate::tls::{self, describe_failure, CertificateCheck};
use crate::{BackendError, ErrorKind};

/// Sessions each control connection remembers for its data connections
/// (rustls keeps up to 8 TLS 1.3 tickets per server name: one name here).
const SESSIONS_PER_CONNECTION: usize = 8;

/// The most TLS 1.3 tickets [`ClientSessionMemoryCache`] keeps for one
/// server name (it drops the oldest beyond).
const TICKETS_KEPT: usize = 8;

/// The TLS side of one remote.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    base: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    host: String,
    allow_any: bool,
}

impl TlsSetup {
    /// Builds the configuration for `host`; fails on an unusable CA file,
    /// a system without trusted roots, or a host that is not a valid name.
    pub fn new(remote: &str, host: &str, check: &CertificateCheck) -> Result<Self, BackendError> {
        let fail = |message: String| {
            BackendError::new(
                ErrorKind::Other,
                "configure",
                "",
                format!("remote `{remote}`: {message}"),
            )
        };
        let mut config = tls::client_config(check).map_err(fail)?;
        let allow_any = *check == CertificateCheck::AllowAny;
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_CONNECTION);
        let server_name = tls::server_name(host).map_err(fail)?;
        Ok(TlsSetup {
            base: Arc::new(config),
            server_name,
            host: host.to_string(),
            allow_any,
        })
    }

    /// A configuration for one control connection and its data
    /// connections: the remote's settings with a session cache of its own.
    pub fn session(&self) -> TlsSession {
        let mut config = (*self.base).clone();
        let store = Arc::new(TicketStore::default());
        config.resumption = Resumption::store(store);
        TlsSession {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
            host: self.host.clone(),
        }
    }

    /// Whether certificate checks are off.
    pub fn allows_any_certificate(&self) -> bool {
        self.allow_any
    }
}

/// The TLS settings of one control connection, reused by its data
/// connections so they resume its session.
#[derive(Debug, Clone)]
pub struct TlsSession {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    host: String,
}

impl TlsSession {
    /// Runs a TLS handshake over `tcp` within `timeout`; `what` names the
    /// connection in errors.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        timeout: Duration,
        what: &'static str,
    ) -> Result<TlsStream<TcpStream>, FtpError> {
        let connector = TlsConnector::from(self.config.clone());
        match tokio::time::timeout(timeout, connector.connect(self.server_name.clone(), tcp)).await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(FtpError::Tls(describe_failure(&self.host, what, &e))),
            Err(_) => Err(FtpError::Timeout(what, timeout.as_secs())),
        }
    }
}

/// The session store of one control connection and its data connections:
/// rustls' in-memory store, plus a count of the TLS 1.3 tickets in it, so
/// that the last one is kept to be offered again (see the module docs).
#[derive(Debug)]
pub struct TicketStore {
    inner: ClientSessionMemoryCache,
    tls13: AtomicUsize,
}

impl Default for TicketStore {
    fn default() -> Self {
        TicketStore {
            inner: ClientSessionMemoryCache::new(SESSIONS_PER_CONNECTION),
            tls13: AtomicUsize::new(0),
        }
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server_name, value);
        let _ = self
            .tls13
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some((n + 1).min(TICKETS_KEPT))
            });
    }

    /// Hands out the newest ticket. The last one is handed out and kept:
    /// a server that sends no new ticket on some data connections (ProFTPD
    /// on uploads) accepts the control connection's ticket again.
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(server_name)?;
        let left = self
            .tls13
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .map_or(0, |before| before.saturating_sub(1));
        if left == 0 {
            self.insert_tls13_ticket(server_name.clone(), ticket.clone());
        }
        Some(ticket)
    }
}

/// What `remote test` shows about an established TLS session.
pub fn summarize(conn: &rustls::ClientConnection) -> TlsSummary {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "unknown".to_string());
    let certificate = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| describe_certificate(cert.as_ref()))
        .unwrap_or_else(|| "no certificate presented".to_string());
    TlsSummary {
        version,
        cipher_suite,
        certificate,
    }
}

/// Subject, issuer and expiry of a DER certificate, in one line.
fn describe_certificate(der: &[u8]) -> String {
    match x509_cert::Certificate::from_der(der) {
        Ok(cert) => {
            let tbs = cert.tbs_certificate();
            format!(
                "subject {}; issuer {}; expires {}",
                tbs.subject(),
                tbs.issuer(),
                tbs.validity().not_after
            )
        }
        Err(e) => format!("unparsable certificate ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TlsSetup::new(
            "p",
            "127.0.0.1",
            &CertificateCheck::RequireMatch {
                ca_file: Some(missing),
            },
        )
        .unwrap_err();
        assert!(err.message().contains("cannot read the CA file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsSetup::new(
            "p",
            "127.0.0.1",
            &CertificateCheck::RequireMatch {
                ca_file: Some(empty),
            },
        )
        .unwrap_err();
        assert!(err.message().contains("no usable certificate"), "{err}");
        assert!(TlsSetup::new("p", "localhost", &CertificateCheck::AllowAny).is_ok());
        let err = TlsSetup::new("p", "bad host!", &CertificateCheck::AllowAny).unwrap_err();
        assert!(err.message().contains("neither a host name"), "{err}");
    }
}
