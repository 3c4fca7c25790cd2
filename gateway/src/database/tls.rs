//! TLS to PostgreSQL with the remotes' rustls settings
//! ([`backends::tls::client_config`]), with libpq's `sslmode` meanings:
//!
//! - `disable`: plain TCP;
//! - `prefer` (libpq's default): TLS when the server offers it, no
//!   certificate check, else plain;
//! - `require`: TLS or nothing; the certificate is not checked unless
//!   `sslrootcert` is given (then as `verify-ca`): it stops an eavesdropper,
//!   not an impostor;
//! - `verify-ca`: the server's chain must lead to `sslrootcert`;
//! - `verify-full`: that, and the certificate must name the host.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use backends::tls::CertificateCheck;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if offered, unchecked.
    Prefer,
    /// TLS, unchecked (checked as `VerifyCa` with a root certificate).
    Require,
    /// TLS with the chain checked against `sslrootcert`.
    VerifyCa,
    /// TLS with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// The mode named `text`.
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres does with it (whether to ask for TLS at all).
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// Makes TLS sessions to the database as its `sslmode` says.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTls")
    }
}

impl PgTls {
    /// The connector for `mode`, trusting `root` (a PEM file) when given.
    pub fn new(mode: SslMode, root: Option<&Path>) -> Result<PgTls, String> {
        let check = match (mode, root) {
            (SslMode::VerifyFull, Some(r)) => CertificateCheck::RequireMatch {
                ca_file: Some(r.to_path_buf()),
            },
            (SslMode::VerifyCa | SslMode::Require | SslMode::Prefer, Some(r)) => {
                CertificateCheck::RequireChain {
                    ca_file: r.to_path_buf(),
                }
            }
            (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
                return Err(
                    "sslmode=verify-ca and verify-full need sslrootcert=FILE (the CA's PEM certificate)"
                        .to_string(),
                )
            }
            (SslMode::Disable, _) | (_, None) => CertificateCheck::AllowAny,
        };
        let config =
            backends::tls::client_config(&check).map_err(|e| format!("sslrootcert: {e}"))?;
        Ok(PgTls {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(PgTlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
        })
    }
}

/// One TLS handshake with the database.
pub struct PgTlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(PgTlsStream(tls))
        })
    }
}

/// A TLS session with the database.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `sslmode` and `sslrootcert` taken out of a libpq URL's query (which
/// tokio-postgres reads itself, without the `verify-*` modes): the mode
/// (`prefer` when absent, as libpq), the root certificate, and the URL
/// without them.
pub fn split_tls_params(url: &str) -> Result<(SslMode, Option<PathBuf>, String), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((SslMode::Prefer, None, url.to_string()));
    };
    let mut mode = SslMode::Prefer;
    let mut root = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = SslMode::parse(v).ok_or_else(|| {
                    format!(
                        "sslmode={v} is not one of disable, prefer, require, verify-ca, verify-full"
                    )
                })?
            }
            Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((mode, root, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_read_and_removed() {
        let (mode, root, url) = split_tls_params(
            "postgres://gw@db/g?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(url, "postgres://gw@db/g?connect_timeout=3");
        let (mode, root, url) = split_tls_params("postgres://gw@db/g").unwrap();
        assert_eq!(
            (mode, root, url.as_str()),
            (SslMode::Prefer, None, "postgres://gw@db/g")
        );
        let err = split_tls_params("postgres://db/g?sslmode=allow").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        let err = PgTls::new(SslMode::VerifyFull, None).unwrap_err();
        assert!(err.contains("sslrootcert"), "{err}");
        assert!(PgTls::new(SslMode::Require, None).is_ok());
    }
}
