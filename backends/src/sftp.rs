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
use crate::{BackendError, ConnectFailure, ErrorKind, Result, StoragePath};

/// Largest read or write sent in one request (OpenSSH's sshd accepts 261120).
const CHUNK: usize = 255 * 1024;
/// Writes of one file in flight at once.
const WRITES_IN_FLIGHT: usize = 32;
/// Connections tried at checkout before giving up on removing the
/// temporary files that broken uploads left.
const CHECKOUT_ATTEMPTS: usize = 3;
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
            .finish()
    }
}

/// One live SFTP connection.
pub struct SftpConnection {
    ssh: Arc<russh::client::Handle<ClientHandler>>,
    sftp: Arc<RawSftpSession>,
    posix_rename: bool,
    statvfs: bool,
    local: SocketAddr,
    /// Set once the connection died or stalled.
    dead: Arc<DeadSignal>,
}

impl SftpConnection {
    /// `request`, or a connection error as soon as the connection is
    /// found dead or stalled: a request can be left unanswered forever
    /// when its connection dies just as it is sent.
    fn guard<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, SftpError>> + Send,
    ) -> impl std::future::Future<Output = std::result::Result<T, SftpError>> + Send {
        guarded(self.dead.clone(), request)
    }
}

/// `request`, or a connection error once `dead` is set (see
/// [`SftpConnection::guard`]).
async fn guarded<T>(
    dead: Arc<DeadSignal>,
    request: impl std::future::Future<Output = std::result::Result<T, SftpError>> + Send,
) -> std::result::Result<T, SftpError> {
    tokio::select! {
        result = request => result,
        () = dead.wait() => Err(SftpError::IO(
            "the connection to the remote died or stalled".into(),
        )),
    }
}

impl SftpConnection {
    /// The local address this connection left from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Opens SFTP connections for the pool.
pub struct SftpConnector {
    settings: SftpSettings,
    /// Temporary files of failed uploads to remove through the next
    /// working connection.
    removals: PendingRemovals,
}

/// russh's client callbacks: host key verification.
pub struct ClientHandler {
    policy: Arc<dyn HostKeyPolicy>,
    rejection: Arc<Mutex<Option<BackendError>>>,
}

impl russh::client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            let err = BackendError::new(
                ErrorKind::PermissionDenied,
                "connect",
                "",
                "the server presented a certificate; only plain host keys can be pinned",
            );
            *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
            return Ok(false);
        };
        match self.policy.verify(key) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

fn client_config() -> Arc<russh::client::Config> {
    let preferred = russh::Preferred {
        cipher: std::borrow::Cow::Borrowed(&[
            russh::cipher::AES_128_GCM,
            russh::cipher::AES_256_GCM,
            russh::cipher::CHACHA20_POLY1305,
            russh::cipher::AES_256_CTR,
            russh::cipher::AES_128_CTR,
        ]),
        ..russh::Preferred::default()
    };
    Arc::new(russh::client::Config {
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        preferred,
        ..Default::default()
    })
}

impl SftpConnector {
    async fn open(&self) -> Result<SftpConnection> {
        let s = &self.settings;
        s.host_keys.check_enabled().map_err(policy_failure)?;
        let (stream, local) = dial(&s.host, s.port, &s.sources, s.connect_timeout).await?;
        let rejection = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            policy: s.host_keys.clone(),
            rejection: rejection.clone(),
        };
        let handshake = async {
            let mut ssh =
                match russh::client::connect_stream(client_config(), stream, handler).await {
                    Ok(h) => h,
                    Err(e) => {
                        if let Some(rejected) =
                            rejection.lock().unwrap_or_else(|p| p.into_inner()).take()
                        {
                            return Err(policy_failure(rejected));
                        }
                        return Err(self.lost(format!("SSH handshake failed: {e}")));
                    }
                };
            self.authenticate(&mut ssh).await?;
            let channel = ssh
                .channel_open_session()
                .await
                .map_err(|e| self.lost(format!("cannot open a session: {e}")))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| self.lost(format!("the server refused the sftp subsystem: {e}")))?;
            let config = russh_sftp::client::Config {
                max_packet_len: 256 * 1024 + 1024,
                // Stalls are caught by `watched` (no progress for
                // `io_timeout`); a request's own age says nothing when many
                // are in flight on a slow link, so this is a backstop only.
                request_timeout_secs: request_backstop(s.io_timeout).as_secs(),
                ..Default::default()
            };
            let ssh = Arc::new(ssh);
            // When the SSH session dies, the SFTP stream must end at once:
            // russh-sftp then fails every request in flight, where it would
            // otherwise wait for a window update that never comes.
            let stream = watched(channel.into_stream(), &ssh, s.io_timeout);
            let dead = stream.dead.clone();
            let sftp = RawSftpSession::new_with_config(stream, config);
            let version = sftp
                .init()
                .await
                .map_err(|e| self.lost(format!("SFTP start failed: {e}")))?;
            Ok(SftpConnection {
                ssh,
                posix_rename: version.extensions.contains_key("posix-rename@openssh.com"),
                statvfs: version.extensions.contains_key("statvfs@openssh.com"),
                sftp: Arc::new(sftp),
                local,
                dead,
            })
        };
        match tokio::time::timeout(s.connect_timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::new(
                ErrorKind::Timeout,
                "connect",
                "",
                format!(
                    "remote `{}`: unreachable: no SSH login within {}s",
                    s.name,
                    s.connect_timeout.as_secs()
                ),
            )
            .with_connect_failure(ConnectFailure::Timeout)),
        }
    }

    async fn authenticate(&self, ssh: &mut russh::client::Handle<ClientHandler>) -> Result<()> {
        let s = &self.settings;
        let mut tried = Vec::new();
        if let Some(key) = &s.private_key {
            let hash = if key.algorithm().is_rsa() {
                ssh.best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten()
                    .or(Some(HashAlg::Sha512))
            } else {
                None
            };
            let result = ssh
                .authenticate_publickey(&s.username, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(|e| self.lost(format!("login failed: {e}")))?;
            if result.success() {
                return Ok(());
            }
            tried.push("private key");
        }
        if let Some(password) = &s.password {
            let result = ssh
                .authenticate_password(&s.username, password)
                .await
                .map_err(|e| self.lost(format!("login failed: {e}")))?;
            if result.success() {
                return Ok(());
            }
            tried.push("password");
        }
        let how = if tried.is_empty() {
            "no password or private key configured".to_string()
        } else {
            format!("tried {}", tried.join(" and "))
        };
        Err(BackendError::new(
            ErrorKind::PermissionDenied,
            "connect",
            "",
            format!(
                "remote `{}`: authentication failed for user `{}` ({how})",
                s.name, s.username
            ),
        )
        .with_connect_failure(ConnectFailure::AuthFailed))
    }

    fn lost(&self, message: String) -> BackendError {
        BackendError::new(
            ErrorKind::ConnectionLost,
            "connect",
            "",
            format!("remote `{}`: {message}", self.settings.name),
        )
    }
}

/// A refusal by the host key policy, with its connect-failure reason: a
/// permission refusal is a (remembered) host key mismatch.
fn policy_failure(e: BackendError) -> BackendError {
    match (e.connect_failure(), e.kind()) {
        (Some(_), _) => e,
        (None, ErrorKind::PermissionDenied) => {
            e.with_connect_failure(ConnectFailure::HostKeyMismatch)
        }
        (None, _) => e.with_connect_failure(ConnectFailure::Other),
    }
}

#[async_trait]
impl Connector for SftpConnector {
    type Connection = SftpConnection;

    async fn connect(&self) -> Result<SftpConnection> {
        let conn = self.open().await;
        if let Err(e) = &conn {
            tracing::warn!(remote = %self.settings.name, "connect failed: {e}");
        }
        conn
    }

    fn is_usable(&self, c: &SftpConnection) -> bool {
        !c.ssh.is_closed()
    }

    async fn close(&self, c: SftpConnection) {
        let SftpConnection { ssh, sftp, .. } = c;
        drop(sftp);
        let _ = ssh
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        // Wait for the session (and its socket) to end before the slot is reused.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !ssh.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

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
        SftpBackend {
            pool: Pool::new(
                name,
                SftpConnector {
                    removals: PendingRemovals::new(&settings.name),
                    settings,
                },
                pool_settings,
            ),
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

    /// A connection from the pool, through which the temporary files that
    /// broken connections left behind are removed first; one that breaks
    /// doing so is dropped and another one tried.
    async fn checkout(&self) -> Result<Pooled<SftpConnector>> {
        for _ in 0..CHECKOUT_ATTEMPTS {
            let mut conn = self.pool.get().await?;
            if self.removals().run(&*conn).await.is_ok() {
                return Ok(conn);
            }
            conn.mark_broken();
        }
        self.pool.get().await
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
        let mut conn = self.checkout().await?;
        let result = op(&conn).await;
        settle(&mut conn, &result);
        result
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

/// A stream that ends (reads give EOF, writes fail) as soon as its SSH
/// session is closed, even while blocked waiting for the peer; and that
/// closes the session when the remote stalls: requests are outstanding
/// and nothing has come back for the I/O timeout. Progress, not the age of
/// a request, is what counts, so a slow remote serving a deep pipeline of
/// reads is never mistaken for a dead one.
struct Watched<S> {
    inner: S,
    dead: Arc<DeadSignal>,
    sent: FrameCounter,
    received: FrameCounter,
}

#[derive(Default)]
struct DeadSignal {
    dead: std::sync::atomic::AtomicBool,
    reader: futures::task::AtomicWaker,
    writer: futures::task::AtomicWaker,
    /// SFTP packets written (requests) and read (answers): SFTP answers
    /// every request once, so the difference is what is outstanding.
    requests: AtomicU64,
    answers: AtomicU64,
    /// Wakes [`DeadSignal::wait`].
    notify: tokio::sync::Notify,
    /// When bytes last came from the remote, or a request went out while
    /// none was outstanding (milliseconds since `epoch`).
    progress_ms: AtomicU64,
    epoch: std::sync::OnceLock<tokio::time::Instant>,
}

impl DeadSignal {
    fn is_dead(&self) -> bool {
        self.dead.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(tokio::time::Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn outstanding(&self) -> u64 {
        self.requests
            .load(Ordering::SeqCst)
            .saturating_sub(self.answers.load(Ordering::SeqCst))
    }

    /// Whether requests have waited `timeout` without any progress.
    fn stalled(&self, timeout: Duration) -> bool {
        let idle = self
            .now_ms()
            .saturating_sub(self.progress_ms.load(Ordering::SeqCst));
        self.outstanding() > 0 && idle >= u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn kill(&self) {
        self.dead.store(true, std::sync::atomic::Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
        self.notify.notify_waiters();
    }

    /// Resolves once the connection is dead.
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_dead() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts the SFTP packets (`u32` length, then that many bytes) in one
/// direction of the byte stream.
#[derive(Default)]
struct FrameCounter {
    header: [u8; 4],
    header_len: usize,
    remaining: u64,
}

impl FrameCounter {
    /// The number of packets that `bytes` completes.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut complete = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    complete += 1;
                }
                continue;
            }
            let n = (4 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 4 {
                self.header_len = 0;
                self.remaining = u64::from(u32::from_be_bytes(self.header));
                if self.remaining == 0 {
                    complete += 1;
                }
            }
        }
        complete
    }
}

fn watched<S>(
    inner: S,
    ssh: &Arc<russh::client::Handle<ClientHandler>>,
    io_timeout: Duration,
) -> Watched<S> {
    let dead = Arc::new(DeadSignal::default());
    dead.progress_ms.store(dead.now_ms(), Ordering::SeqCst);
    let (signal, session) = (dead.clone(), Arc::downgrade(ssh));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(handle) = session.upgrade() else {
                signal.kill();
                return;
            };
            if handle.is_closed() {
                signal.kill();
                return;
            }
            if signal.stalled(io_timeout) {
                tracing::debug!(
                    outstanding = signal.outstanding(),
                    "SFTP remote stalled for {io_timeout:?}: dropping the connection"
                );
                signal.kill();
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "stalled", "en")
                    .await;
                return;
            }
        }
    });
    Watched {
        inner,
        dead,
        sent: FrameCounter::default(),
        received: FrameCounter::default(),
    }
}

fn closed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the SSH connection to the remote closed",
    )
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.dead.reader.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            let answers = this.received.feed(&buf.filled()[before..]);
            this.dead.answers.fetch_add(answers, Ordering::SeqCst);
            this.dead
                .progress_ms
                .store(this.dead.now_ms(), Ordering::SeqCst);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.dead.writer.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Err(closed_error()));
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            let this = &mut *self;
            let requests = this.sent.feed(&buf[..*n]);
            if requests > 0 {
                // Waiting starts now if nothing was outstanding before.
                if this.dead.outstanding() == 0 {
                    this.dead
                        .progress_ms
                        .store(this.dead.now_ms(), Ordering::SeqCst);
                }
                this.dead.requests.fetch_add(requests, Ordering::SeqCst);
            }
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.dead.writer.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Err(closed_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// Drops a connection that broke during an operation instead of reusing it.
fn settle<T>(conn: &mut Pooled<SftpConnector>, result: &Result<T>) {
    if let Err(e) = result {
        if e.is_temporary() {
            conn.mark_broken();
        }
    }
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
        let handle = match conn.sftp.opendir(remote.clone()).await {
            Ok(h) => h.handle,
            Err(e) => {
                let mut err = self.err("list", path, e);
                if err.kind() == ErrorKind::NotFound {
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
        let pages = futures::stream::unfold(state, move |state| {
            let backend = backend.clone();
            let path = path.clone();
            async move {
                let (mut conn, handle) = state?;
                match conn.sftp.readdir(handle.clone()).await {
                    Ok(name) => {
                        let entries: Vec<DirEntry> = name
                            .files
                            .into_iter()
                            .filter(|f| {
                                f.filename != "."
                                    && f.filename != ".."
                                    && !f.filename.starts_with(UPLOAD_PREFIX)
                            })
                            .map(|f| DirEntry {
                                metadata: metadata_of(&f.attrs),
                                name: f.filename,
                            })
                            .collect();
                        Some((Ok(entries), Some((conn, handle))))
                    }
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
        Ok(pages.boxed())
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let remote = self.remote(path);
        let mut conn = self.checkout().await?;
        match conn
            .sftp
            .open(remote.clone(), OpenFlags::READ, FileAttributes::default())
            .await
        {
            Ok(h) => Ok(Box::new(SftpReader {
                backend: self.clone(),
                conn: Some(conn),
                handle: h.handle,
                path: path.clone(),
                eof_at: AtomicU64::new(NO_EOF),
                broken: AtomicBool::new(false),
            })),
            Err(e) => {
                let mut err = self.err("open", path, e);
                if err.kind() == ErrorKind::Other {
                    if let Some(meta) = Self::probe(&conn, &remote).await {
                        if meta.is_dir() {
                            err = BackendError::new(
                                ErrorKind::IsADirectory,
                                "open",
                                path.as_str(),
                                "is a folder",
                            );
                        }
                    }
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
                let temp = hidden_upload_path(path)?;
                (self.remote(&temp), 0, Some((final_remote, exclusive)))
            }
            WriteMode::Resume { offset } => (final_remote, offset, None),
        };
        // A temporary file of an earlier attempt waiting to be removed is
        // written again now: it must not be removed afterwards.
        self.removals().forget(&target).await;
        let flags = if publish.is_some() {
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::EXCLUDE
        } else {
            OpenFlags::WRITE
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
                Err(e) => {
                    let mut err = self.err("mkdir", path, e);
                    if !err.is_temporary() {
                        if Self::probe(c, &remote).await.is_some() {
                            err = BackendError::new(
                                ErrorKind::AlreadyExists,
                                "mkdir",
                                path.as_str(),
                                "already exists",
                            );
                        } else if let Some(parent) = path.parent() {
                            if Self::probe(c, &self.remote(&parent)).await.is_none() {
                                err = BackendError::new(
                                    ErrorKind::NotFound,
                                    "mkdir",
                                    path.as_str(),
                                    "the containing folder does not exist",
                                );
                            }
                        }
                    }
                    Err(err)
                }
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
                Err(e) => {
                    let mut err = self.err("remove", path, e);
                    if err.kind() == ErrorKind::Other || err.kind() == ErrorKind::PermissionDenied {
                        if let Some(m) = Self::probe(c, &remote).await {
                            if m.is_dir() {
                                err = BackendError::new(
                                    ErrorKind::IsADirectory,
                                    "remove",
                                    path.as_str(),
                                    "is a folder",
                                );
                            }
                        }
                    }
                    Err(err)
                }
            },
        )
        .await
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        let remote = self.remote(path);
        self.with_conn(
            async |c: &SftpConnection| match c.sftp.rmdir(remote.clone()).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let mut err = self.err("rmdir", path, e);
                    if err.kind() == ErrorKind::Other {
                        match Self::probe(c, &remote).await {
                            Some(m) if m.is_dir() => {
                                err = BackendError::new(
                                    ErrorKind::DirectoryNotEmpty,
                                    "rmdir",
                                    path.as_str(),
                                    "folder is not empty",
                                )
                            }
                            Some(_) => {
                                err = BackendError::new(
                                    ErrorKind::NotADirectory,
                                    "rmdir",
                                    path.as_str(),
                                    "not a folder",
                                )
                            }
                            None => {}
                        }
                    }
                    Err(err)
                }
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
#[derive(Debug, Clone, Copy)]
struct Md5sumLimits {
    /// For the channel to open and the server to accept the command.
    accept: Duration,
    /// For the command to finish once accepted.
    finish: Duration,
}

/// What running `md5sum` on the server came to.
#[derive(Debug, PartialEq, Eq)]
enum Md5sum {
    /// The file's MD5 (lowercase hex).
    Sum(String),
    /// md5sum ran but could not hash this file (its own error message).
    FileRefused(String),
    /// Commands cannot be run here, or not md5sum; why.
    Unavailable(String),
    /// The SSH connection ended; why.
    Lost(String),
}

/// Runs `md5sum -- '<remote>'` on a new session channel of `ssh`.
///
/// Its stdin is closed at once: md5sum does not read it, and a session
/// forced into the SFTP server (`ForceCommand internal-sftp`) then ends at
/// once without output instead of waiting for SFTP requests.
async fn run_md5sum(
    ssh: &russh::client::Handle<ClientHandler>,
    remote: &str,
    limits: Md5sumLimits,
) -> Md5sum {
    let lost_or = |what: String| {
        if ssh.is_closed() {
            Md5sum::Lost(what)
        } else {
            Md5sum::Unavailable(what)
        }
    };
    let command = format!("md5sum -- {}", shell_quote(remote));
    let mut out = ExecOutput::default();
    let accepted = tokio::time::timeout(limits.accept, async {
        let mut channel = match ssh.channel_open_session().await {
            Ok(c) => c,
            Err(e) => return Err(lost_or(format!("cannot open a session channel: {e}"))),
        };
        if let Err(e) = channel.exec(true, command.as_str()).await {
            return Err(lost_or(format!("cannot send the command: {e}")));
        }
        loop {
            match channel.wait().await {
                Some(russh::ChannelMsg::Success) => return Ok(channel),
                Some(russh::ChannelMsg::Failure) => {
                    let _ = channel.close().await;
                    return Err(Md5sum::Unavailable(
                        "the server refuses to run commands".into(),
                    ));
                }
                Some(msg) => out.take(msg),
                None => {
                    return Err(lost_or(
                        "the server closed the channel instead of running the command".into(),
                    ))
                }
            }
        }
    })
    .await;
    let mut channel = match accepted {
        Ok(Ok(channel)) => channel,
        Ok(Err(outcome)) => return outcome,
        Err(_) => {
            return Md5sum::Unavailable(format!(
                "the server did not accept the command within {}s",
                limits.accept.as_secs()
            ))
        }
    };
    let _ = channel.eof().await;
    let finished = tokio::time::timeout(limits.finish, async {
        while let Some(msg) = channel.wait().await {
            if matches!(msg, russh::ChannelMsg::Close) {
                break;
            }
            out.take(msg);
        }
    })
    .await;
    let _ = channel.close().await;
    if finished.is_err() {
        return Md5sum::Unavailable(format!(
            "md5sum did not finish within {}s",
            limits.finish.as_secs()
        ));
    }
    out.outcome(ssh.is_closed())
}

/// What a command sent back on its channel.
#[derive(Debug, Default)]
struct ExecOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
    signal: Option<String>,
}

impl ExecOutput {
    /// Keeps what `msg` carries (within the size limits).
    fn take(&mut self, msg: russh::ChannelMsg) {
        fn keep(buf: &mut Vec<u8>, data: &[u8], max: usize) {
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
        }
        match msg {
            russh::ChannelMsg::Data { data } => keep(&mut self.stdout, &data, MD5SUM_MAX_STDOUT),
            russh::ChannelMsg::ExtendedData { data, ext: 1 } => {
                keep(&mut self.stderr, &data, MD5SUM_MAX_STDERR)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => self.status = Some(exit_status),
            russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                self.signal = Some(format!("{signal_name:?}"))
            }
            _ => {}
        }
    }

    /// The outcome of a command that ended (the channel closed).
    fn outcome(&self, connection_closed: bool) -> Md5sum {
        let stderr = String::from_utf8_lossy(&self.stderr).trim().to_string();
        let said = |prefix: &str| {
            if stderr.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}: {stderr}")
            }
        };
        match (self.status, &self.signal) {
            (Some(0), _) => match parse_md5sum(&self.stdout) {
                Some(sum) => Md5sum::Sum(sum),
                None if self.stdout.is_empty() => {
                    Md5sum::Unavailable(said("the command printed nothing (an SFTP-only account?)"))
                }
                None => Md5sum::Unavailable(format!(
                    "unexpected md5sum output `{}`",
                    String::from_utf8_lossy(&self.stdout)
                        .trim()
                        .chars()
                        .take(100)
                        .collect::<String>()
                )),
            },
            (Some(status @ (126 | 127)), _) => {
                Md5sum::Unavailable(said(&format!("md5sum cannot be run (exit {status})")))
            }
            // md5sum's own complaint about this file (unreadable, vanished).
            (Some(_), _) if stderr.starts_with("md5sum:") => Md5sum::FileRefused(stderr),
            // Something else answered: a restricted shell, `nologin`, or
            // an SFTP server forced on every session (it fails on the
            // closed stdin without a word).
            (Some(status), _) if stderr.is_empty() => Md5sum::Unavailable(format!(
                "the command ended with exit {status} and no output (an SFTP-only account?)"
            )),
            (Some(status), _) => Md5sum::Unavailable(said(&format!("exit {status}"))),
            (None, Some(signal)) => Md5sum::FileRefused(format!("md5sum ended by {signal}")),
            (None, None) if connection_closed => {
                Md5sum::Lost("the connection closed while md5sum ran".into())
            }
            (None, None) => Md5sum::Unavailable(said("the command ended without an exit status")),
        }
    }
}

/// The MD5 of `md5sum`'s output line (`<hex>  name`, or `\<hex>  name`
/// when the name has a backslash or line break), taking the last such
/// line in case the login shell printed something first.
fn parse_md5sum(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|line| {
            let line = line.strip_prefix('\\').unwrap_or(line);
            let (hex, rest) = (line.get(..32)?, line.get(32..)?);
            if !rest.starts_with(' ') {
                return None;
            }
            crate::hash::normalize(HashKind::Md5, hex)
        })
}

/// `s` as one word for the login shell: in single quotes, with `'` and
/// `\` written outside them (`'\''`, `'\\'`), which sh, bash, zsh and
/// fish all read back as the same bytes.
fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '\\' => out.push_str("'\\\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

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

/// A remote file open for reading; holds its connection until dropped.
struct SftpReader {
    backend: SftpBackend,
    conn: Option<Pooled<SftpConnector>>,
    handle: String,
    path: StoragePath,
    /// Where the last short read showed the end of the file ([`NO_EOF`]
    /// if none): the next read there is answered without a round trip.
    eof_at: AtomicU64,
    /// A request failed with a connection error (lost, or no answer in
    /// time): the connection is not asked anything more and never reused.
    broken: AtomicBool,
}

/// `eof_at` when no end of file was seen.
const NO_EOF: u64 = u64::MAX;

/// Reads up to this long that come back short mark the end of a regular
/// file: SFTP (draft 02, SSH_FXP_READ) guarantees a disk file reads in
/// full up to its end, and every server must accept packets this large,
/// so a short answer cannot be a server's own length cap.
const SHORT_READ_IS_EOF: usize = 32 * 1024;

impl SftpReader {
    /// Remembers a connection error so that the connection is dropped,
    /// not asked to close the handle and reused.
    fn settle(&self, err: BackendError) -> BackendError {
        if err.is_temporary() {
            self.broken.store(true, Ordering::Relaxed);
        }
        err
    }

    fn conn(&self) -> Result<&Pooled<SftpConnector>> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(BackendError::new(
                ErrorKind::ConnectionLost,
                "read",
                self.path.as_str(),
                "the connection to the remote failed earlier",
            ));
        }
        self.conn.as_ref().ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "read",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }
}

#[async_trait]
impl FileReader for SftpReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        // A client confirms the end of a small file with one more read
        // right where the last one stopped short (OpenSSH's `get` does);
        // answer it from what that read showed, once.
        if offset == self.eof_at.load(Ordering::Relaxed)
            && self
                .eof_at
                .compare_exchange(offset, NO_EOF, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(Bytes::new());
        }
        let conn = self.conn()?;
        let mut out: Vec<u8> = Vec::new();
        // One request per chunk, all in flight together, taken in order.
        let mut requests: futures::stream::FuturesOrdered<_> = (0..len.div_ceil(CHUNK))
            .map(|i| {
                let n = CHUNK.min(len - i * CHUNK) as u32;
                conn.guard(
                    conn.sftp
                        .read(self.handle.clone(), offset + (i * CHUNK) as u64, n),
                )
            })
            .collect();
        while let Some(result) = requests.next().await {
            match result {
                Ok(data) => {
                    let short = data.data.len() < CHUNK.min(len - out.len());
                    if out.is_empty() {
                        out = data.data; // the common case: one chunk, no copy
                    } else {
                        out.extend_from_slice(&data.data);
                    }
                    if short {
                        break;
                    }
                }
                Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => break,
                Err(e) => return Err(self.settle(self.backend.err("read", &self.path, e))),
            }
        }
        if len <= SHORT_READ_IS_EOF && out.len() < len && !out.is_empty() {
            self.eof_at
                .store(offset + out.len() as u64, Ordering::Relaxed);
        }
        Ok(Bytes::from(out))
    }

    async fn metadata(&self) -> Result<Metadata> {
        let conn = self.conn()?;
        conn.sftp
            .fstat(self.handle.clone())
            .await
            .map(|a| metadata_of(&a.attrs))
            .map_err(|e| self.settle(self.backend.err("stat", &self.path, e)))
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) {
            // Dropped broken: the pool closes it and frees its slot.
            if let Some(mut conn) = self.conn.take() {
                conn.mark_broken();
            }
            return;
        }
        // Close the remote handle before the connection goes back to the pool.
        if let Some(conn) = self.conn.take() {
            let handle = std::mem::take(&mut self.handle);
            spawn_cleanup(async move {
                let _ = conn.sftp.close(handle).await;
                drop(conn);
            });
        }
    }
}

fn spawn_cleanup(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(task);
    }
}

type WriteFuture = BoxFuture<'static, std::result::Result<(), SftpError>>;

/// A remote file being written; holds its connection until closed.
struct SftpWriter {
    backend: SftpBackend,
    conn: Option<Pooled<SftpConnector>>,
    handle: String,
    path: StoragePath,
    /// The file written to (a hidden temporary name for `Replace`).
    target: String,
    /// For `Replace`: the final name and whether it must not exist.
    publish: Option<(String, bool)>,
    position: u64,
    in_flight: FuturesUnordered<WriteFuture>,
}

impl SftpWriter {
    fn sftp(&self) -> Result<Arc<RawSftpSession>> {
        self.conn.as_ref().map(|c| c.sftp.clone()).ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "write",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }

    fn dead(&self) -> Result<Arc<DeadSignal>> {
        self.conn.as_ref().map(|c| c.dead.clone()).ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "write",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }

    fn fail(&mut self, e: SftpError) -> BackendError {
        let err = self.backend.err("write", &self.path, e);
        if err.is_temporary() {
            if let Some(c) = self.conn.as_mut() {
                c.mark_broken();
            }
        }
        err
    }

    async fn drain(&mut self) -> Result<()> {
        while let Some(done) = self.in_flight.next().await {
            if let Err(e) = done {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for SftpWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        let sftp = self.sftp()?;
        let dead = self.dead()?;
        while !data.is_empty() {
            while self.in_flight.len() >= WRITES_IN_FLIGHT {
                if let Some(Err(e)) = self.in_flight.next().await {
                    return Err(self.fail(e));
                }
            }
            let chunk = data.split_to(CHUNK.min(data.len()));
            let (sftp, handle, offset, len) = (
                sftp.clone(),
                self.handle.clone(),
                self.position,
                chunk.len(),
            );
            // Zero-copy when the gateway handed over the only reference.
            let bytes = Vec::from(chunk);
            let write = guarded(dead.clone(), async move {
                sftp.write(handle, offset, bytes).await.map(|_| ())
            });
            self.in_flight.push(Box::pin(write));
            self.position += len as u64;
            // A request goes out when its future is first polled: poll now,
            // so the remote works on this chunk while the client sends the
            // next one (or its close), instead of at the next drain.
            if let Some(Some(Err(e))) = self.in_flight.next().now_or_never() {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let sftp = self.sftp()?;
        let handle = self.handle.clone();
        // The close is sent right behind the writes still in flight (the
        // server handles one session's requests in order), and their
        // answers are awaited together: one round trip instead of two.
        // Nothing is published unless every write and the close succeeded.
        let close = guarded(self.dead()?, sftp.close(handle));
        let (drained, closed) = futures::join!(self.drain(), close);
        if let Err(e) = drained {
            self.discard().await;
            return Err(e);
        }
        if let Err(e) = closed {
            let err = self.fail(e);
            self.discard().await;
            return Err(err);
        }
        if let Some((final_remote, exclusive)) = self.publish.take() {
            let conn = self.conn.as_ref().ok_or_else(|| {
                BackendError::new(
                    ErrorKind::ConnectionLost,
                    "close",
                    self.path.as_str(),
                    "the file is closed",
                )
            })?;
            self.backend.removals().forget(&final_remote).await;
            let result = if exclusive {
                conn.sftp
                    .rename(self.target.clone(), final_remote)
                    .await
                    .map(|_| ())
            } else {
                rename_replacing(conn, &self.target, &final_remote).await
            };
            if let Err(e) = result {
                let err = self.fail(e);
                if let Some(conn) = self.conn.as_mut() {
                    remove_temporary(&self.backend, conn, &self.target).await;
                }
                return Err(err);
            }
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}

impl SftpWriter {
    /// Closes the handle and, for a `Replace`, removes the temporary file
    /// (or remembers it, if the connection is broken).
    async fn discard(&mut self) {
        while self.in_flight.next().await.is_some() {}
        let temporary = self.publish.take().map(|_| self.target.as_str());
        if let Some(conn) = self.conn.as_mut() {
            clean_up(&self.backend, conn, &self.handle, temporary).await;
        }
    }
}

/// Closes the handle of a discarded upload and removes its temporary file
/// `temporary`, if any. A broken connection is not asked to: it would
/// only wait for the timeouts again; the temporary file (never under the
/// final name) is then removed through the next working connection.
async fn clean_up(
    backend: &SftpBackend,
    conn: &mut Pooled<SftpConnector>,
    handle: &str,
    temporary: Option<&str>,
) {
    if !conn.is_broken() && !handle.is_empty() {
        if let Err(e) = conn.guard(conn.sftp.close(handle)).await {
            if connection_broke(&e) {
                conn.mark_broken();
            }
        }
    }
    if let Some(temporary) = temporary {
        remove_temporary(backend, conn, temporary).await;
    }
}

/// Removes the temporary file `temporary` of a failed upload through
/// `conn`, or remembers it for the next working connection when `conn` is
/// (or turns out) broken.
async fn remove_temporary(
    backend: &SftpBackend,
    conn: &mut Pooled<SftpConnector>,
    temporary: &str,
) {
    let why = if conn.is_broken() {
        "the connection to the remote broke".to_string()
    } else {
        match (&**conn).remove(temporary).await {
            Removal::Broken(e) => {
                conn.mark_broken();
                e.to_string()
            }
            // Removed, never created, or not ours to remove.
            _ => return,
        }
    };
    backend.removals().remember(temporary, &why);
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        // Dropped without close (client vanished): discard in the background.
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let backend = self.backend.clone();
        let in_flight = std::mem::take(&mut self.in_flight);
        let handle = std::mem::take(&mut self.handle);
        let temporary = self.publish.take().map(|_| self.target.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    in_flight.for_each(|_| async {}).await;
                    clean_up(&backend, &mut conn, &handle, temporary.as_deref()).await;
                });
            }
            Err(_) => {
                if let Some(temporary) = temporary {
                    backend
                        .removals()
                        .remember(&temporary, "the upload was dropped outside a runtime");
                }
                conn.mark_broken();
            }
        }
    }
}

#[cfg(test)]
mod frame_tests {
    use super::FrameCounter;

    #[test]
    fn counts_packets_split_anywhere() {
        let mut stream = Vec::new();
        for len in [5u32, 0, 70000, 1] {
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for piece in [1, 3, 4, 5, 1000, stream.len()] {
            let mut c = FrameCounter::default();
            let total: u64 = stream.chunks(piece).map(|p| c.feed(p)).sum();
            assert_eq!(total, 4, "pieces of {piece}");
        }
        let mut c = FrameCounter::default();
        assert_eq!(c.feed(&stream[..stream.len() - 1]), 3);
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
        let key =
            PrivateKey::from_openssh(include_str!("../../certs/tests/data/test_ed25519_openssh"))
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
