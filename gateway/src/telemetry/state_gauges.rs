//! Gauges read from the gateway's state at each scrape rather than pushed
//! when something changes: whether each remote is disabled (a host key
//! change, written by whichever node saw it) and whether the state store
//! takes writes. Reading them at scrape time makes them right on every
//! node of a cluster, whoever changed the state.

use std::sync::Arc;

use super::Refresh;
use crate::core::Shared;
use crate::remotes::host_keys;
use crate::state::{StateStore, Table};

/// The refresh that sets `gateway_remote_disabled` for every configured
/// remote and `gateway_state_store_up`.
pub fn refresh(shared: Arc<Shared>, store: Arc<dyn StateStore>) -> Refresh {
    Arc::new(move || {
        let up = store.put(Table::Health, "scrape", b"ok").is_ok();
        metrics::gauge!("gateway_state_store_up").set(if up { 1.0 } else { 0.0 });
        if !up {
            // Disabled remotes cannot be read: keep the last values.
            return;
        }
        for remote in &shared.live().settings.remotes {
            if let Ok(disabled) = host_keys::disabled(store.as_ref(), &remote.name) {
                metrics::gauge!("gateway_remote_disabled", "remote" => remote.name.clone())
                    .set(if disabled.is_some() { 1.0 } else { 0.0 });
            }
        }
    })
}
