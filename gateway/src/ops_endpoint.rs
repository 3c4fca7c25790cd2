//! The operations endpoint: Prometheus metrics (`/metrics`) and health
//! checks (`/healthz`: the process answers; `/readyz`: it listens and its
//! state store takes writes), on `metrics.listen`.
//!
//! Metrics are recorded through the `metrics` facade everywhere (backends,
//! sessions, syncs) and rendered here in the Prometheus text format; the
//! exporter's own HTTP listener is not used, so this server is one small
//! hyper service that the admin API can share ([`serve_http`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{StateStore, Table};

/// A response body.
pub type Body = Full<Bytes>;

/// Answers one request.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// Whether the gateway is ready to serve: `Err` says why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Installs the process-wide Prometheus recorder (once) and describes the
/// gateway's own metrics.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    // Upkeep drains histograms' buckets now and then; without the
    // exporter's own listener nobody else calls it.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!("gateway_sessions", "Inbound sessions logged in now");
    describe_gauge!(
        "gateway_connections_unauthenticated",
        "Inbound connections that have not logged in yet"
    );
    describe_counter!(
        "gateway_logins_total",
        "Login attempts by method and outcome (ok, rejected, refused, banned)"
    );
    describe_counter!(
        "gateway_sessions_refused_total",
        "Connections refused or closed by a session limit, by reason (max_unauthenticated, max_unauthenticated_per_address, max_sessions, max_sessions_per_user, grace_time, idle_timeout)"
    );
    describe_counter!(
        "gateway_throttled_addresses_total",
        "Addresses banned after repeated failed logins"
    );
    describe_counter!("gateway_sync_runs_total", "Sync runs by outcome");
    describe_counter!("gateway_sync_files_copied_total", "Files copied by syncs");
    describe_counter!("gateway_sync_bytes_copied_total", "Bytes copied by syncs");
    describe_counter!(
        "gateway_sync_files_failed_total",
        "Files that failed in syncs"
    );
    describe_gauge!(
        "gateway_sync_last_success_timestamp_seconds",
        "When each sync last ended a run without failures"
    );
    describe_counter!("gateway_reloads_total", "Config reloads by outcome");
    describe_counter!(
        "gateway_s3_requests_total",
        "Requests to the S3 endpoint by HTTP method and status class (2xx, 4xx, 5xx)"
    );
}

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
    recorder: PrometheusHandle,
    ready: Readiness,
    stop: watch::Receiver<bool>,
) {
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let recorder = recorder.clone();
        let ready = ready.clone();
        Box::pin(async move {
            if req.method() != Method::GET {
                return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            }
            match req.uri().path() {
                "/metrics" => {
                    let mut r = Response::new(Full::new(Bytes::from(recorder.render())));
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
    serve_http(listener, handler, stop).await;
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
/// (connections in progress finish on their own).
pub async fn serve_http(listener: TcpListener, handler: Handler, mut stop: watch::Receiver<bool>) {
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
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
