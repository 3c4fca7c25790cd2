//! A folder on an S3-compatible object store (AWS S3, MinIO, Ceph, ...).
//!
//! Requests go through aws-sdk-s3, configured explicitly (static
//! credentials, no environment or profile files), over the gateway's own
//! HTTP client: every connection leaves from a dedicated source address
//! (`dial`), HTTPS uses rustls on aws-lc-rs, and every request is bounded
//! by the connect timeout and by an idle timeout on each read and write,
//! so a stalled server ends in [`ErrorKind::Timeout`](crate::ErrorKind),
//! never a hang.
//!
//! How a bucket looks like a file system here:
//! - Keys are the remote's `root` prefix plus the path; case is kept as is.
//! - A folder is a common prefix (`name/`) or a zero-byte marker object
//!   `name/` (what `mkdir` writes, content type `application/x-directory`).
//!   Markers are shown as folders, never as files.
//! - Writes are multipart uploads of `part_size` parts, at most
//!   [`PARTS_IN_FLIGHT`] parts uploading while the next one fills: an
//!   upload holds at most `(PARTS_IN_FLIGHT + 1) × part_size` bytes (24 MiB
//!   with the default 8 MiB parts). A file smaller than one part is one
//!   PUT. The object appears only when the upload completes; a failed or
//!   dropped upload is aborted, so no parts are left behind (when the
//!   server cannot be reached at that moment, the abort is remembered and
//!   done after the next request that reaches it). A file can have at most
//!   10,000 parts (78 GiB with 8 MiB parts).
//! - Reads are ranged GETs that follow the client's offsets: one streaming
//!   GET serves sequential reads and a jump elsewhere reopens at the new
//!   offset.
//! - Modification times of files live in the user metadata `mtime`
//!   (seconds with a fraction, as rclone writes them), set on every upload
//!   and by `set_modified` (a copy of the object onto itself); stat falls
//!   back to `LastModified`. Listings show `LastModified` (a listing carries
//!   no user metadata). A folder's time is its marker's `LastModified`.
//! - Writing a file into a folder that does not exist creates the folder
//!   implicitly, as S3 does; only `mkdir` checks that the parent exists.
//! - Renames are server-side copies followed by deletes, so they are not
//!   atomic; a folder is renamed only with `recursive_folder_rename`.
//! - Checks that S3 cannot do atomically (exclusive create, rename without
//!   replacing, mkdir) look first and then act: a concurrent writer can
//!   slip in between.
//!
//! Each remote allows at most `max_requests` requests at once (default
//! [`DEFAULT_MAX_REQUESTS`]), counting a download while its body streams:
//! this protects the gateway's sockets and memory, not the server. A
//! request waits up to `io_timeout` for a free slot, then fails as busy.
//!
//! Layout (all private; the public API is re-exported here):
//! - `keys`: paths to keys under the root prefix, and back.
//! - `mtime`: the `mtime` metadata format.
//! - `error`: SDK failures as storage errors that name the remote.
//! - `answers`: write answers the SDK cannot read (a 2xx it cannot parse
//!   is checked with HEAD before a write is called failed).
//! - `tls`, `connector`, `http`: the HTTP client the SDK sends through.
//! - `client`: the SDK configuration built from [`S3Settings`].
//! - `listing`: folder listings from `ListObjectsV2` pages.
//! - `objects`: single-object requests (lookups, markers, copies).
//! - `backend`, `reader`, `writer`, `rename`: the [`Backend`](crate::Backend).
//! - `pending`: multipart uploads to abort once the server answers again.
//! - `probe`: what `gateway remote test` reports.

use std::time::Duration;

use crate::dial::SourceAddresses;
use crate::ftp::CertificateCheck;

mod answers;
mod backend;
mod client;
mod connector;
mod error;
mod http;
mod keys;
mod listing;
mod mtime;
mod objects;
mod pending;
mod probe;
mod reader;
mod rename;
mod tls;
mod writer;

pub use backend::S3Backend;
pub use probe::S3Probe;

/// Region used when the configuration names none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default cap on parallel requests to one remote.
pub const DEFAULT_MAX_REQUESTS: usize = 64;
/// Chunks fetched ahead of a sequential read by default (16 MiB).
pub const DEFAULT_READ_AHEAD: usize = 4;
/// Default size of one multipart-upload part.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Smallest part S3 accepts (except for the last part).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Parts of one upload being sent while the next one fills.
pub const PARTS_IN_FLIGHT: usize = 2;

/// How to reach one bucket of an S3-compatible server.
#[derive(Clone)]
pub struct S3Settings {
    /// The remote's name in the config (for logs and errors).
    pub name: String,
    /// The endpoint URL (`https://s3.example.com`, `http://127.0.0.1:9000`).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The signing region (default [`DEFAULT_REGION`]).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never shown by `Debug`).
    pub secret_access_key: String,
    /// Path-style URLs (`endpoint/bucket/key`) rather than virtual-host
    /// style (`bucket.endpoint/key`); most non-AWS servers need them.
    pub path_style: bool,
    /// Key prefix the storage root maps to ("" = the bucket's root);
    /// leading, trailing and repeated slashes are ignored.
    pub root: String,
    /// Where connections come from.
    pub sources: SourceAddresses,
    /// Certificate checks for an `https` endpoint.
    pub certificate: CertificateCheck,
    /// Limit for name lookup, TCP connect and TLS handshake together.
    pub connect_timeout: Duration,
    /// Limit for a request or a response to make progress (no byte sent or
    /// received for this long fails with a timeout).
    pub io_timeout: Duration,
    /// Internal cap on parallel requests to this remote.
    pub max_requests: usize,
    /// Part size of multipart uploads ([`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`]).
    pub part_size: usize,
    /// Rename folders by copying and deleting every key under them (not
    /// atomic: a failure midway leaves some keys copied); off, renaming a
    /// folder is refused as unsupported.
    pub recursive_folder_rename: bool,
    /// `mkdir` writes a zero-byte `name/` marker object, so an empty
    /// folder exists. Off, folders exist only through the keys under them:
    /// `mkdir` checks and writes nothing, `rmdir` of a folder with no keys
    /// succeeds (for servers that store a marker as a file, such as
    /// `rclone serve s3`).
    pub folder_markers: bool,
    /// Chunks of a file read in order fetched ahead in parallel (ranged
    /// GETs of 4 MiB, each a request of the cap); 0:
    /// one streaming GET per read.
    pub read_ahead: usize,
}

impl S3Settings {
    /// Settings with the defaults for everything but the endpoint, bucket
    /// and credentials: region us-east-1, path-style URLs, the bucket's
    /// root, the system's source address, certificates checked against
    /// the system's roots, 15 s connect and 60 s I/O timeouts.
    pub fn new(
        name: impl Into<String>,
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        S3Settings {
            name: name.into(),
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: DEFAULT_REGION.to_string(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            path_style: true,
            root: String::new(),
            sources: SourceAddresses::system(),
            certificate: CertificateCheck::RequireMatch { ca_file: None },
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            max_requests: DEFAULT_MAX_REQUESTS,
            part_size: DEFAULT_PART_SIZE,
            recursive_folder_rename: false,
            folder_markers: true,
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key is never shown.
        f.debug_struct("S3Settings")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field("path_style", &self.path_style)
            .field("root", &self.root)
            .field("sources", &self.sources.addresses())
            .field("certificate", &self.certificate)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("max_requests", &self.max_requests)
            .field("part_size", &self.part_size)
            .field("recursive_folder_rename", &self.recursive_folder_rename)
            .field("folder_markers", &self.folder_markers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_key() {
        let s = S3Settings::new("p", "http://127.0.0.1:9000", "b", "AKID", "s3cret-key");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("<hidden>") && shown.contains("AKID"),
            "{shown}"
        );
    }
}
