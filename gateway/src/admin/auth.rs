//! Who may use the admin API: API keys, known only by their SHA-256, each
//! with a name and an optional expiry. The set is replaceable while the
//! server runs, so a config reload can add, expire or revoke keys.

use std::sync::RwLock;
use std::time::SystemTime;

use hyper::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ApiKey, ApiScope};

/// The header Files.com clients send their key in (accepted as well as
/// `Authorization: Bearer`).
pub const FILES_API_KEY_HEADER: &str = "x-filesapi-key";

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key was sent.
    #[error("no API key was sent")]
    Missing,
    /// The key matches no configured key (or the header is malformed).
    #[error("the API key is not valid")]
    Invalid,
    /// The key matches a configured key whose time is over.
    #[error("API key `{name}` has expired")]
    Expired {
        /// The key's name (for the log, never for the client).
        name: String,
    },
}

/// Who sent a request: the key's name and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name (for the audit log).
    pub name: String,
    /// Its scope.
    pub scope: ApiScope,
}

/// The configured API keys, shared by the server and whoever reloads the
/// config.
#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: RwLock<Vec<ApiKey>>,
}

impl ApiKeys {
    /// A key set.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        ApiKeys {
            keys: RwLock::new(keys),
        }
    }

    /// Replaces every key (after a config reload); requests from now on
    /// are checked against `keys`.
    pub fn replace(&self, keys: Vec<ApiKey>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether there are none (then nobody can use the API).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key `presented` is, if it is a configured key that has not
    /// expired at `now`. Every configured hash is compared, each in
    /// constant time.
    pub fn check(&self, presented: &str, now: SystemTime) -> Result<Caller, AuthError> {
        self.check_hash(&hash_key(presented), now)
    }

    /// The same for a key known by its hash (a console session keeps the
    /// hash of the key it logged in with, so revoking or expiring the key
    /// ends the session too).
    pub fn check_hash(&self, hash: &[u8; 32], now: SystemTime) -> Result<Caller, AuthError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut found: Option<&ApiKey> = None;
        for k in keys.iter() {
            if bool::from(k.sha256.ct_eq(hash)) && found.is_none() {
                found = Some(k);
            }
        }
        let key = found.ok_or(AuthError::Invalid)?;
        match key.expires {
            Some(at) if at <= now => Err(AuthError::Expired {
                name: key.name.clone(),
            }),
            _ => Ok(Caller {
                name: key.name.clone(),
                scope: key.scope,
            }),
        }
    }

    /// Checks the key a request carries (`Authorization: Bearer KEY` or
    /// `X-FilesAPI-Key: KEY`).
    pub fn check_request(&self, headers: &HeaderMap, now: SystemTime) -> Result<Caller, AuthError> {
        self.check(presented_key(headers)?, now)
    }
}

/// SHA-256 of an API key, as `[[admin.keys]] hash` holds it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key a request carries.
pub fn presented_key(headers: &HeaderMap) -> Result<&str, AuthError> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let text = v.to_str().map_err(|_| AuthError::Invalid)?.trim();
        let (scheme, key) = text.split_once(' ').ok_or(AuthError::Invalid)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
            return Err(AuthError::Invalid);
        }
        return Ok(key);
    }
    if let Some(v) = headers.get(FILES_API_KEY_HEADER) {
        let key = v.to_str().map_err(|_| AuthError::Invalid)?.trim();
        if key.is_empty() {
            return Err(AuthError::Invalid);
        }
        return Ok(key);
    }
    Err(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::header::HeaderValue;

    use super::*;

    fn keys() -> ApiKeys {
        let now = SystemTime::now();
        ApiKeys::new(vec![
            ApiKey {
                name: "ci".into(),
                sha256: hash_key("gwk_good"),
                expires: None,
                scope: ApiScope::Admin,
            },
            ApiKey {
                name: "old".into(),
                sha256: hash_key("gwk_old"),
                expires: Some(now - Duration::from_secs(1)),
                scope: ApiScope::Admin,
            },
            ApiKey {
                name: "later".into(),
                sha256: hash_key("gwk_later"),
                expires: Some(now + Duration::from_secs(3600)),
                scope: ApiScope::ReadOnly,
            },
        ])
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keys_are_checked_by_hash_and_expiry() {
        let k = keys();
        let now = SystemTime::now();
        assert_eq!(k.check("gwk_good", now).map(|c| c.name), Ok("ci".into()));
        assert_eq!(
            k.check("gwk_later", now).map(|c| c.name),
            Ok("later".into())
        );
        assert_eq!(
            k.check("gwk_later", now).map(|c| c.scope),
            Ok(ApiScope::ReadOnly)
        );
        assert_eq!(
            k.check("gwk_bad", now).map(|c| c.name),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            k.check("gwk_old", now).map(|c| c.name),
            Err(AuthError::Expired { name: "old".into() })
        );
        k.replace(vec![]);
        assert!(k.is_empty());
        assert_eq!(
            k.check("gwk_good", now).map(|c| c.name),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn both_headers_are_accepted() {
        let k = keys();
        let now = SystemTime::now();
        let ok = |h: HeaderMap| k.check_request(&h, now).map(|c| c.name);
        assert_eq!(
            ok(headers("authorization", "Bearer gwk_good")),
            Ok("ci".into())
        );
        assert_eq!(
            ok(headers("authorization", "bearer  gwk_good ")),
            Ok("ci".into())
        );
        assert_eq!(ok(headers("x-filesapi-key", "gwk_good")), Ok("ci".into()));
        assert_eq!(ok(HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(
            ok(headers("authorization", "Basic Z3drX2dvb2Q=")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            ok(headers("authorization", "Bearer")),
            Err(AuthError::Invalid)
        );
        assert_eq!(ok(headers("x-filesapi-key", " ")), Err(AuthError::Invalid));
    }
}
