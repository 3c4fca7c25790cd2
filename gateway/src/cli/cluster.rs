//! `gateway cluster status`: what the shared state database says about
//! the nodes and the remotes' connection slots.

use anyhow::{bail, Result};

use crate::config::Settings;

/// Prints the cluster's nodes and the slots each holds per remote.
pub async fn status(settings: &Settings, json: bool) -> Result<()> {
    let Some(database) = &settings.state_database else {
        bail!(
            "this gateway is not part of a cluster: `server.state` is the folder {}, not a `postgres://` URL",
            settings.state.display()
        );
    };
    let status = crate::cluster::status::read(database)
        .await
        .map_err(|e| anyhow::anyhow!("state database {}: {e}", database.shown()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let caps: Vec<(String, usize)> = settings
            .remotes
            .iter()
            .map(|r| (r.name.clone(), r.max_connections))
            .collect();
        print!("{}", crate::cluster::status::render(&status, &caps));
    }
    Ok(())
}
