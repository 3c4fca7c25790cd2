//! Configuration: one TOML file (optional) plus `GATEWAY__SECTION__KEY`
//! environment overrides, validated once at start-up into [`Settings`].
//!
//! The file is first parsed on its own with `toml`, whose errors carry a
//! position, so a typo is reported with its file, line and key; then the
//! `config` crate layers the environment on top. Every later check
//! (hashes, keys, CIDRs, permission rules) also names file, line and key.

mod file;
mod locate;
mod ops_settings;
mod secrets;
mod syncs;

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
pub use ops_settings::{parse_key_hash, ApiKey, OpsSettings, S3EndpointSettings, SessionLimits};
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

/// A validated remote server.
#[derive(Clone, PartialEq)]
pub struct RemoteSettings {
    /// Name used by mounts and the CLI.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password, if configured (inline, from a file or from the environment).
    pub password: Option<Secret>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Bind to the dedicated IPs.
    pub use_dedicated_ips: bool,
    /// Remote root folder.
    pub root: String,
    /// Connect and login limit.
    pub connect_timeout: Duration,
    /// How long work waits for a connection.
    pub pool_wait: Duration,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// What only one protocol has.
    pub protocol: ProtocolSettings,
}

impl RemoteSettings {
    /// The protocol.
    pub fn kind(&self) -> RemoteKind {
        match self.protocol {
            ProtocolSettings::Sftp(_) => RemoteKind::Sftp,
            ProtocolSettings::Ftp(_) => RemoteKind::Ftp,
            ProtocolSettings::S3(_) => RemoteKind::S3,
        }
    }
}

/// The settings of one protocol.
#[derive(Clone, PartialEq)]
pub enum ProtocolSettings {
    /// An SFTP server.
    Sftp(SftpRemoteSettings),
    /// An FTP or FTPS server.
    Ftp(FtpRemoteSettings),
    /// A bucket on an S3-compatible server.
    S3(S3RemoteSettings),
}

/// What only S3 remotes have.
#[derive(Clone, PartialEq)]
pub struct S3RemoteSettings {
    /// Service URL.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Path-style addressing.
    pub path_style: bool,
    /// How an https endpoint's certificate is checked.
    pub certificate: CertificatePolicy,
    /// Certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// How long a request may stall.
    pub io_timeout: Duration,
    /// Folder renames copy and delete every object under the folder.
    pub recursive_folder_rename: bool,
    /// `mkdir` writes a folder marker object (off: folders are implicit).
    pub folder_markers: bool,
}

impl fmt::Debug for S3RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3RemoteSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// What only SFTP remotes have.
#[derive(Clone, PartialEq)]
pub struct SftpRemoteSettings {
    /// Private key, if configured (already decrypted).
    pub private_key: Option<Arc<russh::keys::PrivateKey>>,
    /// The configured host key, if any.
    pub host_key: Option<russh::keys::PublicKey>,
    /// Connect despite a host key mismatch (insecure).
    pub allow_mismatched_host_key: bool,
    /// How long one SFTP request may wait for its answer.
    pub io_timeout: Duration,
    /// Handshake limit and legacy algorithms.
    pub ssh: backends::sftp::SshOptions,
}

/// What only FTP remotes have.
#[derive(Debug, Clone, PartialEq)]
pub struct FtpRemoteSettings {
    /// Plain, explicit or implicit TLS.
    pub tls: FtpTlsMode,
    /// How the server's certificate is checked.
    pub certificate: CertificatePolicy,
    /// Certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Upload to a temporary name and rename on close.
    pub atomic_uploads: bool,
    /// How long a command or data transfer may stall.
    pub io_timeout: Duration,
}

impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach logs.
        let mut d = f.debug_struct("RemoteSettings");
        d.field("name", &self.name)
            .field("kind", &self.kind())
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("max_connections", &self.max_connections);
        match &self.protocol {
            ProtocolSettings::Sftp(s) => d.field(
                "private_key",
                &s.private_key.as_ref().map(|_| secrets::REDACTED),
            ),
            ProtocolSettings::Ftp(f) => d.field("ftp", f),
            ProtocolSettings::S3(s) => d.field("s3", s),
        };
        d.finish_non_exhaustive()
    }
}

/// A validated mount.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// Where it appears in the user's tree.
    pub path: crate::virtual_path::VirtualPath,
    /// The remote's name.
    pub remote: String,
    /// The folder under the remote's root.
    pub remote_path: StoragePath,
}

/// Parses a host key given as `type base64 [comment]` or as a known_hosts
/// line (`host type base64 [comment]`).
pub fn parse_host_key(line: &str) -> Result<russh::keys::PublicKey, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let start = words
        .iter()
        .position(|w| {
            w.starts_with("ssh-")
                || w.starts_with("ecdsa-")
                || w.starts_with("sk-")
                || w.starts_with("rsa-")
        })
        .ok_or_else(|| {
            "expected a host key such as `ssh-ed25519 AAAA...` or a known_hosts line".to_string()
        })?;
    let key = words[start..]
        .iter()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    russh::keys::PublicKey::from_openssh(&key).map_err(|e| format!("not a valid host key: {e}"))
}

/// Reads a private key file for a remote.
pub fn load_private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<russh::keys::PrivateKey, String> {
    certs::private_keys::load_private_key_file(path, passphrase).map_err(|e| e.to_string())
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
    // Pass 1: the file alone, for errors with positions.
    if let Err(err) = toml::from_str::<ConfigFile>(&text) {
        let offset = err.span().map(|s| s.start);
        let mut message = err.message().trim().to_string();
        let found = err.span().and_then(|s| text.get(s)).map(str::trim);
        let key = offset.and_then(|o| keys.key_at(o)).map(str::to_string);
        // A secret's value is never quoted, whatever the error.
        let secret = key.as_deref().is_some_and(secrets::is_secret_key)
            || offset.is_some_and(|o| secrets::line_is_secret(&text, o));
        if secret {
            let name = key
                .as_deref()
                .map_or("", |k| k.rsplit('.').next().unwrap_or(k));
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
        return Err(ConfigError(vec![ConfigProblem {
            file: path.map(Path::to_path_buf),
            line: offset.map(|o| keys.line_at(o)),
            key,
            message,
        }]));
    }
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
    if reporter.problems.is_empty() {
        settings.warnings = secrets::exposure_warnings(&secrets.files);
        settings.warnings.extend(s3_only_warnings(&settings));
        Ok(settings)
    } else {
        Err(ConfigError(reporter.problems))
    }
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
    let limits = ops_settings::validate_limits(&server, &file.login, r);
    let ops = ops_settings::validate_ops(file.metrics, file.admin, r);
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

fn validate_remotes(
    sections: Vec<file::RemoteSection>,
    base: Option<&Path>,
    secrets: &mut secrets::SecretReader<'_>,
    r: &mut Reporter<'_>,
) -> Vec<RemoteSettings> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, rs) in sections.into_iter().enumerate() {
        let at = |k: &str| format!("remotes[{i}].{k}");
        if rs.name.is_empty() || rs.name.contains(|c: char| c.is_whitespace() || c == '/') {
            r.at_key(
                &at("name"),
                "a remote name must be non-empty, without spaces or `/`",
            );
        }
        if !names.insert(rs.name.clone()) {
            r.at_key(
                &at("name"),
                format!("remote `{}` is declared twice", rs.name),
            );
        }
        let kind = rs.kind;
        // Keys of another protocol are mistakes worth naming.
        for (key, set, kinds) in protocol_keys(&rs) {
            if set && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                r.at_key(
                    &at(key),
                    format!(
                        "`{key}` applies only to {} remotes; remote `{}` is kind = \"{}\"",
                        names.join(" and "),
                        rs.name,
                        kind.as_str()
                    ),
                );
            }
        }
        if kind != RemoteKind::S3 {
            if rs.host.trim().is_empty() {
                r.at_key(&at("host"), "the host is empty");
            }
            if rs.username.is_empty() {
                r.at_key(&at("username"), "the username is empty");
            }
        }
        if rs.max_connections == Some(0) {
            r.at_key(&at("max_connections"), "must be at least 1");
        }
        let ca_file = rs.ca_file.clone().map(|f| resolve(base, f));
        if let Some(f) = &ca_file {
            if let Err(e) = std::fs::metadata(f) {
                r.at_key(
                    &at("ca_file"),
                    format!("cannot read {}: {}", f.display(), describe_io(&e)),
                );
            }
        }
        let io_timeout = rs.io_timeout.unwrap_or(Duration::from_secs(60));
        let password = match kind {
            RemoteKind::S3 => secrets::Supplied::Absent,
            _ => secrets.secret(
                r,
                &at,
                "password",
                rs.password.as_ref(),
                rs.password_file.as_ref(),
                rs.password_env.as_deref(),
            ),
        };
        let protocol = match kind {
            RemoteKind::Sftp => {
                sftp_protocol(&rs, password.is_absent(), io_timeout, secrets, &at, r)
            }
            RemoteKind::Ftp => {
                if password.is_absent() {
                    r.at_key(
                        &at("name"),
                        format!(
                            "remote `{}` needs a password (`password`, `password_file` or `password_env`)",
                            rs.name
                        ),
                    );
                }
                ProtocolSettings::Ftp(FtpRemoteSettings {
                    tls: rs.tls.unwrap_or_default(),
                    certificate: rs.certificate.unwrap_or_default(),
                    ca_file,
                    atomic_uploads: rs.atomic_uploads.unwrap_or(false),
                    io_timeout,
                })
            }
            RemoteKind::S3 => s3_protocol(&rs, ca_file, io_timeout, secrets, &at, r),
        };
        let default_port = match &protocol {
            ProtocolSettings::Sftp(_) => 22,
            ProtocolSettings::Ftp(f) if f.tls == FtpTlsMode::RequireImplicit => 990,
            ProtocolSettings::Ftp(_) => 21,
            ProtocolSettings::S3(_) => 0,
        };
        out.push(RemoteSettings {
            name: rs.name,
            host: rs.host,
            port: rs.port.unwrap_or(default_port),
            username: rs.username,
            password: password.value(),
            max_connections: rs.max_connections.unwrap_or(25).max(1),
            use_dedicated_ips: rs.use_dedicated_ips,
            root: rs.root,
            connect_timeout: rs.connect_timeout,
            pool_wait: rs.pool_wait,
            idle_timeout: rs.idle_timeout,
            protocol,
        });
    }
    out
}

/// Every protocol-specific key of a remote: its name, whether it is set,
/// and the kinds of remote it applies to.
fn protocol_keys(rs: &file::RemoteSection) -> Vec<(&'static str, bool, &'static [RemoteKind])> {
    use RemoteKind::{Ftp, Sftp, S3};
    vec![
        ("host", !rs.host.is_empty(), &[Sftp, Ftp]),
        ("port", rs.port.is_some(), &[Sftp, Ftp]),
        ("username", !rs.username.is_empty(), &[Sftp, Ftp]),
        ("password", rs.password.is_some(), &[Sftp, Ftp]),
        ("password_file", rs.password_file.is_some(), &[Sftp, Ftp]),
        ("password_env", rs.password_env.is_some(), &[Sftp, Ftp]),
        (
            "max_connections",
            rs.max_connections.is_some(),
            &[Sftp, Ftp],
        ),
        ("host_key", rs.host_key.is_some(), &[Sftp]),
        ("max_handshakes", rs.max_handshakes.is_some(), &[Sftp]),
        ("legacy_algorithms", rs.legacy_algorithms.is_some(), &[Sftp]),
        (
            "allow_mismatched_host_key",
            rs.allow_mismatched_host_key,
            &[Sftp],
        ),
        ("private_key_file", rs.private_key_file.is_some(), &[Sftp]),
        ("private_key_env", rs.private_key_env.is_some(), &[Sftp]),
        (
            "private_key_passphrase",
            rs.private_key_passphrase.is_some(),
            &[Sftp],
        ),
        (
            "private_key_passphrase_file",
            rs.private_key_passphrase_file.is_some(),
            &[Sftp],
        ),
        (
            "private_key_passphrase_env",
            rs.private_key_passphrase_env.is_some(),
            &[Sftp],
        ),
        ("tls", rs.tls.is_some(), &[Ftp]),
        ("atomic_uploads", rs.atomic_uploads.is_some(), &[Ftp]),
        ("certificate", rs.certificate.is_some(), &[Ftp, S3]),
        ("ca_file", rs.ca_file.is_some(), &[Ftp, S3]),
        ("io_timeout", rs.io_timeout.is_some(), &[Sftp, Ftp, S3]),
        ("endpoint", rs.endpoint.is_some(), &[S3]),
        ("bucket", rs.bucket.is_some(), &[S3]),
        ("region", rs.region.is_some(), &[S3]),
        ("access_key_id", rs.access_key_id.is_some(), &[S3]),
        ("secret_access_key", rs.secret_access_key.is_some(), &[S3]),
        (
            "secret_access_key_file",
            rs.secret_access_key_file.is_some(),
            &[S3],
        ),
        (
            "secret_access_key_env",
            rs.secret_access_key_env.is_some(),
            &[S3],
        ),
        ("path_style", rs.path_style.is_some(), &[S3]),
        (
            "recursive_folder_rename",
            rs.recursive_folder_rename.is_some(),
            &[S3],
        ),
        ("folder_markers", rs.folder_markers.is_some(), &[S3]),
    ]
}

/// The S3-only part of a remote: endpoint, bucket and credentials.
fn s3_protocol(
    rs: &file::RemoteSection,
    ca_file: Option<PathBuf>,
    io_timeout: Duration,
    secrets: &mut secrets::SecretReader<'_>,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> ProtocolSettings {
    let mut required = |key: &str, value: &Option<String>| -> String {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => {
                r.at_key(&at(key), format!("S3 remote `{}` needs `{key}`", rs.name));
                String::new()
            }
        }
    };
    let endpoint = required("endpoint", &rs.endpoint);
    let bucket = required("bucket", &rs.bucket);
    let access_key_id = required("access_key_id", &rs.access_key_id);
    let secret_access_key = match secrets.secret(
        r,
        at,
        "secret_access_key",
        rs.secret_access_key.as_ref(),
        rs.secret_access_key_file.as_ref(),
        rs.secret_access_key_env.as_deref(),
    ) {
        secrets::Supplied::Value(v) if !v.expose().trim().is_empty() => {
            Secret::new(v.expose().trim())
        }
        secrets::Supplied::Invalid => Secret::new(""),
        _ => {
            r.at_key(
                &at("secret_access_key"),
                format!(
                    "S3 remote `{}` needs `secret_access_key` (or `secret_access_key_file`, `secret_access_key_env`)",
                    rs.name
                ),
            );
            Secret::new("")
        }
    };
    let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
    if endpoint_has_userinfo(&endpoint) {
        // Never quoted: the part before `@` is a credential.
        r.at_key(
            &at("endpoint"),
            "must not carry credentials (`user:password@`): give them as `access_key_id` and `secret_access_key`",
        );
    } else if !endpoint.is_empty() && !is_url {
        r.at_key(
            &at("endpoint"),
            format!("`{endpoint}` is not a URL: it must start with https:// (or http://)"),
        );
    }
    ProtocolSettings::S3(S3RemoteSettings {
        endpoint,
        bucket,
        region: rs
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "us-east-1".to_string()),
        access_key_id,
        secret_access_key,
        path_style: rs.path_style.unwrap_or(true),
        certificate: rs.certificate.unwrap_or_default(),
        ca_file,
        io_timeout,
        recursive_folder_rename: rs.recursive_folder_rename.unwrap_or(false),
        folder_markers: rs.folder_markers.unwrap_or(true),
    })
}

/// Whether an endpoint URL has a `user:password@` part before its host.
fn endpoint_has_userinfo(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

/// The SFTP-only part of a remote: its key and host key. `no_password`:
/// the remote has no password, so it needs a key.
fn sftp_protocol(
    rs: &file::RemoteSection,
    no_password: bool,
    io_timeout: Duration,
    secrets: &mut secrets::SecretReader<'_>,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> ProtocolSettings {
    let host_key = match rs.host_key.as_deref().map(parse_host_key) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            r.at_key(&at("host_key"), e);
            None
        }
        None => None,
    };
    let passphrase = secrets
        .secret(
            r,
            at,
            "private_key_passphrase",
            rs.private_key_passphrase.as_ref(),
            rs.private_key_passphrase_file.as_ref(),
            rs.private_key_passphrase_env.as_deref(),
        )
        .value();
    let passphrase = passphrase.as_ref().map(Secret::expose);
    let private_key = match (&rs.private_key_file, &rs.private_key_env) {
        (Some(_), Some(_)) => {
            r.at_key(
                &at("private_key_env"),
                "`private_key_file` and `private_key_env` are alternatives: give only one",
            );
            None
        }
        (Some(file), None) => {
            let file = secrets.resolve_path(file);
            secrets.remember(&file, &at("private_key_file"));
            match load_private_key(&file, passphrase) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    r.at_key(&at("private_key_file"), e);
                    None
                }
            }
        }
        (None, Some(name)) => {
            let key = at("private_key_env");
            secrets.env_text(r, &key, name).and_then(|text| {
                let text = Secret::new(text);
                match certs::private_keys::parse_private_key(text.expose(), passphrase) {
                    Ok(k) => Some(Arc::new(k)),
                    Err(e) => {
                        r.at_key(&key, format!("the environment variable `{name}`: {e}"));
                        None
                    }
                }
            })
        }
        (None, None) => None,
    };
    if no_password && rs.private_key_file.is_none() && rs.private_key_env.is_none() {
        r.at_key(
            &at("name"),
            format!(
                "remote `{}` needs a password or a private key (`password`, `password_file`, `password_env`, `private_key_file` or `private_key_env`)",
                rs.name
            ),
        );
    }
    let mut ssh = backends::sftp::SshOptions::default();
    match rs.max_handshakes {
        Some(0) => r.at_key(&at("max_handshakes"), "must be at least 1"),
        Some(n) => ssh.max_handshakes = n,
        None => {}
    }
    for name in rs.legacy_algorithms.iter().flatten() {
        match backends::sftp::LegacyAlgorithm::parse(name) {
            Ok(a) if !ssh.legacy.contains(&a) => ssh.legacy.push(a),
            Ok(_) => {}
            Err(e) => r.at_key(&at("legacy_algorithms"), e),
        }
    }
    ProtocolSettings::Sftp(SftpRemoteSettings {
        private_key,
        host_key,
        allow_mismatched_host_key: rs.allow_mismatched_host_key,
        io_timeout,
        ssh,
    })
}

fn validate_mounts(
    by_user: &[(String, usize, Vec<file::MountSection>)],
    remotes: &[RemoteSettings],
    r: &mut Reporter<'_>,
) -> HashMap<String, Vec<MountSettings>> {
    let mut out: HashMap<String, Vec<MountSettings>> = HashMap::new();
    for (user, i, mounts) in by_user {
        let mut seen = HashSet::new();
        for (j, m) in mounts.iter().enumerate() {
            let at = |k: &str| format!("users[{i}].mounts[{j}].{k}");
            let path = match crate::virtual_path::VirtualPath::resolve(&m.path) {
                Ok(p) if m.path.starts_with('/') && !m.path.split('/').any(|n| n == "..") => p,
                Ok(_) => {
                    r.at_key(
                        &at("path"),
                        "a mount path must be absolute, like \"/partner\", without `..`",
                    );
                    continue;
                }
                Err(e) => {
                    r.at_key(&at("path"), e.to_string());
                    continue;
                }
            };
            if !seen.insert(path.clone()) {
                r.at_key(&at("path"), format!("{path} is mounted twice"));
            }
            if !remotes.iter().any(|rs| rs.name == m.remote) {
                r.at_key(
                    &at("remote"),
                    format!("no remote named `{}` (declare it in [[remotes]])", m.remote),
                );
            }
            let remote_path = match StoragePath::parse(&m.remote_path) {
                Ok(p) => p,
                Err(e) => {
                    r.at_key(&at("remote_path"), e.to_string());
                    continue;
                }
            };
            out.entry(user.clone()).or_default().push(MountSettings {
                path,
                remote: m.remote.clone(),
                remote_path,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::schedule::Schedule;

    fn load_text(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, text).unwrap();
        load_with_env(Some(&path), vec![])
    }

    #[test]
    fn defaults_without_file() {
        let s = load_with_env(None, vec![]).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:2222".parse().unwrap()]);
        assert_eq!(s.storage, PathBuf::from("./gateway-data"));
        assert!(s.users.is_empty());
    }

    #[test]
    fn environment_overrides() {
        let env = vec![(
            "GATEWAY__SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        )];
        let s = load_with_env(None, env).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn typo_names_file_line_and_key() {
        let err = load_text("[server]\n\nlisen = [\"127.0.0.1:0\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gw.toml:3:"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn bad_cidr_names_the_key() {
        let text = "[[users]]\nname = \"a\"\nauthorized_keys = []\npassword_hash = \"x\"\nallowed_networks = [\"10.0.0.300/8\"]\n";
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains("gw.toml:5:"), "{err}");
        assert!(err.contains("users[0].allowed_networks"), "{err}");
    }

    #[test]
    fn proxy_protocol_from_is_read_and_checked() {
        let s =
            load_text("[server]\nproxy_protocol_from = [\"10.0.0.0/8\", \"::1/128\"]\n").unwrap();
        assert_eq!(
            s.proxy_protocol_from,
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
        );
        assert!(load_with_env(None, vec![])
            .unwrap()
            .proxy_protocol_from
            .is_empty());
        let err = load_text("[server]\nproxy_protocol_from = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gw.toml:2:"), "{err}");
        assert!(err.contains("server.proxy_protocol_from"), "{err}");
        let env = vec![(
            "GATEWAY__SERVER__PROXY_PROTOCOL_FROM".to_string(),
            "10.1.0.0/16,10.2.0.0/16".to_string(),
        )];
        assert_eq!(
            load_with_env(None, env).unwrap().proxy_protocol_from.len(),
            2
        );
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\nauthorized_keys_file = \"/nonexistent/keys\"\n[users.permissions]\n\"/\" = [\"read\"]\n\"up\" = [\"write\"]\n";
        let err = load_text(text).unwrap_err();
        let all = err.to_string();
        assert_eq!(err.0.len(), 3, "{all}");
        assert!(
            all.contains("gw.toml:3: key `users[0].password_hash`"),
            "{all}"
        );
        assert!(all.contains("/nonexistent/keys"), "{all}");
        assert!(all.contains("users[0].permissions"), "{all}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_with_env(Some(Path::new("/no/such/gw.toml")), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/no/such/gw.toml") && err.contains("no such file"),
            "{err}"
        );
    }

    #[test]
    fn ftp_remote_defaults() {
        let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\n\n[[remotes]]\nname = \"implicit\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\ntls = \"require_implicit\"\ncertificate = \"allow_any\"\natomic_uploads = true\n";
        let s = load_text(text).unwrap();
        let explicit = s.remote("partner").unwrap();
        assert_eq!(explicit.kind(), RemoteKind::Ftp);
        assert_eq!(explicit.port, 21);
        assert_eq!(explicit.max_connections, 25);
        let ProtocolSettings::Ftp(f) = &explicit.protocol else {
            panic!("not ftp: {explicit:?}")
        };
        assert_eq!(f.tls, FtpTlsMode::Require);
        assert_eq!(f.certificate, CertificatePolicy::RequireMatch);
        assert!(!f.atomic_uploads);
        let implicit = s.remote("implicit").unwrap();
        assert_eq!(implicit.port, 990);
        let ProtocolSettings::Ftp(f) = &implicit.protocol else {
            panic!("not ftp: {implicit:?}")
        };
        assert_eq!(f.certificate, CertificatePolicy::AllowAny);
        assert!(f.atomic_uploads);
    }

    #[test]
    fn keys_of_another_protocol_are_named() {
        let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\nhost_key = \"ssh-ed25519 AAAA\"\n\n[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls = \"never\"\n";
        let err = load_text(text).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:7: key `remotes[0].host_key`"),
            "{err}"
        );
        assert!(err.contains("applies only to sftp remotes"), "{err}");
        assert!(err.contains("gw.toml:15: key `remotes[1].tls`"), "{err}");
        assert!(err.contains("applies only to ftp remotes"), "{err}");
    }

    #[test]
    fn unknown_tls_mode_is_named() {
        let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls = \"sometimes\"\n";
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains("gw.toml:7"), "{err}");
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn s3_remote_needs_its_keys_and_refuses_a_connection_limit() {
        let text = "[[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nmax_connections = 5\n";
        let err = load_text(text).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:4: key `remotes[0].endpoint`"),
            "{err}"
        );
        assert!(err.contains("is not a URL"), "{err}");
        assert!(err.contains("needs `secret_access_key`"), "{err}");
        assert!(
            err.contains("gw.toml:7: key `remotes[0].max_connections`")
                && err.contains("applies only to sftp and ftp remotes"),
            "{err}"
        );
    }

    #[test]
    fn s3_remote_defaults() {
        let text = "[[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
        let s = load_text(text).unwrap();
        let r = s.remote("bucket").unwrap();
        let ProtocolSettings::S3(s3) = &r.protocol else {
            panic!("not s3: {r:?}")
        };
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.path_style);
        assert!(!s3.recursive_folder_rename);
        assert!(s3.folder_markers, "markers are on by default");
        assert!(!format!("{r:?}").contains("SK"), "secret in Debug: {r:?}");
    }

    /// Writes `files` (name, content, mode) and `config` into a fresh
    /// folder and loads the config with `env`.
    fn load_in_dir(
        config: &str,
        files: &[(&str, &str, u32)],
        env: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Settings, ConfigError>) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, content, mode) in files {
            let f = dir.path().join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, content).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, config).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loaded = load_with_env(Some(&path), env);
        (dir, loaded)
    }

    const ED25519_ENCRYPTED: &str =
        include_str!("../../../certs/tests/data/test_ed25519_openssh_encrypted");

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let config = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"secrets/box.pw\"\n\n\
            [[remotes]]\nname = \"keyed\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\nprivate_key_env = \"GWT_KEY\"\nprivate_key_passphrase_file = \"phrase\"\n\n\
            [[remotes]]\nname = \"legacy\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_FTP_PW\"\n\n\
            [[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key_env = \"GWT_S3\"\n";
        let (_dir, loaded) = load_in_dir(
            config,
            &[
                ("secrets/box.pw", "Zq-file-pw-1187\n", 0o600),
                ("phrase", "test-passphrase\r\n", 0o600),
            ],
            &[
                ("GWT_KEY", ED25519_ENCRYPTED),
                ("GWT_FTP_PW", "Zq-env-pw-5521"),
                ("GWT_S3", "Zq-s3-secret-9034"),
            ],
        );
        let s = loaded.unwrap();
        let pw = |name: &str| {
            s.remote(name)
                .unwrap()
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
        };
        assert_eq!(pw("box").as_deref(), Some("Zq-file-pw-1187"));
        assert_eq!(pw("legacy").as_deref(), Some("Zq-env-pw-5521"));
        let keyed = s.remote("keyed").unwrap();
        let ProtocolSettings::Sftp(sftp) = &keyed.protocol else {
            panic!("not sftp")
        };
        assert!(sftp.private_key.is_some(), "the key from GWT_KEY");
        let bucket = s.remote("bucket").unwrap();
        let ProtocolSettings::S3(s3) = &bucket.protocol else {
            panic!("not s3")
        };
        assert_eq!(s3.secret_access_key.expose(), "Zq-s3-secret-9034");
        // Not one secret in any Debug output.
        let shown = format!("{s:?} {s:#?}");
        for secret in [
            "Zq-file-pw-1187",
            "Zq-env-pw-5521",
            "Zq-s3-secret-9034",
            "test-passphrase",
        ] {
            assert!(!shown.contains(secret), "{secret} in Debug: {shown}");
        }
        assert!(shown.contains(REDACTED), "{shown}");
    }

    #[test]
    fn secret_mistakes_name_file_line_and_key() {
        let remote =
            "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\n";
        // Inline and from a file at once.
        let (_d, r) = load_in_dir(
            &format!("{remote}password = \"Zq-inline-4410\"\npassword_file = \"pw\"\n"),
            &[("pw", "x", 0o600)],
            &[],
        );
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:7: key `remotes[0].password_file`"),
            "{err}"
        );
        assert!(err.contains("give only one"), "{err}");
        assert!(!err.contains("Zq-inline-4410"), "{err}");
        // A missing file, an unset and an empty variable.
        let (_d, r) = load_in_dir(
            &format!("{remote}password_file = \"missing.pw\"\n\n[[remotes]]\nname = \"b2\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_UNSET\"\n\n[[remotes]]\nname = \"b3\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_EMPTY\"\n"),
            &[],
            &[("GWT_EMPTY", "")],
        );
        let err = r.unwrap_err();
        let all = err.to_string();
        assert_eq!(err.0.len(), 3, "{all}");
        assert!(
            all.contains("gw.toml:6: key `remotes[0].password_file`: cannot read"),
            "{all}"
        );
        assert!(
            all.contains("missing.pw") && all.contains("no such file"),
            "{all}"
        );
        assert!(
            all.contains("gw.toml:13: key `remotes[1].password_env`"),
            "{all}"
        );
        assert!(all.contains("`GWT_UNSET` is not set"), "{all}");
        assert!(
            all.contains("gw.toml:20: key `remotes[2].password_env`"),
            "{all}"
        );
        assert!(all.contains("`GWT_EMPTY` is empty"), "{all}");
        // The key file and the key variable at once; a secret of another protocol.
        let (_d, r) = load_in_dir(
            &format!("{remote}private_key_file = \"k\"\nprivate_key_env = \"GWT_K\"\nsecret_access_key_file = \"s\"\n"),
            &[],
            &[],
        );
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("key `remotes[0].private_key_env`") && err.contains("give only one"),
            "{err}"
        );
        assert!(
            err.contains("key `remotes[0].secret_access_key_file`")
                && err.contains("applies only to s3"),
            "{err}"
        );
        // A key variable that holds no key names the variable, not its value.
        let (_d, r) = load_in_dir(
            &format!("{remote}private_key_env = \"GWT_K\"\n"),
            &[],
            &[("GWT_K", "Zq-not-a-key-3321")],
        );
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:6: key `remotes[0].private_key_env`"),
            "{err}"
        );
        assert!(
            err.contains("`GWT_K`") && !err.contains("Zq-not-a-key"),
            "{err}"
        );
    }

    #[test]
    fn type_errors_on_secrets_do_not_echo_them() {
        let remote =
            "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\n";
        for (line, secret) in [
            ("password = 86753091", "86753091"),
            ("private_key_passphrase = 7731.5", "7731.5"),
            // (What is searched for must not fit in the temporary folder's
            // random name, which messages include: "Zq" once did.)
            ("password = \"Zq\\qsecret-8812\"", "secret-8812"),
            ("password = [\"Zq-in-array-2290\"]", "Zq-in-array-2290"),
        ] {
            let err = load_text(&format!("{remote}{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("gw.toml:6"), "{err}");
            assert!(!err.contains(secret), "{line}: the value is quoted: {err}");
        }
        let s3 = "[[remotes]]\nname = \"b\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = 555123999\n";
        let err = load_text(s3).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:7: key `remotes[0].secret_access_key`"),
            "{err}"
        );
        assert!(!err.contains("555123999"), "{err}");
        // Other keys still show what was found.
        let err = load_text(&format!("{remote}port = \"twenty-two\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twenty-two"), "{err}");
    }

    #[test]
    fn secret_looking_overrides_are_not_echoed() {
        let env = vec![(
            "GATEWAY__ADMIN__KEYS".to_string(),
            "Zq-override-6612".to_string(),
        )];
        let err = load_with_env(None, env).unwrap_err().to_string();
        assert!(err.contains("environment overrides"), "{err}");
        assert!(!err.contains("Zq-override-6612"), "{err}");
    }

    #[test]
    fn s3_endpoint_with_credentials_is_refused_without_echo() {
        let text = "[[remotes]]\nname = \"b\"\nkind = \"s3\"\nendpoint = \"https://AK:Zq-userinfo-8812@s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
        let err = load_text(text).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:4: key `remotes[0].endpoint`"),
            "{err}"
        );
        assert!(err.contains("must not carry credentials"), "{err}");
        assert!(!err.contains("Zq-userinfo-8812"), "{err}");
        assert!(endpoint_has_userinfo("http://u@h:9000/x"));
        assert!(!endpoint_has_userinfo("http://h:9000/a@b"));
    }

    #[test]
    fn files_holding_secrets_open_to_others_are_warned_about() {
        let config = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"open.pw\"\n\n[[remotes]]\nname = \"tight\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"tight.pw\"\n";
        let (dir, r) = load_in_dir(
            config,
            &[("open.pw", "a\n", 0o644), ("tight.pw", "b\n", 0o600)],
            &[],
        );
        let s = r.unwrap();
        let open = dir.path().join("open.pw");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let w = &s.warnings[0];
        assert!(w.contains(&open.display().to_string()), "{w}");
        assert!(
            w.contains("remotes[0].password_file") && w.contains("mode 0644"),
            "{w}"
        );
        assert!(w.contains(&format!("chmod 600 {}", open.display())), "{w}");
        // The config file itself.
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("gw.toml");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let s = load_with_env(Some(&path), vec![]).unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("the config file")
                && w.contains("mode 0664")
                && w.contains("writable by group")),
            "{:?}",
            s.warnings
        );
    }

    const SFTP_REMOTE: &str = "[[remotes]]\nname = \"partner\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nmax_connections = 3\n";

    #[test]
    fn sync_defaults_and_parallel_capped_by_the_remote() {
        let text = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"out\"\nfolder = \"/outbound/\"\nremote = \"partner\"\nremote_path = \"inbox\"\ndirection = \"push\"\nevery = \"15m\"\n");
        let s = load_text(&text).unwrap();
        let sync = &s.syncs[0];
        assert_eq!(sync.folder.as_str(), "outbound");
        assert_eq!(sync.remote_path.as_str(), "inbox");
        assert_eq!(sync.direction, SyncDirection::Push);
        assert_eq!(sync.after_copy, AfterCopy::Keep);
        assert_eq!(sync.schedule, Schedule::Every(Duration::from_secs(900)));
        assert!(sync.filter.is_everything());
        assert_eq!(sync.time_limit, Duration::from_secs(24 * 3600));
        // The default of 4 is brought down to the remote's cap of 3.
        assert_eq!(sync.parallel, 3);
    }

    #[test]
    fn sync_mistakes_are_named() {
        let text = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"both\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"two_way\"\nafter_copy = \"delete\"\nparallel = 10\n\n[[syncs]]\nname = \"lost\"\nfolder = \"../up\"\nremote = \"nowhere\"\ndirection = \"pull\"\n");
        let err = load_text(&text).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:14: key `syncs[0].after_copy`"),
            "{err}"
        );
        assert!(err.contains("a two-way sync never deletes"), "{err}");
        assert!(err.contains("gw.toml:15: key `syncs[0].parallel`"), "{err}");
        assert!(err.contains("max_connections = 3"), "{err}");
        assert!(err.contains("key `syncs[1].folder`"), "{err}");
        assert!(
            err.contains("key `syncs[1].remote`") && err.contains("no remote named `nowhere`"),
            "{err}"
        );
        let typo = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"s\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"sideways\"\n");
        let err = load_text(&typo).unwrap_err().to_string();
        assert!(
            err.contains("gw.toml:13") && err.contains("sideways"),
            "{err}"
        );
    }

    /// A sync on `partner` with `extra` lines from line 14 on.
    fn sync_with(extra: &str) -> String {
        format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"s\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"push\"\n{extra}")
    }

    #[test]
    fn sync_schedule_cron_and_filters() {
        let s = load_text(&sync_with("cron = \"0 2 * * MON-FRI\"\ntime_zone = \"Europe/Berlin\"\ninclude = [\"*.csv\", \"reports/**\"]\nexclude = [\"*.tmp\"]\n")).unwrap();
        let sync = &s.syncs[0];
        assert_eq!(
            sync.schedule.describe(),
            "cron `0 2 * * MON-FRI` Europe/Berlin"
        );
        assert!(sync.filter.matches("a/b.csv"));
        assert!(sync.filter.matches("reports/q1.pdf"));
        assert!(!sync.filter.matches("a.txt"));
        assert!(!sync.filter.matches("reports/x.tmp"));
        // The zone defaults to UTC.
        let s = load_text(&sync_with("cron = \"@daily\"\n")).unwrap();
        assert_eq!(s.syncs[0].schedule.describe(), "cron `@daily` UTC");
        // Neither `every` nor `cron`: on demand only.
        let s = load_text(&sync_with("")).unwrap();
        assert_eq!(s.syncs[0].schedule, Schedule::Manual);
    }

    #[test]
    fn sync_schedule_mistakes_are_named() {
        let err = load_text(&sync_with("every = \"15m\"\ncron = \"*/5 * * * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gw.toml:15: key `syncs[0].cron`"), "{err}");
        assert!(err.contains("either `every` or `cron`"), "{err}");

        let err = load_text(&sync_with(
            "every = \"15m\"\ntime_zone = \"Europe/Berlin\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("gw.toml:15: key `syncs[0].time_zone`"),
            "{err}"
        );
        assert!(err.contains("only applies with `cron`"), "{err}");

        let err = load_text(&sync_with("cron = \"0 25 * * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gw.toml:14: key `syncs[0].cron`"), "{err}");
        assert!(
            err.contains("field 2 (hour) `25` is out of range 0-23"),
            "{err}"
        );

        // An unknown zone and a bad expression: both named, each at its key.
        let err = load_text(&sync_with(
            "cron = \"0 0 * * 8\"\ntime_zone = \"Europe/Berln\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("gw.toml:15: key `syncs[0].time_zone`"),
            "{err}"
        );
        assert!(err.contains("unknown time zone `Europe/Berln`"), "{err}");
        assert!(err.contains("gw.toml:14: key `syncs[0].cron`"), "{err}");
        assert!(err.contains("`8` is out of range 0-7"), "{err}");
    }

    #[test]
    fn sync_filter_mistakes_are_named() {
        let err = load_text(&sync_with(
            "include = [\"*.csv\", \"[a\"]\nexclude = [\"{x,y\"]\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("gw.toml:14: key `syncs[0].include`"), "{err}");
        assert!(err.contains("include pattern `[a`"), "{err}");
        assert!(err.contains("gw.toml:15: key `syncs[0].exclude`"), "{err}");
        assert!(err.contains("exclude pattern `{x,y`"), "{err}");
        let err = load_text(&sync_with("includes = [\"*.csv\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("includes"), "{err}");
    }
}
