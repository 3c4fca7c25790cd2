//! The gateway: an SFTP server whose users see one tree, served from the
//! gateway's own storage and mounts on remote servers.
//!
//! Layout, in the order a connection meets it:
//! - [`serve`]: start-up (storage, state, host keys, first user), the
//!   accept loop, graceful shutdown.
//! - [`proxy_protocol`]: the PROXY protocol header a trusted load balancer
//!   puts before a connection, naming the real client.
//! - [`sessions`]: the open connections and the session limits on them.
//! - [`ssh`]: one SSH connection: authentication via `policy`, the
//!   login throttle, and the `sftp` subsystem; [`ssh::Live`] is the part
//!   of the config a reload swaps.
//! - [`exec`]: SSH commands: the checksum commands (`md5sum`, ...) on
//!   the user's tree, computed by [`checksums`] (cached for the gateway's
//!   own files; also used for the S3 endpoint's ETags).
//! - [`sftp`]: one SFTP session: packet decoding, many requests in flight,
//!   handles, and the mapping of errors to SFTP statuses.
//! - [`tree`]: path resolution (the only place a client path is turned
//!   into a storage path) and the mount table.
//! - [`remotes`]: one backend and connection pool per remote server, and
//!   host key pinning.
//! - [`config`]: the TOML file and environment overrides, validated once.
//! - [`state`]: what the gateway learns while running (embedded redb).
//! - [`cluster`]: several nodes as one: the state in PostgreSQL, remotes'
//!   connection caps across nodes, heartbeats and `gateway cluster status`.
//! - [`sync`]: syncs between the gateway's storage and remotes: planning,
//!   verified copies, run records, the scheduler.
//! - [`transfers`]: the count of transfers in flight, for shutdown.
//! - [`running`]: a running gateway as operations see it: the live
//!   reload and what the admin API controls.
//! - [`ops`]: Prometheus metrics, `/healthz` and `/readyz`, and the small
//!   HTTP server they share with [`admin`], the admin HTTP API.
//! - [`s3`]: the S3-compatible endpoint over the same trees, with
//!   per-user access keys.
//! - [`cli`], [`logging`]: the command line (a file per command group,
//!   each calling library functions) and log output.

#![forbid(unsafe_code)]

pub mod admin;
pub mod checksums;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod exec;
pub mod logging;
pub mod ops;
pub mod proxy_protocol;
pub mod remotes;
pub mod running;
pub mod s3;
pub mod serve;
pub mod sessions;
pub mod sftp;
pub mod ssh;
pub mod state;
pub mod sync;
pub mod transfers;
pub mod tree;
