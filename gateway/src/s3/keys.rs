//! The S3 endpoint's access keys: issued per user by the admin
//! (`gateway user s3-key create NAME`), kept in the state store, and looked
//! up on every request so a revoked key stops working at once.
//!
//! SigV4 signs with the secret itself (an HMAC key), so unlike the admin
//! API's keys the secret cannot be stored as a hash: it is kept in the
//! state database, which the gateway creates readable by its own user only.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, Table};

/// Characters of an access key id (as AWS's: upper case and digits).
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of a secret (letters and digits: nothing a shell or a
/// config file would need quoted).
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// One access key of the S3 endpoint.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct S3Key {
    /// The access key id (`GW` and 18 more characters), public.
    pub id: String,
    /// The user whose tree and permissions the key gives.
    pub user: String,
    /// The secret access key.
    pub secret: String,
    /// When it was issued (Unix seconds).
    pub created: u64,
}

/// Never prints the secret.
impl fmt::Debug for S3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Key")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("secret", &crate::config::REDACTED)
            .field("created", &self.created)
            .finish()
    }
}

/// Errors managing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The system's random source failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

fn random_text(alphabet: &[u8], len: usize) -> Result<String, KeyError> {
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

fn corrupt(e: impl fmt::Display) -> StateError {
    StateError::Corrupt {
        table: "s3_keys",
        message: e.to_string(),
    }
}

/// The keys, shared by the endpoint and the command line.
#[derive(Clone)]
pub struct KeyBook {
    store: Arc<dyn StateStore>,
}

impl KeyBook {
    /// Keys kept in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        KeyBook { store }
    }

    /// Issues a new key for `user` (who must exist: the caller checks).
    pub fn create(&self, user: &str) -> Result<S3Key, KeyError> {
        loop {
            let key = S3Key {
                id: format!("GW{}", random_text(ID_ALPHABET, 18)?),
                user: user.to_string(),
                secret: random_text(SECRET_ALPHABET, 40)?,
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            };
            let value = serde_json::to_vec(&key).map_err(corrupt)?;
            if self.store.put_if_absent(Table::S3Keys, &key.id, &value)? {
                return Ok(key);
            }
        }
    }

    /// The key with this id, if it exists (it is not revoked).
    pub fn find(&self, id: &str) -> Result<Option<S3Key>, StateError> {
        match self.store.get(Table::S3Keys, id)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Result<Vec<S3Key>, StateError> {
        let mut keys = self
            .store
            .list(Table::S3Keys)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<S3Key>(&v).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(keys)
    }

    /// Revokes the key `id`; returns whether it existed.
    pub fn revoke(&self, id: &str) -> Result<bool, StateError> {
        self.store.delete(Table::S3Keys, id)
    }
}

/// SigV4 verification's secret lookup, answering `InvalidAccessKeyId` for
/// an unknown or revoked key.
pub struct KeyAuth {
    /// The keys.
    pub keys: KeyBook,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        let keys = self.keys.clone();
        let id = access_key.to_string();
        let found = tokio::task::spawn_blocking(move || keys.find(&id))
            .await
            .map_err(|e| super::wire::internal_error(format!("key lookup failed: {e}")))?;
        match found {
            Ok(Some(key)) => Ok(s3s::auth::SecretKey::from(key.secret)),
            Ok(None) => {
                tracing::info!(target: "audit", access_key, op = "s3-auth", result = "unknown or revoked key", "refused an S3 request");
                Err(s3s::s3_error!(
                    InvalidAccessKeyId,
                    "The AWS Access Key Id you provided does not exist in our records."
                ))
            }
            Err(e) => {
                tracing::error!("S3 key lookup: {e}");
                Err(s3s::s3_error!(
                    InternalError,
                    "the key store cannot be read"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_find_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::state::RedbStore::open(dir.path()).unwrap());
        let book = KeyBook::new(store);
        let a = book.create("alice").unwrap();
        let b = book.create("bob").unwrap();
        assert_eq!(a.id.len(), 20);
        assert!(a.id.starts_with("GW"));
        assert_eq!(a.secret.len(), 40);
        assert_ne!(a.secret, b.secret);
        assert_eq!(book.find(&a.id).unwrap().unwrap().user, "alice");
        assert_eq!(book.list().unwrap().len(), 2);
        assert!(book.revoke(&a.id).unwrap());
        assert!(!book.revoke(&a.id).unwrap());
        assert!(book.find(&a.id).unwrap().is_none());
        assert!(!format!("{b:?}").contains(&b.secret));
    }
}
