//! What a running gateway is, whichever way a client comes in (SSH and
//! SFTP, the S3 endpoint, the admin API): the configuration in force
//! ([`Live`], swapped whole by a reload), the gateway's own storage and
//! each user's tree over it and their mounts ([`tree`]), the open
//! sessions and their limits ([`sessions`]), the transfers in flight
//! ([`transfers`]) and the checksum cache ([`checksums`]). The ways in
//! build on this module and never on one another.

pub mod activity;
pub mod checksums;
pub mod memory;
pub mod sessions;
pub mod transfers;
pub mod tree;

use std::sync::Arc;

use backends::{Backend, LocalBackend, StoragePath};
use policy::{Authenticator, LoginThrottle, User};

use crate::config::Settings;
use crate::remotes::Remotes;
use checksums::Checksums;
use sessions::Sessions;
use transfers::ActiveTransfers;
use tree::{Mount, Tree};

/// What every connection shares.
pub struct Shared {
    /// The parts of the configuration a reload replaces.
    live: std::sync::RwLock<Arc<Live>>,
    /// Refuses addresses after repeated failures.
    pub throttle: LoginThrottle,
    /// Refuses new connections from an address above its rate.
    pub connection_rate: policy::ConnectionRate,
    /// The gateway's own storage; each user gets the subtree of their home.
    pub storage: LocalBackend,
    /// Transfers in flight, for graceful shutdown.
    pub transfers: ActiveTransfers,
    /// The connections open now, and their limits.
    pub sessions: Sessions,
    /// Checksums of files (SSH checksum commands, S3 ETags), cached for
    /// the gateway's own storage.
    pub checksums: Arc<Checksums>,
}

/// A user's tree could not be set up (their home folder is unusable).
#[derive(Debug, thiserror::Error)]
#[error("user {user}: {message}")]
pub struct TreeError {
    /// The user.
    pub user: String,
    /// What went wrong.
    pub message: String,
}

/// The configuration connections use, replaced whole by a reload: a
/// connection keeps the one it started with for what it already set up
/// (its mounts), and reads the current one for each new decision.
pub struct Live {
    /// The validated config.
    pub settings: Arc<Settings>,
    /// Checks credentials and addresses.
    pub authenticator: Arc<Authenticator>,
    /// The configured remotes.
    pub remotes: Arc<Remotes>,
    /// The SSH server settings for new connections.
    pub ssh_config: Arc<russh::server::Config>,
}

impl Shared {
    /// Shared state starting from `live`.
    pub fn new(
        live: Live,
        throttle: LoginThrottle,
        storage: LocalBackend,
        checksums: Arc<Checksums>,
    ) -> Self {
        Shared {
            connection_rate: policy::ConnectionRate::new(live.settings.connection_rate),
            live: std::sync::RwLock::new(Arc::new(live)),
            throttle,
            storage,
            transfers: ActiveTransfers::default(),
            sessions: Sessions::default(),
            checksums,
        }
    }

    /// The configuration in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tree `user` sees now: their home in the gateway's storage and
    /// their mounts. Every front end (SFTP, the S3 endpoint, SSH commands)
    /// builds a user's view here, so they all see the same thing.
    pub async fn tree_for(&self, user: &User) -> Result<Tree, TreeError> {
        let home = StoragePath::parse(&user.home).map_err(|e| TreeError {
            user: user.name.clone(),
            message: format!("home folder unusable: {e}"),
        })?;
        let home_storage = self.storage.subtree(&home).await.map_err(|e| TreeError {
            user: user.name.clone(),
            message: format!("cannot open the home folder: {e}"),
        })?;
        Ok(Tree::with_mounts(
            Arc::new(home_storage),
            self.live().mounts_of(&user.name),
        ))
    }

    /// Puts a new configuration in force (a reload).
    pub fn replace_live(&self, live: Live) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }
}

impl Live {
    /// The mounts of `user` as tree entries.
    fn mounts_of(&self, user: &str) -> Vec<Mount> {
        let Some(mounts) = self.settings.mounts.get(user) else {
            return Vec::new();
        };
        mounts
            .iter()
            .filter_map(|m| {
                let remote = self.remotes.get(&m.remote)?;
                let backend: Arc<dyn Backend> = remote.backend.clone();
                Some(Mount {
                    at: m.path.clone(),
                    backend,
                    base: m.remote_path.clone(),
                })
            })
            .collect()
    }
}
