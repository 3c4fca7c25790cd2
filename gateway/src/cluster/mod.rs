//! Several gateway nodes as one: the shared state in PostgreSQL
//! (`server.state = "postgres://..."`).
//!
//! - [`pg`]: the database URL, sessions and the versioned schema.
//! - [`store`]: [`store::PgStore`], the state store every node shares
//!   (pinned host keys, disabled remotes, sync runs and locks, users and
//!   keys the gateway created, the checksum cache, S3 access keys, the
//!   SSH host keys).
//! - [`slots`]: remotes' connection caps held across the nodes
//!   (advisory locks), and each node's heartbeat.
//! - [`status`]: what `gateway cluster status` shows.
//! - [`open_state`]: the state store the configuration names, embedded or
//!   shared (chosen here, where both are known).

pub mod host_keys;
pub mod pg;
pub mod slots;
pub mod status;
pub mod store;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

/// This process's identity in the cluster: `host-pid-random`, unique even
/// when a node restarts with the same host name and process id (as in a
/// container), plus the host name alone.
pub fn node_identity() -> (String, String) {
    let host = host_name();
    let mut random = [0u8; 3];
    let _ = getrandom::fill(&mut random);
    let id = format!(
        "{host}-{}-{}",
        std::process::id(),
        backends::hash::hex(&random)
    );
    (id, host)
}

/// This machine's host name (`node` if it has none).
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    match uname.nodename().to_str() {
        Ok(name) if !name.is_empty() => name.to_string(),
        _ => "node".to_string(),
    }
}

/// Opens the state store `settings` name: the embedded one in the state
/// folder (created if needed), or the cluster's PostgreSQL database. Here,
/// not in `state`, because this is where the PostgreSQL store is known.
pub fn open_state(
    settings: &crate::config::Settings,
) -> anyhow::Result<Arc<dyn crate::state::StateStore>> {
    Ok(open_state_shared(settings)?.0)
}

/// Starts this process's cluster slots when its store is the shared one
/// (`serve`, and tools that connect to a remote); `None` otherwise.
pub fn start_slots(
    settings: &crate::config::Settings,
    shared: Option<&Arc<store::PgStore>>,
) -> Option<slots::PgSlots> {
    let (shared, database) = (shared?, settings.state_database.as_ref()?);
    let (_, host) = node_identity();
    Some(shared.start_slots(database, host))
}

/// The store, and the same store as PostgreSQL's when it is shared.
pub type OpenedStore = (
    Arc<dyn crate::state::StateStore>,
    Option<Arc<store::PgStore>>,
);

/// [`open_state`], also returning the PostgreSQL store itself when it is one
/// (`serve` starts its lock session).
pub fn open_state_shared(settings: &crate::config::Settings) -> anyhow::Result<OpenedStore> {
    use anyhow::Context;
    // The node's own folder: the embedded store, or (with PostgreSQL)
    // node-local files such as S3 uploads in progress.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&settings.state)
        .with_context(|| {
            format!(
                "cannot create the state folder {}",
                settings.state.display()
            )
        })?;
    if let Some(database) = &settings.state_database {
        let (node, _) = node_identity();
        let store = Arc::new(
            store::PgStore::open(database, node)
                .context("cannot open the shared state database")?,
        );
        return Ok((store.clone(), Some(store)));
    }
    Ok((
        Arc::new(
            crate::state::RedbStore::open(&settings.state)
                .context("cannot open the state database")?,
        ),
        None,
    ))
}
