//! TLS for FTPS: the rustls client configuration of one remote (trusted
//! roots or certificate checks off), handshakes with readable failure
//! reasons, and the summary `remote test` prints.
//!
//! The configuration (provider, roots, verifier) is built once per remote.
//! Each control connection gets a shallow copy of it with a session cache
//! of its own: its data connections then resume the control connection's
//! TLS session, which servers such as vsftpd (`require_ssl_reuse=YES`)
//! demand. A cache shared by all connections would make a data connection
//! offer the session of another control connection, which vsftpd (one
//! process per control connection) cannot resume, and refuses. With TLS
//! 1.3 each resumption uses up a ticket; data connections take in the
//! fresh tickets the server sends on them (`MaybeTls::take_pending` and
//! `MaybeTls::drain`), so the supply never runs out.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_cert::der::Decode;

use super::error::FtpError;
use super::probe::TlsSummary;
use crate::tls::{self, describe_failure, CertificateCheck};
use crate::{BackendError, ErrorKind};

/// Sessions each control connection remembers for its data connections.
const SESSIONS_PER_CONNECTION: usize = 8;

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
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_CONNECTION);
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
