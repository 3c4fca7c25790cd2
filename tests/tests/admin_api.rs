//! The admin HTTP API end to end: the real `gateway serve` with an
//! `[admin]` section in front of the tests' own sshd, driven with curl
//! (every endpoint, wrong, expired and missing keys, missing things) and
//! checked against its own OpenAPI document by schemathesis.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::sshd::*;
use e2e::*;
use serde_json::Value;

/// The API key every test configures.
const KEY: &str = "gwk_e2e_0123456789abcdef0123456789abcdef";
/// A key whose `expires` is in the past.
const EXPIRED_KEY: &str = "gwk_e2e_expired_0123456789abcdef012345";
/// The sync of the set-up.
const SYNC: &str = "outgoing";
/// An FTP remote nobody listens for (test fails, trust is refused).
const FTP_REMOTE: &str = "legacy";

/// A gateway with the admin API on, a mount and a sync on the sshd
/// remote, and an FTP remote that cannot be reached.
struct AdminSetup {
    s: MountSetup,
    admin: SocketAddr,
}

fn admin_keys() -> Vec<AdminKeyConfig> {
    vec![
        AdminKeyConfig::for_key("ci", KEY, Some("2999-01-01T00:00:00Z")),
        AdminKeyConfig::for_key("old", EXPIRED_KEY, Some("2020-01-01T00:00:00Z")),
    ]
}

impl AdminSetup {
    fn start() -> AdminSetup {
        Self::start_with(admin_keys())
    }

    fn start_with(keys: Vec<AdminKeyConfig>) -> AdminSetup {
        let mut s = MountSetup::new().expect("sshd and config");
        let drop = s.root.join("drop");
        fs::create_dir_all(&drop).unwrap();
        chown_to_test_user(&drop).unwrap();
        fs::create_dir_all(s.env.data.join("outbound")).unwrap();
        let port = free_port().unwrap();
        s.cfg.remotes.push(
            RemoteConfig::ftp(FTP_REMOTE, "127.0.0.1", port, "nobody")
                .password("x")
                .tls("never"),
        );
        s.cfg
            .syncs
            .push(SyncConfig::new(SYNC, "/outbound", REMOTE, "drop", "push").settle("0s"));
        s.cfg = s.cfg.clone().admin("127.0.0.1:0", keys);
        s.start_gateway().expect("gateway starts");
        let admin = admin_address(s.gw()).unwrap_or_else(|| {
            panic!(
                "the gateway does not log `admin API at http://ADDR/` (is serve_admin wired into serve?)\n{}",
                s.logs()
            )
        });
        AdminSetup { s, admin }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `curl -X METHOD URL` with `Authorization: Bearer KEY` (no header
    /// when `key` is None).
    fn call(&self, method: &str, path: &str, key: Option<&str>) -> Reply {
        let headers: Vec<String> = key
            .map(|k| vec![format!("Authorization: Bearer {k}")])
            .unwrap_or_default();
        curl(method, &self.url(path), &headers)
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, Some(KEY))
    }

    fn post(&self, path: &str) -> Reply {
        self.call("POST", path, Some(KEY))
    }

    fn logs(&self) -> String {
        self.s.logs()
    }
}

/// The admin API's address from the gateway's log line
/// `admin API at http://ADDR/api/v1/ ...`.
fn admin_address(gw: &Gateway) -> Option<SocketAddr> {
    let line = gw.stderr.wait_for(Duration::from_secs(30), |l| {
        l.contains("admin API at http://")
    })?;
    let rest = line.split("admin API at http://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs curl; the status and content type come from `--write-out`.
fn curl(method: &str, url: &str, headers: &[String]) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "120", "-X", method]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.args(["-w", "\n%{http_code} %{content_type}", url]);
    let out = run_with_timeout(cmd, Duration::from_secs(150)).expect("curl runs");
    assert!(out.success(), "curl failed\n{out}");
    let (body, last) = out
        .stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("no status line\n{out}"));
    let (status, content_type) = last.split_once(' ').unwrap_or((last, ""));
    Reply {
        status: status
            .parse()
            .unwrap_or_else(|_| panic!("bad status\n{out}")),
        content_type: content_type.to_string(),
        body: body.to_string(),
    }
}

/// Asserts Files.com's error body: exactly `error`, `http-code`,
/// `instance` (a UUID), `title` and `type` (and `errors` if present).
#[track_caller]
fn assert_error(r: &Reply, status: u16, kind: &str, title: &str) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    let v = r.json();
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {r:?}"));
    let mut keys: Vec<&str> = o
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "errors")
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["error", "http-code", "instance", "title", "type"],
        "{r:?}"
    );
    assert_eq!(o["http-code"], status, "{r:?}");
    assert_eq!(o["type"], kind, "{r:?}");
    assert_eq!(o["title"], title, "{r:?}");
    let instance = o["instance"].as_str().unwrap_or_default();
    let groups: Vec<usize> = instance.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "instance is not a UUID: {r:?}");
    assert!(
        instance.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "instance is not a UUID: {r:?}"
    );
    v
}

/// Polls the sync's history until its newest run has ended.
fn wait_for_run(a: &AdminSetup, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = a.get(&format!("/api/v1/syncs/{SYNC}/history?limit=5"));
        assert_eq!(r.status, 200, "{r:?}");
        let runs = r.json();
        if let Some(run) = runs
            .as_array()
            .and_then(|v| v.iter().find(|x| x["id"] == run_id))
        {
            if run["outcome"] != "running" {
                return run.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not end within 120 s: {runs}\n{}",
            a.logs()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn admin_api_every_endpoint() {
    let a = AdminSetup::start();

    // Health and the document need no key.
    let r = a.call("GET", "/healthz", None);
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, Value::from("ok")),
        "{r:?}"
    );
    let r = a.call("GET", "/readyz", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    let r = a.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3.0"));

    // Remotes.
    let r = a.get("/api/v1/remotes");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    let remotes = r.json();
    let partner = remotes
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == REMOTE))
        .unwrap_or_else(|| panic!("no {REMOTE} in {remotes}"));
    assert_eq!(partner["kind"], "sftp");
    assert_eq!(partner["state"], "enabled");
    assert_eq!(partner["max_connections"], 25);
    for field in ["connections_open", "connections_idle", "waiters"] {
        assert!(partner[field].is_u64(), "{field} in {partner}");
    }

    let r = a.post(&format!("/api/v1/remotes/{REMOTE}/test"));
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    let report = r.json();
    assert_eq!(report["ok"], true, "{report}");
    let labels: Vec<&str> = report["details"]
        .as_array()
        .map(|v| v.iter().filter_map(|d| d["label"].as_str()).collect())
        .unwrap_or_default();
    for label in ["source address", "host key", "round trip"] {
        assert!(labels.contains(&label), "no `{label}` in {report}");
    }
    let fingerprint = a.s.sshd.host_key_fingerprint();
    assert!(report.to_string().contains(&fingerprint), "{report}");

    // A remote that cannot be reached: a verdict, not an error.
    let r = a.post(&format!("/api/v1/remotes/{FTP_REMOTE}/test"));
    assert_eq!(r.status, 200, "{r:?}");
    let report = r.json();
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );

    let r = a.post(&format!("/api/v1/remotes/{REMOTE}/trust"));
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    let trusted = r.json();
    assert_eq!(trusted["fingerprint"], fingerprint.as_str(), "{trusted}");
    assert_eq!(trusted["re_enabled"], false, "{trusted}");
    let r = a.post(&format!("/api/v1/remotes/{FTP_REMOTE}/trust"));
    assert_error(&r, 409, "processing-failure/conflict", "Conflict");

    // Syncs: list, run now, history.
    let r = a.get("/api/v1/syncs");
    assert_eq!(r.status, 200, "{r:?}");
    let syncs = r.json();
    let sync = syncs
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == SYNC))
        .unwrap_or_else(|| panic!("no {SYNC} in {syncs}"));
    assert_eq!(sync["direction"], "push");
    assert_eq!(sync["remote"], REMOTE);
    assert_eq!(sync["running"], false);

    fs::write(a.s.env.data.join("outbound/report.csv"), b"a,b\n1,2\n").unwrap();
    let r = a.post(&format!("/api/v1/syncs/{SYNC}/run"));
    assert_eq!(r.status, 202, "{r:?}\n{}", a.logs());
    let run_id = r.json()["run_id"].as_str().unwrap_or_default().to_string();
    assert!(!run_id.is_empty(), "{r:?}");
    let run = wait_for_run(&a, &run_id);
    assert_eq!(run["outcome"], "succeeded", "{run}\n{}", a.logs());
    assert_eq!(run["counts"]["copied"], 1, "{run}");
    assert_eq!(
        fs::read(a.s.root.join("drop/report.csv")).unwrap_or_default(),
        b"a,b\n1,2\n"
    );
    let r = a.get(&format!("/api/v1/syncs/{SYNC}/history?limit=1"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{r:?}");
    let r = a.get(&format!("/api/v1/syncs/{SYNC}/history?limit=0"));
    assert_error(
        &r,
        400,
        "bad-request/request-params-invalid",
        "Request Params Invalid",
    );

    // Sessions: one held open by an sftp reading its batch from a pipe.
    let r = a.get("/api/v1/sessions");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json().is_array(), "{r:?}");
    let mut sftp = open_sftp_session(&a);
    let deadline = Instant::now() + Duration::from_secs(30);
    let session = loop {
        let sessions = a.get("/api/v1/sessions").json();
        if let Some(s) = sessions
            .as_array()
            .and_then(|v| v.iter().find(|x| x["user"] == "alice"))
        {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "alice's session is not listed: {sessions}\n{}",
            a.logs()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(session["authenticated"], true, "{session}");
    assert!(session["address"]
        .as_str()
        .unwrap_or_default()
        .starts_with("127.0.0.1"));
    drop(sftp.stdin.take());
    let _ = sftp.wait();

    // Reload: unchanged, invalid (refused, nothing changes), new keys.
    let r = a.post("/api/v1/reload");
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    assert!(r.json()["source"].as_str().is_some(), "{r:?}");
    let good = fs::read_to_string(&a.s.config_path).unwrap();
    fs::write(&a.s.config_path, format!("{good}\n[server]\nbogus = 1\n")).unwrap();
    let r = a.post("/api/v1/reload");
    let v = assert_error(
        &r,
        422,
        "processing-failure/invalid-config",
        "Invalid Config",
    );
    assert!(
        v["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{r:?}"
    );
    let new_key = "gwk_e2e_rotated_0123456789abcdef0123456";
    let mut cfg = a.s.cfg.clone();
    cfg.admin = Some(AdminConfig {
        listen: "127.0.0.1:0".into(),
        keys: vec![AdminKeyConfig::for_key("rotated", new_key, None)],
        tls: None,
    });
    cfg.write(&a.s.config_path).unwrap();
    let r = a.post("/api/v1/reload");
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    let r = a.call("GET", "/api/v1/remotes", Some(new_key));
    assert_eq!(
        r.status, 200,
        "the key added by the reload is refused: {r:?}"
    );
    let r = a.get("/api/v1/remotes");
    assert_error(
        &r,
        401,
        "not-authenticated/invalid-credentials",
        "Invalid Credentials",
    );

    // Every admin action is in the audit log.
    let log = a.s.gateway_log();
    assert!(
        log.lines()
            .any(|l| l.contains("admin-api") && l.contains("/reload")),
        "no audit line for the reloads\n{log}"
    );
}

/// An sftp client that logs in as alice and waits for its batch on stdin.
fn open_sftp_session(a: &AdminSetup) -> std::process::Child {
    let mut cmd = Command::new("sftp");
    cmd.args(["-F", "/dev/null", "-P", &a.s.gw().port().to_string()])
        .args(["-o", "StrictHostKeyChecking=accept-new"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            a.s.env.known_hosts.display()
        ))
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&a.s.key)
        .args(["-b", "-", "alice@127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawning sftp");
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.write_all(b"pwd\n");
    }
    child
}

#[test]
fn admin_api_refuses_wrong_expired_and_missing_keys_and_things() {
    let a = AdminSetup::start();

    let r = a.call("GET", "/api/v1/remotes", None);
    assert_error(
        &r,
        401,
        "not-authenticated/authentication-required",
        "Authentication Required",
    );

    let r = a.call("GET", "/api/v1/remotes", Some("gwk_wrong"));
    let v = assert_error(
        &r,
        401,
        "not-authenticated/invalid-credentials",
        "Invalid Credentials",
    );
    assert_eq!(
        v["error"], "The API key provided could not be used to validate this request.",
        "{r:?}"
    );
    // Each error has its own instance id, and the log names it.
    let again = a.call("GET", "/api/v1/remotes", Some("gwk_wrong")).json();
    assert_ne!(v["instance"], again["instance"]);
    let instance = v["instance"].as_str().unwrap_or_default().to_string();
    assert!(
        a.s.gw()
            .stderr
            .wait_for(Duration::from_secs(5), |l| l.contains(&instance))
            .is_some(),
        "the log does not mention error {instance}\n{}",
        a.logs()
    );

    let r = a.call("POST", "/api/v1/reload", Some(EXPIRED_KEY));
    let v = assert_error(
        &r,
        401,
        "not-authenticated/invalid-credentials",
        "Invalid Credentials",
    );
    assert!(
        v["error"].as_str().unwrap_or_default().contains("expired"),
        "{r:?}"
    );

    // The Files.com header works as well as Bearer.
    let r = curl(
        "GET",
        &a.url("/api/v1/sessions"),
        &[format!("X-FilesAPI-Key: {KEY}")],
    );
    assert_eq!(r.status, 200, "{r:?}");

    for (method, path) in [
        ("POST", "/api/v1/remotes/nope/test".to_string()),
        ("POST", "/api/v1/remotes/nope/trust".to_string()),
        ("POST", "/api/v1/syncs/nope/run".to_string()),
        ("GET", "/api/v1/syncs/nope/history".to_string()),
        ("GET", "/api/v1/no-such-endpoint".to_string()),
        // A name with a slash, percent-encoded, is one name.
        ("POST", format!("/api/v1/remotes/{REMOTE}%2Fx/test")),
    ] {
        let r = a.call(method, &path, Some(KEY));
        assert_error(&r, 404, "not-found", "Not Found");
    }
    let r = a.call("DELETE", "/api/v1/remotes", Some(KEY));
    assert_error(
        &r,
        405,
        "bad-request/method-not-allowed",
        "Method Not Allowed",
    );
    let r = a.call("GET", "/api/v1/reload", Some(KEY));
    assert_error(
        &r,
        405,
        "bad-request/method-not-allowed",
        "Method Not Allowed",
    );
}

/// `gateway admin new-key` prints a key once and config lines whose hash
/// makes that key work.
#[test]
fn admin_new_key_prints_a_key_that_works() {
    let out = gateway_run(
        &[
            "admin",
            "new-key",
            "deploy bot",
            "--expires",
            "2999-01-01T00:00:00Z",
            "--scope",
            "read-only",
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_ok(&out, "gateway admin new-key");
    let key = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("gwk_"))
        .unwrap_or_else(|| panic!("no key printed\n{out}"))
        .to_string();
    assert_eq!(key.len(), 4 + 64, "{out}");
    let value = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no `{name} = ` line\n{out}"))
    };
    assert!(out.stdout.contains("[[admin.keys]]"), "{out}");
    assert_eq!(value("name"), "deploy bot");
    assert_eq!(value("expires"), "2999-01-01T00:00:00Z");
    assert_eq!(value("scope"), "read-only");
    let hash = value("hash");
    assert_eq!(
        hash,
        format!("sha256:{}", sha256_hex(key.as_bytes())),
        "{out}"
    );
    assert_eq!(
        out.stdout.matches(&key).count(),
        1,
        "the key is printed once\n{out}"
    );

    let operator_key = "gwk_e2e_operator_0123456789abcdef01234567";
    let a = AdminSetup::start_with(vec![
        AdminKeyConfig {
            name: value("name"),
            hash,
            expires: Some(value("expires")),
            scope: Some(value("scope")),
        },
        AdminKeyConfig::for_key("on-call", operator_key, None).scope("operator"),
    ]);
    let r = a.call("GET", "/api/v1/remotes", Some(&key));
    assert_eq!(r.status, 200, "{r:?}\n{}", a.logs());
    // Read-only: every POST is beyond its scope; operator: all but reload.
    fs::write(a.s.env.data.join("outbound/a.txt"), b"a\n").unwrap();
    for path in [
        format!("/api/v1/remotes/{REMOTE}/test"),
        format!("/api/v1/syncs/{SYNC}/run"),
        "/api/v1/reload".to_string(),
    ] {
        let r = a.call("POST", &path, Some(&key));
        assert_error(
            &r,
            403,
            "not-authorized/insufficient-scope",
            "Insufficient Scope",
        );
    }
    let r = a.call(
        "POST",
        &format!("/api/v1/syncs/{SYNC}/run"),
        Some(operator_key),
    );
    assert_eq!(r.status, 202, "{r:?}\n{}", a.logs());
    let r = a.call("POST", "/api/v1/reload", Some(operator_key));
    assert_error(
        &r,
        403,
        "not-authorized/insufficient-scope",
        "Insufficient Scope",
    );
    assert!(r.body.contains("needs `admin`"), "{r:?}");

    let out = gateway_run(
        &["admin", "new-key", "x", "--expires", "soon"],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_failed(&out, "gateway admin new-key with a bad time");
    assert_output_contains(&out, "RFC 3339", "gateway admin new-key with a bad time");
}

/// Whether schemathesis can run (`scripts/test.sh` installs it).
fn schemathesis_available() -> bool {
    Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn admin_api_matches_its_openapi_document() {
    if !schemathesis_available() {
        eprintln!(
            "SKIPPED: schemathesis is not installed (`python3 -m pip install schemathesis`, as scripts/test.sh does)"
        );
        return;
    }
    let a = AdminSetup::start();
    let report = a.s.env.path("schemathesis");
    let mut cmd = Command::new("schemathesis");
    cmd.current_dir(a.s.env.dir.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .arg("run")
        .arg(a.url("/api/v1/openapi.json"))
        .args(["--checks", "all", "--max-examples", "10", "--seed", "1"])
        .args(["--workers", "2", "--max-failures", "20", "--no-color"])
        .args(["--generation-database", "none", "--request-timeout", "30"])
        .arg("--report-dir")
        .arg(&report)
        .arg("-H")
        .arg(format!("Authorization: Bearer {KEY}"));
    let out = run_with_timeout(cmd, Duration::from_secs(240)).expect("schemathesis runs");
    assert!(
        out.success(),
        "schemathesis found the API and its document disagree\n{out}\n{}",
        a.logs()
    );
}

/// The admin API and console over TLS: curl trusts the test CA, plain
/// HTTP gets no answer, the console's cookie is `Secure`; and `config
/// check` refuses plain HTTP on an address other than loopback, naming
/// the key.
#[test]
fn admin_api_over_tls_and_plain_http_only_on_loopback() {
    let mut s = MountSetup::new().expect("sshd and config");
    let certs = s.env.path("certs");
    fs::create_dir_all(&certs).unwrap();
    e2e::ftpd::make_certs(&certs).expect("test certificates");
    let pem = |n: &str| certs.join(n).display().to_string();
    s.cfg.admin = Some(AdminConfig {
        listen: "127.0.0.1:0".into(),
        keys: admin_keys(),
        tls: Some((pem("server.pem"), pem("server.key"))),
    });
    s.start_gateway().expect("gateway starts");
    let admin = e2e::ops::logged_http_address(s.gw(), "admin API at https://")
        .unwrap_or_else(|| panic!("no `admin API at https://` line\n{}", s.logs()));
    let url = format!("https://{admin}");

    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--cacert", &pem("ca.pem")])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{url}/api/v1/remotes"));
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert!(out.success() && out.stdout.ends_with("\n200"), "{out}");
    assert!(out.stdout.contains(REMOTE), "{out}");

    // A client that does not trust the certificate, and plain HTTP, fail.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30"])
        .arg(format!("{url}/healthz"));
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert!(!out.success(), "curl trusted an unknown CA\n{out}");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg(format!("http://{admin}/healthz"));
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert!(
        !out.success() || !out.stdout.starts_with('2'),
        "plain HTTP was answered on the TLS port\n{out}"
    );

    // The console's login over TLS sets a Secure cookie.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "30", "--cacert", &pem("ca.pem")])
        .args(["-H", &format!("Origin: {url}")])
        .args(["--data-urlencode", &format!("key={KEY}")])
        .arg(format!("{url}/console/login"));
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    let cookie = out
        .stdout
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie\n{out}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }

    // Plain HTTP on a public address: refused, naming the key and line.
    let mut cfg = s.cfg.clone();
    cfg.admin = Some(AdminConfig {
        listen: "0.0.0.0:9465".into(),
        keys: admin_keys(),
        tls: None,
    });
    let path = s.env.path("public-admin.toml");
    cfg.write(&path).unwrap();
    let out = gateway_run(
        &["config", "check", "--config", &path.display().to_string()],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_failed(&out, "config check with plain HTTP admin on 0.0.0.0");
    assert_output_contains(&out, "admin.listen", "config check");
    assert_output_contains(&out, "not a loopback address", "config check");
    assert_output_contains(&out, "admin.certificate", "config check");
}
