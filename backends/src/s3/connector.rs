//! The connections the HTTP client sends through: TCP from a dedicated
//! source address (`dial`: rotating across them, never falling back to
//! another address), then TLS for `https`, all within the connect timeout.
//! The local address of the latest connection is kept for `remote test`;
//! attempts and failures (with their reason) are counted for metrics.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::tls;
use crate::dial::{dial, SourceAddresses};
use crate::metrics::ConnectMetrics;
use crate::tls::MaybeTls;
use crate::{BackendError, ConnectFailure, ErrorKind};

/// Errors as the HTTP client carries them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens connections to the endpoint; cheap to clone (one per pool).
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    /// The remote's name, for the log.
    remote: String,
    sources: SourceAddresses,
    connect_timeout: Duration,
    /// The TLS configuration, for `https` endpoints.
    tls: Option<Arc<ClientConfig>>,
    /// Local address of the latest connection made.
    last_local: Mutex<Option<SocketAddr>>,
    metrics: ConnectMetrics,
}

impl Connector {
    /// A connector of remote `remote` leaving from `sources`; `tls` is
    /// needed for `https`.
    pub fn new(
        remote: &str,
        sources: SourceAddresses,
        connect_timeout: Duration,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Connector {
            inner: Arc::new(Inner {
                remote: remote.to_string(),
                sources,
                connect_timeout,
                tls,
                last_local: Mutex::new(None),
                metrics: ConnectMetrics::new(remote),
            }),
        }
    }

    /// The local address of the latest connection made, if any.
    pub fn last_local_addr(&self) -> Option<SocketAddr> {
        self.inner
            .last_local
            .lock()
            .map(|g| *g)
            .unwrap_or_else(|poisoned| *poisoned.into_inner())
    }

    /// Connects to the host and port of `uri` (TLS for `https`); a
    /// failure is logged (the gateway's log is where an operator sees why
    /// a remote cannot be reached: a source address that cannot be bound,
    /// a refused connection, a certificate problem).
    pub async fn connect(&self, uri: &Uri) -> Result<Stream, BackendError> {
        self.inner.metrics.attempt();
        let result = self.open(uri).await;
        if let Err(e) = &result {
            self.inner.metrics.failed(e);
            tracing::warn!(remote = %self.inner.remote, "connect failed: {}", e.message());
        }
        result
    }

    async fn open(&self, uri: &Uri) -> Result<Stream, BackendError> {
        let https = uri.scheme_str() == Some("https");
        let raw_host = uri.host().unwrap_or_default();
        let host = raw_host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let timeout = self.inner.connect_timeout;
        let (tcp, local) = dial(host, port, &self.inner.sources, timeout).await?;
        if let Ok(mut last) = self.inner.last_local.lock() {
            *last = Some(local);
        }
        if !https {
            return Ok(Stream::new(MaybeTls::Plain(tcp)));
        }
        let fail = |kind: ErrorKind, reason: ConnectFailure, message: String| {
            BackendError::new(kind, "connect", "", format!("{host}:{port}: {message}"))
                .with_connect_failure(reason)
        };
        let Some(config) = self.inner.tls.clone() else {
            return Err(fail(
                ErrorKind::Other,
                ConnectFailure::Tls,
                "an https endpoint needs TLS, which is not set up".to_string(),
            ));
        };
        let name =
            tls::server_name(host).map_err(|m| fail(ErrorKind::Other, ConnectFailure::Other, m))?;
        let handshake = TlsConnector::from(config).connect(name, tcp);
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(stream)) => Ok(Stream::new(MaybeTls::Tls(Box::new(stream)))),
            Ok(Err(e)) => Err(fail(
                ErrorKind::Other,
                ConnectFailure::Tls,
                tls::describe_failure(host, "TLS handshake", &e),
            )),
            Err(_) => Err(fail(
                ErrorKind::Timeout,
                ConnectFailure::Timeout,
                format!("TLS handshake: no answer within {}s", timeout.as_secs()),
            )),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&uri).await.map_err(BoxError::from) })
    }
}

/// One connection as hyper uses it.
pub struct Stream {
    io: TokioIo<MaybeTls>,
}

impl Stream {
    fn new(conn: MaybeTls) -> Self {
        Stream {
            io: TokioIo::new(conn),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn connections_leave_from_the_dedicated_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sources = SourceAddresses::dedicated(vec!["127.0.0.2".parse().unwrap()]);
        let connector = Connector::new("test", sources, Duration::from_secs(5), None);
        assert_eq!(connector.last_local_addr(), None);
        let target = uri(&format!("http://127.0.0.1:{port}/bucket/key"));
        let _stream = connector.connect(&target).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        assert_eq!(
            connector.last_local_addr().map(|a| a.ip().to_string()),
            Some("127.0.0.2".to_string())
        );
    }

    #[tokio::test]
    async fn an_unbindable_source_fails_clearly_and_never_falls_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sources = SourceAddresses::dedicated(vec!["192.0.2.10".parse().unwrap()]);
        let connector = Connector::new("test", sources, Duration::from_secs(5), None);
        let err = connector
            .connect(&uri(&format!("http://127.0.0.1:{port}/")))
            .await
            .err()
            .expect("binding 192.0.2.10 must fail");
        assert!(
            err.message().contains("cannot bind source address"),
            "{err}"
        );
        assert!(err.message().contains("192.0.2.10"), "{err}");
        let arrived = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(arrived.is_err(), "a connection arrived from elsewhere");
        assert_eq!(connector.last_local_addr(), None);
    }

    #[tokio::test]
    async fn attempts_and_failures_are_counted_by_reason() {
        use crate::metrics::testing::TestRecorder;
        use crate::metrics::{CONNECT_ATTEMPTS, CONNECT_FAILURES};
        let rec = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&rec);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = Connector::new(
            "s3-remote",
            SourceAddresses::system(),
            Duration::from_secs(5),
            None,
        );
        let _open = connector
            .connect(&uri(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap();
        assert!(connector
            .connect(&uri(&format!("https://127.0.0.1:{port}/")))
            .await
            .is_err());
        drop(listener);
        let err = connector
            .connect(&uri(&format!("http://127.0.0.1:{port}/")))
            .await
            .err()
            .expect("nothing listens any more");
        assert_eq!(
            err.connect_failure(),
            Some(ConnectFailure::Refused),
            "{err}"
        );
        let r = [("remote", "s3-remote")];
        let failures = |reason| {
            rec.counter(
                CONNECT_FAILURES,
                &[("remote", "s3-remote"), ("reason", reason)],
            )
        };
        assert_eq!(rec.counter(CONNECT_ATTEMPTS, &r), 3);
        assert_eq!(failures("tls"), 1);
        assert_eq!(failures("refused"), 1);
    }

    #[tokio::test]
    async fn https_without_tls_setup_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = Connector::new(
            "test",
            SourceAddresses::system(),
            Duration::from_secs(5),
            None,
        );
        let err = connector
            .connect(&uri(&format!("https://127.0.0.1:{port}/")))
            .await
            .err()
            .expect("no TLS");
        assert!(err.message().contains("needs TLS"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_tls_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = tls::client_config("p", &crate::ftp::CertificateCheck::AllowAny).unwrap();
        let connector = Connector::new(
            "test",
            SourceAddresses::system(),
            Duration::from_millis(300),
            Some(tls),
        );
        let started = std::time::Instant::now();
        let err = connector
            .connect(&uri(&format!("https://127.0.0.1:{port}/")))
            .await
            .err()
            .expect("the server never answers the handshake");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
