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

pub mod host_keys;
pub mod pg;
pub mod slots;
pub mod status;
pub mod store;

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
