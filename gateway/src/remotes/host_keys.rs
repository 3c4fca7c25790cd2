//! Host key pinning for remote SFTP servers: a configured key, or the first
//! key seen (trust on first use, kept in the state store). A different key
//! disables the remote until an admin runs `gateway remote trust`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use backends::sftp::HostKeyPolicy;
use backends::{BackendError, ErrorKind};
use certs::host_keys::fingerprint;
use russh::keys::PublicKey;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, Table};

/// Why a remote is disabled, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Disabled {
    /// Fingerprint of the key that was expected.
    pub expected: String,
    /// Fingerprint of the key the server presented.
    pub presented: String,
    /// The presented key (`ssh-ed25519 AAAA...`).
    pub presented_key: String,
    /// When it happened (seconds since the epoch).
    pub since: u64,
}

impl Disabled {
    /// The sentence shown to users and admins.
    pub fn describe(&self, remote: &str) -> String {
        format!(
            "remote `{remote}` is disabled: host key mismatch (expected {}, presented {}); \
             check the new key with the server's admin, then run `gateway remote trust {remote}`",
            self.expected, self.presented
        )
    }
}

/// The pinned key of `remote`, if one was learned.
pub fn pinned(store: &dyn StateStore, remote: &str) -> Result<Option<PublicKey>, StateError> {
    let Some(bytes) = store.get(Table::HostKeys, remote)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    PublicKey::from_openssh(text.trim())
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            table: "host_keys",
            message: e.to_string(),
        })
}

/// Why `remote` is disabled, if it is.
pub fn disabled(store: &dyn StateStore, remote: &str) -> Result<Option<Disabled>, StateError> {
    let Some(bytes) = store.get(Table::DisabledRemotes, remote)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            table: "disabled_remotes",
            message: e.to_string(),
        })
}

/// Pins `key` for `remote` and re-enables it.
pub fn trust(store: &dyn StateStore, remote: &str, key: &PublicKey) -> Result<(), StateError> {
    let text = key.to_openssh().map_err(|e| StateError::Corrupt {
        table: "host_keys",
        message: e.to_string(),
    })?;
    store.put(Table::HostKeys, remote, text.as_bytes())?;
    store.delete(Table::DisabledRemotes, remote)?;
    Ok(())
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The host key policy of one remote.
pub struct PinnedHostKeys {
    remote: String,
    configured: Option<PublicKey>,
    allow_mismatch: bool,
    store: Arc<dyn StateStore>,
    last_presented: Mutex<Option<PublicKey>>,
}

impl std::fmt::Debug for PinnedHostKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedHostKeys")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl PinnedHostKeys {
    /// The policy for `remote`.
    pub fn new(
        remote: &str,
        configured: Option<PublicKey>,
        allow_mismatch: bool,
        store: Arc<dyn StateStore>,
    ) -> Self {
        PinnedHostKeys {
            remote: remote.to_string(),
            configured,
            allow_mismatch,
            store,
            last_presented: Mutex::new(None),
        }
    }

    /// The key the server presented on the latest connection.
    pub fn last_presented(&self) -> Option<PublicKey> {
        self.last_presented
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn state_error(&self, e: StateError) -> BackendError {
        BackendError::new(
            ErrorKind::Other,
            "connect",
            "",
            format!("remote `{}`: cannot check the host key: {e}", self.remote),
        )
    }
}

impl HostKeyPolicy for PinnedHostKeys {
    fn check_enabled(&self) -> backends::Result<()> {
        match disabled(self.store.as_ref(), &self.remote) {
            Ok(None) => Ok(()),
            Ok(Some(d)) => Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "connect",
                "",
                d.describe(&self.remote),
            )),
            Err(e) => Err(self.state_error(e)),
        }
    }

    fn verify(&self, presented: &PublicKey) -> backends::Result<()> {
        *self
            .last_presented
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(presented.clone());
        let expected = match &self.configured {
            Some(k) => Some(k.clone()),
            None => pinned(self.store.as_ref(), &self.remote).map_err(|e| self.state_error(e))?,
        };
        let Some(expected) = expected else {
            trust(self.store.as_ref(), &self.remote, presented).map_err(|e| self.state_error(e))?;
            tracing::info!(target: "audit", remote = %self.remote, op = "host-key-pinned", fingerprint = %fingerprint(presented), "pinned the host key of remote `{}` on first connect", self.remote);
            return Ok(());
        };
        if same_key(&expected, presented) {
            return Ok(());
        }
        let (want, got) = (fingerprint(&expected), fingerprint(presented));
        if self.allow_mismatch {
            tracing::warn!(remote = %self.remote, "INSECURE: host key mismatch for remote `{}` (expected {want}, presented {got}); connecting anyway because allow_mismatched_host_key = true", self.remote);
            return Ok(());
        }
        let record = Disabled {
            expected: want,
            presented: got,
            presented_key: presented.to_openssh().unwrap_or_default(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let message = record.describe(&self.remote);
        tracing::error!(target: "audit", remote = %self.remote, op = "host-key-mismatch", "{message}");
        match serde_json::to_vec(&record) {
            Ok(bytes) => {
                if let Err(e) = self.store.put(Table::DisabledRemotes, &self.remote, &bytes) {
                    tracing::error!(remote = %self.remote, "cannot record that the remote is disabled: {e}");
                }
            }
            Err(e) => {
                tracing::error!(remote = %self.remote, "cannot record that the remote is disabled: {e}")
            }
        }
        Err(BackendError::new(
            ErrorKind::PermissionDenied,
            "connect",
            "",
            message,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RedbStore;

    fn key(seed: u8) -> PublicKey {
        let k = russh::keys::PrivateKey::from(
            russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]),
        );
        k.public_key().clone()
    }

    #[test]
    fn pins_first_key_then_disables_on_change_until_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let policy = PinnedHostKeys::new("r", None, false, store.clone());
        policy.check_enabled().unwrap();
        policy.verify(&key(1)).unwrap();
        policy.verify(&key(1)).unwrap();
        let err = policy.verify(&key(2)).unwrap_err();
        assert!(
            err.message().contains("mismatch")
                && err.message().contains(&fingerprint(&key(1)))
                && err.message().contains(&fingerprint(&key(2))),
            "{err}"
        );
        // Disabled, even for the old key, and for a new policy (restart).
        let again = PinnedHostKeys::new("r", None, false, store.clone());
        assert!(again.check_enabled().is_err());
        trust(store.as_ref(), "r", &key(2)).unwrap();
        again.check_enabled().unwrap();
        again.verify(&key(2)).unwrap();
        assert!(again.verify(&key(1)).is_err());
    }

    #[test]
    fn configured_key_and_insecure_override() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let strict = PinnedHostKeys::new("a", Some(key(1)), false, store.clone());
        assert!(
            strict.verify(&key(2)).is_err(),
            "a configured key is enforced from the first connect"
        );
        let lax = PinnedHostKeys::new("b", Some(key(1)), true, store.clone());
        lax.verify(&key(2)).unwrap();
        lax.check_enabled().unwrap();
    }
}
