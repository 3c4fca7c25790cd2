//! What `gateway remote test` reports about an FTP remote.

use std::net::SocketAddr;

/// The result of connecting and logging in once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpProbe {
    /// The local address the control connection left from (one of the
    /// dedicated IPs when they are in use).
    pub local_addr: SocketAddr,
    /// The server's address.
    pub server_addr: SocketAddr,
    /// The server's greeting, without reply codes.
    pub welcome: String,
    /// The control connection's TLS session, when TLS is in use.
    pub tls: Option<TlsSummary>,
    /// The FEAT lines the server sent (empty if it has no FEAT).
    pub features: Vec<String>,
}

/// What was negotiated on a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    /// `TLS 1.2` or `TLS 1.3`.
    pub version: String,
    /// The cipher suite, as IANA names it (`TLS13_AES_256_GCM_SHA384`).
    pub cipher_suite: String,
    /// The server certificate's subject, issuer and expiry in one line.
    pub certificate: String,
}
