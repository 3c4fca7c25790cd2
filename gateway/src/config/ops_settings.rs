//! `[metrics]`, `[admin]` and the session limits: validated into
//! [`OpsSettings`] and [`SessionLimits`], every problem named with its
//! file, line and key.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use std::path::{Path, PathBuf};

use super::file::{AdminSection, LoginSection, MetricsSection, S3EndpointSection, ServerSection};
use super::Reporter;

/// Limits on inbound sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions open at once, over all users (0: no limit).
    pub max_sessions: usize,
    /// Sessions open at once per user (0: no limit).
    pub max_sessions_per_user: usize,
    /// Connections that have not logged in yet, at once (0: no limit).
    pub max_unauthenticated: usize,
    /// Of those, from one source address (0: no limit of its own), so that
    /// one flooding address cannot take every place.
    pub max_unauthenticated_per_address: usize,
    /// Time a connection has to log in.
    pub grace_time: Duration,
}

/// One admin API key, as configured (only its hash is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Who uses it.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// When it stops working.
    pub expires: Option<SystemTime>,
    /// What it may do.
    pub scope: ApiScope,
}

/// What an admin API key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiScope {
    /// Look: every `GET` (a dashboard, a monitoring probe).
    ReadOnly,
    /// Also act on remotes and syncs: test, trust a host key, run now.
    Operator,
    /// Everything, reloading the config included.
    Admin,
}

impl ApiScope {
    /// Every scope, as written in the config.
    pub const NAMES: [&'static str; 3] = ["read-only", "operator", "admin"];

    /// The scope named `text` (`read-only`, `operator`, `admin`).
    pub fn parse(text: &str) -> Option<ApiScope> {
        match text {
            "read-only" => Some(ApiScope::ReadOnly),
            "operator" => Some(ApiScope::Operator),
            "admin" => Some(ApiScope::Admin),
            _ => None,
        }
    }

    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::ReadOnly => "read-only",
            ApiScope::Operator => "operator",
            ApiScope::Admin => "admin",
        }
    }
}

/// The S3-compatible endpoint, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3EndpointSettings {
    /// The address it listens on.
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM files); `None`: plain HTTP, which
    /// validation allows only on loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a client may leave a response unread.
    pub write_timeout: Duration,
    /// Requests a second per access key (0: no limit).
    pub requests_per_second_per_key: u32,
}

/// The default of `s3.write_timeout`.
pub const S3_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of `s3.requests_per_second_per_key`.
pub const S3_REQUESTS_PER_SECOND_PER_KEY: u32 = 200;

/// Where the operations endpoints listen, and who may use the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsSettings {
    /// The Prometheus endpoint's address (off when `None`).
    pub metrics_listen: Option<SocketAddr>,
    /// The admin API's address (off when `None`).
    pub admin_listen: Option<SocketAddr>,
    /// The admin API's certificate chain and key (PEM files); `None`:
    /// plain HTTP, which validation allows only on loopback.
    pub admin_tls: Option<(PathBuf, PathBuf)>,
    /// The admin API's keys.
    pub api_keys: Vec<ApiKey>,
}

pub(super) fn validate_limits(
    server: &ServerSection,
    login: &LoginSection,
    r: &mut Reporter<'_>,
) -> SessionLimits {
    if login.grace_time.is_zero() {
        r.at_key("login.grace_time", "must be longer than zero");
    }
    if server.max_sessions != 0 && server.max_sessions_per_user > server.max_sessions {
        r.at_key(
            "server.max_sessions_per_user",
            format!(
                "{} is above server.max_sessions = {}",
                server.max_sessions_per_user, server.max_sessions
            ),
        );
    }
    SessionLimits {
        max_sessions: server.max_sessions,
        max_sessions_per_user: server.max_sessions_per_user,
        max_unauthenticated: login.max_unauthenticated,
        max_unauthenticated_per_address: login.max_unauthenticated_per_address,
        grace_time: login.grace_time,
    }
}

/// The `sha256:<hex>` form of an API key's hash.
pub fn parse_key_hash(text: &str) -> Result<[u8; 32], String> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| {
        "must be `sha256:` followed by 64 hex digits, as `gateway admin new-key` prints it"
            .to_string()
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`sha256:{hex}` does not have 64 hex digits after `sha256:`"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| format!("`{hex}`: {e}"))?;
    }
    Ok(out)
}

pub(super) fn validate_ops(
    metrics: MetricsSection,
    admin: AdminSection,
    base: Option<&Path>,
    r: &mut Reporter<'_>,
) -> OpsSettings {
    let admin_tls = tls_files(
        "admin",
        admin.certificate.clone(),
        admin.private_key.clone(),
        base,
        r,
    );
    if let Some(listen) = admin.listen {
        if admin_tls.is_none() && !listen.ip().is_loopback() {
            r.at_key(
                "admin.listen",
                format!(
                    "{listen} is not a loopback address: set admin.certificate and admin.private_key \
                     (API keys and console sessions would otherwise cross the network in clear)"
                ),
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    let mut api_keys = Vec::new();
    for (i, k) in admin.keys.into_iter().enumerate() {
        let at = |key: &str| format!("admin.keys[{i}].{key}");
        if k.name.trim().is_empty() {
            r.at_key(&at("name"), "must not be empty");
        } else if !names.insert(k.name.clone()) {
            r.at_key(&at("name"), format!("key `{}` is declared twice", k.name));
        }
        let sha256 = match parse_key_hash(&k.hash) {
            Ok(h) => h,
            Err(e) => {
                r.at_key(&at("hash"), e);
                [0; 32]
            }
        };
        let expires = k
            .expires
            .as_deref()
            .and_then(|t| match t.parse::<jiff::Timestamp>() {
                Ok(ts) => Some(
                    SystemTime::UNIX_EPOCH
                        + Duration::from_secs(ts.as_second().max(0).unsigned_abs()),
                ),
                Err(e) => {
                    r.at_key(
                        &at("expires"),
                        format!("`{t}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z: {e}"),
                    );
                    None
                }
            });
        // A key without a scope keeps what every key could do before
        // scopes existed; `gateway admin new-key` always writes one.
        let scope = match k.scope.as_deref() {
            None => ApiScope::Admin,
            Some(text) => ApiScope::parse(text).unwrap_or_else(|| {
                r.at_key(
                    &at("scope"),
                    format!(
                        "`{text}` is not a scope: use one of {}",
                        ApiScope::NAMES.join(", ")
                    ),
                );
                ApiScope::ReadOnly
            }),
        };
        api_keys.push(ApiKey {
            name: k.name,
            sha256,
            expires,
            scope,
        });
    }
    if admin.listen.is_some() && api_keys.is_empty() {
        r.at_key(
            "admin.listen",
            "the admin API needs at least one [[admin.keys]] entry (`gateway admin new-key NAME` makes one)",
        );
    }
    if let (Some(m), Some(a)) = (metrics.listen, admin.listen) {
        if m == a && m.port() != 0 {
            r.at_key("admin.listen", format!("{a} is also metrics.listen"));
        }
    }
    OpsSettings {
        metrics_listen: metrics.listen,
        admin_listen: admin.listen,
        admin_tls,
        api_keys,
    }
}

pub(super) fn validate_s3_endpoint(
    section: S3EndpointSection,
    base: Option<&Path>,
    r: &mut Reporter<'_>,
) -> Option<S3EndpointSettings> {
    let tls = tls_files("s3", section.certificate, section.private_key, base, r);
    let listen = section.listen?;
    if tls.is_none() && !listen.ip().is_loopback() {
        r.at_key(
            "s3.listen",
            format!(
                "{listen} is not a loopback address: set s3.certificate and s3.private_key \
                 (access keys and files would otherwise cross the network in clear)"
            ),
        );
    }
    let write_timeout = section.write_timeout.unwrap_or(S3_WRITE_TIMEOUT);
    if write_timeout.is_zero() {
        r.at_key("s3.write_timeout", "must be longer than zero");
    }
    Some(S3EndpointSettings {
        listen,
        tls,
        write_timeout,
        requests_per_second_per_key: section
            .requests_per_second_per_key
            .unwrap_or(S3_REQUESTS_PER_SECOND_PER_KEY),
    })
}

/// `SECTION.certificate` and `SECTION.private_key`, both or neither,
/// relative to the config file's folder.
fn tls_files(
    section: &str,
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    base: Option<&Path>,
    r: &mut Reporter<'_>,
) -> Option<(PathBuf, PathBuf)> {
    let resolve = |p: PathBuf| match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    };
    match (certificate, private_key) {
        (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
        (None, None) => None,
        (Some(_), None) => {
            r.at_key(
                &format!("{section}.certificate"),
                format!("needs {section}.private_key as well"),
            );
            None
        }
        (None, Some(_)) => {
            r.at_key(
                &format!("{section}.private_key"),
                format!("needs {section}.certificate as well"),
            );
            None
        }
    }
}
