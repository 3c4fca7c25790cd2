//! What `gateway remote test` reports about an S3 remote.

use std::net::SocketAddr;

/// The result of one authenticated request to the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Probe {
    /// The endpoint URL.
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The local address of the latest connection to the endpoint (one of
    /// the dedicated IPs when they are in use); `None` if the request went
    /// over a connection whose address was not recorded.
    pub local_addr: Option<SocketAddr>,
    /// Keys and folders seen under the root prefix (0 or 1: one is asked for).
    pub keys_seen: usize,
}
