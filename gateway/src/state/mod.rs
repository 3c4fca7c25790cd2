//! What the gateway learns while it runs (the first user now; pinned host
//! keys, disabled remotes and sync runs later), behind [`StateStore`] so a
//! shared PostgreSQL store can replace the embedded one for several nodes.
//!
//! The embedded store is redb: pure Rust (no C build), one file, and every
//! committed write transaction is fsynced before `commit` returns, so a
//! crash right after a write loses nothing.

mod redb2;
mod upgrade;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or used.
    #[error("state database {}: {message}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The shared (PostgreSQL) state database could not be reached or
    /// refused a statement.
    #[error("state database {database}: {message}")]
    Shared {
        /// The database's URL, without its password.
        database: String,
        /// What failed.
        message: String,
    },
    /// A stored record could not be decoded.
    #[error("state database: a stored `{table}` record is damaged: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What failed.
        message: String,
    },
}

/// A key-value namespace in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Users the gateway created itself (the first-start `admin`).
    Users,
    /// Host keys pinned on first use, by remote name.
    HostKeys,
    /// Remotes disabled after a host key mismatch, by remote name.
    DisabledRemotes,
    /// Sync run records, by `sync/start-time` (see `sync::records`).
    SyncRuns,
    /// The run of each sync in progress, by sync name (its lock).
    SyncLocks,
    /// Written by the readiness check (`/readyz`) to prove writes work.
    Health,
    /// Checksums of files in the gateway's own storage, by file, valid
    /// while the file's size and modification time stay the same.
    Checksums,
    /// Access keys of the S3 endpoint, by access key id.
    S3Keys,
    /// The scheduled runs claimed, by `sync/last run id`: the node that
    /// stores one first starts the run that follows that run, so several
    /// nodes run each scheduled run once.
    SyncClaims,
    /// The gateway's own SSH host keys (OpenSSH private key text), by
    /// algorithm, when several nodes must show clients the same keys.
    ServerHostKeys,
}

impl Table {
    /// The table's name in either store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::HostKeys => "host_keys",
            Table::DisabledRemotes => "disabled_remotes",
            Table::SyncRuns => "sync_runs",
            Table::SyncLocks => "sync_locks",
            Table::Health => "health",
            Table::Checksums => "checksums",
            Table::S3Keys => "s3_keys",
            Table::SyncClaims => "sync_claims",
            Table::ServerHostKeys => "server_host_keys",
        }
    }
}

/// Durable key-value state. Implementations must make `put` and
/// `put_if_absent` durable before returning.
pub trait StateStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores `value` under `key`, replacing what was there.
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StateError>;
    /// Stores `value` only if `key` is absent; returns whether it stored it.
    fn put_if_absent(&self, table: Table, key: &str, value: &[u8]) -> Result<bool, StateError>;
    /// Every key and value of `table`.
    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StateError>;
    /// Removes `key`; returns whether it was there.
    fn delete(&self, table: Table, key: &str) -> Result<bool, StateError>;

    /// This node's id when the store is shared by several nodes (`None`
    /// for the embedded store: one node).
    fn node_id(&self) -> Option<&str> {
        None
    }

    /// The cluster-wide connection slots of a shared store, once this
    /// node's lock session runs (`None`: each node's caps are its own).
    fn slot_gate(&self) -> Option<std::sync::Arc<dyn backends::slots::SlotGate>> {
        None
    }

    /// Whether node `node` of a shared store has shown signs of life
    /// recently (its heartbeat). The embedded store has one node: `None`.
    fn node_alive(&self, _node: &str) -> Result<Option<bool>, StateError> {
        Ok(None)
    }
}

/// The embedded store: one redb file in the state folder.
///
/// The file is opened for each operation and closed right after, because
/// redb locks it while open: this way the CLI (`gateway remote trust`) can
/// change state while the server runs. State changes are rare (first
/// start, pinning a key, disabling a remote), so the cost does not matter.
pub struct RedbStore {
    path: PathBuf,
    /// Serialises this process's own openings of the file.
    lock: std::sync::Mutex<()>,
}

impl RedbStore {
    /// File name of the database inside the state folder.
    pub const FILE_NAME: &'static str = "state.redb";

    /// Opens (creating if needed) the store in `state_dir`, first carrying
    /// a file that redb 2 wrote (older gateways) over to the current format.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let store = RedbStore {
            path: state_dir.join(Self::FILE_NAME),
            lock: std::sync::Mutex::new(()),
        };
        if let Some(done) = upgrade::migrate_if_needed(&store.path)? {
            tracing::info!(
                "state database {} migrated from redb file format v2: {} rows in {} tables; \
                 the old file is kept as {}",
                store.path.display(),
                done.rows,
                done.tables,
                done.backup.display()
            );
        }
        store.with_db(|_| Ok(()))?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `f` on the open database, waiting briefly if another process
    /// has it open.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut attempts = 0;
        let db = loop {
            match Database::create(&self.path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(self.err(e)),
            }
        };
        f(&db)
    }
}

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

impl StateStore for RedbStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let t = match txn.open_table(definition(table)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.err(e)),
            };
            let value = t.get(key).map_err(|e| self.err(e))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = txn.open_table(definition(table)).map_err(|e| self.err(e))?;
                t.insert(key, value).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))
        })
    }

    fn delete(&self, table: Table, key: &str) -> Result<bool, StateError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let existed = {
                let mut t = txn.open_table(definition(table)).map_err(|e| self.err(e))?;
                let removed = t.remove(key).map_err(|e| self.err(e))?;
                removed.is_some()
            };
            txn.commit().map_err(|e| self.err(e))?;
            Ok(existed)
        })
    }

    fn put_if_absent(&self, table: Table, key: &str, value: &[u8]) -> Result<bool, StateError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let stored = {
                let mut t = txn.open_table(definition(table)).map_err(|e| self.err(e))?;
                let exists = t.get(key).map_err(|e| self.err(e))?.is_some();
                if !exists {
                    t.insert(key, value).map_err(|e| self.err(e))?;
                }
                !exists
            };
            txn.commit().map_err(|e| self.err(e))?;
            Ok(stored)
        })
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let t = match txn.open_table(definition(table)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(self.err(e)),
            };
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

/// A user the gateway created itself, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredUser {
    /// Login name.
    pub name: String,
    /// Argon2 PHC hash.
    pub password_hash: String,
    /// Folder in the storage seen as `/` (empty: the storage root).
    pub home: String,
}

/// The users the gateway created itself.
pub fn stored_users(store: &dyn StateStore) -> Result<Vec<StoredUser>, StateError> {
    store
        .list(Table::Users)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                table: "users",
                message: e.to_string(),
            })
        })
        .collect()
}

/// Stores a user unless one of that name exists; returns whether it did.
pub fn create_user(store: &dyn StateStore, user: &StoredUser) -> Result<bool, StateError> {
    let value = serde_json::to_vec(user).map_err(|e| StateError::Corrupt {
        table: "users",
        message: e.to_string(),
    })?;
    store.put_if_absent(Table::Users, &user.name, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let user = StoredUser {
            name: "admin".into(),
            password_hash: "h".into(),
            home: String::new(),
        };
        {
            let store = RedbStore::open(dir.path()).unwrap();
            assert!(stored_users(&store).unwrap().is_empty());
            assert!(create_user(&store, &user).unwrap());
            assert!(!create_user(&store, &user).unwrap());
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(stored_users(&store).unwrap(), vec![user]);
        assert_eq!(store.get(Table::Users, "nobody").unwrap(), None);
    }
}
