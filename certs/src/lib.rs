//! Keys and certificates.
//!
//! Layout:
//! - [`host_keys`]: the inbound server's host keys (load, generate, store,
//!   fingerprint).
//! - [`private_keys`]: the private keys the gateway authenticates with on
//!   remotes, read from OpenSSH, PEM (PKCS#1, SEC1, PKCS#8), PuTTY .ppk
//!   v2/v3 and ssh.com SSH2 files, encrypted or not.
//! - [`keygen`]: new RSA-4096 client key pairs for remotes (private key
//!   and `.pub` line).
//!
//! Pins of remote servers' host keys live with the remotes
//! (`gateway/src/remotes/host_keys.rs`); TLS settings for FTPS and S3 in
//! `backends/src/tls.rs`.

#![forbid(unsafe_code)]

pub mod host_keys;
pub mod keygen;
pub mod private_keys;

pub use keygen::{generate_rsa_4096, write_new_key_pair, GeneratedKey};
pub use private_keys::{load_private_key_file, parse_private_key, KeyError};

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
    /// A private key file could not be used (format, passphrase, damage).
    #[error("{}: {source}", path.display())]
    Key {
        /// The file concerned.
        path: PathBuf,
        /// Why it could not be used.
        source: KeyError,
    },
    /// A key file to be created exists already; it is never overwritten.
    #[error("{}: already exists; refusing to overwrite a key file", path.display())]
    Exists {
        /// The file concerned.
        path: PathBuf,
    },
    /// Key generation or encoding failed.
    #[error("key generation failed: {0}")]
    Generate(#[source] russh::keys::ssh_key::Error),
}
