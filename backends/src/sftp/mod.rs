//! A folder on a remote SFTP server, over russh and russh-sftp.
//!
//! Every operation checks a connection out of the remote's [`Pool`]; an
//! open file or listing keeps its connection until it is closed, so a
//! transfer never shares or loses its connection. Reads and writes keep
//! many requests in flight on their connection, so a transfer is not bound
//! by round trips. New files are written under a hidden name and renamed
//! into place on close (`posix-rename@openssh.com` where offered).
//!
//! Checksums (MD5 only) come from running `md5sum` on the server over a
//! second session channel of a pooled connection's SSH session, so a file
//! is not read back over the network. A server that cannot (exec refused,
//! no `md5sum`, SFTP-only accounts such as `ForceCommand internal-sftp` or
//! a `nologin` shell) is remembered: later checksums answer `None` at once.
//!
//! Layout: this file holds the settings and the [`Backend`]; `connection`
//! opens connections (dial, handshake, host key, login), `liveness`
//! notices dead or stalled ones, `files` holds the reader and the writer,
//! `md5sum` the remote checksums.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::FutureExt;
use futures::StreamExt;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, FileMode, OpenFlags, StatusCode};

use crate::backend::{
    Backend, Capabilities, DirEntry, EntryKind, FileReader, FileWriter, HashKind, ListStream,
    Metadata, RenameMode, SpaceInfo, WriteMode,
};
use crate::dial::{dial, SourceAddresses};
use crate::local::{hidden_upload_path, UPLOAD_PREFIX};
use crate::pending::{PendingRemovals, Removal, Remover};
use crate::pool::{Connector, Pool, PoolSettings, PoolStats, Pooled};
use crate::pooled::{settle, PooledRemote};
use crate::{BackendError, ConnectFailure, ErrorKind, Result, StoragePath};

/// Largest read or write sent in one request (OpenSSH's sshd accepts 261120).
const CHUNK: usize = 255 * 1024;
/// Writes of one file in flight at once.
const WRITES_IN_FLIGHT: usize = 32;
/// How long a single SFTP request may take by default
/// ([`SftpSettings::io_timeout`]).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest any one SFTP request may take, however much progress the
/// connection makes: ten I/O timeouts, at least a minute.
fn request_backstop(io_timeout: Duration) -> Duration {
    (io_timeout * 10).max(Duration::from_secs(60))
}
/// The slowest hashing a remote `md5sum` is given time for (bytes per
/// second), on top of [`SftpSettings::io_timeout`].
const MD5SUM_MIN_RATE: u64 = 16 * 1024 * 1024;
/// Most bytes of `md5sum`'s output (stdout) kept; one line is expected.
const MD5SUM_MAX_STDOUT: usize = 64 * 1024;
/// Most bytes of `md5sum`'s error output kept, for messages.
const MD5SUM_MAX_STDERR: usize = 2048;

/// Decides whether a remote's host key is acceptable; the gateway pins keys
/// in its state and disables a remote whose key changed. A
/// [`ErrorKind::PermissionDenied`] error from either method is counted as a
/// `host_key_mismatch` connect failure unless the error names its own
/// reason ([`BackendError::with_connect_failure`]).
pub trait HostKeyPolicy: Send + Sync + std::fmt::Debug {
    /// Called before connecting: an error if the remote is disabled.
    fn check_enabled(&self) -> Result<()>;
    /// Called with the key the server presents, before authentication; an
    /// error closes the connection.
    fn verify(&self, presented: &PublicKey) -> Result<()>;
}

/// How to reach and log in to one remote SFTP server.
#[derive(Clone)]
pub struct SftpSettings {
    /// The remote's name in the config (for messages).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password, if password authentication is configured.
    pub password: Option<String>,
    /// Private key, if key authentication is configured.
    pub private_key: Option<Arc<PrivateKey>>,
    /// Folder on the remote that is this backend's root ("" = login folder).
    pub root: String,
    /// Where connections come from.
    pub sources: SourceAddresses,
    /// Limit for TCP connect, SSH handshake and login.
    pub connect_timeout: Duration,
    /// How long one SFTP request may wait for its answer before the
    /// connection counts as stalled and is dropped (whole seconds, at
    /// least one).
    pub io_timeout: Duration,
    /// Host key verification.
    pub host_keys: Arc<dyn HostKeyPolicy>,
    /// Pool limits.
    pub pool: PoolSettings,
    /// Handshake limit and algorithms.
    pub ssh: SshOptions,
    /// Write a new file under a hidden name and rename it on close (the
    /// file shows under its name only when whole); `false` writes straight
    /// to the final name and deletes it if the upload fails (for servers
    /// that refuse renames).
    pub atomic_uploads: bool,
}

impl std::fmt::Debug for SftpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never shown.
        f.debug_struct("SftpSettings")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<hidden>"),
            )
            .field("root", &self.root)
            .field("sources", &self.sources.addresses())
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("ssh", &self.ssh)
            .field("atomic_uploads", &self.atomic_uploads)
            .finish()
    }
}

pub mod algorithms;
mod connection;
mod files;
mod ident;
mod liveness;
mod md5sum;

pub use algorithms::{LegacyAlgorithm, Negotiated, SshOptions};
use connection::*;
pub use connection::{ClientHandler, SftpConnection, SftpConnector};
use files::*;
use ident::{processes_in_order, IdentSniffer};
use liveness::*;
use md5sum::*;

/// A folder on a remote SFTP server.
#[derive(Clone)]
pub struct SftpBackend {
    pool: Pool<SftpConnector>,
    exec: Arc<ExecChecksums>,
}

/// What one backend learned about computing checksums on its server.
#[derive(Debug, Default)]
struct ExecChecksums {
    /// Set once `md5sum` over exec turned out not to work on this server.
    unavailable: AtomicBool,
    /// The SFTP server's folder for relative paths (`realpath .`), so that
    /// the command, run wherever the login shell starts, hashes the file
    /// SFTP means even when that is not the home folder.
    login_folder: OnceLock<String>,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("remote", &self.pool.connector().settings.name)
            .finish()
    }
}

impl SftpBackend {
    /// A backend for `settings`, with its own pool. Call inside a runtime.
    pub fn new(settings: SftpSettings) -> Self {
        let name = settings.name.clone();
        let pool_settings = settings.pool;
        // Exported at 0 from the start, like the connect failures.
        ::metrics::counter!(
            crate::metrics::CONNECT_RETRIES,
            "remote" => name.clone(),
            "reason" => "closed_before_login"
        )
        .increment(0);
        SftpBackend {
            pool: Pool::new(name, SftpConnector::new(settings), pool_settings),
            exec: Arc::default(),
        }
    }

    /// Whether checksums are known to be unavailable on this server (exec
    /// refused, no `md5sum`, an SFTP-only account); learned on first use.
    pub fn exec_checksums_unavailable(&self) -> bool {
        self.exec.unavailable.load(Ordering::Relaxed)
    }

    /// Remembers that `md5sum` over exec does not work here (logged once).
    fn give_up_exec_checksums(&self, why: &str) {
        if !self.exec.unavailable.swap(true, Ordering::Relaxed) {
            tracing::info!(
                remote = %self.settings().name,
                "MD5 checksums are not available on this remote ({why}); none will be asked for again"
            );
        }
    }

    /// `remote` as an absolute path of the SFTP server (relative ones are
    /// under its login folder, asked for once).
    async fn absolute(
        &self,
        c: &SftpConnection,
        path: &StoragePath,
        remote: String,
    ) -> Result<String> {
        if remote.starts_with('/') {
            return Ok(remote);
        }
        let login = match self.exec.login_folder.get() {
            Some(folder) => folder.clone(),
            None => {
                let name = c
                    .sftp
                    .realpath(".")
                    .await
                    .map_err(|e| self.err("checksum", path, e))?;
                let folder = name
                    .files
                    .into_iter()
                    .next()
                    .map(|f| f.filename)
                    .filter(|f| f.starts_with('/'))
                    .ok_or_else(|| {
                        BackendError::new(
                            ErrorKind::Other,
                            "checksum",
                            path.as_str(),
                            format!(
                                "remote `{}`: the server did not tell its login folder",
                                self.settings().name
                            ),
                        )
                    })?;
                self.exec.login_folder.get_or_init(|| folder).clone()
            }
        };
        Ok(match remote.as_str() {
            "." => login,
            _ if login.ends_with('/') => format!("{login}{remote}"),
            _ => format!("{login}/{remote}"),
        })
    }

    /// The MD5 of `path` from `md5sum` on the server; see [`Backend::checksum`].
    async fn md5_on_server(&self, path: &StoragePath) -> Result<Option<String>> {
        const OP: &str = "checksum";
        let remote = self.remote(path);
        let mut conn = self.checkout().await?;
        let result = async {
            let meta = conn
                .sftp
                .stat(remote.clone())
                .await
                .map(|a| metadata_of(&a.attrs))
                .map_err(|e| self.err(OP, path, e))?;
            match meta.kind {
                EntryKind::File => {}
                EntryKind::Dir => {
                    return Err(BackendError::new(
                        ErrorKind::IsADirectory,
                        OP,
                        path.as_str(),
                        "is a folder",
                    ))
                }
                // A device or FIFO: md5sum could block on it.
                EntryKind::Other => return Ok(None),
            }
            let absolute = self.absolute(&conn, path, remote).await?;
            let s = self.settings();
            let limits = Md5sumLimits {
                accept: s.connect_timeout,
                finish: s.io_timeout + Duration::from_secs(meta.size / MD5SUM_MIN_RATE),
            };
            match run_md5sum(&conn.ssh, &absolute, limits).await {
                Md5sum::Sum(sum) => Ok(Some(sum)),
                Md5sum::FileRefused(why) => {
                    tracing::debug!(remote = %s.name, path = path.as_str(), "md5sum failed: {why}");
                    Ok(None)
                }
                Md5sum::Unavailable(why) => {
                    self.give_up_exec_checksums(&why);
                    Ok(None)
                }
                Md5sum::Lost(why) => Err(BackendError::new(
                    ErrorKind::ConnectionLost,
                    OP,
                    path.as_str(),
                    format!("remote `{}`: connection to the remote lost: {why}", s.name),
                )),
            }
        }
        .await;
        settle(&mut conn, &result);
        result
    }

    /// The remote's settings.
    pub fn settings(&self) -> &SftpSettings {
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

    /// Checks out a connection (for `remote test`: it reports where it came from).
    pub async fn connection(&self) -> Result<Pooled<SftpConnector>> {
        self.checkout().await
    }

    /// Temporary files of failed uploads waiting to be removed (remote
    /// paths): those a broken connection could not remove.
    pub fn pending_removals(&self) -> Vec<String> {
        self.removals().list()
    }

    fn removals(&self) -> &PendingRemovals {
        &self.pool.connector().removals
    }

    /// A connection from the pool in working order (see [`PooledRemote`]).
    async fn checkout(&self) -> Result<Pooled<SftpConnector>> {
        crate::pooled::checkout(self).await
    }

    /// The remote path of `path`.
    fn remote(&self, path: &StoragePath) -> String {
        remote_path(&self.settings().root, path)
    }

    fn err(&self, op: &'static str, path: &StoragePath, e: SftpError) -> BackendError {
        let (kind, message) = match &e {
            SftpError::Status(st) => match st.status_code {
                StatusCode::NoSuchFile => {
                    (ErrorKind::NotFound, "no such file or folder".to_string())
                }
                StatusCode::PermissionDenied => (
                    ErrorKind::PermissionDenied,
                    "permission denied by the remote".to_string(),
                ),
                StatusCode::OpUnsupported => (
                    ErrorKind::Unsupported,
                    "not supported by the remote".to_string(),
                ),
                _ => (
                    ErrorKind::Other,
                    format!("the remote says: {}", st.error_message),
                ),
            },
            SftpError::Timeout => (
                ErrorKind::Timeout,
                "the remote did not answer in time".to_string(),
            ),
            SftpError::Limited(m) => (ErrorKind::Other, m.clone()),
            SftpError::IO(m) | SftpError::UnexpectedBehavior(m) => (
                ErrorKind::ConnectionLost,
                format!("connection to the remote lost: {m}"),
            ),
            SftpError::UnexpectedPacket => (
                ErrorKind::ConnectionLost,
                "the remote answered out of protocol".to_string(),
            ),
        };
        BackendError::new(
            kind,
            op,
            path.as_str(),
            format!("remote `{}`: {message}", self.settings().name),
        )
        .with_source(e)
    }

    /// Checks out a connection, runs `op` on it, and drops the connection
    /// instead of reusing it if `op` found it broken.
    async fn with_conn<T>(&self, op: impl AsyncFnOnce(&SftpConnection) -> Result<T>) -> Result<T> {
        crate::pooled::with_conn(self, async move |conn: &mut Pooled<SftpConnector>| {
            op(conn).await
        })
        .await
    }

    /// The error of a refused `mkdir`, `remove` or `rmdir`, named by what
    /// is at `path` when the server's status does not say why (SFTP v3 has
    /// no "exists", "is a folder" or "not empty" codes: servers answer a
    /// bare Failure, or permission denied).
    async fn explain(
        &self,
        c: &SftpConnection,
        refused: Refused,
        path: &StoragePath,
        e: SftpError,
    ) -> BackendError {
        let op = refused.op();
        let err = self.err(op, path, e);
        let kind = err.kind();
        let unexplained = match refused {
            Refused::Mkdir => !err.is_temporary(),
            Refused::Remove => matches!(kind, ErrorKind::Other | ErrorKind::PermissionDenied),
            Refused::Rmdir => kind == ErrorKind::Other,
        };
        if !unexplained {
            return err;
        }
        let found = Self::probe(c, &self.remote(path)).await;
        let named = match (refused, found) {
            (Refused::Mkdir, Some(_)) => Some((ErrorKind::AlreadyExists, "already exists")),
            (Refused::Mkdir, None) => match path.parent() {
                Some(parent) if Self::probe(c, &self.remote(&parent)).await.is_none() => {
                    Some((ErrorKind::NotFound, "the containing folder does not exist"))
                }
                _ => None,
            },
            (Refused::Remove, Some(m)) if m.is_dir() => {
                Some((ErrorKind::IsADirectory, "is a folder"))
            }
            (Refused::Rmdir, Some(m)) if m.is_dir() => {
                Some((ErrorKind::DirectoryNotEmpty, "folder is not empty"))
            }
            (Refused::Rmdir, Some(_)) => Some((ErrorKind::NotADirectory, "not a folder")),
            _ => None,
        };
        match named {
            Some((kind, message)) => BackendError::new(kind, op, path.as_str(), message),
            None => err,
        }
    }

    /// Metadata of `remote`, or `None` if it does not exist.
    async fn probe(conn: &SftpConnection, remote: &str) -> Option<Metadata> {
        conn.sftp
            .stat(remote)
            .await
            .ok()
            .map(|a| metadata_of(&a.attrs))
    }
}

/// Remembered temporary files are removed with SSH_FXP_REMOVE.
impl Remover for &SftpConnection {
    type Error = SftpError;

    async fn remove(&mut self, path: &str) -> Removal<SftpError> {
        removal(self.guard(self.sftp.remove(path)).await.map(|_| ()))
    }
}

/// How removing a temporary file went.
fn removal(removed: std::result::Result<(), SftpError>) -> Removal<SftpError> {
    match removed {
        Ok(()) => Removal::Removed,
        Err(e) if connection_broke(&e) => Removal::Broken(e),
        Err(SftpError::Status(st)) if st.status_code == StatusCode::NoSuchFile => Removal::Gone,
        Err(e) => Removal::Refused(e.to_string()),
    }
}

/// Whether `e` means the connection is lost or stalled (the server did
/// not refuse the request: it did not answer it).
fn connection_broke(e: &SftpError) -> bool {
    !matches!(e, SftpError::Status(_) | SftpError::Limited(_))
}

/// An operation the server refused, for [`SftpBackend::explain`].
#[derive(Debug, Clone, Copy)]
enum Refused {
    Mkdir,
    Remove,
    Rmdir,
}

impl Refused {
    fn op(self) -> &'static str {
        match self {
            Refused::Mkdir => "mkdir",
            Refused::Remove => "remove",
            Refused::Rmdir => "rmdir",
        }
    }
}

/// The temporary files that broken connections left behind are removed
/// through a connection before it is used.
impl PooledRemote for SftpBackend {
    type Connector = SftpConnector;

    fn pool(&self) -> &Pool<SftpConnector> {
        &self.pool
    }

    async fn ready(&self, conn: &mut Pooled<SftpConnector>) -> bool {
        self.removals().run(&**conn).await.is_ok()
    }
}

/// The entries of one READDIR answer, without `.`, `..` and our own
/// temporary upload files.
fn entries_of(name: russh_sftp::protocol::Name) -> Vec<DirEntry> {
    name.files
        .into_iter()
        .filter(|f| {
            f.filename != "." && f.filename != ".." && !f.filename.starts_with(UPLOAD_PREFIX)
        })
        .map(|f| DirEntry {
            metadata: metadata_of(&f.attrs),
            name: f.filename,
        })
        .collect()
}

fn remote_path(root: &str, path: &StoragePath) -> String {
    if root.is_empty() {
        return if path.is_root() {
            ".".to_string()
        } else {
            path.as_str().to_string()
        };
    }
    let root = if root == "/" {
        root
    } else {
        root.trim_end_matches('/')
    };
    if path.is_root() {
        root.to_string()
    } else if root.ends_with('/') {
        format!("{root}{}", path.as_str())
    } else {
        format!("{root}/{}", path.as_str())
    }
}

fn metadata_of(a: &FileAttributes) -> Metadata {
    let bits = a.permissions.unwrap_or(0);
    let kind = if bits & 0o170000 == FileMode::DIR.bits() {
        EntryKind::Dir
    } else if bits & 0o170000 == FileMode::REG.bits() || a.permissions.is_none() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    Metadata {
        kind,
        size: a.size.unwrap_or(0),
        modified: a.mtime.map(|t| UNIX_EPOCH + Duration::from_secs(t.into())),
        mode: a.permissions.map(|p| p & 0o7777),
    }
}

#[async_trait]
impl Backend for SftpBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_modified: true,
            truncate: true,
            resume_write: true,
            rename_replace: true,
            space_info: true,
            empty_dirs: true,
            atomic_replace: true,
        }
    }

    async fn stat(&self, path: &StoragePath) -> Result<Metadata> {
        let remote = self.remote(path);
        self.with_conn(async |c: &SftpConnection| {
            c.sftp
                .stat(remote)
                .await
                .map(|a| metadata_of(&a.attrs))
                .map_err(|e| self.err("stat", path, e))
        })
        .await
    }

    async fn list(&self, path: &StoragePath) -> Result<ListStream> {
        let remote = self.remote(path);
        let mut conn = self.checkout().await?;
        // Some servers (AsyncSSH) open any path as a folder and fail only
        // at the first READDIR: read the first page now, so a missing
        // folder or a file fails here as it does on OpenSSH.
        let opened = match conn.sftp.opendir(remote.clone()).await {
            Ok(h) => {
                let handle = h.handle;
                match conn.sftp.readdir(handle.clone()).await {
                    Ok(name) => Ok(Some((handle, entries_of(name)))),
                    Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => {
                        let _ = conn.sftp.close(handle).await;
                        Ok(None)
                    }
                    Err(e) => {
                        let _ = conn.sftp.close(handle).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        let (handle, first) = match opened {
            Ok(Some(page)) => page,
            Ok(None) => return Ok(futures::stream::empty().boxed()),
            Err(e) => {
                let mut err = self.err("list", path, e);
                // OpenSSH says "no such file" for a file opened as a
                // folder, ProFTPD a bare failure ("Not a directory"): look.
                if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Other) {
                    if let Some(meta) = Self::probe(&conn, &remote).await {
                        if !meta.is_dir() {
                            err = BackendError::new(
                                ErrorKind::NotADirectory,
                                "list",
                                path.as_str(),
                                "not a folder",
                            );
                        }
                    }
                }
                if err.is_temporary() {
                    conn.mark_broken();
                }
                return Err(err);
            }
        };
        let backend = self.clone();
        let path = path.clone();
        let state = Some((conn, handle));
        let rest = futures::stream::unfold(state, move |state| {
            let backend = backend.clone();
            let path = path.clone();
            async move {
                let (mut conn, handle) = state?;
                match conn.sftp.readdir(handle.clone()).await {
                    Ok(name) => Some((Ok(entries_of(name)), Some((conn, handle)))),
                    Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => {
                        let _ = conn.sftp.close(handle).await;
                        None
                    }
                    Err(e) => {
                        let err = backend.err("list", &path, e);
                        if err.is_temporary() {
                            conn.mark_broken();
                        } else {
                            let _ = conn.sftp.close(handle).await;
                        }
                        Some((Err(err), None))
                    }
                }
            }
        });
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let remote = self.remote(path);
        let mut conn = self.checkout().await?;
        // The size comes with the open, in the same round trip (both sent
        // before either answer is awaited): a short read that ends there
        // is the end of the file, which saves a small file's download the
        // round trip of one more read (see `SftpReader::size_at_open`).
        let (opened, stat) = futures::join!(
            conn.sftp
                .open(remote.clone(), OpenFlags::READ, FileAttributes::default()),
            conn.sftp.stat(remote.clone())
        );
        // The same STAT tells a folder opened as a file, should the open fail.
        let stat = stat.ok();
        let meta = stat.as_ref().map(|a| metadata_of(&a.attrs));
        let size_at_open = stat
            .as_ref()
            .filter(|_| meta.as_ref().is_some_and(|m| m.kind == EntryKind::File))
            .and_then(|a| a.attrs.size);
        match opened {
            Ok(h) => Ok(Box::new(SftpReader {
                backend: self.clone(),
                conn: Some(conn),
                handle: h.handle,
                path: path.clone(),
                size_at_open,
                eof_at: AtomicU64::new(NO_EOF),
                broken: AtomicBool::new(false),
            })),
            Err(e) => {
                let mut err = self.err("open", path, e);
                if err.kind() == ErrorKind::Other && meta.is_some_and(|m| m.is_dir()) {
                    err = BackendError::new(
                        ErrorKind::IsADirectory,
                        "open",
                        path.as_str(),
                        "is a folder",
                    );
                }
                if err.is_temporary() {
                    conn.mark_broken();
                }
                Err(err)
            }
        }
    }

    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>> {
        if path.is_root() {
            return Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "write",
                "",
                "the root folder cannot be written",
            ));
        }
        let final_remote = self.remote(path);
        let mut conn = self.checkout().await?;
        let (target, position, publish) = match mode {
            WriteMode::Replace { exclusive } => {
                // Only an exclusive create needs to look first; a folder in
                // the way makes the publishing rename fail at close.
                if exclusive {
                    match Self::probe(&conn, &final_remote).await {
                        Some(m) if m.is_dir() => {
                            return Err(BackendError::new(
                                ErrorKind::IsADirectory,
                                "write",
                                path.as_str(),
                                "is a folder",
                            ))
                        }
                        Some(_) => {
                            return Err(BackendError::new(
                                ErrorKind::AlreadyExists,
                                "write",
                                path.as_str(),
                                "already exists",
                            ))
                        }
                        None => {}
                    }
                }
                if self.settings().atomic_uploads {
                    let temp = hidden_upload_path(path)?;
                    let publish = Publish::Rename {
                        final_remote,
                        exclusive,
                    };
                    (self.remote(&temp), 0, Some(publish))
                } else {
                    (final_remote, 0, Some(Publish::InPlace { exclusive }))
                }
            }
            WriteMode::Resume { offset } => (final_remote, offset, None),
        };
        // A temporary file of an earlier attempt waiting to be removed is
        // written again now: it must not be removed afterwards.
        self.removals().forget(&target).await;
        let created = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let flags = match &publish {
            // The hidden name is ours alone.
            Some(Publish::Rename { .. }) | Some(Publish::InPlace { exclusive: true }) => {
                created | OpenFlags::EXCLUDE
            }
            Some(Publish::InPlace { exclusive: false }) => created,
            None => OpenFlags::WRITE,
        };
        match conn
            .sftp
            .open(target.clone(), flags, FileAttributes::default())
            .await
        {
            Ok(h) => Ok(Box::new(SftpWriter {
                backend: self.clone(),
                conn: Some(conn),
                handle: h.handle,
                path: path.clone(),
                target,
                publish,
                position,
                in_flight: FuturesUnordered::new(),
                unsent: Arc::default(),
            })),
            Err(e) => {
                let err = self.err("write", path, e);
                if err.is_temporary() {
                    conn.mark_broken();
                }
                Err(err)
            }
        }
    }

    async fn mkdir(&self, path: &StoragePath) -> Result<()> {
        let remote = self.remote(path);
        self.with_conn(async |c: &SftpConnection| {
            match c
                .sftp
                .mkdir(remote.clone(), FileAttributes::default())
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(self.explain(c, Refused::Mkdir, path, e).await),
            }
        })
        .await
    }

    async fn remove(&self, path: &StoragePath) -> Result<()> {
        let remote = self.remote(path);
        self.removals().forget(&remote).await;
        self.with_conn(
            async |c: &SftpConnection| match c.sftp.remove(remote.clone()).await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.explain(c, Refused::Remove, path, e).await),
            },
        )
        .await
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        let remote = self.remote(path);
        self.with_conn(
            async |c: &SftpConnection| match c.sftp.rmdir(remote.clone()).await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.explain(c, Refused::Rmdir, path, e).await),
            },
        )
        .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()> {
        let (src, dst) = (self.remote(from), self.remote(to));
        self.removals().forget(&dst).await;
        self.with_conn(async |c: &SftpConnection| {
            let result = match mode {
                RenameMode::Replace => rename_replacing(c, &src, &dst).await,
                RenameMode::NoReplace => {
                    if Self::probe(c, &dst).await.is_some() {
                        return Err(BackendError::new(
                            ErrorKind::AlreadyExists,
                            "rename",
                            to.as_str(),
                            "the target already exists",
                        ));
                    }
                    c.sftp.rename(src.clone(), dst.clone()).await.map(|_| ())
                }
            };
            result.map_err(|e| {
                let err = self.err("rename", from, e);
                if err.kind() == ErrorKind::Other && matches!(mode, RenameMode::NoReplace) {
                    BackendError::new(
                        ErrorKind::AlreadyExists,
                        "rename",
                        to.as_str(),
                        "the target already exists",
                    )
                } else {
                    err
                }
            })
        })
        .await
    }

    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        let remote = self.remote(path);
        let secs = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().min(u32::MAX.into()) as u32)
            .unwrap_or(0);
        let attrs = FileAttributes {
            atime: Some(secs),
            mtime: Some(secs),
            ..FileAttributes::empty()
        };
        self.with_conn(async |c: &SftpConnection| {
            c.sftp
                .setstat(remote, attrs)
                .await
                .map(|_| ())
                .map_err(|e| self.err("set modification time", path, e))
        })
        .await
    }

    async fn truncate(&self, path: &StoragePath, size: u64) -> Result<()> {
        let remote = self.remote(path);
        let attrs = FileAttributes {
            size: Some(size),
            ..FileAttributes::empty()
        };
        self.with_conn(async |c: &SftpConnection| {
            c.sftp
                .setstat(remote, attrs)
                .await
                .map(|_| ())
                .map_err(|e| self.err("truncate", path, e))
        })
        .await
    }

    async fn space(&self, path: &StoragePath) -> Result<SpaceInfo> {
        let remote = self.remote(path);
        self.with_conn(async |c: &SftpConnection| {
            if !c.statvfs {
                return Err(crate::backend::unsupported("space", path));
            }
            let v = c
                .sftp
                .statvfs(remote)
                .await
                .map_err(|e| self.err("space", path, e))?;
            Ok(SpaceInfo {
                block_size: v.fragment_size.max(1),
                blocks: v.blocks,
                blocks_free: v.blocks_free,
                blocks_available: v.blocks_avail,
                files: v.inodes,
                files_free: v.inodes_free,
                name_max: v.name_max,
            })
        })
        .await
    }

    /// MD5 only, from `md5sum` on the server (CRC-32 has no common command:
    /// POSIX `cksum` computes another CRC). `None` at once once the server
    /// showed it cannot run it, and for names with control characters
    /// (which not every login shell can take in quotes).
    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        if kind != HashKind::Md5
            || self.exec_checksums_unavailable()
            || self.remote(path).chars().any(char::is_control)
        {
            return Ok(None);
        }
        self.md5_on_server(path).await
    }
}

/// How long `md5sum` over exec may take.
/// Renames over an existing target: `posix-rename@openssh.com` where the
/// server has it, otherwise remove-then-rename.
async fn rename_replacing(
    c: &SftpConnection,
    src: &str,
    dst: &str,
) -> std::result::Result<(), SftpError> {
    if c.posix_rename {
        let mut data = Vec::with_capacity(8 + src.len() + dst.len());
        for s in [src, dst] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        return match c.sftp.extended("posix-rename@openssh.com", data).await? {
            russh_sftp::protocol::Packet::Status(st) if st.status_code == StatusCode::Ok => Ok(()),
            russh_sftp::protocol::Packet::Status(st) => Err(SftpError::Status(st)),
            _ => Err(SftpError::UnexpectedPacket),
        };
    }
    match c.sftp.rename(src, dst).await {
        Ok(_) => Ok(()),
        Err(_) => {
            let _ = c.sftp.remove(dst).await;
            c.sftp.rename(src, dst).await.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy for a remote disabled after a host key change, or one whose
    /// state cannot be read.
    #[derive(Debug)]
    struct Disabled(ErrorKind);

    impl HostKeyPolicy for Disabled {
        fn check_enabled(&self) -> Result<()> {
            Err(BackendError::new(
                self.0,
                "connect",
                "",
                "remote `r` is disabled",
            ))
        }
        fn verify(&self, _: &PublicKey) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn debug_hides_the_password_and_the_key() {
        let key = PrivateKey::from_openssh(include_str!(
            "../../../certs/tests/data/test_ed25519_openssh"
        ))
        .unwrap();
        let openssh = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let s = SftpSettings {
            name: "r".into(),
            host: "h".into(),
            port: 22,
            username: "u".into(),
            password: Some("Zq-sftp-pw-7731".into()),
            private_key: Some(Arc::new(key)),
            root: String::new(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: DEFAULT_IO_TIMEOUT,
            host_keys: Arc::new(Disabled(ErrorKind::Other)),
            pool: PoolSettings {
                max: 1,
                wait: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
            ssh: SshOptions::default(),
            atomic_uploads: true,
        };
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("Zq-sftp-pw-7731"), "{shown}");
        // No line of the key's body (the private part) shows.
        for line in openssh.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "key material in Debug: {shown}");
        }
        assert!(
            shown.contains("<hidden>") && shown.contains("\"h\""),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn policy_refusals_are_host_key_mismatches() {
        for (kind, reason) in [
            (ErrorKind::PermissionDenied, ConnectFailure::HostKeyMismatch),
            (ErrorKind::Other, ConnectFailure::Other),
        ] {
            let backend = SftpBackend::new(SftpSettings {
                name: "r".into(),
                host: "192.0.2.1".into(),
                port: 22,
                username: "u".into(),
                password: None,
                private_key: None,
                root: String::new(),
                sources: SourceAddresses::system(),
                connect_timeout: Duration::from_secs(1),
                io_timeout: DEFAULT_IO_TIMEOUT,
                host_keys: Arc::new(Disabled(kind)),
                pool: PoolSettings {
                    max: 1,
                    wait: Duration::from_secs(1),
                    idle: Duration::from_secs(1),
                },
                ssh: SshOptions::default(),
                atomic_uploads: true,
            });
            let err = backend
                .stat(&StoragePath::parse("f").unwrap())
                .await
                .unwrap_err();
            assert_eq!(err.connect_failure(), Some(reason), "{err}");
            assert_eq!(backend.pool_stats().open, 0);
        }
        let own = BackendError::new(ErrorKind::PermissionDenied, "connect", "", "x")
            .with_connect_failure(ConnectFailure::AuthFailed);
        assert_eq!(
            policy_failure(own).connect_failure(),
            Some(ConnectFailure::AuthFailed),
            "a reason the policy set is kept"
        );
    }

    #[test]
    fn md5sum_output_is_parsed() {
        let sum = "b1946ac92492d2347c6235b4d2611184";
        let p = |s: &str| parse_md5sum(s.as_bytes());
        assert_eq!(p(&format!("{sum}  /data/f\n")).as_deref(), Some(sum));
        assert_eq!(p(&format!("{sum} */data/f\n")).as_deref(), Some(sum));
        // A name with a backslash or line break: the line starts with `\`.
        assert_eq!(p(&format!("\\{sum}  /data/a\\\\b\n")).as_deref(), Some(sum));
        assert_eq!(
            p(&format!("Welcome!\n{}  /f\n", sum.to_uppercase())).as_deref(),
            Some(sum)
        );
        assert_eq!(p(""), None);
        assert_eq!(p("This account is currently not available.\n"), None);
        assert_eq!(p(&format!("{sum}x  /f\n")), None);
        assert_eq!(p(&sum[..31]), None);
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/data/f"), "'/data/f'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("a\\b"), "'a'\\\\'b'");
        assert_eq!(
            shell_quote("$(x) `y` \"z\" ;&|*?"),
            "'$(x) `y` \"z\" ;&|*?'"
        );
        // What sh makes of it is the name itself.
        let names = [
            "/d/it's",
            "/d/a\\b\\",
            "/d/$(id) `id` \"q\" ; * ~",
            "/d/-x",
            "/d/''\\'",
        ];
        for shell in ["sh", "bash"] {
            for name in names {
                let Ok(out) = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(format!("printf %s {}", shell_quote(name)))
                    .output()
                else {
                    continue; // that shell is not installed
                };
                assert_eq!(String::from_utf8_lossy(&out.stdout), name, "{shell}");
            }
        }
    }

    #[test]
    fn md5sum_outcomes() {
        let out = |status: Option<u32>, stdout: &str, stderr: &str| ExecOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            status,
            signal: None,
        };
        let sum = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            out(Some(0), &format!("{sum}  /f\n"), "").outcome(false),
            Md5sum::Sum(sum.into())
        );
        let forced = out(Some(0), "", "").outcome(false);
        assert!(matches!(forced, Md5sum::Unavailable(_)), "{forced:?}");
        let missing = out(Some(127), "", "bash: line 1: md5sum: command not found").outcome(false);
        assert!(matches!(&missing, Md5sum::Unavailable(m) if m.contains("command not found")));
        let nologin = out(Some(1), "", "This account is currently not available.").outcome(false);
        assert!(matches!(&nologin, Md5sum::Unavailable(m) if m.contains("not available")));
        let sftp_only = out(Some(1), "", "").outcome(false);
        assert!(matches!(&sftp_only, Md5sum::Unavailable(m) if m.contains("SFTP-only")));
        let denied = out(Some(1), "", "md5sum: /f: Permission denied").outcome(false);
        assert_eq!(
            denied,
            Md5sum::FileRefused("md5sum: /f: Permission denied".into())
        );
        assert!(matches!(out(None, "", "").outcome(true), Md5sum::Lost(_)));
        assert!(matches!(
            out(None, "", "").outcome(false),
            Md5sum::Unavailable(_)
        ));
    }

    #[test]
    fn remote_paths_join_the_root() {
        let p = |s: &str| StoragePath::parse(s).unwrap();
        assert_eq!(remote_path("", &StoragePath::root()), ".");
        assert_eq!(remote_path("", &p("a/b")), "a/b");
        assert_eq!(remote_path("/data/", &p("a")), "/data/a");
        assert_eq!(remote_path("/data", &StoragePath::root()), "/data");
        assert_eq!(remote_path("/", &p("x")), "/x");
        assert_eq!(remote_path("/", &StoragePath::root()), "/");
    }
}
