//! The web console in a real browser: Debian's chromium, headless, driven
//! through chromedriver (`e2e::browser`), against the real `gateway serve`
//! in front of the tests' own sshd. An operator logs in (a wrong key is
//! refused), watches the remote's pool bar fill while five slow downloads
//! run and the sessions page show them, trusts the sshd's swapped host key
//! and sees the remote work again, runs a sync and sees it in the history,
//! and a forged cross-site POST from another page is refused. Screenshots
//! of each step go to `target/tmp/console-screenshots/`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use e2e::browser::{self, Browser};
use e2e::ops::{http, logged_http_address};
use e2e::sshd::*;
use e2e::*;
use serde_json::{json, Value};

/// The API key the operator logs in with.
const KEY: &str = "gwk_e2e_console_0123456789abcdef01234567";
/// A read-only key (a dashboard's).
const READ_ONLY_KEY: &str = "gwk_e2e_console_ro_0123456789abcdef012345";
/// The sync of the set-up.
const SYNC: &str = "outgoing";
/// The remote's connection cap: five downloads fill it and wait.
const CAP: usize = 3;
/// Downloads at once.
const DOWNLOADS: usize = 5;
/// How long the page may take to show a change (it polls every second).
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

/// Where the screenshots go (the integration tests' output folder).
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// A browser, or `None` (skipped) where chromium is missing outside CI.
fn browser() -> Option<Browser> {
    if let Some(why) = browser::unavailable() {
        if std::env::var_os("CI").is_some() {
            panic!("the console's browser tests cannot run: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let dir = screenshots();
    let _ = fs::remove_dir_all(&dir);
    Some(Browser::start(&dir).expect("headless chromium starts"))
}

/// A value the page computes from `script` (`arguments[0]` is `arg`).
fn page_value(b: &mut Browser, script: &str, arg: &str) -> Value {
    b.eval(script, json!([arg])).unwrap_or(Value::Null)
}

/// The remote's article's `attribute` (a `data-*` of its pool bar or
/// itself), as the page shows it now.
fn pool(b: &mut Browser, field: &str) -> Option<u64> {
    page_value(
        b,
        "const p = document.querySelector(`article.remote[data-remote=\"${arguments[0]}\"] .pool`);\
         return p ? p.dataset : null;",
        REMOTE,
    )[field]
        .as_str()
        .and_then(|v| v.parse().ok())
}

fn remote_state(b: &mut Browser) -> String {
    page_value(
        b,
        "const a = document.querySelector(`article.remote[data-remote=\"${arguments[0]}\"]`);\
         return a ? a.dataset.state : '';",
        REMOTE,
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn text_in_remote(b: &mut Browser, css: &str) -> String {
    page_value(
        b,
        &format!(
            "const e = document.querySelector(`article.remote[data-remote=\"${{arguments[0]}}\"] {css}`);\
             return e ? e.textContent : '';"
        ),
        REMOTE,
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// What a screen reader would miss on the page shown now: controls
/// without an accessible name, fields without a label, tables without a
/// caption or header scopes, a pool bar without its words.
fn accessibility_problems(b: &mut Browser) -> Vec<String> {
    let v = b
        .eval(
            r#"const out = [];
            const visible = e => !e.closest('[hidden]');
            for (const e of document.querySelectorAll('button, a[href]')) {
              if (!visible(e)) continue;
              const name = (e.getAttribute('aria-label') || e.textContent || '').trim();
              if (!name) out.push('unnamed ' + e.tagName + ' ' + e.outerHTML.slice(0, 80));
            }
            for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
              if (!visible(e)) continue;
              if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                out.push('unlabelled field ' + e.outerHTML.slice(0, 80));
            }
            for (const t of document.querySelectorAll('table')) {
              if (!visible(t)) continue;
              if (!t.caption && !t.getAttribute('aria-label') && !t.getAttribute('aria-labelledby'))
                out.push('table without caption: ' + (t.id || t.className));
              for (const th of t.querySelectorAll('thead th'))
                if (!th.getAttribute('scope')) out.push('th without scope: ' + th.textContent);
            }
            for (const p of document.querySelectorAll('.pool')) {
              if (p.getAttribute('role') !== 'img' || !/in use/.test(p.getAttribute('aria-label') || ''))
                out.push('pool bar without words');
            }
            return out;"#,
            json!([]),
        )
        .unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Serves one page from another origin (another port of 127.0.0.1) until
/// dropped: a form that POSTs to the admin API as soon as it loads, the
/// classic cross-site request forgery.
struct ForgingSite {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl ForgingSite {
    fn start(target: &str) -> ForgingSite {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = format!(
            "<!doctype html><title>prize</title>\
             <form method=post action=\"{target}\"><input name=x value=1></form>\
             <script>document.forms[0].submit()</script>"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf);
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                            page.len()
                        );
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ForgingSite { port, stop }
    }
}

impl Drop for ForgingSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The runs of the sync, through the API with the key.
fn runs(admin: std::net::SocketAddr) -> Vec<Value> {
    let auth = format!("Authorization: Bearer {KEY}");
    let r = http(
        admin,
        "GET",
        &format!("/api/v1/syncs/{SYNC}/history"),
        &[&auth],
    )
    .expect("history");
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn console_in_a_real_browser() {
    let Some(mut b) = browser() else { return };
    let mut s = MountSetup::new().expect("sshd and config");
    s.remote().max_connections = Some(CAP as u32);
    s.remote().pool_wait = Some("120s".into());
    let drop_dir = s.root.join("drop");
    fs::create_dir_all(&drop_dir).unwrap();
    chown_to_test_user(&drop_dir).unwrap();
    fs::create_dir_all(s.env.data.join("outbound")).unwrap();
    s.cfg
        .syncs
        .push(SyncConfig::new(SYNC, "/outbound", REMOTE, "drop", "push").settle("0s"));
    s.cfg = s.cfg.clone().admin(
        "127.0.0.1:0",
        vec![
            AdminKeyConfig::for_key("ops", KEY, None).scope("operator"),
            AdminKeyConfig::for_key("wall", READ_ONLY_KEY, None).scope("read-only"),
        ],
    );
    s.start_gateway().expect("gateway starts");
    let admin = logged_http_address(s.gw(), "admin API at http://")
        .unwrap_or_else(|| panic!("no admin API address in the log\n{}", s.logs()));
    let console = format!("http://{admin}/console/");

    // A first transfer pins the sshd's host key.
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, &format!("ls through the mount\n{}", s.logs()));
    let first_key = s.sshd.host_key_fingerprint();

    // Not logged in: the login page. A wrong key is refused there.
    b.goto(&console).unwrap();
    assert!(
        b.url().unwrap().ends_with("/console/login"),
        "{}",
        b.url().unwrap()
    );
    b.type_into("#key", "gwk_wrong_key").unwrap();
    b.click("#login-button").unwrap();
    let error = b
        .wait_for("the wrong key's error", SHOWN_WITHIN, |b| {
            Ok(b.text("#login-error").ok().filter(|t| !t.is_empty()))
        })
        .unwrap();
    assert!(error.contains("not accepted"), "{error}");
    b.screenshot("login-wrong-key").unwrap();

    // The right key: the remotes page, with the pinned fingerprint.
    b.type_into("#key", KEY).unwrap();
    b.click("#login-button").unwrap();
    b.wait_for("the remotes page", SHOWN_WITHIN, |b| {
        Ok((remote_state(b) == "enabled").then_some(()))
    })
    .unwrap();
    assert!(
        b.url().unwrap().ends_with("/console/"),
        "{}",
        b.url().unwrap()
    );
    assert_eq!(pool(&mut b, "cap"), Some(CAP as u64));
    assert!(
        text_in_remote(&mut b, ".fingerprint").contains(&first_key),
        "the pinned {first_key} is not shown: {:?}",
        text_in_remote(&mut b, ".fingerprint")
    );
    b.screenshot("remotes").unwrap();
    assert_eq!(accessibility_problems(&mut b), Vec::<String>::new());

    // Test: the `remote test` report in the page.
    b.click(&format!(
        "article.remote[data-remote=\"{REMOTE}\"] button.test-remote"
    ))
    .unwrap();
    let report = b
        .wait_for("the test report", Duration::from_secs(60), |b| {
            let r = text_in_remote(b, ".test-report");
            Ok((r.contains("round trip") || r.contains("FAILED")).then_some(r))
        })
        .unwrap();
    assert!(
        report.contains("OK") && report.contains(&first_key) && report.contains("source address"),
        "{report}"
    );
    b.screenshot("remote-tested").unwrap();

    // Five slow downloads fill the pool: the bar shows the cap in use and
    // the others waiting.
    const SIZE: usize = 8 << 20;
    let files: Vec<PathBuf> = (0..DOWNLOADS)
        .map(|i| {
            let f = s.root.join(format!("slow-{i}.bin"));
            write_random_file(&f, SIZE).unwrap();
            chown_to_test_user(&f).unwrap();
            f
        })
        .collect();
    let jobs: Vec<(Client, String)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut c = s.client_n(i);
            c.extra.extend(["-l".to_string(), "16000".to_string()]);
            c.timeout = Duration::from_secs(300);
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let back = s.env.path(&format!("back-{name}"));
            (c, format!("get {MOUNT}/{name} {}\n", p(&back)))
        })
        .collect();
    let (full, outs) = thread::scope(|scope| {
        let transfers = scope.spawn(|| sftp_in_parallel(jobs));
        let mut seen = Vec::new();
        let full = b.wait_for("the pool bar to fill", Duration::from_secs(60), |b| {
            let now = (pool(b, "inUse"), pool(b, "waiting"));
            if seen.last() != Some(&now) {
                seen.push(now);
            }
            Ok((now.0 == Some(CAP as u64) && now.1 >= Some(1)).then_some(()))
        });
        let full = full.map_err(|e| anyhow::anyhow!("{e}; (in use, waiting) shown: {seen:?}"));
        if full.is_ok() {
            b.screenshot("pool-full").unwrap();
            // The sessions page lists the five clients, downloads running.
            b.click("#nav-sessions").unwrap();
            let downloading = b.wait_for("the sessions downloading", SHOWN_WITHIN, |b| {
                let v = b.eval(
                    "const rows = [...document.querySelectorAll('#sessions-table tr.session')];\
                     return [rows.length, rows.filter(r => r.textContent.includes('downloading /')).length];",
                    json!([]),
                )?;
                let (rows, busy) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
                Ok((rows >= DOWNLOADS as u64 && busy >= 1).then_some(()))
            });
            if downloading.is_ok() {
                b.screenshot("sessions").unwrap();
                assert_eq!(accessibility_problems(&mut b), Vec::<String>::new());
            }
            b.click("#nav-remotes").unwrap();
            downloading.map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        }
        (full, transfers.join().unwrap())
    });
    assert_all_ok(&outs, "five slow downloads", &s.logs());
    full.unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    b.wait_for("the pool to empty", SHOWN_WITHIN, |b| {
        Ok((pool(b, "inUse") == Some(0)).then_some(()))
    })
    .unwrap();
    // The chart has the downloads' bytes per second (sampled every 5 s).
    let peak = b
        .wait_for("the throughput chart's peak", SHOWN_WITHIN, |b| {
            let t = text_in_remote(b, ".chart-peak");
            Ok((t.starts_with("peak") && !t.starts_with("peak 0 B")).then_some(t))
        })
        .unwrap();
    b.screenshot("throughput").unwrap();
    eprintln!("throughput chart: {peak}");

    // The sshd comes back with a new host key: the remote is disabled and
    // the page says so; the operator compares and trusts the new key.
    s.sshd.restart_with_new_host_key().unwrap();
    let new_key = s.sshd.host_key_fingerprint();
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls through the mount after the host key changed");
    b.wait_for("the remote to show disabled", SHOWN_WITHIN, |b| {
        Ok((remote_state(b) == "disabled").then_some(()))
    })
    .unwrap();
    assert!(
        text_in_remote(&mut b, ".remote-state").contains("mismatch"),
        "{}",
        text_in_remote(&mut b, ".remote-state")
    );
    b.screenshot("remote-disabled").unwrap();
    b.click(&format!(
        "article.remote[data-remote=\"{REMOTE}\"] button.trust-remote"
    ))
    .unwrap();
    let pinned = b.text("#trust-pinned").unwrap();
    let presented = b.text("#trust-presented").unwrap();
    assert!(
        pinned.contains(&first_key),
        "pinned {pinned:?}, want {first_key}"
    );
    assert!(
        presented.contains(&new_key),
        "presented {presented:?}, want {new_key}"
    );
    b.screenshot("trust-dialog").unwrap();
    b.click("#trust-confirm").unwrap();
    b.wait_for("the remote to be enabled again", SHOWN_WITHIN, |b| {
        Ok((remote_state(b) == "enabled").then_some(()))
    })
    .unwrap();
    let result = text_in_remote(&mut b, ".action-result");
    assert!(result.contains(&new_key), "{result:?}");
    b.screenshot("remote-trusted").unwrap();
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(
        &out,
        &format!("ls after trusting the new key\n{}", s.logs()),
    );

    // A sync run from the page ends in its history.
    fs::write(s.env.data.join("outbound/report.csv"), b"a,b\n1,2\n").unwrap();
    b.click("#nav-syncs").unwrap();
    let run_now = format!("article.sync[data-sync=\"{SYNC}\"] button.run-sync");
    b.wait_for("the sync's Run now button", SHOWN_WITHIN, |b| {
        Ok(b.find(&run_now).ok())
    })
    .unwrap();
    b.click(&run_now).unwrap();
    let outcome = b
        .wait_for("the run in the history", Duration::from_secs(60), |b| {
            let v = b.eval(
                "const r = document.querySelector(`article.sync[data-sync=\"${arguments[0]}\"] table.history tr.run`);\
                 return r ? r.dataset.outcome : null;",
                json!([SYNC]),
            )?;
            Ok(v.as_str()
                .filter(|o| *o != "running")
                .map(String::from))
        })
        .unwrap();
    assert_eq!(outcome, "succeeded", "{}", s.logs());
    assert_eq!(
        fs::read(drop_dir.join("report.csv")).unwrap_or_default(),
        b"a,b\n1,2\n"
    );
    b.screenshot("sync-history").unwrap();
    assert_eq!(accessibility_problems(&mut b), Vec::<String>::new());

    // The health page.
    b.click("#nav-health").unwrap();
    let health = b
        .wait_for("the health status", SHOWN_WITHIN, |b| {
            Ok(b.text("#health-status")
                .ok()
                .filter(|t| t.trim() == "ready" || t.trim() == "not ready"))
        })
        .unwrap();
    assert_eq!(health.trim(), "ready");
    b.screenshot("health").unwrap();
    assert_eq!(accessibility_problems(&mut b), Vec::<String>::new());

    // Nothing on the console's pages broke the Content Security Policy or
    // threw (the wrong key's 401 is the one error expected).
    let messages = b.console_messages().unwrap();
    let severe: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("SEVERE"))
        .filter(|m| !(m.contains("/console/login ") && m.contains("status of 401")))
        .collect();
    assert!(
        severe.is_empty(),
        "the browser reported errors: {severe:#?}"
    );

    // Another site's page POSTs to the API with the operator's cookie: no
    // CSRF token and a foreign Origin, so it is refused and nothing runs.
    let before = runs(admin).len();
    let site = ForgingSite::start(&format!("http://{admin}/api/v1/syncs/{SYNC}/run"));
    b.goto(&format!("http://127.0.0.1:{}/", site.port)).unwrap();
    let refused = b
        .wait_for("the forged POST's answer", SHOWN_WITHIN, |b| {
            let t = b.eval(
                "return document.body ? document.body.innerText : '';",
                json!([]),
            )?;
            Ok(t.as_str()
                .filter(|t| t.contains("http-code"))
                .map(String::from))
        })
        .unwrap();
    assert!(
        refused.contains("403") && refused.contains("cross-site"),
        "the forged POST was not refused as cross-site: {refused}"
    );
    b.screenshot("forged-post-refused").unwrap();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(runs(admin).len(), before, "the forged POST started a run");

    // Logging out ends the session: the console asks for the key again.
    b.goto(&console).unwrap();
    b.wait_for("the console again", SHOWN_WITHIN, |b| {
        Ok((remote_state(b) == "enabled").then_some(()))
    })
    .unwrap();
    b.click("#logout").unwrap();
    b.wait_for("the login page", SHOWN_WITHIN, |b| {
        Ok(b.url()?.ends_with("/console/login").then_some(()))
    })
    .unwrap();
    b.goto(&console).unwrap();
    assert!(b.url().unwrap().ends_with("/console/login"));

    // A read-only key sees everything and can act on nothing.
    b.type_into("#key", READ_ONLY_KEY).unwrap();
    b.click("#login-button").unwrap();
    b.wait_for("the console as read-only", SHOWN_WITHIN, |b| {
        Ok((remote_state(b) == "enabled").then_some(()))
    })
    .unwrap();
    assert!(b.text("#key-scope").unwrap().contains("read-only"));
    let disabled = b
        .eval(
            "return [...document.querySelectorAll('button.test-remote, button.trust-remote')]\
             .map(x => x.disabled);",
            json!([]),
        )
        .unwrap();
    assert_eq!(disabled, json!([true, true]), "read-only action buttons");
    b.screenshot("read-only").unwrap();
    eprintln!("screenshots in {}", screenshots().display());
}
