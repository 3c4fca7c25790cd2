//! The admin API over HTTP/1.1: routing, API key checks, JSON answers and
//! Files.com-shaped errors, on top of [`Control`]. The endpoints are
//! described by the OpenAPI document it serves (`openapi.json` here).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth::{ApiKeys, AuthError, Caller};
use super::console::{Console, ConsoleRefusal};
use super::control::{Control, ControlError, HealthReport, StoreHealth};
use super::problem::Problem;
use crate::config::ApiScope;
use crate::ops_endpoint::{Body, Handler, Readiness};

/// The OpenAPI 3.0 document of this API, served at
/// `/api/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// How long one request may take (a remote test or trust waits for the
/// remote's connect timeout at most, a reload for the config to apply).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs returned by a sync's history when the request names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// The largest `limit` a sync's history accepts.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// Serves the admin API on `listener` until `stop` turns true: the
/// `/api/v1/` endpoints (API key or console session required, except the
/// OpenAPI document), the web console under `/console/`, `/healthz` and
/// `/readyz`. `keys` may be replaced while it runs (a
/// config reload).
pub async fn serve_admin(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    control: Arc<dyn Control>,
    keys: Arc<ApiKeys>,
    ready: Readiness,
    stop: watch::Receiver<bool>,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            "admin API at {scheme}://{addr}/api/v1/ (OpenAPI document: {scheme}://{addr}/api/v1/openapi.json); console at {scheme}://{addr}/console/"
        );
    }
    let api = Arc::new(AdminApi::new(control, keys, ready).with_tls(tls.is_some()));
    crate::ops_endpoint::serve_http(listener, tls, api.handler(), stop).await;
}

/// The admin API's request handling, without the listener.
pub struct AdminApi {
    control: Arc<dyn Control>,
    keys: Arc<ApiKeys>,
    ready: Readiness,
    timeout: Duration,
    console: Console,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Healthz,
    Readyz,
    OpenApi,
    Remotes,
    TestRemote(String),
    TrustRemote(String),
    Syncs,
    RunSync(String),
    SyncHistory(String),
    Sessions,
    Reload,
    Health,
    Throughput,
}

impl Endpoint {
    /// The endpoint at `path` and the one method it takes, if any.
    fn parse(path: &str) -> Option<(Endpoint, &'static str)> {
        use Endpoint::*;
        match path {
            "/healthz" => return Some((Healthz, "GET")),
            "/readyz" => return Some((Readyz, "GET")),
            _ => {}
        }
        let rest = path.strip_prefix("/api/v1/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let name = |i: usize| percent_decode(parts[i]).filter(|n| !n.is_empty());
        Some(match parts.as_slice() {
            ["openapi.json"] => (OpenApi, "GET"),
            ["remotes"] => (Remotes, "GET"),
            ["remotes", _, "test"] => (TestRemote(name(1)?), "POST"),
            ["remotes", _, "trust"] => (TrustRemote(name(1)?), "POST"),
            ["syncs"] => (Syncs, "GET"),
            ["syncs", _, "run"] => (RunSync(name(1)?), "POST"),
            ["syncs", _, "history"] => (SyncHistory(name(1)?), "GET"),
            ["sessions"] => (Sessions, "GET"),
            ["health"] => (Health, "GET"),
            ["throughput"] => (Throughput, "GET"),
            ["reload"] => (Reload, "POST"),
            _ => return None,
        })
    }

    /// The scope a key needs for it.
    fn needs(&self) -> ApiScope {
        match self {
            Endpoint::TestRemote(_) | Endpoint::TrustRemote(_) | Endpoint::RunSync(_) => {
                ApiScope::Operator
            }
            Endpoint::Reload => ApiScope::Admin,
            _ => ApiScope::ReadOnly,
        }
    }

    /// Whether it answers without an API key.
    fn is_public(&self) -> bool {
        matches!(
            self,
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::OpenApi
        )
    }
}

impl AdminApi {
    /// The API over `control`, for holders of `keys`.
    pub fn new(control: Arc<dyn Control>, keys: Arc<ApiKeys>, ready: Readiness) -> Self {
        AdminApi {
            control,
            keys,
            ready,
            timeout: REQUEST_TIMEOUT,
            console: Console::default(),
        }
    }

    /// The same with another time limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same served over TLS: the console's cookie is then `Secure`.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.console = Console::new(tls);
        self
    }

    /// The handler for [`crate::ops_endpoint::serve_http`].
    pub fn handler(self: Arc<Self>) -> Handler {
        Arc::new(move |req: Request<Incoming>| {
            let api = self.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                if Console::wants_body(&parts.method, parts.uri.path()) {
                    let limited =
                        http_body_util::Limited::new(body, super::console::MAX_FORM_BYTES);
                    let Ok(collected) = http_body_util::BodyExt::collect(limited).await else {
                        return Problem::bad_params("the form is too large or was cut off")
                            .response(&parts.method, parts.uri.path());
                    };
                    let bytes = collected.to_bytes();
                    return api.console.answer(
                        &api.keys,
                        &parts.method,
                        parts.uri.path(),
                        &parts.headers,
                        &bytes,
                    );
                }
                api.answer(&parts.method, &parts.uri, &parts.headers).await
            })
        })
    }

    /// Answers one request (its body, if any, is not read: no API
    /// endpoint takes one; the console's forms are answered before).
    pub async fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
        let path = uri.path();
        if Console::owns(path) {
            return self.console.answer(&self.keys, method, path, headers, &[]);
        }
        let found = Endpoint::parse(path);
        let public = found.as_ref().is_some_and(|(e, _)| e.is_public());
        let caller = if public {
            None
        } else {
            match self.caller(method, headers) {
                Ok(caller) => Some(caller),
                Err(p) => return p.response(method, path),
            }
        };
        let Some((endpoint, allowed)) = found else {
            return Problem::not_found(format!("no such path: {path}")).response(method, path);
        };
        if method.as_str() != allowed {
            return Problem::method_not_allowed(method, allowed).response(method, path);
        }
        if let Some(c) = caller.as_ref().filter(|c| c.scope < endpoint.needs()) {
            tracing::warn!(target: "audit", api_key = %c.name, op = "admin-api", %method, path, status = 403, "beyond the key's scope");
            return Problem::new(
                StatusCode::FORBIDDEN,
                "not-authorized/insufficient-scope",
                "Insufficient Scope",
                format!(
                    "API key `{}` has the scope `{}`; this request needs `{}`",
                    c.name,
                    c.scope.as_str(),
                    endpoint.needs().as_str()
                ),
            )
            .response(method, path);
        }
        let key = caller.map(|c| c.name);
        let answer = tokio::time::timeout(self.timeout, self.dispatch(&endpoint, uri)).await;
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(p)) => p.response(method, path),
            Err(_) => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "processing-failure/exceeded-runtime-limit",
                "Exceeded Runtime Limit",
                format!(
                    "the request did not finish within {}",
                    humantime::format_duration(self.timeout)
                ),
            )
            .response(method, path),
        };
        if let Some(key) = key {
            let status = response.status().as_u16();
            if *method == Method::GET {
                tracing::debug!(target: "audit", api_key = %key, op = "admin-api", %method, path, status);
            } else {
                tracing::info!(target: "audit", api_key = %key, op = "admin-api", %method, path, status);
            }
        }
        response
    }

    /// Who sends the request: an API key's name, from the key itself or
    /// from the console session it logged in.
    fn caller(&self, method: &Method, headers: &HeaderMap) -> Result<Caller, Problem> {
        let has_key = super::auth::presented_key(headers) != Err(AuthError::Missing);
        if !has_key {
            if let Some(console) = self.console.caller(&self.keys, method, headers) {
                return console
                    .map(|c| Caller {
                        name: format!("{} (console)", c.name),
                        ..c
                    })
                    .map_err(|e| refused_console(&e));
            }
        }
        self.keys
            .check_request(headers, SystemTime::now())
            .map_err(|e| unauthenticated(&e))
    }

    /// `GET /api/v1/health`: the readiness check and what bears on it.
    async fn health(&self) -> Result<HealthReport, Problem> {
        let ready = self.ready.clone();
        let store = blocking(move || ready()).await?;
        let remotes_disabled = self
            .control
            .remotes()
            .into_iter()
            .filter(|r| r.state == "disabled")
            .map(|r| r.name)
            .collect();
        let cluster = self.control.cluster().await;
        Ok(HealthReport {
            ready: store.is_ok(),
            reasons: store.clone().err().into_iter().collect(),
            state_store: match store {
                Ok(()) => StoreHealth {
                    ok: true,
                    detail: "takes writes".to_string(),
                },
                Err(why) => StoreHealth {
                    ok: false,
                    detail: why,
                },
            },
            remotes_disabled,
            cluster,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    async fn dispatch(&self, endpoint: &Endpoint, uri: &Uri) -> Result<Response<Body>, Problem> {
        let control = self.control.clone();
        match endpoint {
            Endpoint::Healthz => Ok(crate::ops_endpoint::health("/healthz", &self.ready)),
            Endpoint::Readyz => {
                // The check writes to the state store: off the async threads.
                let ready = self.ready.clone();
                tokio::task::spawn_blocking(move || crate::ops_endpoint::health("/readyz", &ready))
                    .await
                    .map_err(|e| Problem::internal(format!("the readiness check failed: {e}")))
            }
            Endpoint::OpenApi => Ok(json_bytes(
                StatusCode::OK,
                Bytes::from_static(OPENAPI_JSON.as_bytes()),
            )),
            Endpoint::Remotes => json(StatusCode::OK, &self.control.remotes()),
            Endpoint::TestRemote(name) => {
                let report = control
                    .test_remote(name)
                    .await
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::OK, &report)
            }
            Endpoint::TrustRemote(name) => {
                let report = control
                    .trust_remote(name)
                    .await
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::OK, &report)
            }
            Endpoint::Syncs => {
                let syncs = blocking(move || control.syncs())
                    .await?
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::OK, &syncs)
            }
            Endpoint::RunSync(name) => {
                let started = control
                    .run_sync(name)
                    .await
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::ACCEPTED, &started)
            }
            Endpoint::SyncHistory(name) => {
                let limit = history_limit(uri.query())?;
                let name = name.clone();
                let runs = blocking(move || control.sync_history(&name, limit))
                    .await?
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::OK, &runs)
            }
            Endpoint::Sessions => json(StatusCode::OK, &self.control.sessions()),
            Endpoint::Health => json(StatusCode::OK, &self.health().await?),
            Endpoint::Throughput => json(StatusCode::OK, &self.control.throughput()),
            Endpoint::Reload => {
                let report = control
                    .reload()
                    .await
                    .map_err(|e| control_problem(e, endpoint))?;
                json(StatusCode::OK, &report)
            }
        }
    }
}

/// Runs `f` (which reads the state store) on the blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("the request's task failed: {e}")))
}

/// The 401 for `e`: the same type for a wrong and an expired key, a
/// message that tells them apart.
fn unauthenticated(e: &AuthError) -> Problem {
    match e {
        AuthError::Missing => Problem::new(
            StatusCode::UNAUTHORIZED,
            "not-authenticated/authentication-required",
            "Authentication Required",
            "No API key was provided. Send it as `Authorization: Bearer <key>` or `X-FilesAPI-Key: <key>`.",
        ),
        AuthError::Invalid => Problem::new(
            StatusCode::UNAUTHORIZED,
            "not-authenticated/invalid-credentials",
            "Invalid Credentials",
            "The API key provided could not be used to validate this request.",
        ),
        AuthError::Expired { name } => {
            tracing::warn!(api_key = %name, "admin API: an expired API key was used");
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "not-authenticated/invalid-credentials",
                "Invalid Credentials",
                "The API key provided has expired.",
            )
        }
    }
}

/// The answer to a console request that may not act: 401 for an ended
/// session (the page goes back to its login), 403 for a forged one.
fn refused_console(e: &ConsoleRefusal) -> Problem {
    match e {
        ConsoleRefusal::SessionEnded => Problem::new(
            StatusCode::UNAUTHORIZED,
            "not-authenticated/authentication-required",
            "Authentication Required",
            e.to_string(),
        ),
        ConsoleRefusal::CrossSite(_) => {
            tracing::warn!(target: "audit", op = "console", result = "refused", reason = %e);
            Problem::new(
                StatusCode::FORBIDDEN,
                "not-authorized/cross-site-request",
                "Cross-Site Request Refused",
                e.to_string(),
            )
        }
    }
}

/// The HTTP answer to a failed control action.
fn control_problem(e: ControlError, endpoint: &Endpoint) -> Problem {
    match e {
        ControlError::NotFound { .. } => Problem::not_found(e.to_string()),
        ControlError::Conflict(message) => match endpoint {
            Endpoint::RunSync(_) => Problem::new(
                StatusCode::CONFLICT,
                "processing-failure/sync-in-progress",
                "Sync In Progress",
                message,
            ),
            _ => Problem::new(
                StatusCode::CONFLICT,
                "processing-failure/conflict",
                "Conflict",
                message,
            ),
        },
        ControlError::InvalidConfig(problems) => Problem {
            message: format!(
                "The new config is invalid ({} problem{}); the running config stays.",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            errors: problems,
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "processing-failure/invalid-config",
                "Invalid Config",
                "",
            )
        },
        ControlError::Remote(message) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "processing-failure/remote-server-error",
            "Remote Server Error",
            message,
        ),
        ControlError::Internal(message) => Problem::internal(message),
    }
}

/// The `limit` of a history request (default [`DEFAULT_HISTORY_LIMIT`]).
fn history_limit(query: Option<&str>) -> Result<usize, Problem> {
    let mut limit = DEFAULT_HISTORY_LIMIT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k).as_deref() != Some("limit") {
            continue;
        }
        limit = percent_decode(v)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_params(format!(
                    "`limit` must be a whole number from 1 to {MAX_HISTORY_LIMIT}"
                ))
            })?;
    }
    Ok(limit)
}

/// `%XX` sequences decoded; `None` if one is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `value` as a JSON answer.
fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Result<Response<Body>, Problem> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Problem::internal(format!("cannot write the answer as JSON: {e}")))?;
    Ok(json_bytes(status, Bytes::from(bytes)))
}

fn json_bytes(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
