//! The HTTP layer against a fake [`Control`]: every endpoint, the error
//! bodies, authentication, and the served OpenAPI document.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::admin::auth::hash_key;
use crate::admin::control::{
    ReloadReport, RemoteStatus, RemoteTestReport, RunStarted, SessionStatus, SyncStatus,
    TrustReport,
};
use crate::config::ApiKey;
use crate::sync::records::{Counts, Outcome, RunRecord, Trigger};

const KEY: &str = "gwk_test_key";
const OLD_KEY: &str = "gwk_expired_key";
const READ_ONLY_KEY: &str = "gwk_read_only_key";
const OPERATOR_KEY: &str = "gwk_operator_key";

#[derive(Default)]
struct Fake {
    invalid_config: AtomicBool,
    history_limit: Mutex<Option<usize>>,
}

fn record(n: u64) -> RunRecord {
    RunRecord {
        id: format!("nightly/{n}"),
        sync: "nightly".into(),
        trigger: Trigger::Schedule,
        started_ms: n,
        ended_ms: Some(n + 5),
        updated_ms: None,
        outcome: Outcome::Succeeded,
        pid: 42,
        counts: Counts {
            copied: 1,
            bytes: 10,
            ..Counts::default()
        },
        errors: vec![],
        current_file: None,
    }
}

fn not_found(what: &'static str, name: &str) -> ControlError {
    ControlError::NotFound {
        what,
        name: name.to_string(),
    }
}

#[async_trait]
impl Control for Fake {
    fn remotes(&self) -> Vec<RemoteStatus> {
        vec![RemoteStatus {
            name: "partner".into(),
            kind: "sftp".into(),
            address: "sftp.example:22".into(),
            state: "disabled".into(),
            disabled_reason: Some("host key mismatch".into()),
            host_key_fingerprint: Some("SHA256:old".into()),
            presented_fingerprint: Some("SHA256:new".into()),
            max_connections: 25,
            connections_open: 3,
            connections_in_use: 2,
            connections_idle: 1,
            waiters: 0,
            connect_failures: BTreeMap::from([("refused".into(), 2)]),
            bytes_read: 10,
            bytes_written: 20,
        }]
    }

    async fn test_remote(&self, name: &str) -> Result<RemoteTestReport, ControlError> {
        match name {
            "partner" | "a b/c" => Ok(RemoteTestReport {
                name: name.into(),
                ok: true,
                round_trip_ms: 12,
                details: vec![("source address".into(), "127.0.0.1".into())],
                error: None,
            }),
            "down" => Err(ControlError::Remote("connection refused".into())),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Err(ControlError::Internal("not reached".into()))
            }
            _ => Err(not_found("remote", name)),
        }
    }

    async fn trust_remote(&self, name: &str) -> Result<TrustReport, ControlError> {
        match name {
            "partner" => Ok(TrustReport {
                name: name.into(),
                fingerprint: "SHA256:abc".into(),
                re_enabled: true,
            }),
            "bucket" => Err(ControlError::Conflict(
                "remote `bucket` is an s3 remote".into(),
            )),
            _ => Err(not_found("remote", name)),
        }
    }

    fn syncs(&self) -> Result<Vec<SyncStatus>, ControlError> {
        Ok(vec![SyncStatus {
            name: "nightly".into(),
            direction: "push".into(),
            remote: "partner".into(),
            folder: "/out".into(),
            remote_path: "in".into(),
            schedule: "every 15m".into(),
            next_run: Some("2030-01-01T00:00:00Z".into()),
            running: false,
            last_run: Some(record(1)),
        }])
    }

    async fn run_sync(&self, name: &str) -> Result<RunStarted, ControlError> {
        match name {
            "nightly" => Ok(RunStarted {
                run_id: "nightly/7".into(),
            }),
            "busy" => Err(ControlError::Conflict(
                "sync busy is already running".into(),
            )),
            _ => Err(not_found("sync", name)),
        }
    }

    fn sync_history(&self, name: &str, limit: usize) -> Result<Vec<RunRecord>, ControlError> {
        if name != "nightly" {
            return Err(not_found("sync", name));
        }
        *self.history_limit.lock().unwrap() = Some(limit);
        Ok((0..limit.min(3) as u64).map(record).collect())
    }

    fn sessions(&self) -> Vec<SessionStatus> {
        vec![SessionStatus {
            id: 1,
            user: "alice".into(),
            address: "127.0.0.1:5000".into(),
            connected_at: "2030-01-01T00:00:00Z".into(),
            authenticated: true,
            protocol: "sftp".into(),
            bytes_in: 5,
            bytes_out: 6,
            activity: "downloading /a".into(),
        }]
    }

    fn throughput(&self) -> crate::admin::control::ThroughputReport {
        crate::telemetry::throughput::Throughput::default().report()
    }

    async fn cluster(&self) -> Option<crate::admin::control::ClusterHealth> {
        None
    }

    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        if self.invalid_config.load(Ordering::SeqCst) {
            return Err(ControlError::InvalidConfig(vec![
                "config.toml:3: remotes[0].port: not a number".into(),
                "config.toml:9: users[0].name: must not be empty".into(),
            ]));
        }
        Ok(ReloadReport {
            source: "config.toml".into(),
            changes: BTreeMap::from([("remotes".into(), vec!["partner: added".into()])]),
            needs_restart: vec![],
        })
    }
}

struct Setup {
    api: AdminApi,
    fake: Arc<Fake>,
    keys: Arc<ApiKeys>,
}

fn setup() -> Setup {
    let fake = Arc::new(Fake::default());
    let keys = Arc::new(ApiKeys::new(vec![
        ApiKey {
            name: "ci".into(),
            sha256: hash_key(KEY),
            expires: None,
            scope: ApiScope::Admin,
        },
        ApiKey {
            name: "dashboard".into(),
            sha256: hash_key(READ_ONLY_KEY),
            expires: None,
            scope: ApiScope::ReadOnly,
        },
        ApiKey {
            name: "on-call".into(),
            sha256: hash_key(OPERATOR_KEY),
            expires: None,
            scope: ApiScope::Operator,
        },
        ApiKey {
            name: "old".into(),
            sha256: hash_key(OLD_KEY),
            expires: Some(SystemTime::now() - Duration::from_secs(60)),
            scope: ApiScope::Admin,
        },
    ]));
    let ready: Readiness = Arc::new(|| Ok(()));
    let api = AdminApi::new(fake.clone(), keys.clone(), ready);
    Setup { api, fake, keys }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn call_with(api: &AdminApi, method: Method, uri: &str, headers: HeaderMap) -> Answer {
    let uri: Uri = uri.parse().unwrap();
    let r = api.answer(&method, &uri, &headers).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    assert_eq!(
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{method} {uri}"
    );
    Answer {
        status,
        headers,
        body,
    }
}

fn bearer(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        hyper::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    h
}

async fn call(api: &AdminApi, method: Method, uri: &str) -> Answer {
    call_with(api, method, uri, bearer(KEY)).await
}

/// Asserts the Files.com error shape: exactly the five fields (plus
/// `errors` when given), a UUID v4 instance, and the status repeated.
#[track_caller]
fn assert_error(a: &Answer, status: u16, kind: &str, title: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let o = a.body.as_object().expect("an object");
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.retain(|k| *k != "errors");
    keys.sort();
    assert_eq!(keys, ["error", "http-code", "instance", "title", "type"]);
    assert_eq!(o["http-code"], status);
    assert_eq!(o["type"], kind);
    assert_eq!(o["title"], title);
    assert!(!o["error"].as_str().unwrap().is_empty());
    let instance = uuid::Uuid::parse_str(o["instance"].as_str().unwrap()).expect("a UUID");
    assert_eq!(instance.get_version_num(), 4);
}

#[tokio::test]
async fn lists_remotes_syncs_and_sessions() {
    let s = setup();
    let a = call(&s.api, Method::GET, "/api/v1/remotes").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body[0]["name"], "partner");
    assert_eq!(a.body[0]["connections_open"], 3);
    assert_eq!(a.body[0]["disabled_reason"], "host key mismatch");
    assert_eq!(
        a.headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()),
        Some("no-store")
    );

    let a = call(&s.api, Method::GET, "/api/v1/syncs").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body[0]["name"], "nightly");
    assert_eq!(a.body[0]["last_run"]["outcome"], "succeeded");
    assert_eq!(a.body[0]["last_run"]["updated_ms"], Value::Null);

    let a = call(&s.api, Method::GET, "/api/v1/sessions").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body[0]["user"], "alice");
    assert_eq!(a.body[0]["authenticated"], true);
}

#[tokio::test]
async fn tests_and_trusts_remotes() {
    let s = setup();
    let a = call(&s.api, Method::POST, "/api/v1/remotes/partner/test").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["ok"], true);
    assert_eq!(
        a.body["details"],
        serde_json::json!([{"label": "source address", "value": "127.0.0.1"}])
    );
    assert!(a.body.get("error").is_none());

    // Names are percent-decoded.
    let a = call(&s.api, Method::POST, "/api/v1/remotes/a%20b%2Fc/test").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["name"], "a b/c");

    let a = call(&s.api, Method::POST, "/api/v1/remotes/partner/trust").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["fingerprint"], "SHA256:abc");
    assert_eq!(a.body["re_enabled"], true);

    let a = call(&s.api, Method::POST, "/api/v1/remotes/bucket/trust").await;
    assert_error(&a, 409, "processing-failure/conflict", "Conflict");
    assert_eq!(a.body["error"], "remote `bucket` is an s3 remote");

    let a = call(&s.api, Method::POST, "/api/v1/remotes/down/test").await;
    assert_error(
        &a,
        502,
        "processing-failure/remote-server-error",
        "Remote Server Error",
    );
}

#[tokio::test]
async fn a_missing_remote_or_sync_is_404() {
    let s = setup();
    for (method, uri) in [
        (Method::POST, "/api/v1/remotes/nope/test"),
        (Method::POST, "/api/v1/remotes/nope/trust"),
        (Method::POST, "/api/v1/syncs/nope/run"),
        (Method::GET, "/api/v1/syncs/nope/history"),
    ] {
        let a = call(&s.api, method, uri).await;
        assert_error(&a, 404, "not-found", "Not Found");
        assert!(
            a.body["error"]
                .as_str()
                .unwrap()
                .contains("`nope` not found"),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn runs_syncs_and_reads_their_history() {
    let s = setup();
    let a = call(&s.api, Method::POST, "/api/v1/syncs/nightly/run").await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body["run_id"], "nightly/7");

    let a = call(&s.api, Method::POST, "/api/v1/syncs/busy/run").await;
    assert_error(
        &a,
        409,
        "processing-failure/sync-in-progress",
        "Sync In Progress",
    );

    let a = call(&s.api, Method::GET, "/api/v1/syncs/nightly/history").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.as_array().unwrap().len(), 3);
    assert_eq!(
        *s.fake.history_limit.lock().unwrap(),
        Some(DEFAULT_HISTORY_LIMIT)
    );
    let a = call(
        &s.api,
        Method::GET,
        "/api/v1/syncs/nightly/history?limit=2&x=y",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.as_array().unwrap().len(), 2);
    assert_eq!(a.body[0]["counts"]["copied"], 1);
    for bad in ["0", "-1", "abc", "", "1001", "1.5"] {
        let a = call(
            &s.api,
            Method::GET,
            &format!("/api/v1/syncs/nightly/history?limit={bad}"),
        )
        .await;
        assert_error(
            &a,
            400,
            "bad-request/request-params-invalid",
            "Request Params Invalid",
        );
    }
}

#[tokio::test]
async fn reloads_and_reports_an_invalid_config() {
    let s = setup();
    let a = call(&s.api, Method::POST, "/api/v1/reload").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["changes"]["remotes"][0], "partner: added");
    assert_eq!(a.body["needs_restart"], serde_json::json!([]));

    s.fake.invalid_config.store(true, Ordering::SeqCst);
    let a = call(&s.api, Method::POST, "/api/v1/reload").await;
    assert_error(
        &a,
        422,
        "processing-failure/invalid-config",
        "Invalid Config",
    );
    assert_eq!(a.body["errors"].as_array().unwrap().len(), 2);
    assert!(a.body["error"].as_str().unwrap().contains("2 problems"));
}

#[tokio::test]
async fn a_missing_wrong_or_expired_key_is_401() {
    let s = setup();
    let a = call_with(&s.api, Method::GET, "/api/v1/remotes", HeaderMap::new()).await;
    assert_error(
        &a,
        401,
        "not-authenticated/authentication-required",
        "Authentication Required",
    );
    assert!(a.headers.contains_key(hyper::header::WWW_AUTHENTICATE));

    let a = call_with(&s.api, Method::GET, "/api/v1/remotes", bearer("gwk_wrong")).await;
    assert_error(
        &a,
        401,
        "not-authenticated/invalid-credentials",
        "Invalid Credentials",
    );
    assert_eq!(
        a.body["error"],
        "The API key provided could not be used to validate this request."
    );

    let a = call_with(&s.api, Method::POST, "/api/v1/reload", bearer(OLD_KEY)).await;
    assert_error(
        &a,
        401,
        "not-authenticated/invalid-credentials",
        "Invalid Credentials",
    );
    assert_eq!(a.body["error"], "The API key provided has expired.");

    // Every authenticated endpoint checks the key, before anything else.
    for (method, uri) in [
        (Method::POST, "/api/v1/remotes/partner/test"),
        (Method::POST, "/api/v1/remotes/partner/trust"),
        (Method::GET, "/api/v1/syncs"),
        (Method::POST, "/api/v1/syncs/nightly/run"),
        (Method::GET, "/api/v1/syncs/nightly/history"),
        (Method::GET, "/api/v1/sessions"),
        (Method::POST, "/api/v1/reload"),
        (Method::DELETE, "/api/v1/remotes"),
        (Method::GET, "/api/v1/no-such-thing"),
    ] {
        let a = call_with(&s.api, method, uri, bearer("gwk_wrong")).await;
        assert_eq!(a.status, 401, "{uri}");
    }

    // The Files.com header works too; replaced keys apply at once.
    let mut h = HeaderMap::new();
    h.insert("x-filesapi-key", HeaderValue::from_static(KEY));
    let a = call_with(&s.api, Method::GET, "/api/v1/remotes", h.clone()).await;
    assert_eq!(a.status, 200);
    s.keys.replace(vec![]);
    let a = call_with(&s.api, Method::GET, "/api/v1/remotes", h).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let s = setup();
    for uri in [
        "/api/v1/nothing",
        "/api/v1/remotes/",
        "/api/v1/remotes//test",
        "/api/v1/remotes/x/y",
        "/api/v2/remotes",
        "/",
        "/api/v1/remotes/%zz/test",
    ] {
        let a = call(&s.api, Method::GET, uri).await;
        assert_error(&a, 404, "not-found", "Not Found");
    }
    for (method, uri, allow) in [
        (Method::POST, "/api/v1/remotes", "GET"),
        (Method::GET, "/api/v1/remotes/partner/test", "POST"),
        (Method::DELETE, "/api/v1/syncs/nightly/run", "POST"),
        (Method::GET, "/api/v1/reload", "POST"),
        (Method::PUT, "/healthz", "GET"),
        (Method::POST, "/api/v1/openapi.json", "GET"),
    ] {
        let a = call(&s.api, method, uri).await;
        assert_error(
            &a,
            405,
            "bad-request/method-not-allowed",
            "Method Not Allowed",
        );
        assert_eq!(
            a.headers
                .get(hyper::header::ALLOW)
                .and_then(|v| v.to_str().ok()),
            Some(allow)
        );
    }
}

#[tokio::test]
async fn health_readiness_and_the_document_need_no_key() {
    let s = setup();
    let a = call_with(&s.api, Method::GET, "/healthz", HeaderMap::new()).await;
    assert_eq!((a.status, &a.body["status"]), (200, &Value::from("ok")));
    let a = call_with(&s.api, Method::GET, "/readyz", HeaderMap::new()).await;
    assert_eq!(a.status, 200);

    let not_ready: Readiness = Arc::new(|| Err("the state store is read-only".into()));
    let api = AdminApi::new(s.fake.clone(), s.keys.clone(), not_ready);
    let a = call_with(&api, Method::GET, "/readyz", HeaderMap::new()).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["reason"], "the state store is read-only");

    let a = call_with(
        &s.api,
        Method::GET,
        "/api/v1/openapi.json",
        HeaderMap::new(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body["openapi"].as_str().unwrap().starts_with("3.0"));
}

#[tokio::test]
async fn a_slow_request_times_out_with_504() {
    let s = setup();
    let api = AdminApi::new(s.fake.clone(), s.keys.clone(), Arc::new(|| Ok(())))
        .with_timeout(Duration::from_millis(50));
    let a = call(&api, Method::POST, "/api/v1/remotes/slow/test").await;
    assert_error(
        &a,
        504,
        "processing-failure/exceeded-runtime-limit",
        "Exceeded Runtime Limit",
    );
}

/// The document describes exactly the routes the server has, each with
/// its one method, and every error response uses the error schema.
#[test]
fn the_openapi_document_matches_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
    let paths = doc["paths"].as_object().unwrap();
    let mut described = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().unwrap();
        assert_eq!(item.len(), 1, "{path} has one method");
        let (method, op) = item.iter().next().unwrap();
        let concrete = path.replace("{name}", "x");
        let (endpoint, allowed) = Endpoint::parse(&concrete)
            .unwrap_or_else(|| panic!("{path} is not a route of the server"));
        assert_eq!(method.to_uppercase(), allowed, "{path}");
        assert_eq!(
            op.get("security").is_some(),
            endpoint.is_public(),
            "{path}: public endpoints (only) say `security: []`"
        );
        if !endpoint.is_public() {
            assert!(op["responses"].get("401").is_some(), "{path} documents 401");
        }
        if endpoint.needs() > ApiScope::ReadOnly {
            assert!(op["responses"].get("403").is_some(), "{path} documents 403");
        }
        assert!(op["responses"].get("405").is_some(), "{path} documents 405");
        described.push(concrete);
    }
    described.sort();
    let mut routes = vec![
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/v1/remotes",
        "/api/v1/remotes/x/test",
        "/api/v1/remotes/x/trust",
        "/api/v1/syncs",
        "/api/v1/syncs/x/run",
        "/api/v1/syncs/x/history",
        "/api/v1/sessions",
        "/api/v1/health",
        "/api/v1/throughput",
        "/api/v1/reload",
    ];
    routes.sort();
    assert_eq!(described, routes);
}

/// A console session acts through the API with its cookie, POSTs only
/// with its CSRF token; the health report gathers readiness and remotes.
#[tokio::test]
async fn a_console_session_uses_the_api_with_its_token() {
    let s = setup();
    let login = s.api.console.answer(
        &s.keys,
        &Method::POST,
        "/console/login",
        &HeaderMap::new(),
        format!("key={KEY}").as_bytes(),
    );
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = s
        .api
        .answer(&Method::GET, &"/console/".parse().unwrap(), &{
            let mut h = HeaderMap::new();
            h.insert("cookie", cookie.parse().unwrap());
            h
        })
        .await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let body = http_body_util::BodyExt::collect(page.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8(body.to_vec()).unwrap();
    let token = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    assert_eq!(token.len(), 64);

    let with = |pairs: &[(&'static str, &str)]| {
        let mut h = HeaderMap::new();
        h.insert("cookie", cookie.parse().unwrap());
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    };
    let a = call_with(&s.api, Method::GET, "/api/v1/health", with(&[])).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["ready"], true);
    assert_eq!(a.body["remotes_disabled"], serde_json::json!(["partner"]));
    assert_eq!(a.body["cluster"], Value::Null);
    let forged = call_with(&s.api, Method::POST, "/api/v1/syncs/nightly/run", with(&[])).await;
    assert_error(
        &forged,
        403,
        "not-authorized/cross-site-request",
        "Cross-Site Request Refused",
    );
    let cross = call_with(
        &s.api,
        Method::POST,
        "/api/v1/syncs/nightly/run",
        with(&[("x-csrf-token", &token), ("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(cross.status, 403);
    let ok = call_with(
        &s.api,
        Method::POST,
        "/api/v1/syncs/nightly/run",
        with(&[("x-csrf-token", &token), ("sec-fetch-site", "same-origin")]),
    )
    .await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let ended = call_with(&s.api, Method::GET, "/api/v1/remotes", {
        let mut h = HeaderMap::new();
        h.insert("cookie", "gw_console=0000".parse().unwrap());
        h
    })
    .await;
    assert_eq!(ended.status, 401);
}

/// Each scope does what it names and gets 403 beyond it, in the
/// Files.com shape.
#[tokio::test]
async fn keys_act_within_their_scope() {
    let s = setup();
    let as_key = |key: &'static str, method: Method, path: &'static str| {
        let api = &s.api;
        async move { call_with(api, method, path, bearer(key)).await }
    };
    for key in [READ_ONLY_KEY, OPERATOR_KEY, KEY] {
        let a = as_key(key, Method::GET, "/api/v1/remotes").await;
        assert_eq!(a.status, 200, "{key}: {}", a.body);
    }
    for path in [
        "/api/v1/remotes/partner/test",
        "/api/v1/remotes/partner/trust",
        "/api/v1/syncs/nightly/run",
        "/api/v1/reload",
    ] {
        let a = as_key(READ_ONLY_KEY, Method::POST, path).await;
        assert_error(
            &a,
            403,
            "not-authorized/insufficient-scope",
            "Insufficient Scope",
        );
        assert!(
            a.body["error"].as_str().unwrap().contains("`read-only`"),
            "{path}: {}",
            a.body
        );
    }
    let a = as_key(OPERATOR_KEY, Method::POST, "/api/v1/syncs/nightly/run").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let a = as_key(OPERATOR_KEY, Method::POST, "/api/v1/remotes/partner/trust").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = as_key(OPERATOR_KEY, Method::POST, "/api/v1/reload").await;
    assert_error(
        &a,
        403,
        "not-authorized/insufficient-scope",
        "Insufficient Scope",
    );
    assert!(
        a.body["error"].as_str().unwrap().contains("needs `admin`"),
        "{}",
        a.body
    );
    let a = as_key(KEY, Method::POST, "/api/v1/reload").await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// The real listener: HTTP/1.1 over TCP, and `stop` ends it.
#[tokio::test]
async fn serves_over_tcp_until_stopped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve_admin(
        listener,
        None,
        s.fake.clone(),
        s.keys.clone(),
        Arc::new(|| Ok(())),
        stop_rx,
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "GET /api/v1/remotes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"partner\""), "{text}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_admin returns after stop")
        .unwrap();
}
