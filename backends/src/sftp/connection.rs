//! Opening SFTP connections for the pool: dial from a dedicated address,
//! the SSH handshake with the host key policy, login, and the SFTP start.

use super::*;

/// One live SFTP connection.
pub struct SftpConnection {
    pub(super) ssh: Arc<russh::client::Handle<ClientHandler>>,
    pub(super) sftp: Arc<RawSftpSession>,
    pub(super) posix_rename: bool,
    pub(super) statvfs: bool,
    pub(super) local: SocketAddr,
    /// Set once the connection died or stalled.
    pub(super) dead: Arc<DeadSignal>,
}

impl SftpConnection {
    /// `request`, or a connection error as soon as the connection is
    /// found dead or stalled: a request can be left unanswered forever
    /// when its connection dies just as it is sent.
    pub(super) fn guard<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, SftpError>> + Send,
    ) -> impl std::future::Future<Output = std::result::Result<T, SftpError>> + Send {
        guarded(self.dead.clone(), request)
    }
}

/// `request`, or a connection error once `dead` is set (see
/// [`SftpConnection::guard`]).
pub(super) async fn guarded<T>(
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
    pub(super) settings: SftpSettings,
    /// Temporary files of failed uploads to remove through the next
    /// working connection.
    pub(super) removals: PendingRemovals,
}

/// russh's client callbacks: host key verification.
pub struct ClientHandler {
    pub(super) policy: Arc<dyn HostKeyPolicy>,
    pub(super) rejection: Arc<Mutex<Option<BackendError>>>,
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

pub(super) fn client_config() -> Arc<russh::client::Config> {
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
    pub(super) async fn open(&self) -> Result<SftpConnection> {
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

    pub(super) async fn authenticate(
        &self,
        ssh: &mut russh::client::Handle<ClientHandler>,
    ) -> Result<()> {
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

    pub(super) fn lost(&self, message: String) -> BackendError {
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
pub(super) fn policy_failure(e: BackendError) -> BackendError {
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
