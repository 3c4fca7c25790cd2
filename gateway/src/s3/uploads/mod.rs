//! Multipart uploads in progress. Parts may arrive in any order, in
//! parallel and more than once, so they cannot go straight to the
//! destination: each is staged until the upload is completed (the parts
//! are then streamed in order into the destination) or aborted. Nothing of
//! an upload is visible under its key before it completes.
//!
//! Where parts are staged:
//! - [`folder`]: a folder of this node, for a single node;
//! - [`database`]: the cluster's PostgreSQL database, so that the parts of
//!   one upload may reach different nodes behind a load balancer.

pub mod database;
pub mod folder;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::core::checksums::{Algorithm, ChecksumHasher};

/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: i32 = 10_000;

/// What an upload was created for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadInfo {
    /// The user who created it: only they may use it.
    pub user: String,
    /// The object key it will complete into.
    pub key: String,
    /// When it was created (Unix seconds).
    pub created: u64,
    /// The `mtime` user metadata it was created with, if any.
    pub mtime: Option<String>,
}

/// One stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Its number (1 to 10,000).
    pub number: i32,
    /// Its size in bytes.
    pub size: u64,
    /// The MD5 of its bytes, lowercase hex (its ETag).
    pub md5: String,
    /// When it was stored.
    pub modified: SystemTime,
    /// Where its bytes are.
    pub stored: Stored,
}

/// Where a part's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A file of the uploads folder.
    File(PathBuf),
    /// Rows of the database: this copy of the part (`generation`, as a
    /// part sent again is a new copy) in `chunks` rows.
    Rows {
        /// The copy's random id.
        generation: String,
        /// How many chunk rows hold it.
        chunks: i32,
    },
}

/// Why a part could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// The request body failed while being read.
    #[error("the request body ended with an error: {0}")]
    Body(String),
    /// The staging area (disk or database) failed.
    #[error("cannot store the part: {0}")]
    Io(#[from] io::Error),
}

/// The bytes of several parts in order, as the destination's writer reads
/// them.
pub type PartsStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// Where this endpoint stages its uploads.
#[derive(Clone)]
pub enum Uploads {
    /// In a folder of this node.
    Folder(folder::FolderUploads),
    /// In the cluster's database.
    Database(database::DatabaseUploads),
}

impl Uploads {
    /// Starts an upload; returns its id.
    pub async fn create(&self, info: &UploadInfo) -> io::Result<String> {
        match self {
            Uploads::Folder(f) => f.create(info).await,
            Uploads::Database(d) => d.create(info).await,
        }
    }

    /// The upload `id`, if it exists.
    pub async fn info(&self, id: &str) -> io::Result<Option<UploadInfo>> {
        match self {
            Uploads::Folder(f) => f.info(id).await,
            Uploads::Database(d) => d.info(id).await,
        }
    }

    /// Stores part `number` of upload `id` from `body`, replacing an
    /// earlier copy of that part.
    pub async fn write_part<S, E>(
        &self,
        id: &str,
        number: i32,
        body: S,
    ) -> Result<PartInfo, PartError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: fmt::Display,
    {
        match self {
            Uploads::Folder(f) => f.write_part(id, number, body).await,
            Uploads::Database(d) => d.write_part(id, number, body).await,
        }
    }

    /// Forgets `part` of upload `id` (one that failed its checks).
    pub async fn discard_part(&self, id: &str, part: &PartInfo) {
        match (&part.stored, self) {
            (Stored::File(file), _) => {
                let _ = tokio::fs::remove_file(file).await;
            }
            (Stored::Rows { generation, .. }, Uploads::Database(d)) => {
                if let Err(e) = d.discard(id, part.number, generation).await {
                    tracing::warn!("cannot discard part {} of upload {id}: {e}", part.number);
                }
            }
            (Stored::Rows { .. }, Uploads::Folder(_)) => {}
        }
    }

    /// The parts of upload `id`, by number.
    pub async fn parts(&self, id: &str) -> io::Result<Vec<PartInfo>> {
        match self {
            Uploads::Folder(f) => f.parts(id).await,
            Uploads::Database(d) => d.parts(id).await,
        }
    }

    /// The bytes of `parts` of upload `id`, one after the other.
    pub fn read_parts(&self, id: &str, parts: &[PartInfo]) -> PartsStream {
        match self {
            Uploads::Folder(_) => {
                let files = parts
                    .iter()
                    .filter_map(|p| match &p.stored {
                        Stored::File(f) => Some(f.clone()),
                        Stored::Rows { .. } => None,
                    })
                    .collect();
                Box::pin(super::streams::parts_stream(files))
            }
            Uploads::Database(d) => d.read_parts(id, parts),
        }
    }

    /// Removes upload `id` and its parts.
    pub async fn remove(&self, id: &str) -> io::Result<()> {
        match self {
            Uploads::Folder(f) => f.remove(id).await,
            Uploads::Database(d) => d.remove(id).await,
        }
    }

    /// Removes uploads started more than `age` ago (a client that never
    /// completed nor aborted); returns how many.
    pub async fn remove_older_than(&self, age: Duration) -> io::Result<usize> {
        match self {
            Uploads::Folder(f) => f.remove_older_than(age).await,
            Uploads::Database(d) => d.remove_older_than(age).await,
        }
    }

    /// Where parts are staged, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Uploads::Folder(f) => format!("in {}", f.dir().display()),
            Uploads::Database(d) => format!("in the cluster's database {}", d.shown()),
        }
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn is_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 32 random hex digits.
pub(super) fn new_upload_id() -> io::Result<String> {
    random_hex::<16>()
}

pub(super) fn random_hex<const N: usize>() -> io::Result<String> {
    let mut raw = [0u8; N];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(backends::hash::hex(&raw))
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s,
/// `-` and the number of parts.
pub fn multipart_etag(parts: &[PartInfo]) -> String {
    let mut md5 = ChecksumHasher::new(Algorithm::Md5);
    for p in parts {
        let mut raw = [0u8; 16];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = p
                .md5
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
        }
        md5.update(&raw);
    }
    format!("{}-{}", md5.finish(), parts.len())
}

/// The creation time to record for a new upload.
pub fn created_now() -> u64 {
    now_secs()
}
