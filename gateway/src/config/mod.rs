//! Configuration: one TOML file (optional) plus `GATEWAY__SECTION__KEY`
//! environment overrides, validated once at start-up into [`Settings`].
//!
//! The file is first parsed on its own with `toml`, whose errors carry a
//! position, so a typo is reported with its file, line and key; then the
//! `config` crate layers the environment on top. Every later check
//! (hashes, keys, CIDRs, permission rules) also names file, line and key.

pub mod discover;
mod duration;
mod file;
mod locate;
mod mounts;
mod ops_settings;
mod remotes;
mod secrets;
mod syncs;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backends::StoragePath;
use ipnet::IpNet;
use policy::{PathPermissions, PermissionSet, ThrottleSettings, User};

pub use file::{CertificatePolicy, ConfigFile, FtpTlsMode, LogFormat, RemoteKind};
use locate::KeyMap;
use mounts::validate_mounts;
pub use mounts::MountSettings;
pub use ops_settings::{
    parse_key_hash, ApiKey, ApiScope, OpsSettings, S3EndpointSettings, SessionLimits,
};
use remotes::validate_remotes;
pub use remotes::{
    load_private_key, parse_host_key, FtpRemoteSettings, ProtocolSettings, RemoteSettings,
    S3RemoteSettings, SftpRemoteSettings,
};
pub use secrets::{Secret, REDACTED};
// What a sync is lives with the syncs; the names stay reachable here.
pub use crate::sync::settings::{AfterCopy, SyncDirection, SyncSettings, DEFAULT_PARALLEL};

/// Prefix of environment overrides: `GATEWAY__SERVER__LISTEN=127.0.0.1:2022`.
pub const ENV_PREFIX: &str = "GATEWAY";

/// The validated settings the gateway runs on.
#[derive(Debug)]
pub struct Settings {
    /// The config file, when one was given.
    pub source: Option<PathBuf>,
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The gateway's own storage folder.
    pub storage: PathBuf,
    /// The node's state folder: the embedded state database and the host
    /// keys, or (with `state_database`) only node-local files.
    pub state: PathBuf,
    /// The shared PostgreSQL state database of a cluster (`server.state`
    /// given as a `postgres://` URL); `None`: the embedded store.
    pub state_database: Option<crate::database::Database>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Grace period for transfers in flight at shutdown.
    pub shutdown_grace: Duration,
    /// Idle session timeout.
    pub idle_timeout: Duration,
    /// Networks allowed to connect at all (empty: any).
    pub allowed_networks: Vec<IpNet>,
    /// Load balancers whose connections must start with a PROXY protocol
    /// header; the client it names is the connection's address (empty:
    /// no connection is read for one).
    pub proxy_protocol_from: Vec<IpNet>,
    /// Login throttle figures.
    pub throttle: ThrottleSettings,
    /// New connections per address.
    pub connection_rate: policy::ConnectionRateSettings,
    /// The SSH algorithms offered.
    pub ssh_algorithms: crate::ssh::algorithms::ServerAlgorithms,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Users from the file (the first-start `admin` is added from state).
    pub users: Vec<User>,
    /// Source addresses for outbound connections (empty: the system chooses).
    pub dedicated_ips: Vec<std::net::IpAddr>,
    /// Remote servers, in file order.
    pub remotes: Vec<RemoteSettings>,
    /// Mounts by user name.
    pub mounts: HashMap<String, Vec<MountSettings>>,
    /// Syncs, in file order.
    pub syncs: Vec<SyncSettings>,
    /// Limits on inbound sessions.
    pub limits: SessionLimits,
    /// The metrics endpoint and the admin API.
    pub ops: OpsSettings,
    /// The S3-compatible endpoint (off when `None`).
    pub s3_endpoint: Option<S3EndpointSettings>,
    /// What is not wrong enough to refuse the config but must be said
    /// (files holding secrets that other users can read), for the log
    /// and `config check`.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The remote called `name`.
    pub fn remote(&self, name: &str) -> Option<&RemoteSettings> {
        self.remotes.iter().find(|r| r.name == name)
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file, or `None` for the environment or defaults.
    pub file: Option<PathBuf>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    /// Dotted key (`users[0].allowed_networks[1]`).
    pub key: Option<String>,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => write!(f, "configuration: ")?,
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Everything wrong with a configuration (at least one problem).
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// Where problems are reported against: the file and its key positions.
struct Reporter<'a> {
    file: Option<&'a Path>,
    keys: KeyMap,
    problems: Vec<ConfigProblem>,
}

impl Reporter<'_> {
    fn at_key(&mut self, key: &str, message: impl Into<String>) {
        let line = self.keys.line_of(key);
        self.problems.push(ConfigProblem {
            file: self.file.map(Path::to_path_buf),
            line,
            key: Some(key.to_string()),
            message: message.into(),
        });
    }
}

/// Loads and validates the configuration from `path` (or the built-in
/// defaults when `None`) with environment overrides; secrets given as
/// `*_env` are read from the process environment.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    let prefix = format!("{ENV_PREFIX}__");
    let overrides: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    load_from(path, overrides, &|name| std::env::var_os(name))
}

/// [`load`] with an explicit environment (for tests): both the
/// `GATEWAY__*` overrides and the variables `*_env` secrets name come
/// from `env`.
pub fn load_with_env(
    path: Option<&Path>,
    env: Vec<(String, String)>,
) -> Result<Settings, ConfigError> {
    let lookup = env.clone();
    let prefix = format!("{ENV_PREFIX}__");
    let overrides = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    load_from(path, overrides, &|name| {
        lookup
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into())
    })
}

fn load_from(
    path: Option<&Path>,
    env: Vec<(String, String)>,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Settings, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            ConfigError(vec![ConfigProblem {
                file: Some(p.to_path_buf()),
                line: None,
                key: None,
                message: format!("cannot read the config file: {}", describe_io(&e)),
            }])
        })?,
        None => String::new(),
    };
    let keys = KeyMap::new(&text);
    // Pass 1: the file alone, for errors with positions. Each key of the
    // wrong type is reported, and taken out to look for the next; the
    // rest is then checked like a valid file, so every problem shows at
    // once.
    let (type_problems, checked_text) = type_problems(&text, path, &keys);
    let text = match checked_text {
        Some(pruned) => pruned,
        None => return Err(ConfigError(type_problems)),
    };
    // Pass 2: the file with the environment on top.
    let file = with_env(&text, env)?;
    let mut reporter = Reporter {
        file: path,
        keys,
        problems: Vec::new(),
    };
    let base = path.and_then(Path::parent).map(Path::to_path_buf);
    let mut secrets = secrets::SecretReader::new(base.as_deref(), lookup);
    if let Some(p) = path {
        secrets.remember(p, "the config file");
    }
    let mut settings = validate(file, path, base.as_deref(), &mut secrets, &mut reporter);
    if !type_problems.is_empty() {
        let mut all = type_problems;
        all.extend(reporter.problems);
        return Err(ConfigError(all));
    }
    if reporter.problems.is_empty() {
        settings.warnings = secrets::exposure_warnings(&secrets.files);
        settings.warnings.extend(s3_only_warnings(&settings));
        Ok(settings)
    } else {
        Err(ConfigError(reporter.problems))
    }
}

/// The most keys of the wrong type reported from one file.
const MAX_TYPE_PROBLEMS: usize = 25;

/// Every key of `text` whose value has the wrong type (or is unknown),
/// with its line in the file; and the text without those keys when what
/// remains is a valid file (`None` when a problem could not be taken out,
/// such as a syntax error or a missing required key).
fn type_problems(
    text: &str,
    path: Option<&Path>,
    original: &KeyMap,
) -> (Vec<ConfigProblem>, Option<String>) {
    let mut problems = Vec::new();
    let mut current = text.to_string();
    while problems.len() < MAX_TYPE_PROBLEMS {
        let Err(err) = toml::from_str::<ConfigFile>(&current) else {
            return (problems, Some(current));
        };
        let keys = KeyMap::new(&current);
        let offset = err.span().map(|s| s.start);
        let key = offset.and_then(|o| keys.key_at(o)).map(str::to_string);
        // The first error is in the file as written; later ones are in
        // the file with keys taken out, so their line is the original's.
        let line = if problems.is_empty() {
            offset.map(|o| keys.line_at(o))
        } else {
            key.as_deref().and_then(|k| original.line_of(k))
        };
        problems.push(ConfigProblem {
            file: path.map(Path::to_path_buf),
            line,
            key: key.clone(),
            message: type_message(&err, &current, key.as_deref(), offset),
        });
        match key.and_then(|k| locate::without_key(&current, &k)) {
            Some(next) if next != current => current = next,
            _ => return (problems, None),
        }
    }
    (problems, None)
}

/// A deserialization error's message, quoting the value found unless it
/// is a secret's.
fn type_message(
    err: &toml::de::Error,
    text: &str,
    key: Option<&str>,
    offset: Option<usize>,
) -> String {
    let mut message = err.message().trim().to_string();
    let found = err.span().and_then(|s| text.get(s)).map(str::trim);
    // A secret's value is never quoted, whatever the error.
    let secret = key.is_some_and(secrets::is_secret_key)
        || offset.is_some_and(|o| secrets::line_is_secret(text, o));
    if secret {
        let name = key.map_or("", |k| k.rsplit('.').next().unwrap_or(k));
        message = secrets::redact_message(&message, found, name);
    } else if let Some(found) = found {
        // Quote the offending value when it is short enough to read.
        if !found.is_empty()
            && found.len() <= 80
            && !found.contains('\n')
            && !message.contains(found)
        {
            message.push_str(&format!(" (found {found})"));
        }
    }
    message
}

fn with_env(text: &str, env: Vec<(String, String)>) -> Result<ConfigFile, ConfigError> {
    // Values that look secret are never quoted back.
    let hidden: Vec<String> = env
        .iter()
        .filter(|(k, v)| secrets::env_name_is_secret(k) && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect();
    let source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("server.listen")
        .with_list_parse_key("server.allowed_networks")
        .with_list_parse_key("server.proxy_protocol_from")
        .source(Some(env.into_iter().collect()));
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(source)
        .build()
        .and_then(|c| c.try_deserialize::<ConfigFile>())
        .map_err(|e| {
            let mut message = format!("in the {ENV_PREFIX}__* environment overrides: {e}");
            for value in &hidden {
                message = message.replace(value.as_str(), secrets::REDACTED);
            }
            ConfigError(vec![ConfigProblem {
                file: None,
                line: None,
                key: None,
                message,
            }])
        })
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Users who cannot log in over SFTP (no password, no keys): they are
/// meant for the S3 endpoint, which needs `[s3]`.
fn s3_only_warnings(settings: &Settings) -> Vec<String> {
    settings
        .users
        .iter()
        .filter(|u| u.password_hash.is_none() && u.authorized_keys.is_empty())
        .map(|u| {
            let reach = if settings.s3_endpoint.is_some() {
                "it can be reached only with S3 access keys (`gateway user s3-key create`)"
            } else {
                "and [s3] is off, so nothing can reach it"
            };
            format!(
                "user `{}` has neither password_hash nor authorized_keys, so cannot log in over SFTP; {reach}",
                u.name
            )
        })
        .collect()
}

/// Whether `server.state` names a PostgreSQL database rather than a folder.
fn is_database_url(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn resolve(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    }
}

fn validate(
    file: ConfigFile,
    source: Option<&Path>,
    base: Option<&Path>,
    secrets: &mut secrets::SecretReader<'_>,
    r: &mut Reporter<'_>,
) -> Settings {
    let server = file.server;
    let ssh_algorithms = crate::ssh::algorithms::ServerAlgorithms {
        kex: server.kex_algorithms.clone(),
        ciphers: server.ciphers.clone(),
        macs: server.macs.clone(),
    };
    for (key, problem) in ssh_algorithms.problems() {
        r.at_key(key, problem);
    }
    let limits = ops_settings::validate_limits(&server, &file.login, r);
    let ops = ops_settings::validate_ops(file.metrics, file.admin, base, r);
    let s3_endpoint = ops_settings::validate_s3_endpoint(file.s3, base, r);
    if server.listen.is_empty() {
        r.at_key(
            "server.listen",
            "needs at least one address, such as \"127.0.0.1:2222\"",
        );
    }
    let storage = server
        .storage
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| PathBuf::from("./gateway-data"));
    let (state, state_database) = match server.state {
        Some(p) if is_database_url(&p) => {
            let url = p.to_string_lossy();
            let database = match crate::database::Database::parse(&url) {
                Ok(d) => Some(d),
                Err(e) => {
                    r.at_key("server.state", e);
                    None
                }
            };
            let local = server
                .local_state
                .map(|p| resolve(base, p))
                .unwrap_or_else(|| PathBuf::from("./gateway-state"));
            (local, database)
        }
        state => {
            if server.local_state.is_some() {
                r.at_key(
                    "server.local_state",
                    "is only used with a `postgres://` URL in `server.state`",
                );
            }
            let folder = state
                .map(|p| resolve(base, p))
                .unwrap_or_else(|| PathBuf::from("./gateway-state"));
            (folder, None)
        }
    };
    let mut names = HashSet::new();
    let mut users = Vec::new();
    let mut mounts_by_user = Vec::new();
    for (i, mut u) in file.users.into_iter().enumerate() {
        mounts_by_user.push((u.name.clone(), i, std::mem::take(&mut u.mounts)));
        let at = |k: &str| format!("users[{i}].{k}");
        if u.name.is_empty()
            || u.name
                .contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
        {
            r.at_key(
                &at("name"),
                "a user name must be non-empty, without spaces or `/`",
            );
        }
        if !names.insert(u.name.clone()) {
            r.at_key(&at("name"), format!("user `{}` is declared twice", u.name));
        }
        if let Some(hash) = &u.password_hash {
            if let Err(e) = policy::validate_hash(hash) {
                r.at_key(&at("password_hash"), e.to_string());
            }
        }
        let mut keys = Vec::new();
        for (j, line) in u.authorized_keys.iter().enumerate() {
            match russh::keys::PublicKey::from_openssh(line.trim()) {
                Ok(k) => keys.push(k),
                Err(e) => r.at_key(
                    &format!("users[{i}].authorized_keys[{j}]"),
                    format!("not a public key in authorized_keys format: {e}"),
                ),
            }
        }
        if let Some(kf) = &u.authorized_keys_file {
            let kf = resolve(base, kf.clone());
            match std::fs::read_to_string(&kf) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match russh::keys::PublicKey::from_openssh(line) {
                            Ok(k) => keys.push(k),
                            Err(e) => r.at_key(
                                &at("authorized_keys_file"),
                                format!("{}:{}: not a public key: {e}", kf.display(), n + 1),
                            ),
                        }
                    }
                }
                Err(e) => r.at_key(
                    &at("authorized_keys_file"),
                    format!("cannot read {}: {}", kf.display(), describe_io(&e)),
                ),
            }
        }
        // A user without SFTP credentials is reached only with S3 access
        // keys (a partner site's user); `s3_only_warnings` says so.
        let home = u.home.clone().unwrap_or_else(|| u.name.clone());
        if let Err(e) = StoragePath::parse(&home) {
            r.at_key(&at("home"), format!("not a usable folder name: {e}"));
        }
        let permissions = match u.permissions {
            None => PathPermissions::full(),
            Some(rules) => {
                let rules = rules
                    .into_iter()
                    .map(|(path, perms)| (path, perms.into_iter().collect::<PermissionSet>()));
                match PathPermissions::new(rules) {
                    Ok(p) => p,
                    Err(e) => {
                        r.at_key(&at("permissions"), e.to_string());
                        PathPermissions::full()
                    }
                }
            }
        };
        users.push(User {
            name: u.name,
            password_hash: u.password_hash,
            authorized_keys: keys,
            home,
            permissions,
            allowed_networks: u.allowed_networks,
        });
    }
    let dedicated_ips = server.dedicated_ips;
    let remotes = validate_remotes(file.remotes, base, secrets, r);
    let mounts = validate_mounts(&mounts_by_user, &remotes, r);
    let syncs = syncs::validate_syncs(file.syncs, &remotes, r);
    Settings {
        source: source.map(Path::to_path_buf),
        listen: server.listen,
        storage,
        state,
        state_database,
        log_format: server.log_format,
        shutdown_grace: server.shutdown_grace,
        idle_timeout: server.idle_timeout,
        allowed_networks: server.allowed_networks,
        proxy_protocol_from: server.proxy_protocol_from,
        throttle: ThrottleSettings {
            max_failures: file.login.max_failures,
            failure_window: file.login.failure_window,
            ban_duration: file.login.ban_duration,
        },
        ssh_algorithms,
        connection_rate: policy::ConnectionRateSettings {
            per_second: f64::from(file.login.connections_per_second_per_address),
            burst: file.login.connection_burst_per_address,
        },
        max_auth_attempts: file.login.max_auth_attempts.max(1),
        users,
        dedicated_ips,
        remotes,
        mounts,
        syncs,
        limits,
        ops,
        s3_endpoint,
        warnings: Vec::new(),
    }
}
