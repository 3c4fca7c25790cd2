//! A folder on a remote FTP or FTPS server.
//!
//! The FTP client is our own, over tokio and tokio-rustls, rather than
//! suppaftp: the gateway needs every control and data connection to leave
//! from the dedicated source address it bound (suppaftp's implicit-TLS
//! entry point opens its own socket), a timeout on every command and data
//! read, data connections resuming the control connection's TLS session,
//! the negotiated TLS parameters for `remote test`, and replies mapped to
//! storage errors by code. Only a small part of FTP is needed for that.
//!
//! Layout (all private; the public API is re-exported here):
//! - `reply`, `features`, `passive`, `listing`, `time`: parsing what the
//!   server sends (replies, FEAT, EPSV/PASV, listings, timestamps).
//! - `error`: the client's errors and reply codes as storage error kinds.
//! - `stream`, `tls`: plain or TLS connections, the remote's rustls
//!   configuration, handshakes and their failure reasons.
//! - `control`: one logged-in control connection and its data connections.
//! - `ops`: file operations in FTP terms (MLST/SIZE/MDTM, MLSD/LIST, ...).
//! - `connector`: connections for the generic pool, with the remote's
//!   partial uploads left by broken connections ([`crate::pending`]).
//! - `backend`, `listing_stream`, `reader`, `writer`: the [`Backend`](crate::Backend).
//! - `probe`: what `gateway remote test` reports.

use std::time::Duration;

use crate::dial::SourceAddresses;
use crate::pool::PoolSettings;

mod backend;
mod commands;
mod connector;
mod control;
mod error;
mod features;
mod listing;
mod listing_stream;
mod passive;
mod probe;
mod reader;
mod reply;
mod stream;
mod time;
mod tls;
mod writer;

pub use backend::FtpBackend;
pub use probe::{FtpProbe, TlsSummary};

/// The parsers of what an FTP server sends, reachable from the fuzz
/// targets in `fuzz/` (a separate crate). Not part of the API: nothing
/// else may use it.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::features::Features;
    pub use super::listing::{parse_list_line, parse_mlsd_line, parse_mlsx, Facts};
    pub use super::passive::{parse_epsv, parse_pasv};
    pub use super::reply::{read_reply, Reply};
    pub use super::time::{format_time_val, parse_time_val};
}

/// Whether and how the connection is protected with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpTls {
    /// Plain FTP: passwords and data in clear text.
    Never,
    /// Explicit TLS (`AUTH TLS`) if the server accepts it, else plain.
    IfAvailable,
    /// Explicit TLS (`AUTH TLS`); a server without it is refused.
    Require,
    /// Implicit TLS: TLS from the first byte (usually port 990).
    RequireImplicit,
}

pub use crate::tls::CertificateCheck;

/// How to reach and log in to one remote FTP server.
#[derive(Clone)]
pub struct FtpSettings {
    /// The remote's name in the config (for logs and errors).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port of the control connection.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// TLS mode.
    pub tls: FtpTls,
    /// Certificate checks (when TLS is used).
    pub certificate: CertificateCheck,
    /// The remote folder that the storage root maps to ("" = the login
    /// folder; relative paths are under the login folder).
    pub root: String,
    /// Where connections come from.
    pub sources: SourceAddresses,
    /// Limit for TCP connect, TLS and login together, and for each data
    /// connection's TCP connect.
    pub connect_timeout: Duration,
    /// Limit for one command's reply and for each data read or write to
    /// make progress.
    pub io_timeout: Duration,
    /// Write uploads under a hidden name and rename them into place on close.
    pub atomic_uploads: bool,
    /// Pool limits (the cap counts control connections).
    pub pool: PoolSettings,
}

impl std::fmt::Debug for FtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is never shown.
        f.debug_struct("FtpSettings")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("tls", &self.tls)
            .field("certificate", &self.certificate)
            .field("root", &self.root)
            .field("sources", &self.sources.addresses())
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("atomic_uploads", &self.atomic_uploads)
            .field("pool", &self.pool)
            .finish()
    }
}

#[cfg(test)]
mod scripted_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let s = FtpSettings {
            name: "p".into(),
            host: "h".into(),
            port: 21,
            username: "u".into(),
            password: "s3cret-pw".into(),
            tls: FtpTls::Never,
            certificate: CertificateCheck::AllowAny,
            root: String::new(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            atomic_uploads: true,
            pool: PoolSettings {
                max: 1,
                wait: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<hidden>"));
    }
}
