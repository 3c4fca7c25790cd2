//! The web console: pages for ops teams served by the admin listener under
//! `/console/`, over the same admin API (`/api/v1/`) its script calls.
//!
//! A browser logs in with an admin API key and gets a session cookie
//! (HttpOnly, SameSite=Strict, Secure when the request came over HTTPS,
//! 8 hours). Every state-changing API call from the console must carry
//! the session's CSRF token in `X-CSRF-Token`, and a cross-site `Origin`
//! or `Sec-Fetch-Site` is refused: SameSite alone does not separate two
//! ports of one host, which are the same site. The assets are compiled
//! into the binary (no CDN) and served with a strict Content Security
//! Policy (no inline script or style).

pub mod sessions;

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION,
    SET_COOKIE,
};
use hyper::{Method, Response, StatusCode};

use super::auth::{hash_key, ApiKeys, Caller};
use crate::ops_endpoint::Body;
pub use sessions::{ConsoleSession, ConsoleSessions};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "gw_console";

/// The header the console's script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The largest login or logout form read.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

const LOGIN_HTML: &str = include_str!("assets/login.html");
const CONSOLE_HTML: &str = include_str!("assets/console.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// What the pages may load: only themselves.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console: its sessions and pages.
#[derive(Debug, Default)]
pub struct Console {
    sessions: ConsoleSessions,
    /// Served over TLS: cookies are `Secure`.
    tls: bool,
}

/// Why a request with a console cookie may not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleRefusal {
    /// No such session, or it expired, or its key was revoked.
    #[error("the console session has ended; log in again")]
    SessionEnded,
    /// A state-changing request without the session's CSRF token, or from
    /// another site.
    #[error("refused: {0}")]
    CrossSite(&'static str),
}

impl Console {
    /// The console of a listener that serves TLS (`tls`) or plain HTTP.
    pub fn new(tls: bool) -> Self {
        Console {
            sessions: ConsoleSessions::default(),
            tls,
        }
    }

    /// Whether `path` is the console's.
    pub fn owns(path: &str) -> bool {
        path == "/console" || path.starts_with("/console/")
    }

    /// Whether `method` on `path` needs the request's body (the forms).
    pub fn wants_body(method: &Method, path: &str) -> bool {
        *method == Method::POST && Console::owns(path)
    }

    /// The API key name behind a request that carries a console cookie
    /// and no key: `None` when it has no console cookie at all. A request
    /// that is not GET must carry the CSRF token and come from this site.
    pub fn caller(
        &self,
        keys: &ApiKeys,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Result<Caller, ConsoleRefusal>> {
        let id = cookie(headers, COOKIE_NAME)?;
        let Some(session) = self.sessions.get(id, Instant::now()) else {
            return Some(Err(ConsoleRefusal::SessionEnded));
        };
        let caller = match keys.check_hash(&session.key_hash, SystemTime::now()) {
            Ok(caller) => caller,
            Err(_) => {
                self.sessions.end(id);
                return Some(Err(ConsoleRefusal::SessionEnded));
            }
        };
        if *method != Method::GET && *method != Method::HEAD {
            if let Err(why) = same_site(headers) {
                return Some(Err(ConsoleRefusal::CrossSite(why)));
            }
            let token = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session.csrf_matches(token) {
                return Some(Err(ConsoleRefusal::CrossSite(
                    "the request lacks the console's CSRF token",
                )));
            }
        }
        Some(Ok(caller))
    }

    /// Answers a request under `/console/`.
    pub fn answer(
        &self,
        keys: &ApiKeys,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let now = Instant::now();
        let session = cookie(headers, COOKIE_NAME)
            .and_then(|id| self.sessions.get(id, now).map(|s| (id, s)))
            .and_then(|(id, s)| {
                let caller = keys.check_hash(&s.key_hash, SystemTime::now()).ok()?;
                Some((id, s, caller))
            });
        match (method.as_str(), path) {
            ("GET", "/console") => redirect("/console/"),
            ("GET", "/console/") => match session {
                Some((_, s, caller)) => page(
                    StatusCode::OK,
                    &CONSOLE_HTML
                        .replace("{{CSRF_TOKEN}}", &s.csrf_token)
                        .replace("{{SCOPE}}", caller.scope.as_str())
                        .replace("{{KEY_NAME}}", &escape_html(&caller.name))
                        .replace("{{VERSION}}", env!("CARGO_PKG_VERSION")),
                ),
                None => redirect("/console/login"),
            },
            ("GET", "/console/login") => match session {
                Some(_) => redirect("/console/"),
                None => login_page(StatusCode::OK, None),
            },
            ("POST", "/console/login") => self.login(keys, headers, body),
            ("POST", "/console/logout") => {
                if let Some((id, s, _)) = session {
                    let token = form_field(body, "csrf").unwrap_or_default();
                    if same_site(headers).is_err() || !s.csrf_matches(&token) {
                        return plain(
                            StatusCode::FORBIDDEN,
                            "refused: the logout did not come from the console",
                        );
                    }
                    self.sessions.end(id);
                }
                let mut r = redirect("/console/login");
                set_cookie(
                    &mut r,
                    &format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
                );
                r
            }
            ("GET", "/console/console.js") => asset(CONSOLE_JS, "text/javascript; charset=utf-8"),
            ("GET", "/console/console.css") => asset(CONSOLE_CSS, "text/css; charset=utf-8"),
            (_, "/console" | "/console/" | "/console/login" | "/console/logout")
            | (_, "/console/console.js" | "/console/console.css") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => plain(StatusCode::NOT_FOUND, "no such console page"),
        }
    }

    /// `POST /console/login`: a valid key starts a session.
    fn login(&self, keys: &ApiKeys, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
        if same_site(headers).is_err() {
            return login_page(
                StatusCode::FORBIDDEN,
                Some("The login form was sent from another site."),
            );
        }
        let key = form_field(body, "key").unwrap_or_default();
        let key = key.trim();
        if key.is_empty() {
            return login_page(StatusCode::UNAUTHORIZED, Some("Enter an admin API key."));
        }
        match keys.check(key, SystemTime::now()) {
            Ok(caller) => {
                let (id, _) = self.sessions.start(hash_key(key), Instant::now());
                tracing::info!(target: "audit", api_key = %caller.name, scope = caller.scope.as_str(), op = "console-login", result = "ok");
                let mut r = redirect("/console/");
                let secure = if self.tls || over_https(headers) {
                    "; Secure"
                } else {
                    ""
                };
                set_cookie(
                    &mut r,
                    &format!(
                        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                        sessions::SESSION_LIFETIME.as_secs()
                    ),
                );
                r
            }
            Err(e) => {
                tracing::warn!(target: "audit", op = "console-login", result = "refused", reason = %e);
                let message = match e {
                    super::auth::AuthError::Expired { .. } => "That API key has expired.",
                    _ => "That API key was not accepted.",
                };
                login_page(StatusCode::UNAUTHORIZED, Some(message))
            }
        }
    }
}

/// `Err` with the reason when the request says it came from another site
/// (`Sec-Fetch-Site`, or an `Origin` that is not this host).
fn same_site(headers: &HeaderMap) -> Result<(), &'static str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site == "cross-site" || site == "same-site" {
            tracing::debug!(site, "console: refused a request from another site");
            return Err("the request came from another site");
        }
    }
    if let Some(origin) = text("origin") {
        let host = text(HOST.as_str()).unwrap_or("");
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || own != Some(host) {
            tracing::debug!(
                origin,
                host,
                "console: refused a request from another origin"
            );
            return Err("the request's Origin is not this console");
        }
    }
    Ok(())
}

/// Whether the browser reached us over HTTPS (a TLS-terminating proxy in
/// front says so in `X-Forwarded-Proto`).
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Field `name` of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k)? == name).then(|| form_decode(v)).flatten()
    })
}

/// `+` as space and `%XX` decoded.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `<`, `>`, `&`, `"` and `'` escaped for HTML text and attributes.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response<Body> {
    let block = error
        .map(|e| {
            format!(
                r#"<p id="login-error" role="alert" class="error">{}</p>"#,
                escape_html(e)
            )
        })
        .unwrap_or_default();
    page(status, &LOGIN_HTML.replace("{{ERROR_BLOCK}}", &block))
}

/// An HTML page with the console's security headers.
fn page(status: StatusCode, html: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(html.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    security_headers(h);
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        // Not `no-referrer`: under it browsers send `Origin: null` with the
        // forms, which the same-site check must refuse.
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    security_headers(r.headers_mut());
    r
}

fn set_cookie(r: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    security_headers(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKey, ApiScope};

    fn keys() -> ApiKeys {
        ApiKeys::new(vec![ApiKey {
            name: "ops".into(),
            sha256: hash_key("gwk_good"),
            expires: None,
            scope: ApiScope::Operator,
        }])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// Logs in and returns the cookie's session id and the CSRF token.
    fn login(console: &Console, keys: &ApiKeys) -> (String, String) {
        let r = console.answer(
            keys,
            &Method::POST,
            "/console/login",
            &headers(&[("host", "127.0.0.1:9"), ("origin", "http://127.0.0.1:9")]),
            b"key=gwk_good",
        );
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "plain HTTP: {set}");
        let id = set
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("gw_console=")
            .unwrap()
            .to_string();
        let csrf = console
            .sessions
            .get(&id, Instant::now())
            .unwrap()
            .csrf_token;
        (id, csrf)
    }

    #[test]
    fn a_wrong_key_gets_the_form_again_with_an_error() {
        let console = Console::default();
        let r = console.answer(
            &keys(),
            &Method::POST,
            "/console/login",
            &headers(&[("host", "h")]),
            b"key=gwk_bad",
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get(SET_COOKIE).is_none());
    }

    #[test]
    fn actions_need_the_token_and_this_site() {
        let console = Console::default();
        let keys = keys();
        let (id, csrf) = login(&console, &keys);
        let cookie = format!("other=1; gw_console={id}");
        let name = |r: Option<Result<Caller, ConsoleRefusal>>| r.map(|r| r.map(|c| c.name));
        let get = console.caller(&keys, &Method::GET, &headers(&[("cookie", &cookie)]));
        assert_eq!(
            get.clone().and_then(Result::ok).map(|c| c.scope),
            Some(ApiScope::Operator)
        );
        assert_eq!(name(get), Some(Ok("ops".to_string())));
        let forged = console.caller(&keys, &Method::POST, &headers(&[("cookie", &cookie)]));
        assert!(matches!(forged, Some(Err(ConsoleRefusal::CrossSite(_)))));
        let ok = headers(&[
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("host", "127.0.0.1:9"),
            ("origin", "http://127.0.0.1:9"),
        ]);
        assert_eq!(
            name(console.caller(&keys, &Method::POST, &ok)),
            Some(Ok("ops".into()))
        );
        let other_origin = headers(&[
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("host", "127.0.0.1:9"),
            ("origin", "http://127.0.0.1:10"),
        ]);
        assert!(matches!(
            console.caller(&keys, &Method::POST, &other_origin),
            Some(Err(ConsoleRefusal::CrossSite(_)))
        ));
        assert_eq!(
            name(console.caller(&keys, &Method::GET, &HeaderMap::new())),
            None
        );
        keys.replace(vec![]);
        assert_eq!(
            name(console.caller(&keys, &Method::GET, &headers(&[("cookie", &cookie)]))),
            Some(Err(ConsoleRefusal::SessionEnded)),
            "a revoked key ends its sessions"
        );
    }

    #[test]
    fn forms_are_decoded() {
        assert_eq!(
            form_field(b"a=1&key=gwk_%2Bx+y", "key").as_deref(),
            Some("gwk_+x y")
        );
        assert_eq!(form_field(b"key=%zz", "key"), None);
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
