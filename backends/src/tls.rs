//! TLS client settings shared by the remote backends that speak TLS (FTPS,
//! S3 over https): how a server's certificate is checked, the rustls
//! configuration that follows from it (aws-lc-rs provider; the system's
//! roots, a CA file, or no certificate checks), readable reasons for a
//! failed handshake, and the stream that is plain TCP or TLS over it.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCheck {
    /// The chain must lead to a trusted root and name the host: the
    /// system's roots, or only those of `ca_file` (PEM) when given.
    RequireMatch {
        /// A PEM file of trusted CA certificates, replacing the system's.
        ca_file: Option<PathBuf>,
    },
    /// The chain must lead to a root of `ca_file` (PEM); the name is not
    /// checked (libpq's `sslmode=verify-ca`).
    RequireChain {
        /// A PEM file of trusted CA certificates.
        ca_file: PathBuf,
    },
    /// Any certificate is accepted (INSECURE; a warning is logged on every
    /// connection).
    AllowAny,
}

/// The rustls client configuration for `check`; the error says why the
/// roots could not be loaded (an unusable CA file, a system without roots).
pub fn client_config(check: &CertificateCheck) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(match check {
        CertificateCheck::RequireMatch { ca_file } => {
            let roots = match ca_file {
                Some(path) => roots_from_file(path)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        CertificateCheck::RequireChain { ca_file } => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots_from_file(ca_file)?),
                provider,
            )
            .build()
            .map_err(|e| format!("the CA file {}: {e}", ca_file.display()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyNameCertificate { inner }))
                .with_no_client_auth()
        }
        CertificateCheck::AllowAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    })
}

/// The name the server's certificate must carry for `host` (a DNS name or
/// an IP address, without IPv6 brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is neither a host name nor an IP address"))
}

/// A readable reason for a failed handshake with `host`: `what` names the
/// connection ("TLS handshake", "data connection TLS handshake").
pub fn describe_failure(host: &str, what: &str, err: &std::io::Error) -> String {
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

/// `certificate = allow_any`: any certificate is accepted, but handshake
/// signatures are still checked.
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

/// `RequireChain`: the chain is checked, a name mismatch forgiven.
#[derive(Debug)]
struct AnyNameCertificate {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNameCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A connection that is plain TCP or TLS over it (FTP control and data
/// connections, S3 over http or https).
#[derive(Debug)]
pub enum MaybeTls {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
        }
    }

    /// The TLS session, if there is one.
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(s) => Some(s.get_ref().1),
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(&CertificateCheck::RequireMatch {
            ca_file: Some(missing),
        })
        .unwrap_err();
        assert!(err.contains("cannot read the CA file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&CertificateCheck::RequireMatch {
            ca_file: Some(empty),
        })
        .unwrap_err();
        assert!(err.contains("no usable certificate"), "{err}");
        assert!(client_config(&CertificateCheck::AllowAny).is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("bad host!").is_err());
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
