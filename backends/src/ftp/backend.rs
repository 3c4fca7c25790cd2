//! The FTP remote as a [`Backend`]: every operation checks a control
//! connection out of the remote's pool, speaks FTP on it, and turns the
//! server's answers into storage errors (looking at the path again where
//! an FTP refusal is ambiguous, as 550 is).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;

use super::commands::ListFormat;
use super::connector::FtpConnector;
use super::control::Control;
use super::error::FtpError;
use super::listing_stream::list_pages;
use super::probe::FtpProbe;
use super::reader::FtpReader;
use super::tls::TlsSetup;
use super::writer::FtpWriter;
use super::{FtpSettings, FtpTls};
use crate::backend::{
    unsupported, Backend, Capabilities, FileReader, FileWriter, HashKind, ListStream, Metadata,
    RenameMode, WriteMode,
};
use crate::pending::{PendingRemovals, Removal, Remover};
use crate::pool::{Pool, PoolSettings, PoolStats, Pooled};
use crate::pooled::{settle, PooledRemote};
use crate::{BackendError, ErrorKind, Result, StoragePath};

/// An idle connection unused for this long is checked with NOOP before use.
const NOOP_AFTER: Duration = Duration::from_secs(15);

/// A folder on a remote FTP or FTPS server.
#[derive(Clone)]
pub struct FtpBackend {
    pool: Pool<FtpConnector>,
}

impl std::fmt::Debug for FtpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpBackend")
            .field("remote", &self.settings().name)
            .finish()
    }
}

impl FtpBackend {
    /// A backend for `settings` with its own pool. Builds the remote's TLS
    /// configuration once (a bad CA file is an error here, not at the first
    /// connection). Call inside a tokio runtime.
    pub fn new(settings: FtpSettings) -> Result<Self> {
        let tls = match settings.tls {
            FtpTls::Never => None,
            _ => Some(TlsSetup::new(
                &settings.name,
                &settings.host,
                &settings.certificate,
            )?),
        };
        let name = settings.name.clone();
        let pool_settings = settings.pool;
        let connector = FtpConnector {
            removals: PendingRemovals::new(&settings.name),
            settings,
            tls,
            features: Arc::new(Mutex::new(None)),
        };
        Ok(FtpBackend {
            pool: Pool::new(name, connector, pool_settings),
        })
    }

    /// The remote's settings.
    pub fn settings(&self) -> &FtpSettings {
        &self.pool.connector().settings
    }

    /// The pool's current use.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Applies new pool limits at once (config reload): a raised cap serves
    /// waiters now, a lowered one closes idle connections above it and the
    /// others as they are returned, never one in use.
    pub fn set_pool_settings(&self, settings: PoolSettings) {
        self.pool.set_settings(settings);
    }

    /// Makes the remote's cap hold across gateway nodes (see
    /// [`crate::slots`]); call once, before use.
    pub fn use_slot_gate(&self, gate: std::sync::Arc<dyn crate::slots::SlotGate>) {
        self.pool.use_slot_gate(gate);
    }

    /// Partial uploads waiting to be removed (absolute remote paths): those
    /// a failed upload could not remove because its connection was gone.
    pub fn pending_removals(&self) -> Vec<String> {
        self.removals().list()
    }

    pub(super) fn removals(&self) -> &PendingRemovals {
        &self.pool.connector().removals
    }

    /// Connects (or reuses an idle connection) and reports what the
    /// connection looks like, for `gateway remote test`.
    pub async fn probe(&self) -> Result<FtpProbe> {
        let conn = self.checkout().await?;
        let c = conn.lock().await;
        Ok(FtpProbe {
            local_addr: c.local_addr(),
            server_addr: c.peer_addr(),
            welcome: c.welcome().to_string(),
            tls: c.tls_summary().cloned(),
            features: c.features().lines.clone(),
        })
    }

    /// A working connection: one idle for long, or with unasked bytes
    /// waiting, must first answer NOOP. Partial uploads that broken
    /// connections left behind are removed through it first.
    pub(super) async fn checkout(&self) -> Result<Pooled<FtpConnector>> {
        crate::pooled::checkout(self).await
    }

    /// An [`FtpError`] as a [`BackendError`] for `operation` on `path`.
    pub(super) fn err(
        &self,
        e: FtpError,
        operation: &'static str,
        path: &StoragePath,
    ) -> BackendError {
        e.into_backend(&self.settings().name, operation, path.as_str())
    }

    /// Checks out a connection, runs `op` on its control channel, and
    /// drops the connection instead of reusing it if `op` found it broken.
    async fn with_conn<T>(&self, op: impl AsyncFnOnce(&mut Control) -> Result<T>) -> Result<T> {
        crate::pooled::with_conn(self, async move |conn: &mut Pooled<FtpConnector>| {
            let mut c = conn.lock().await;
            op(&mut c).await
        })
        .await
    }

    /// Metadata of `remote`, or `None` if it does not exist.
    async fn probe_path(
        &self,
        c: &mut Control,
        remote: &str,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Option<Metadata>> {
        c.stat(remote).await.map_err(|e| self.err(e, op, path))
    }
}

/// A connection idle for long, or with unasked bytes waiting, must first
/// answer NOOP; then partial uploads that broken connections left behind
/// are removed through it.
impl PooledRemote for FtpBackend {
    type Connector = FtpConnector;

    fn pool(&self) -> &Pool<FtpConnector> {
        &self.pool
    }

    async fn ready(&self, conn: &mut Pooled<FtpConnector>) -> bool {
        let mut c = conn.lock().await;
        let suspicious = c.health() != super::stream::Health::Quiet || c.idle_for() >= NOOP_AFTER;
        (!suspicious || c.expect_success("NOOP").await.is_ok())
            && self.removals().run(&mut *c).await.is_ok()
    }
}

/// Remembered partial uploads are removed with DELE.
impl Remover for &mut Control {
    type Error = FtpError;

    async fn remove(&mut self, path: &str) -> Removal<FtpError> {
        match self.delete(path).await {
            Ok(()) => Removal::Removed,
            Err(e) if e.kind().is_temporary() => Removal::Broken(e),
            Err(e) if e.kind() == ErrorKind::NotFound => Removal::Gone,
            Err(e) => Removal::Refused(e.to_string()),
        }
    }
}

fn error(kind: ErrorKind, op: &'static str, path: &StoragePath, message: &str) -> BackendError {
    BackendError::new(kind, op, path.as_str(), message)
}

#[async_trait]
impl Backend for FtpBackend {
    fn capabilities(&self) -> Capabilities {
        let features = self.pool.connector().features();
        Capabilities {
            // Known once a connection has seen the server's FEAT.
            set_modified: features.is_some_and(|f| f.mfmt),
            truncate: false,
            resume_write: true,
            rename_replace: true,
            space_info: false,
            empty_dirs: true,
            atomic_replace: self.settings().atomic_uploads,
        }
    }

    async fn stat(&self, path: &StoragePath) -> Result<Metadata> {
        self.with_conn(async |c: &mut Control| {
            let remote = c.path(path);
            self.probe_path(c, &remote, "stat", path)
                .await?
                .ok_or_else(|| error(ErrorKind::NotFound, "stat", path, "no such file or folder"))
        })
        .await
    }

    async fn list(&self, path: &StoragePath) -> Result<ListStream> {
        let mut conn = self.checkout().await?;
        let started = {
            let mut c = conn.lock().await;
            let remote = c.path(path);
            match c.start_listing(&remote, ListFormat::Mlsd).await {
                Ok(listing) => Ok(listing),
                Err(e) => {
                    let mut err = self.err(e, "list", path);
                    if err.kind() == ErrorKind::NotFound {
                        match c.stat(&remote).await {
                            Ok(Some(m)) if !m.is_dir() => {
                                err = error(ErrorKind::NotADirectory, "list", path, "not a folder")
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => {
                                err = error(ErrorKind::NotFound, "list", path, "no such folder")
                            }
                            Err(e) => err = self.err(e, "list", path),
                        }
                    }
                    Err(err)
                }
            }
        };
        settle(&mut conn, &started);
        let listing = started?;
        Ok(list_pages(self.clone(), conn, path.clone(), listing).boxed())
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let mut conn = self.checkout().await?;
        let found = {
            let mut c = conn.lock().await;
            let remote = c.path(path);
            self.probe_path(&mut c, &remote, "open", path)
                .await
                .map(|m| (remote, m))
        };
        settle(&mut conn, &found);
        match found? {
            (_, None) => Err(error(ErrorKind::NotFound, "open", path, "no such file")),
            (_, Some(m)) if m.is_dir() => {
                Err(error(ErrorKind::IsADirectory, "open", path, "is a folder"))
            }
            (remote, Some(metadata)) => Ok(Box::new(FtpReader::new(
                self.clone(),
                conn,
                path.clone(),
                remote,
                metadata,
            ))),
        }
    }

    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>> {
        if path.is_root() {
            return Err(error(
                ErrorKind::PermissionDenied,
                "write",
                path,
                "the root folder cannot be written",
            ));
        }
        let conn = self.checkout().await?;
        let writer = FtpWriter::open(self.clone(), conn, path.clone(), mode).await?;
        Ok(Box::new(writer))
    }

    async fn mkdir(&self, path: &StoragePath) -> Result<()> {
        self.with_conn(async |c: &mut Control| {
            let remote = c.path(path);
            let Err(e) = c.make_dir(&remote).await else {
                return Ok(());
            };
            let err = self.err(e, "mkdir", path);
            if err.is_temporary() {
                return Err(err);
            }
            if self.probe_path(c, &remote, "mkdir", path).await?.is_some() {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    "mkdir",
                    path,
                    "already exists",
                ));
            }
            if let Some(parent) = path.parent() {
                let parent_remote = c.path(&parent);
                if self
                    .probe_path(c, &parent_remote, "mkdir", path)
                    .await?
                    .is_none()
                {
                    return Err(error(
                        ErrorKind::NotFound,
                        "mkdir",
                        path,
                        "the containing folder does not exist",
                    ));
                }
            }
            Err(err)
        })
        .await
    }

    async fn remove(&self, path: &StoragePath) -> Result<()> {
        self.with_conn(async |c: &mut Control| {
            let remote = c.path(path);
            self.removals().forget(&remote).await;
            let Err(e) = c.delete(&remote).await else {
                return Ok(());
            };
            let err = self.err(e, "remove", path);
            if err.is_temporary() {
                return Err(err);
            }
            match self.probe_path(c, &remote, "remove", path).await? {
                Some(m) if m.is_dir() => Err(error(
                    ErrorKind::IsADirectory,
                    "remove",
                    path,
                    "is a folder",
                )),
                None => Err(error(ErrorKind::NotFound, "remove", path, "no such file")),
                Some(_) => Err(err),
            }
        })
        .await
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        self.with_conn(async |c: &mut Control| {
            let remote = c.path(path);
            let Err(e) = c.remove_dir(&remote).await else {
                return Ok(());
            };
            let err = self.err(e, "rmdir", path);
            if err.is_temporary() {
                return Err(err);
            }
            match self.probe_path(c, &remote, "rmdir", path).await? {
                None => Err(error(ErrorKind::NotFound, "rmdir", path, "no such folder")),
                Some(m) if !m.is_dir() => Err(error(
                    ErrorKind::NotADirectory,
                    "rmdir",
                    path,
                    "not a folder",
                )),
                Some(_) if err.kind() == ErrorKind::PermissionDenied => Err(err),
                Some(_) => Err(error(
                    ErrorKind::DirectoryNotEmpty,
                    "rmdir",
                    path,
                    "folder is not empty",
                )),
            }
        })
        .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()> {
        self.with_conn(async |c: &mut Control| {
            let (src, dst) = (c.path(from), c.path(to));
            self.removals().forget(&dst).await;
            if mode == RenameMode::NoReplace
                && self.probe_path(c, &dst, "rename", to).await?.is_some()
            {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    "rename",
                    to,
                    "the target already exists",
                ));
            }
            rename_on(self, c, &src, &dst, mode, from, to).await
        })
        .await
    }

    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        self.with_conn(async |c: &mut Control| {
            if !c.features().mfmt {
                return Err(unsupported("set modification time", path));
            }
            let remote = c.path(path);
            c.set_modified(&remote, modified)
                .await
                .map_err(|e| self.err(e, "set modification time", path))
        })
        .await
    }

    /// From `HASH` or `XMD5`/`XCRC` where FEAT offers them (`None` at once
    /// where the server is known to offer neither). The server hashing
    /// this file refused (busy, unreadable) or too slow is `None` too; a
    /// missing file or a folder is an error.
    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        const OP: &str = "checksum";
        let known = self.pool.connector().features();
        if known.is_some_and(|f| f.hash_command(kind).is_none()) {
            return Ok(None);
        }
        self.with_conn(async |c: &mut Control| {
            if c.features().hash_command(kind).is_none() {
                return Ok(None);
            }
            let remote = c.path(path);
            let size = match self.probe_path(c, &remote, OP, path).await? {
                None => return Err(error(ErrorKind::NotFound, OP, path, "no such file")),
                Some(m) if m.is_dir() => {
                    return Err(error(ErrorKind::IsADirectory, OP, path, "is a folder"))
                }
                Some(m) => m.size,
            };
            match c.checksum(&remote, kind, size).await {
                Ok(sum) => Ok(sum),
                // The file is there: the server cannot hash it (busy,
                // unreadable) or did not finish in time (the connection
                // is then dropped: its answer would come unasked).
                Err(e)
                    if matches!(e, FtpError::Timeout(..))
                        || (e.code().is_some() && !e.kind().is_temporary()) =>
                {
                    tracing::debug!(remote = %self.settings().name, path = path.as_str(), "no checksum: {e}");
                    Ok(None)
                }
                Err(e) => Err(self.err(e, OP, path)),
            }
        })
        .await
    }
}

/// RNFR/RNTO, classifying failures; for `Replace`, a target the server
/// will not overwrite is removed first (not atomic on such servers).
pub(super) async fn rename_on(
    backend: &FtpBackend,
    c: &mut Control,
    src: &str,
    dst: &str,
    mode: RenameMode,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<()> {
    let first = match c.rename(src, dst).await {
        Ok(()) => return Ok(()),
        Err(e) => backend.err(e, "rename", from),
    };
    if first.is_temporary() {
        return Err(first);
    }
    let source = backend.probe_path(c, src, "rename", from).await?;
    if source.is_none() {
        return Err(error(
            ErrorKind::NotFound,
            "rename",
            from,
            "no such file or folder",
        ));
    }
    let target = backend.probe_path(c, dst, "rename", to).await?;
    match (mode, target) {
        (RenameMode::Replace, Some(t)) if !t.is_dir() => {
            c.delete(dst)
                .await
                .map_err(|e| backend.err(e, "rename", to))?;
            c.rename(src, dst)
                .await
                .map_err(|e| backend.err(e, "rename", from))
        }
        (_, Some(_)) => Err(error(
            ErrorKind::AlreadyExists,
            "rename",
            to,
            "the target already exists",
        )),
        (_, None) => Err(first),
    }
}
