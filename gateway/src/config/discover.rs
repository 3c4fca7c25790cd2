//! Which config file a command uses: the one `--config` names, else the
//! one `GATEWAY_CONFIG` names, else `/etc/gateway/config.toml` when it
//! exists, else none (the built-in defaults, which only `serve`, `config
//! check` and the S3 key commands accept). Every command says which it
//! used, so nobody mistakes the built-in defaults for their file.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that names the config file when `--config`
/// is not given.
pub const CONFIG_ENV: &str = "GATEWAY_CONFIG";

/// The config file used when neither `--config` nor `GATEWAY_CONFIG`
/// names one and it exists (where `deploy/gateway.service` expects it).
pub const SYSTEM_CONFIG: &str = "/etc/gateway/config.toml";

/// Where the chosen config file's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config FILE`.
    Flag,
    /// The `GATEWAY_CONFIG` environment variable.
    Env,
    /// `/etc/gateway/config.toml`, which exists.
    System,
}

/// The config file a command uses and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenConfig {
    /// The file.
    pub path: PathBuf,
    /// Why this file.
    pub origin: ConfigOrigin,
}

impl fmt::Display for ChosenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.origin {
            ConfigOrigin::Flag => "from --config",
            ConfigOrigin::Env => "from GATEWAY_CONFIG",
            ConfigOrigin::System => "the system config",
        };
        write!(f, "{} ({why})", self.path.display())
    }
}

/// The config file for a command given `--config` (`flag`), from this
/// process's environment and file system; `None`: no file, the built-in
/// defaults.
pub fn choose(flag: Option<&Path>) -> Option<ChosenConfig> {
    choose_from(flag, std::env::var_os(CONFIG_ENV), Path::new(SYSTEM_CONFIG))
}

/// [`choose`] with the environment variable's value and the system path
/// given (for tests).
pub fn choose_from(
    flag: Option<&Path>,
    env: Option<OsString>,
    system: &Path,
) -> Option<ChosenConfig> {
    if let Some(path) = flag {
        return Some(ChosenConfig {
            path: path.to_path_buf(),
            origin: ConfigOrigin::Flag,
        });
    }
    if let Some(path) = env.filter(|v| !v.is_empty()) {
        return Some(ChosenConfig {
            path: PathBuf::from(path),
            origin: ConfigOrigin::Env,
        });
    }
    system.is_file().then(|| ChosenConfig {
        path: system.to_path_buf(),
        origin: ConfigOrigin::System,
    })
}

/// Why no config file was found.
pub fn none_found() -> String {
    format!("no --config, no {CONFIG_ENV} and no {SYSTEM_CONFIG}")
}

/// How to give a command its config file.
pub fn how_to_give_one() -> String {
    format!("pass --config FILE, set {CONFIG_ENV}, or create {SYSTEM_CONFIG}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_variable_then_the_system_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let system = dir.path().join("config.toml");
        std::fs::write(&system, "").expect("system file");
        let flag = Path::new("/x/flag.toml");
        let env = Some(OsString::from("/x/env.toml"));

        let chosen = choose_from(Some(flag), env.clone(), &system).expect("flag");
        assert_eq!(chosen.origin, ConfigOrigin::Flag);
        assert_eq!(chosen.path, flag);

        let chosen = choose_from(None, env, &system).expect("env");
        assert_eq!(chosen.origin, ConfigOrigin::Env);
        assert_eq!(chosen.to_string(), "/x/env.toml (from GATEWAY_CONFIG)");

        let chosen = choose_from(None, Some(OsString::new()), &system).expect("system");
        assert_eq!(chosen.origin, ConfigOrigin::System);
        assert_eq!(chosen.path, system);
    }

    #[test]
    fn no_flag_no_variable_and_no_system_file_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("config.toml");
        assert_eq!(choose_from(None, None, &missing), None);
        // A folder of that name is not a config file.
        std::fs::create_dir(&missing).expect("folder");
        assert_eq!(choose_from(None, None, &missing), None);
    }
}
