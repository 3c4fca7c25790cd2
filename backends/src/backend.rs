//! The storage interface that the gateway's own storage and every remote
//! kind implement, and the value types it speaks in.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{BackendError, ErrorKind, Result, StoragePath};

/// What kind of thing an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// Anything else (a symlink, a device): listed, never followed.
    Other,
}

/// What a backend knows about one file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// File, folder or other.
    pub kind: EntryKind,
    /// Size in bytes (0 for folders where the backend has none).
    pub size: u64,
    /// Last modification time, when the backend keeps one.
    pub modified: Option<SystemTime>,
    /// Unix permission bits (`0o644`), when the backend keeps them.
    pub mode: Option<u32>,
}

impl Metadata {
    /// Whether this is a folder.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name within its folder.
    pub name: String,
    /// Its metadata.
    pub metadata: Metadata,
}

/// A folder listing, delivered in pages so a huge folder never has to be
/// held in memory at once.
pub type ListStream = BoxStream<'static, Result<Vec<DirEntry>>>;

/// Free and total space, for `statvfs@openssh.com` and `df`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceInfo {
    /// Block size the figures are counted in.
    pub block_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_available: u64,
    /// Total inodes (0 if the backend has no such notion).
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u64,
}

/// What a backend can do beyond the basics, so callers can answer
/// "unsupported" up front and the conformance suite can skip cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Modification times can be set.
    pub set_modified: bool,
    /// Files can be truncated or extended to a size.
    pub truncate: bool,
    /// A write can continue an existing file at an offset (resume).
    pub resume_write: bool,
    /// A rename may replace an existing file atomically.
    pub rename_replace: bool,
    /// Free-space figures are available.
    pub space_info: bool,
    /// Empty folders exist on their own.
    pub empty_dirs: bool,
    /// A [`WriteMode::Replace`] write shows nothing under the final name
    /// until it is closed (a hidden temporary name, or an S3 multipart
    /// upload). When false (FTP without `atomic_uploads`), callers that
    /// must never expose a partial file write to a hidden name and rename.
    pub atomic_replace: bool,
}

/// A checksum algorithm that both ends of a copy may be able to compute,
/// so a copy can be verified without reading it back over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// MD5, as `md5sum` prints it: 32 lowercase hex digits.
    Md5,
    /// CRC-32 (IEEE, as zlib and `crc32` compute it): 8 lowercase hex digits.
    Crc32,
}

impl HashKind {
    /// Every kind, in the order a verification prefers them.
    pub const ALL: [HashKind; 2] = [HashKind::Md5, HashKind::Crc32];

    /// The lowercase name (`md5`, `crc32`).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Crc32 => "crc32",
        }
    }
}

/// How a write opens its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Write a whole new content; it replaces the file (if any) only when
    /// the writer is closed, so a failed upload never leaves a partial
    /// file under the final name. With `exclusive`, fail if the file exists.
    Replace {
        /// Refuse to replace an existing file.
        exclusive: bool,
    },
    /// Write into the existing file in place, starting at `offset`
    /// (resuming an upload). Needs [`Capabilities::resume_write`].
    Resume {
        /// Where the first byte goes.
        offset: u64,
    },
}

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Fail with `AlreadyExists` if the target exists (SFTP v3 rename).
    NoReplace,
    /// Replace an existing target file (`posix-rename@openssh.com`).
    Replace,
}

/// An open file for reading at any offset; several reads may be in flight
/// at once on one reader.
#[async_trait]
pub trait FileReader: Send + Sync {
    /// Reads up to `len` bytes at `offset`; an empty result means end of file.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;
    /// Metadata of the open file.
    async fn metadata(&self) -> Result<Metadata>;
}

/// An open file being written sequentially. Dropping it without `close`
/// aborts it.
#[async_trait]
pub trait FileWriter: Send {
    /// Appends `data` at the current position.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Position of the next byte, from the start of the file.
    fn position(&self) -> u64;
    /// Finishes the write and makes the file visible under its name.
    async fn close(self: Box<Self>) -> Result<()>;
    /// Discards what was written (for `Replace`, the old file stays).
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// One storage: the gateway's own, or a folder on a remote server.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// What this backend supports beyond the basics.
    fn capabilities(&self) -> Capabilities;
    /// Metadata of a file or folder.
    async fn stat(&self, path: &StoragePath) -> Result<Metadata>;
    /// Lists a folder in pages.
    async fn list(&self, path: &StoragePath) -> Result<ListStream>;
    /// Opens a file for reading.
    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>>;
    /// Opens a file for writing.
    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>>;
    /// Creates one folder (its parent must exist).
    async fn mkdir(&self, path: &StoragePath) -> Result<()>;
    /// Removes a file.
    async fn remove(&self, path: &StoragePath) -> Result<()>;
    /// Removes an empty folder.
    async fn rmdir(&self, path: &StoragePath) -> Result<()>;
    /// Renames a file or folder.
    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()>;
    /// Sets a file's modification time.
    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        let _ = modified;
        Err(unsupported("set modification time", path))
    }
    /// Truncates or extends a file to `size` bytes.
    async fn truncate(&self, path: &StoragePath, size: u64) -> Result<()> {
        let _ = size;
        Err(unsupported("truncate", path))
    }
    /// Free and total space.
    async fn space(&self, path: &StoragePath) -> Result<SpaceInfo> {
        Err(unsupported("space", path))
    }
    /// The checksum of a file's current content, computed where the file
    /// lives, as lowercase hex (see [`HashKind`]). `Ok(None)` when this
    /// backend cannot give that kind for this file (an S3 multipart ETag,
    /// a server that refuses `md5sum` or has no `HASH`): callers then fall
    /// back to another kind or to comparing sizes.
    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        let _ = (path, kind);
        Ok(None)
    }
    /// The file on this machine's file system that `path` names, when this
    /// backend is a local folder: lets callers key caches by the real
    /// file. `None` for every remote storage. The returned path is for
    /// identifying the file only; opening it would bypass the backend's
    /// confinement, so reads still go through the backend.
    fn local_file(&self, path: &StoragePath) -> Option<std::path::PathBuf> {
        let _ = path;
        None
    }
}

/// The error for an operation a backend does not offer.
pub fn unsupported(operation: &'static str, path: &StoragePath) -> BackendError {
    BackendError::new(
        ErrorKind::Unsupported,
        operation,
        path.as_str(),
        "not supported by this storage",
    )
}
