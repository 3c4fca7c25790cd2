//! The remotes of a running gateway: one backend (and so one connection
//! pool) per configured remote, shared by every session and mount.

pub mod host_keys;

use std::collections::HashMap;
use std::sync::Arc;

use backends::dial::SourceAddresses;
use backends::pool::PoolSettings;
use backends::sftp::{SftpBackend, SftpSettings};

use crate::config::{RemoteSettings, Settings};
use crate::state::StateStore;
use host_keys::PinnedHostKeys;

/// One remote, ready to use.
pub struct Remote {
    /// What the config says about it.
    pub settings: RemoteSettings,
    /// Its backend and pool.
    pub backend: Arc<SftpBackend>,
    /// Its host key policy (for reporting the presented key).
    pub host_keys: Arc<PinnedHostKeys>,
}

/// Every configured remote, by name.
#[derive(Default)]
pub struct Remotes {
    by_name: HashMap<String, Remote>,
}

impl Remotes {
    /// Builds a backend per remote. Must run inside the tokio runtime.
    pub fn build(settings: &Settings, store: Arc<dyn StateStore>) -> Self {
        let by_name = settings
            .remotes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    connect_remote(r, &settings.dedicated_ips, store.clone()),
                )
            })
            .collect();
        Remotes { by_name }
    }

    /// The remote called `name`.
    pub fn get(&self, name: &str) -> Option<&Remote> {
        self.by_name.get(name)
    }
}

/// Where connections to `r` come from: the dedicated IPs unless it opts out.
pub fn source_addresses(r: &RemoteSettings, dedicated_ips: &[std::net::IpAddr]) -> SourceAddresses {
    if r.use_dedicated_ips && !dedicated_ips.is_empty() {
        SourceAddresses::dedicated(dedicated_ips.to_vec())
    } else {
        SourceAddresses::system()
    }
}

/// A backend for one remote with the gateway's source addresses and pins.
pub fn connect_remote(
    r: &RemoteSettings,
    dedicated_ips: &[std::net::IpAddr],
    store: Arc<dyn StateStore>,
) -> Remote {
    let host_keys = Arc::new(PinnedHostKeys::new(
        &r.name,
        r.host_key.clone(),
        r.allow_mismatched_host_key,
        store,
    ));
    let sources = source_addresses(r, dedicated_ips);
    let backend = SftpBackend::new(SftpSettings {
        name: r.name.clone(),
        host: r.host.clone(),
        port: r.port,
        username: r.username.clone(),
        password: r.password.clone(),
        private_key: r.private_key.clone(),
        root: r.root.clone(),
        sources,
        connect_timeout: r.connect_timeout,
        host_keys: host_keys.clone(),
        pool: PoolSettings {
            max: r.max_connections,
            wait: r.pool_wait,
            idle: r.idle_timeout,
        },
    });
    Remote {
        settings: r.clone(),
        backend: Arc::new(backend),
        host_keys,
    }
}
