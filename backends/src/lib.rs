//! Storage backends: one interface ([`Backend`]) for the gateway's own
//! storage and every remote kind.
//!
//! Layout:
//! - [`error`]: [`BackendError`] and its [`ErrorKind`], the only error a
//!   backend returns; the inbound server maps kinds to protocol statuses.
//! - [`path`]: [`StoragePath`], a validated relative path; backends accept
//!   nothing else, so `..` and NUL bytes never reach them.
//! - [`backend`]: the [`Backend`] trait, readers, writers and value types.
//! - [`hash`]: computing and checking MD5 and CRC-32 checksums.
//! - [`local`]: the gateway's own storage on the local file system.
//! - [`pool`]: the capped, fair connection pool of the remote backends,
//!   whose limits can change while it is in use.
//! - [`metrics`]: what the pools and remotes report (names and labels),
//!   and [`metrics::Instrumented`], which measures any backend.
//! - [`slots`]: connection slots shared by several gateway nodes, so a
//!   remote's cap holds across a cluster.
//! - [`dial`]: outbound TCP from the dedicated source addresses.
//! - `pending`: partial uploads a broken connection left on a remote,
//!   removed through the next connection that works (FTP and SFTP).
//! - [`sftp`]: a folder on a remote SFTP server.
//! - [`ftp`]: a folder on a remote FTP or FTPS server.
//! - [`s3`]: a folder (key prefix) of a bucket on an S3-compatible server.
//! - [`tls`]: certificate checks and rustls settings shared by FTPS and S3.
//! - `conformance` (feature `conformance`, and in this crate's unit
//!   tests): the cases every backend must pass; the end-to-end tests turn
//!   it on, the shipped binary does not carry it.

#![forbid(unsafe_code)]

pub mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dial;
pub mod error;
pub mod ftp;
pub mod hash;
pub mod local;
pub mod metrics;
pub mod path;
mod pending;
pub mod pool;
mod pooled;
mod read_window;
pub mod s3;
pub mod sftp;
pub mod slots;
pub mod tls;

pub use backend::{
    Backend, Capabilities, DirEntry, EntryKind, FileReader, FileWriter, HashKind, ListStream,
    Metadata, RenameMode, SpaceInfo, WriteMode,
};
pub use error::{BackendError, ConnectFailure, ErrorKind, Result};
pub use local::LocalBackend;
pub use path::{PathError, StoragePath};
