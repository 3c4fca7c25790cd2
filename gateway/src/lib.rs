//! The gateway: an SFTP server whose users see one tree, served from the
//! gateway's own storage and mounts on remote servers.
//!
//! Layout:
//! - [`core`]: what a running gateway is, shared by every way in: the
//!   configuration in force ([`core::Live`], swapped by a reload), users'
//!   trees and the mount table ([`core::tree`], the only place a client
//!   path becomes a storage path), sessions and their limits, transfers in
//!   flight, the checksum cache.
//! - The ways in, which build on [`core`] and never on one another:
//!   - [`ssh`]: one SSH connection (authentication via `policy`, the login
//!     throttle), its SFTP sessions ([`ssh::sftp`]: packet loop, many
//!     requests in flight, handles, errors to SFTP statuses) and its
//!     commands ([`ssh::exec`]: `md5sum` and friends);
//!   - [`s3`]: the S3-compatible endpoint over the same trees, with
//!     per-user access keys;
//!   - [`admin`]: the admin HTTP API; [`ops_endpoint`]: `/metrics`,
//!     `/healthz` and `/readyz`, and the small HTTP server the admin API
//!     shares.
//! - [`telemetry`]: every metric the gateway exports (the catalogue that
//!   dashboards and alert rules may name), the recorder, process metrics.
//! - [`remotes`]: one backend and connection pool per remote server, host
//!   key pinning, and what `remote test`/`trust` report.
//! - [`config`]: the TOML file and environment overrides, validated once;
//!   [`virtual_path`] and [`database`]: two values it parses (a path in a
//!   user's tree, the cluster database's URL), leaves that both the config
//!   and their users import.
//! - [`state`]: what the gateway learns while running (embedded redb);
//!   [`cluster`]: several nodes as one (the state in PostgreSQL, remotes'
//!   connection caps across nodes, heartbeats).
//! - [`sync`]: syncs between the gateway's storage and remotes: planning,
//!   verified copies, run records, the scheduler.
//! - [`serve`]: start-up (storage, state, host keys, first user), the
//!   accept loop, graceful shutdown; [`proxy_protocol`]: the PROXY header a
//!   trusted load balancer sends; [`running`]: the live reload and what
//!   the admin API controls.
//! - [`cli`], [`logging`]: the command line (a file per command group,
//!   each calling library functions) and log output.

// Denied, not forbidden: one call into the C allocator
// (`core::memory::trim_heap`) is allowed where it is made.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod database;
pub mod logging;
pub mod ops_endpoint;
pub mod proxy_protocol;
pub mod remotes;
pub mod running;
pub mod s3;
pub mod serve;
pub mod server_tls;
pub mod ssh;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod virtual_path;
