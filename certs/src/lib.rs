//! Keys and certificates.
//!
//! Layout:
//! - [`host_keys`]: the inbound server's host keys (load, generate, store,
//!   fingerprint).
//!
//! Later work adds private-key parsing for remotes (OpenSSH, PuTTY, SSH2),
//! host-key pins for remote servers, and TLS configuration for FTPS.

pub mod host_keys;

use std::path::PathBuf;

/// Errors from key handling.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file is not a valid unencrypted OpenSSH private key.
    #[error("{}: not a usable OpenSSH private key: {reason}", path.display())]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Key generation or encoding failed.
    #[error("key generation failed: {0}")]
    Generate(#[source] russh::keys::ssh_key::Error),
}
