//! End-to-end test harness: starts the real `gateway` binary and drives it
//! with the real OpenSSH clients (`sftp`, `scp`, `ssh-keygen`, `sshpass`).
//!
//! Every test owns a [`TestEnv`] (its own temp dir, storage, state and
//! known_hosts) and its own [`Gateway`] listening on port 0; the gateway is
//! stopped when its handle is dropped.

use std::time::Duration;

pub mod asyncssh_sftpd;
pub mod browser;
pub mod clients;
pub mod cluster;
mod config;
pub mod direct;
mod env;
mod files;
pub mod ftpd;
mod gateway;
pub mod haproxy;
pub mod mount;
pub mod ops;
pub mod peers;
pub mod postgres;
mod process;
pub mod relay;
pub mod s3_endpoint;
pub mod s3d;
pub mod sshd;
pub mod sync;

/// How long to wait for the gateway's `listening on` line (RSA-4096 host-key
/// generation at first start can take a while in a debug build).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time limit for one client run (sftp, scp).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

pub use config::*;
pub use env::*;
pub use files::*;
pub use gateway::*;
pub use process::*;
