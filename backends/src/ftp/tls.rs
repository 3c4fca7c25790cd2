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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_cert::der::Decode;

use super::error::FtpError;
use super::probe::TlsSummary;
use super::CertificateCheck;
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
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(format!("TLS setup failed: {e}")))?;
        let (mut config, allow_any) = match check {
            CertificateCheck::RequireMatch { ca_file } => {
                let roots = match ca_file {
                    Some(path) => roots_from_file(path).map_err(fail)?,
                    None => system_roots().map_err(fail)?,
                };
                (
                    builder.with_root_certificates(roots).with_no_client_auth(),
                    false,
                )
            }
            CertificateCheck::AllowAny => (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                        algorithms: provider.signature_verification_algorithms,
                    }))
                    .with_no_client_auth(),
                true,
            ),
        };
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_CONNECTION);
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| fail(format!("`{host}` is neither a host name nor an IP address")))?;
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

fn roots_from_file(path: &std::path::Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the CA file {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA file {shown} is not valid PEM: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("the CA file {shown} holds no usable certificate"));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted root certificates found on this system{why}; set a CA file"
        ));
    }
    Ok(roots)
}

/// A readable reason for a failed handshake, naming the host.
fn describe_failure(host: &str, what: &str, err: &std::io::Error) -> String {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match tls {
        Some(rustls::Error::InvalidCertificate(cert)) => certificate_reason(host, cert),
        Some(other) => other.to_string(),
        None => err.to_string(),
    };
    format!("{what} with {host} failed: {reason}")
}

fn certificate_reason(host: &str, err: &CertificateError) -> String {
    match err {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("certificate is not valid for {host}")
        }
        CertificateError::UnknownIssuer => {
            "certificate has an unknown issuer (not signed by a trusted CA)".to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet".to_string()
        }
        CertificateError::Revoked => "certificate is revoked".to_string(),
        CertificateError::BadSignature => "certificate has a bad signature".to_string(),
        // webpki refuses a self-signed server certificate marked as a CA
        // before looking for its issuer.
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "certificate is self-signed (a CA certificate presented as the server's): unknown issuer"
                .to_string()
        }
        other => format!("certificate rejected: {other}"),
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

/// `certificate = allow_any`: any certificate is accepted, but the
/// handshake signatures are still checked, so the session is at least
/// bound to the certificate presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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

    #[test]
    fn certificate_failures_name_the_host_and_reason() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        assert_eq!(
            describe_failure("127.0.0.1", "TLS handshake", &e),
            "TLS handshake with 127.0.0.1 failed: certificate is not valid for 127.0.0.1"
        );
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(describe_failure("h", "TLS handshake", &e).contains("unknown issuer"));
    }
}
