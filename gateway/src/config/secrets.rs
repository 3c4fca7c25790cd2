//! Secrets of remotes: passwords, key passphrases, S3 secret keys and
//! private keys.
//!
//! Each can be written in the config file (`password = "..."`), read from
//! a file (`password_file = "path"`: the file's content, trailing newline
//! stripped) or from an environment variable (`password_env = "VAR"`),
//! exactly one of the three. A value is held as a [`Secret`], which never
//! prints: `Debug` and `Display` show `[redacted]`, so it cannot reach a
//! log line, an error or an API answer by accident. Config errors about a
//! secret key never quote its value ([`redact_message`]), and files that
//! hold secrets are checked for modes that let other users read or change
//! them ([`exposure`]).

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{describe_io, resolve, Reporter};

/// What a secret shows wherever it is printed.
pub const REDACTED: &str = "[redacted]";

/// The keys whose values are secrets when written inline.
pub const SECRET_KEYS: &[&str] = &["password", "private_key_passphrase", "secret_access_key"];

/// Largest secret file read: passwords and keys are short, so anything
/// bigger is the wrong file.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret value (password, passphrase, secret key). `Debug` and
/// `Display` print `[redacted]`; [`Secret::expose`] gives the value to the
/// code that sends it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (a login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Whether the dotted config key (`remotes[0].password`) holds a secret
/// value.
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&last_name(key))
}

/// The last name of a dotted key, without an index: `remotes[0].password`
/// gives `password`.
fn last_name(key: &str) -> &str {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.split('[').next().unwrap_or(last)
}

/// Whether the line of `text` holding byte `offset` assigns a secret key
/// (`password = ...`): for errors in a file too broken to locate keys in.
pub fn line_is_secret(text: &str, offset: usize) -> bool {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let Some((key, _)) = line.split_once('=') else {
        return false;
    };
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    is_secret_key(key.trim())
}

/// `message` without any value it quotes: text in backticks or double
/// quotes (serde and toml quote values so) and `found`, the source text
/// the error points at. A quoted `keep` (the key's own name) and quoted
/// single characters stay.
pub fn redact_message(message: &str, found: Option<&str>, keep: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            break;
        };
        out.push_str(&rest[..open]);
        let inner = &after[..close];
        // The key's own name, and single characters (what a parser
        // expected, as `"` or `n`), are no secret.
        if inner == keep || inner.chars().count() == 1 {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        } else {
            out.push_str(REDACTED);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    if let Some(found) = found.map(str::trim).filter(|f| !f.is_empty()) {
        out = out.replace(found, REDACTED);
        let bare = found.trim_matches(|c| c == '"' || c == '\'');
        if !bare.is_empty() {
            out = out.replace(bare, REDACTED);
        }
    }
    out
}

/// Whether an environment variable's name suggests a secret value (its
/// value is then never quoted in an error).
pub fn env_name_is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "secret",
        "key",
        "token",
        "credential",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// One secret as the config gives it: the outcome of [`SecretReader::secret`].
#[derive(Debug)]
pub(super) enum Supplied<T> {
    /// None of the forms is given.
    Absent,
    /// Given, but unusable (the problem is reported).
    Invalid,
    /// The value.
    Value(T),
}

impl<T> Supplied<T> {
    /// The value, if there is one.
    pub fn value(self) -> Option<T> {
        match self {
            Supplied::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Whether none of the forms is given.
    pub fn is_absent(&self) -> bool {
        matches!(self, Supplied::Absent)
    }
}

/// Reads secrets while a config is validated: files relative to the
/// config's folder, variables from the environment given. Remembers the
/// files that hold secrets, for [`exposure`].
pub(super) struct SecretReader<'a> {
    base: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<OsString>,
    /// Files holding secrets, each with the key that names it.
    pub files: Vec<(PathBuf, String)>,
}

impl<'a> SecretReader<'a> {
    /// A reader resolving relative paths against `base` and variables
    /// through `env`.
    pub fn new(base: Option<&'a Path>, env: &'a dyn Fn(&str) -> Option<OsString>) -> Self {
        SecretReader {
            base,
            env,
            files: Vec::new(),
        }
    }

    /// The secret `key` of one config entry, given inline (`key`), as a
    /// file (`key_file`) or as an environment variable (`key_env`).
    /// Problems are reported at their key (`at` makes the full key).
    pub fn secret(
        &mut self,
        r: &mut Reporter<'_>,
        at: &dyn Fn(&str) -> String,
        key: &str,
        inline: Option<&Secret>,
        file: Option<&PathBuf>,
        env: Option<&str>,
    ) -> Supplied<Secret> {
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        let given: Vec<&str> = [
            (key, inline.is_some()),
            (file_key.as_str(), file.is_some()),
            (env_key.as_str(), env.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect();
        if given.len() > 1 {
            r.at_key(
                &at(given[1]),
                format!(
                    "`{key}`, `{file_key}` and `{env_key}` are alternatives: give only one (found `{}`)",
                    given.join("` and `")
                ),
            );
            return Supplied::Invalid;
        }
        if let Some(value) = inline {
            return Supplied::Value(value.clone());
        }
        if let Some(file) = file {
            return match self.file_text(r, &at(&file_key), file) {
                Some(text) => {
                    let text = text.trim_end_matches(['\n', '\r']);
                    if text.is_empty() {
                        r.at_key(
                            &at(&file_key),
                            format!("`{}` is empty", self.resolve_path(file).display()),
                        );
                        Supplied::Invalid
                    } else {
                        Supplied::Value(Secret::new(text))
                    }
                }
                None => Supplied::Invalid,
            };
        }
        if let Some(name) = env {
            return match self.env_text(r, &at(&env_key), name) {
                Some(text) => Supplied::Value(Secret::new(text)),
                None => Supplied::Invalid,
            };
        }
        Supplied::Absent
    }

    /// The text of secret file `file` (reported at `full_key` if it cannot
    /// be read); remembers the file for the permission check.
    pub fn file_text(
        &mut self,
        r: &mut Reporter<'_>,
        full_key: &str,
        file: &Path,
    ) -> Option<String> {
        let path = self.resolve_path(file);
        self.remember(&path, full_key);
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            r.at_key(
                full_key,
                format!("cannot read `{}`: {}", path.display(), describe_io(&e)),
            );
            return None;
        }
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            r.at_key(
                full_key,
                format!(
                    "`{}` is larger than {} KiB: not a secret file",
                    path.display(),
                    MAX_SECRET_FILE_BYTES / 1024
                ),
            );
            return None;
        }
        match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                r.at_key(full_key, format!("`{}` is not UTF-8 text", path.display()));
                None
            }
        }
    }

    /// The value of environment variable `name` (reported at `full_key`
    /// if it is unset, empty or not UTF-8).
    pub fn env_text(&self, r: &mut Reporter<'_>, full_key: &str, name: &str) -> Option<String> {
        if name.is_empty() || name.contains(['=', '\0']) {
            r.at_key(
                full_key,
                "must name an environment variable, such as \"PARTNER_PASSWORD\"",
            );
            return None;
        }
        match (self.env)(name).map(OsString::into_string) {
            None => {
                r.at_key(
                    full_key,
                    format!("the environment variable `{name}` is not set"),
                );
                None
            }
            Some(Err(_)) => {
                r.at_key(
                    full_key,
                    format!("the environment variable `{name}` is not valid UTF-8"),
                );
                None
            }
            Some(Ok(v)) if v.is_empty() => {
                r.at_key(
                    full_key,
                    format!("the environment variable `{name}` is empty"),
                );
                None
            }
            Some(Ok(v)) => Some(v),
        }
    }

    /// `path` resolved against the config file's folder.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        resolve(self.base, path.to_path_buf())
    }

    /// Notes that `path` holds the secret of `full_key`.
    pub fn remember(&mut self, path: &Path, full_key: &str) {
        if !self.files.iter().any(|(p, _)| p == path) {
            self.files.push((path.to_path_buf(), full_key.to_string()));
        }
    }
}

/// A warning when the file at `path` (holding `what`) can be read or
/// changed by other users; `None` when its mode is tight or it cannot be
/// examined (a missing file is reported elsewhere).
///
/// Group access is allowed when it is how the gateway itself reads the
/// file (owned by another user, such as root, with the gateway's group,
/// as `install -m 0640 -o root -g gateway` does); then only access by
/// others or group write is reported.
pub fn exposure(path: &Path, what: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o7777;
    let euid = rustix::process::geteuid().as_raw();
    let read_through_group = meta.uid() != euid && in_group(meta.gid());
    let (mask, fix) = if read_through_group {
        (0o027, "640")
    } else {
        (0o077, "600")
    };
    let open = mode & mask;
    if open == 0 {
        return None;
    }
    let who = |group_bit: u32, other_bit: u32| -> Option<&'static str> {
        match (open & group_bit != 0, open & other_bit != 0) {
            (true, true) => Some("group and others"),
            (true, false) => Some("group"),
            (false, true) => Some("others"),
            (false, false) => None,
        }
    };
    let mut how = Vec::new();
    if let Some(w) = who(0o040, 0o004) {
        how.push(format!("readable by {w}"));
    }
    if let Some(w) = who(0o020, 0o002) {
        how.push(format!("writable by {w}"));
    }
    if how.is_empty() {
        how.push("open to group or others".to_string());
    }
    Some(format!(
        "{} ({what}) has mode {mode:04o}: {}; run `chmod {fix} {}`",
        path.display(),
        how.join(", "),
        path.display()
    ))
}

/// Whether the process is in group `gid` (effective or supplementary).
fn in_group(gid: u32) -> bool {
    rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// The warnings about every file in `files` (path, what it holds).
pub fn exposure_warnings(files: &[(PathBuf, String)]) -> Vec<String> {
    files
        .iter()
        .filter_map(|(path, what)| exposure(path, what))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-Zq");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-Zq");
    }

    #[test]
    fn secret_keys_are_recognised() {
        assert!(is_secret_key("remotes[0].password"));
        assert!(is_secret_key("remotes[3].secret_access_key"));
        assert!(is_secret_key("private_key_passphrase"));
        assert!(!is_secret_key("remotes[0].password_file"));
        assert!(!is_secret_key("remotes[0].name"));
        let text = "[[remotes]]\nname = \"x\"\n \"password\" = 12345\n";
        assert!(line_is_secret(text, text.find("12345").unwrap()));
        assert!(!line_is_secret(text, text.find("x").unwrap()));
    }

    #[test]
    fn messages_lose_quoted_values() {
        let m = redact_message(
            "invalid type: integer `8675309`, expected a string",
            Some("8675309"),
            "password",
        );
        assert_eq!(m, "invalid type: integer [redacted], expected a string");
        let m = redact_message(
            "invalid type: string \"Zq-secret\", expected a boolean",
            None,
            "password",
        );
        assert!(!m.contains("Zq-secret"), "{m}");
        let m = redact_message("duplicate key `password`", None, "password");
        assert_eq!(m, "duplicate key `password`");
        let m = redact_message("invalid escape, expected `b`, `\"`", None, "password");
        assert_eq!(m, "invalid escape, expected `b`, `\"`");
    }

    #[test]
    fn open_modes_are_reported_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(&f, "remotes[0].password_file"), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = exposure(&f, "remotes[0].password_file").unwrap();
        assert!(w.contains("mode 0644"), "{w}");
        assert!(w.contains("readable by group and others"), "{w}");
        assert!(w.contains(&format!("chmod 600 {}", f.display())), "{w}");
        assert!(w.contains("remotes[0].password_file"), "{w}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        let w = exposure(&f, "x").unwrap();
        assert!(
            w.contains("writable by group") && !w.contains("readable"),
            "{w}"
        );
        assert_eq!(exposure(&dir.path().join("missing"), "x"), None);
    }
}
