//! `gateway admin new-key NAME [--expires TIME] [--scope S]`: a fresh admin API key,
//! shown once, and the `[[admin.keys]]` lines (with only its hash) to add
//! to the config file.

use std::fmt::Write as _;

use backends::hash::hex;

use super::auth::hash_key;
use crate::config::ApiScope;

/// What every key starts with, so a leaked key is recognisable (secret
/// scanners, logs).
pub const KEY_PREFIX: &str = "gwk_";

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NewKeyError {
    /// The name is empty or not printable.
    #[error("the key's name must not be empty or hold control characters")]
    BadName,
    /// `--expires` is not an RFC 3339 time.
    #[error("`{0}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z: {1}")]
    BadExpiry(String, String),
    /// The system gave no random bytes.
    #[error("cannot get random bytes for the key: {0}")]
    Random(String),
}

/// A new key and its config lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key itself (`gwk_` and 64 hex digits): shown once, never stored.
    pub key: String,
    /// `sha256:<64 hex>`, for `[[admin.keys]] hash`.
    pub hash: String,
    /// The `[[admin.keys]]` table for the config file.
    pub toml: String,
}

/// Makes a key for `name` (32 random bytes) with `scope`, valid until
/// `expires` (RFC 3339) if given.
pub fn new_key(name: &str, expires: Option<&str>, scope: ApiScope) -> Result<NewKey, NewKeyError> {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(NewKeyError::BadName);
    }
    let expires = expires
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map(|ts| ts.to_string())
                .map_err(|e| NewKeyError::BadExpiry(t.to_string(), e.to_string()))
        })
        .transpose()?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| NewKeyError::Random(e.to_string()))?;
    let key = format!("{KEY_PREFIX}{}", hex(&secret));
    let hash = format!("sha256:{}", hex(&hash_key(&key)));
    let mut toml = String::from("[[admin.keys]]\n");
    let _ = writeln!(toml, "name = {}", toml_string(name));
    let _ = writeln!(toml, "hash = \"{hash}\"");
    let _ = writeln!(toml, "scope = \"{}\"", scope.as_str());
    if let Some(t) = &expires {
        let _ = writeln!(toml, "expires = \"{t}\"");
    }
    Ok(NewKey { key, hash, toml })
}

/// `gateway admin new-key`: prints the key once and the config lines.
pub fn print_new_key(name: &str, expires: Option<&str>, scope: ApiScope) -> anyhow::Result<()> {
    let k = new_key(name, expires, scope)?;
    println!(
        "API key for {}, scope {} (shown only this once; the gateway keeps only its hash):",
        toml_string(name),
        scope.as_str()
    );
    println!("  {}", k.key);
    println!();
    println!(
        "Add this to the config file (with `[admin] listen = \"127.0.0.1:9465\"` if the API is"
    );
    println!("not on yet), then reload or restart the gateway:");
    println!();
    print!("{}", k.toml);
    println!();
    println!("Clients send it as `Authorization: Bearer <key>` (or `X-FilesAPI-Key: <key>`).");
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_matches_its_hash_and_parses_as_config() {
        let k = new_key(
            "ci \"bot\"",
            Some("2027-01-31T00:00:00Z"),
            ApiScope::Operator,
        )
        .unwrap();
        assert!(k.key.starts_with(KEY_PREFIX));
        assert_eq!(k.key.len(), KEY_PREFIX.len() + 64);
        let parsed: toml::Table = toml::from_str(&k.toml).unwrap();
        let entry = &parsed["admin"]["keys"][0];
        assert_eq!(entry["name"].as_str(), Some("ci \"bot\""));
        assert_eq!(entry["expires"].as_str(), Some("2027-01-31T00:00:00Z"));
        assert_eq!(entry["scope"].as_str(), Some("operator"));
        let hash = entry["hash"].as_str().unwrap();
        assert_eq!(hash, k.hash);
        assert_eq!(
            crate::config::parse_key_hash(hash).unwrap(),
            hash_key(&k.key)
        );
        let other = new_key("ci", None, ApiScope::ReadOnly).unwrap();
        assert_ne!(other.key, k.key);
        assert!(!other.toml.contains("expires"));
    }

    #[test]
    fn bad_names_and_times_are_refused() {
        assert!(matches!(
            new_key(" ", None, ApiScope::Admin),
            Err(NewKeyError::BadName)
        ));
        assert!(matches!(
            new_key("ci", Some("tomorrow"), ApiScope::Admin),
            Err(NewKeyError::BadExpiry(..))
        ));
    }
}
