//! Configuration: one TOML file (optional) plus `GATEWAY__SECTION__KEY`
//! environment overrides, validated once at start-up into [`Settings`].
//!
//! The file is first parsed on its own with `toml`, whose errors carry a
//! position, so a typo is reported with its file, line and key; then the
//! `config` crate layers the environment on top. Every later check
//! (hashes, keys, CIDRs, permission rules) also names file, line and key.

mod file;
mod locate;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backends::StoragePath;
use ipnet::IpNet;
use policy::{PathPermissions, PermissionSet, ThrottleSettings, User};

pub use file::{ConfigFile, LogFormat};
use locate::KeyMap;

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
    /// The state folder (host keys, state database).
    pub state: PathBuf,
    /// Log line format.
    pub log_format: LogFormat,
    /// Grace period for transfers in flight at shutdown.
    pub shutdown_grace: Duration,
    /// Idle session timeout.
    pub idle_timeout: Duration,
    /// Networks allowed to connect at all (empty: any).
    pub allowed_networks: Vec<IpNet>,
    /// Login throttle figures.
    pub throttle: ThrottleSettings,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Users from the file (the first-start `admin` is added from state).
    pub users: Vec<User>,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, or `None` for the environment or defaults.
    pub file: Option<PathBuf>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    /// Dotted key (`users[0].allowed_networks[1]`).
    pub key: Option<String>,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for Problem {
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
pub struct ConfigError(pub Vec<Problem>);

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
    problems: Vec<Problem>,
}

impl Reporter<'_> {
    fn at_key(&mut self, key: &str, message: impl Into<String>) {
        let line = self.keys.line_of(key);
        self.problems.push(Problem {
            file: self.file.map(Path::to_path_buf),
            line,
            key: Some(key.to_string()),
            message: message.into(),
        });
    }
}

/// Loads and validates the configuration from `path` (or the built-in
/// defaults when `None`) with environment overrides.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    load_with_env(path, env)
}

/// [`load`] with an explicit environment (for tests).
pub fn load_with_env(
    path: Option<&Path>,
    env: Vec<(String, String)>,
) -> Result<Settings, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            ConfigError(vec![Problem {
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
        // Quote the offending value when it is short enough to read.
        if let Some(found) = err.span().and_then(|s| text.get(s)).map(str::trim) {
            if !found.is_empty()
                && found.len() <= 80
                && !found.contains('\n')
                && !message.contains(found)
            {
                message.push_str(&format!(" (found {found})"));
            }
        }
        return Err(ConfigError(vec![Problem {
            file: path.map(Path::to_path_buf),
            line: offset.map(|o| keys.line_at(o)),
            key: offset.and_then(|o| keys.key_at(o)).map(str::to_string),
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
    let settings = validate(file, path, base.as_deref(), &mut reporter);
    if reporter.problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError(reporter.problems))
    }
}

fn with_env(text: &str, env: Vec<(String, String)>) -> Result<ConfigFile, ConfigError> {
    let source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("server.listen")
        .with_list_parse_key("server.allowed_networks")
        .source(Some(env.into_iter().collect()));
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(source)
        .build()
        .and_then(|c| c.try_deserialize::<ConfigFile>())
        .map_err(|e| {
            ConfigError(vec![Problem {
                file: None,
                line: None,
                key: None,
                message: format!("in the {ENV_PREFIX}__* environment overrides: {e}"),
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
    r: &mut Reporter<'_>,
) -> Settings {
    let server = file.server;
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
    let state = server
        .state
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| PathBuf::from("./gateway-state"));
    let mut names = HashSet::new();
    let mut users = Vec::new();
    for (i, u) in file.users.into_iter().enumerate() {
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
        if u.password_hash.is_none() && keys.is_empty() && u.authorized_keys_file.is_none() {
            r.at_key(
                &at("name"),
                format!(
                    "user `{}` has neither password_hash nor authorized_keys, so cannot log in",
                    u.name
                ),
            );
        }
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
    Settings {
        source: source.map(Path::to_path_buf),
        listen: server.listen,
        storage,
        state,
        log_format: server.log_format,
        shutdown_grace: server.shutdown_grace,
        idle_timeout: server.idle_timeout,
        allowed_networks: server.allowed_networks,
        throttle: ThrottleSettings {
            max_failures: file.login.max_failures,
            failure_window: file.login.failure_window,
            ban_duration: file.login.ban_duration,
        },
        max_auth_attempts: file.login.max_auth_attempts.max(1),
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
