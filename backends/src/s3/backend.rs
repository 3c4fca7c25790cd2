//! The S3 remote as a [`Backend`]: each operation is one or a few requests
//! on the bucket (see `objects` for how a path is looked up), mapped to
//! file-system answers.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::client;
use super::error::RemoteInfo;
use super::keys::Keys;
use super::listing;
use super::objects::{Bucket, Found};
use super::pending::PendingAborts;
use super::probe::S3Probe;
use super::reader::S3Reader;
use super::rename;
use super::writer::S3Writer;
use super::{S3Settings, DEFAULT_REGION};
use crate::backend::{
    unsupported, Backend, Capabilities, FileReader, FileWriter, HashKind, ListStream, Metadata,
    RenameMode, WriteMode,
};
use crate::{ErrorKind, Result, StoragePath};

/// A folder (key prefix) of a bucket on an S3-compatible server.
#[derive(Clone)]
pub struct S3Backend {
    bucket: Arc<Bucket>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("S3Backend")
            .field("remote", &self.bucket.info.name)
            .field("endpoint", &self.bucket.info.endpoint)
            .field("bucket", &self.bucket.info.bucket)
            .field("root", &self.bucket.keys.root())
            .finish()
    }
}

impl S3Backend {
    /// A backend for `settings`. Checks the settings and builds the TLS
    /// configuration and the SDK client; nothing is sent yet. Call inside
    /// a tokio runtime.
    pub fn new(settings: S3Settings) -> Result<Self> {
        let built = client::build(&settings)?;
        let region = if settings.region.is_empty() {
            DEFAULT_REGION.to_string()
        } else {
            settings.region.clone()
        };
        let pending = PendingAborts::new(&settings.name);
        let bucket = Bucket {
            client: built.client,
            connector: built.connector,
            http: built.http,
            info: RemoteInfo {
                name: settings.name,
                bucket: settings.bucket,
                endpoint: settings.endpoint,
                access_key_id: settings.access_key_id,
            },
            keys: Keys::new(&settings.root),
            region,
            part_size: settings.part_size,
            recursive_folder_rename: settings.recursive_folder_rename,
            folder_markers: settings.folder_markers,
            read_ahead: settings.read_ahead,
            pending,
        };
        Ok(S3Backend {
            bucket: Arc::new(bucket),
        })
    }

    /// Makes `max_requests` hold across gateway nodes (see
    /// [`crate::slots`]); call once, before use.
    pub fn use_slot_gate(&self, gate: Arc<dyn crate::slots::SlotGate>) {
        self.bucket.http.use_slot_gate(gate);
    }

    /// Checks the credentials and access to the bucket with one listing of
    /// at most one key under the root prefix, for `gateway remote test`.
    pub async fn probe(&self) -> Result<S3Probe> {
        let b = &self.bucket;
        let mut request = b
            .client
            .list_objects_v2()
            .bucket(&b.info.bucket)
            .max_keys(1);
        if !b.keys.root().is_empty() {
            request = request.prefix(b.keys.root());
        }
        let out = request
            .send()
            .await
            .map_err(|e| b.info.sdk("test", "", e))?;
        b.retry_pending_aborts();
        Ok(S3Probe {
            endpoint: b.info.endpoint.clone(),
            region: b.region.clone(),
            bucket: b.info.bucket.clone(),
            local_addr: b.connector.last_local_addr(),
            keys_seen: out.contents().len() + out.common_prefixes().len(),
        })
    }

    fn error(
        &self,
        kind: ErrorKind,
        op: &'static str,
        path: &StoragePath,
        message: &str,
    ) -> crate::BackendError {
        self.bucket.info.error(kind, op, path.as_str(), message)
    }

    /// `result`, after starting the retry of remembered multipart aborts
    /// when it shows that the server answered (success, or a file-system
    /// answer such as "not found").
    fn answered<T>(&self, result: Result<T>) -> Result<T> {
        let reached = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::NotFound
                    | ErrorKind::AlreadyExists
                    | ErrorKind::DirectoryNotEmpty
                    | ErrorKind::NotADirectory
                    | ErrorKind::IsADirectory
            ),
        };
        if reached {
            self.bucket.retry_pending_aborts();
        }
        result
    }
}

/// The operations themselves; the [`Backend`] methods add the retry of
/// remembered aborts ([`S3Backend::answered`]).
impl S3Backend {
    async fn stat_now(&self, path: &StoragePath) -> Result<Metadata> {
        match self.bucket.lookup(path, "stat").await? {
            Some(found) => Ok(found.metadata()),
            None => Err(self.error(ErrorKind::NotFound, "stat", path, "no such file or folder")),
        }
    }

    async fn list_now(&self, path: &StoragePath) -> Result<ListStream> {
        let prefix = self.bucket.keys.folder(path);
        let first = listing::fetch(&self.bucket, path, &prefix, None).await?;
        if first.returned == 0 && first.next.is_none() && !path.is_root() {
            // Nothing under the prefix: a file, or nothing at all.
            let key = self.bucket.keys.object(path);
            return Err(match self.bucket.head(&key, "list", path).await? {
                Some(_) => self.error(ErrorKind::NotADirectory, "list", path, "not a folder"),
                None => self.error(ErrorKind::NotFound, "list", path, "no such folder"),
            });
        }
        Ok(listing::pages(
            self.bucket.clone(),
            path.clone(),
            prefix,
            first,
        ))
    }

    async fn open_read_now(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        match self.bucket.lookup(path, "open").await? {
            Some(Found::File(info)) => Ok(Box::new(S3Reader::new(
                self.bucket.clone(),
                path.clone(),
                *info,
            ))),
            Some(Found::Dir(_)) => {
                Err(self.error(ErrorKind::IsADirectory, "open", path, "is a folder"))
            }
            None => Err(self.error(ErrorKind::NotFound, "open", path, "no such file")),
        }
    }

    async fn open_write_now(
        &self,
        path: &StoragePath,
        mode: WriteMode,
    ) -> Result<Box<dyn FileWriter>> {
        if path.is_root() {
            return Err(self.error(
                ErrorKind::PermissionDenied,
                "write",
                path,
                "the root folder cannot be written",
            ));
        }
        match mode {
            WriteMode::Resume { .. } => return Err(unsupported("resume a write", path)),
            // Not atomic: another writer may create the file after this look.
            WriteMode::Replace { exclusive: true } => {
                if self.bucket.lookup(path, "write").await?.is_some() {
                    return Err(self.error(
                        ErrorKind::AlreadyExists,
                        "write",
                        path,
                        "already exists",
                    ));
                }
            }
            WriteMode::Replace { exclusive: false } => {}
        }
        Ok(Box::new(S3Writer::new(self.bucket.clone(), path.clone())))
    }

    async fn mkdir_now(&self, path: &StoragePath) -> Result<()> {
        const OP: &str = "mkdir";
        if path.is_root() || self.bucket.lookup(path, OP).await?.is_some() {
            return Err(self.error(ErrorKind::AlreadyExists, OP, path, "already exists"));
        }
        if !self.bucket.folder_markers {
            // Folders are implicit: the first upload under it makes it.
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            if self.bucket.folder(&parent, OP).await?.is_none() {
                let parent_key = self.bucket.keys.object(&parent);
                let parent_file = match self.bucket.head(&parent_key, OP, path).await {
                    Ok(found) => found,
                    // Some servers (s3s-fs) answer HEAD on a folder with a
                    // server error, and show no empty folder in listings: a
                    // parent that cannot be told apart is not refused, since
                    // S3 needs no parent to hold a marker.
                    Err(e) if matches!(e.kind(), ErrorKind::Other | ErrorKind::ConnectionLost) => {
                        tracing::debug!(
                            "mkdir {path}: the containing folder could not be checked: {e}"
                        );
                        return self.bucket.put_marker(path, OP).await;
                    }
                    Err(e) => return Err(e),
                };
                return Err(match parent_file {
                    Some(_) => self.error(
                        ErrorKind::NotADirectory,
                        OP,
                        path,
                        "the containing folder is a file",
                    ),
                    None => self.error(
                        ErrorKind::NotFound,
                        OP,
                        path,
                        "the containing folder does not exist",
                    ),
                });
            }
        }
        self.bucket.put_marker(path, OP).await
    }

    async fn remove_now(&self, path: &StoragePath) -> Result<()> {
        const OP: &str = "remove";
        match self.bucket.lookup(path, OP).await? {
            Some(Found::File(info)) => self.bucket.delete(&info.key, OP, path).await,
            Some(Found::Dir(_)) => {
                Err(self.error(ErrorKind::IsADirectory, OP, path, "is a folder"))
            }
            None => Err(self.error(ErrorKind::NotFound, OP, path, "no such file")),
        }
    }

    async fn rmdir_now(&self, path: &StoragePath) -> Result<()> {
        const OP: &str = "rmdir";
        if path.is_root() {
            return Err(self.error(
                ErrorKind::PermissionDenied,
                OP,
                path,
                "the root folder cannot be removed",
            ));
        }
        let marker = self.bucket.keys.folder(path);
        let keys = self.bucket.keys_under(path, 2, OP).await?;
        if keys.iter().any(|k| *k != marker) {
            return Err(self.error(
                ErrorKind::DirectoryNotEmpty,
                OP,
                path,
                "folder is not empty",
            ));
        }
        if keys.is_empty() {
            let key = self.bucket.keys.object(path);
            return match self.bucket.head(&key, OP, path).await? {
                Some(_) => Err(self.error(ErrorKind::NotADirectory, OP, path, "not a folder")),
                // Without markers an empty folder has no keys: nothing to remove.
                None if !self.bucket.folder_markers => Ok(()),
                None => Err(self.error(ErrorKind::NotFound, OP, path, "no such folder")),
            };
        }
        self.bucket.delete(&marker, OP, path).await
    }

    async fn rename_now(
        &self,
        from: &StoragePath,
        to: &StoragePath,
        mode: RenameMode,
    ) -> Result<()> {
        rename::rename(&self.bucket, from, to, mode).await
    }

    async fn set_modified_now(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        rename::set_modified(&self.bucket, path, modified).await
    }

    /// One HEAD: the ETag when it is the content's MD5, or the stored
    /// full-object CRC-32 (asked for with checksum mode, so only objects
    /// uploaded with one have it; this backend's own uploads do not).
    async fn checksum_now(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        const OP: &str = "checksum";
        let checksums = kind == HashKind::Crc32;
        match self.bucket.lookup_with(path, OP, checksums).await? {
            Some(Found::File(info)) => Ok(info.checksum(kind)),
            Some(Found::Dir(_)) => {
                Err(self.error(ErrorKind::IsADirectory, OP, path, "is a folder"))
            }
            None => Err(self.error(ErrorKind::NotFound, OP, path, "no such file")),
        }
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_modified: true,
            truncate: false,
            resume_write: false,
            rename_replace: true,
            space_info: false,
            empty_dirs: true,
            atomic_replace: true,
        }
    }

    async fn stat(&self, path: &StoragePath) -> Result<Metadata> {
        let result = self.stat_now(path).await;
        self.answered(result)
    }

    async fn list(&self, path: &StoragePath) -> Result<ListStream> {
        let result = self.list_now(path).await;
        self.answered(result)
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let result = self.open_read_now(path).await;
        self.answered(result)
    }

    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>> {
        // Only an exclusive create asks the server anything before writing.
        let asks = matches!(mode, WriteMode::Replace { exclusive: true });
        let result = self.open_write_now(path, mode).await;
        if asks {
            self.answered(result)
        } else {
            result
        }
    }

    async fn mkdir(&self, path: &StoragePath) -> Result<()> {
        let result = self.mkdir_now(path).await;
        self.answered(result)
    }

    async fn remove(&self, path: &StoragePath) -> Result<()> {
        let result = self.remove_now(path).await;
        self.answered(result)
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        let result = self.rmdir_now(path).await;
        self.answered(result)
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()> {
        let result = self.rename_now(from, to, mode).await;
        self.answered(result)
    }

    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        let result = self.set_modified_now(path, modified).await;
        self.answered(result)
    }

    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        let result = self.checksum_now(path, kind).await;
        self.answered(result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A server that takes connections and requests and never answers.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                held.push(s);
            }
        });
        (endpoint, task)
    }

    #[tokio::test]
    async fn a_stalled_server_ends_in_a_timeout_without_retries() {
        let (endpoint, task) = silent_server().await;
        let mut s = S3Settings::new("stalled", endpoint, "b", "k", "s");
        s.io_timeout = Duration::from_millis(400);
        // Connecting takes no time here: the I/O timeout alone counts.
        s.connect_timeout = Duration::from_secs(20);
        let b = S3Backend::new(s).unwrap();
        let started = Instant::now();
        let err = b.stat(&StoragePath::parse("f").unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.message().starts_with("remote `stalled`"), "{err}");
        assert!(err.message().contains("nothing received within"), "{err}");
        // One attempt of 0.4 s (plus connecting), not three.
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        let err = b.probe().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn debug_never_shows_the_secret() {
        let s = S3Settings::new("p", "http://127.0.0.1:9", "b", "AKID", "s3cret-key");
        let b = S3Backend::new(s).unwrap();
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("S3Backend"),
            "{shown}"
        );
        assert!(b.capabilities().set_modified && !b.capabilities().resume_write);
        let err = b
            .open_write(
                &StoragePath::parse("f").unwrap(),
                WriteMode::Resume { offset: 1 },
            )
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
