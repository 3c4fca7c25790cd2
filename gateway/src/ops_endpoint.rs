//! The operations endpoint: Prometheus metrics (`/metrics`) and health
//! checks (`/healthz`: the process answers; `/readyz`: it listens and its
//! state store takes writes), on `metrics.listen`.
//!
//! What `/metrics` shows is [`crate::telemetry`]'s; the Prometheus
//! exporter's own HTTP listener is not used, so this server is one small
//! hyper service that the admin API can share ([`serve_http`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{StateStore, Table};
use crate::telemetry::Exporter;

/// A response body.
pub type Body = Full<Bytes>;

/// Answers one request.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// Whether the gateway is ready to serve: `Err` says why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The readiness check of a running gateway: it listens (it would not be
/// running otherwise) and its state store takes a write.
pub fn readiness(store: Arc<dyn StateStore>, listeners: usize) -> Readiness {
    Arc::new(move || {
        if listeners == 0 {
            return Err("not listening".to_string());
        }
        store
            .put(Table::Health, "ready", b"ok")
            .map_err(|e| format!("the state store does not take writes: {e}"))
    })
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `stop`.
pub async fn serve_metrics(
    listener: TcpListener,
    exporter: Exporter,
    ready: Readiness,
    stop: watch::Receiver<bool>,
) {
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let exporter = exporter.clone();
        let ready = ready.clone();
        Box::pin(async move {
            if req.method() != Method::GET {
                return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            }
            match req.uri().path() {
                "/metrics" => {
                    let mut r = Response::new(Full::new(Bytes::from(exporter.render())));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
                "/healthz" | "/readyz" => health(req.uri().path(), &ready),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "not found: try /metrics, /healthz or /readyz\n",
                ),
            }
        })
    });
    // Plain HTTP: nothing secret is served here (counts and names).
    serve_http(listener, None, handler, stop).await;
}

/// The `/healthz` and `/readyz` answers (JSON), shared with the admin API.
pub fn health(path: &str, ready: &Readiness) -> Response<Body> {
    let (status, body) = if path == "/healthz" {
        (StatusCode::OK, r#"{"status":"ok"}"#.to_string())
    } else {
        match ready() {
            Ok(()) => (StatusCode::OK, r#"{"status":"ready"}"#.to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not ready", "reason": why}).to_string(),
            ),
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Serves HTTP/1.1 on `listener` with `handler` until `stop` turns true
/// (connections in progress finish on their own), over TLS when `tls` is
/// given.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let result = match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
