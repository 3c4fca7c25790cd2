//! The SSH host keys of a cluster: every node must show clients the same
//! keys (a client behind a load balancer would otherwise see the key
//! "change" from one connection to the next), so they live in the shared
//! store. The first node to start puts its keys there (those of its state
//! folder, or new ones); the others take them.

use std::path::Path;

use anyhow::Context;
use certs::host_keys::{HostKey, HOST_KEYS};
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

use crate::state::{StateStore, Table};

/// The cluster's host keys, from `store`; a key the store lacks comes from
/// `dir` (this node's folder) or is generated, and is offered to the store,
/// where the first node's offer wins.
pub fn load_or_share(store: &dyn StateStore, dir: &Path) -> anyhow::Result<Vec<HostKey>> {
    let mut keys = Vec::new();
    for (name, algorithm) in HOST_KEYS {
        let path = dir.join(name);
        if let Some(key) = stored(store, name)? {
            keys.push(HostKey {
                key,
                path,
                generated: false,
            });
            continue;
        }
        let (key, generated) = if path.exists() {
            (certs::host_keys::load_private_key(&path)?, false)
        } else {
            (certs::host_keys::generate(algorithm)?, true)
        };
        let text = key
            .to_openssh(LineEnding::LF)
            .context("cannot encode a host key")?;
        if store.put_if_absent(Table::ServerHostKeys, name, text.as_bytes())? {
            tracing::info!("host key {name} now shared by the cluster's nodes");
            keys.push(HostKey {
                key,
                path,
                generated,
            });
        } else {
            // Another node stored its key first.
            let key = stored(store, name)?
                .with_context(|| format!("host key {name} vanished from the state database"))?;
            keys.push(HostKey {
                key,
                path,
                generated: false,
            });
        }
    }
    Ok(keys)
}

fn stored(store: &dyn StateStore, name: &str) -> anyhow::Result<Option<PrivateKey>> {
    let Some(text) = store.get(Table::ServerHostKeys, name)? else {
        return Ok(None);
    };
    PrivateKey::from_openssh(&text)
        .map(Some)
        .with_context(|| format!("host key {name} in the state database cannot be read"))
}
