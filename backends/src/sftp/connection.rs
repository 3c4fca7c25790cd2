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
    /// The algorithms its key exchange chose.
    pub(super) negotiated: Negotiated,
    /// The server handles requests one at a time, in order (OpenSSH), so
    /// a close may follow writes without waiting for their answers.
    pub(super) in_order: bool,
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
    // Not `tokio::select!`: it returns Pending without polling anything
    // once the task's cooperative budget is spent, and a request goes out
    // only when first polled. The request is polled first, so its first
    // poll always sends it (writes count on that; see `SentOnFirstPoll`).
    let request = std::pin::pin!(request);
    let died = std::pin::pin!(dead.wait());
    match futures::future::select(request, died).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(((), _)) => Err(SftpError::IO(
            "the connection to the remote died or stalled".into(),
        )),
    }
}

impl SftpConnection {
    /// The local address this connection left from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The algorithms the connection's key exchange chose.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
}

/// Opens SFTP connections for the pool.
pub struct SftpConnector {
    pub(super) settings: SftpSettings,
    /// Temporary files of failed uploads to remove through the next
    /// working connection.
    pub(super) removals: PendingRemovals,
    /// One permit per handshake in progress (see [`SshOptions::max_handshakes`]).
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// russh's client callbacks: host key verification, and the record of
/// what the key exchange chose.
pub struct ClientHandler {
    pub(super) policy: Arc<dyn HostKeyPolicy>,
    pub(super) rejection: Arc<Mutex<Option<BackendError>>>,
    pub(super) negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl russh::client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut russh::client::Session,
    ) -> Result<(), Self::Error> {
        *self.negotiated.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Negotiated::from_names(names));
        Ok(())
    }

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

/// The client settings for a remote: measured figures (PERF-NOTES: 8 MiB
/// windows, 64 KiB packets, nodelay) and the algorithms `ssh` offers.
pub(super) fn client_config(ssh: &SshOptions) -> Arc<russh::client::Config> {
    Arc::new(russh::client::Config {
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        preferred: ssh.preferred(),
        ..Default::default()
    })
}

/// Why one connection attempt failed, and whether another may succeed.
struct AttemptFailed {
    error: BackendError,
    /// The server closed the connection before the login completed (how
    /// a stock sshd sheds connections past `MaxStartups`).
    closed_early: bool,
}

impl From<BackendError> for AttemptFailed {
    fn from(error: BackendError) -> Self {
        AttemptFailed {
            error,
            closed_early: false,
        }
    }
}

/// Whether a handshake or login error means the server closed the
/// connection (rather than refusing something we asked).
fn closed_by_server(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::SendError
    )
}

/// The pause before retry `n` (0-based): 100 ms doubling to 1.6 s, with up
/// to a quarter more at random so that retries of a burst spread out.
fn backoff(n: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.pow(n.min(4));
    let jitter = u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % (base.as_millis() as u64 / 4 + 1);
    base + Duration::from_millis(jitter)
}

impl SftpConnector {
    /// A connector for `settings`.
    pub(super) fn new(settings: SftpSettings) -> Self {
        SftpConnector {
            removals: PendingRemovals::new(&settings.name),
            handshakes: Arc::new(tokio::sync::Semaphore::new(
                settings.ssh.max_handshakes.max(1),
            )),
            settings,
        }
    }

    /// Opens a connection within `connect_timeout`, trying again (after a
    /// pause) when the server closes it before the login completes.
    pub(super) async fn open(&self) -> Result<SftpConnection> {
        let s = &self.settings;
        s.host_keys.check_enabled().map_err(policy_failure)?;
        let deadline = tokio::time::Instant::now() + s.connect_timeout;
        let mut retries = 0u32;
        loop {
            let failed = match tokio::time::timeout_at(deadline, self.attempt(deadline)).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(failed)) => failed,
                Err(_) => {
                    return Err(BackendError::new(
                        ErrorKind::Timeout,
                        "connect",
                        "",
                        format!(
                            "remote `{}`: unreachable: no SSH login within {}s{}",
                            s.name,
                            s.connect_timeout.as_secs(),
                            if retries > 0 {
                                format!(" ({retries} attempts closed by the server before login)")
                            } else {
                                String::new()
                            }
                        ),
                    )
                    .with_connect_failure(ConnectFailure::Timeout))
                }
            };
            let pause = backoff(retries);
            if !failed.closed_early || tokio::time::Instant::now() + pause >= deadline {
                return Err(failed.error);
            }
            retries += 1;
            ::metrics::counter!(
                crate::metrics::CONNECT_RETRIES,
                "remote" => s.name.clone(),
                "reason" => "closed_before_login"
            )
            .increment(1);
            tracing::info!(
                remote = %s.name,
                "the server closed the connection before login ({}); trying again in {} ms",
                failed.error.message(),
                pause.as_millis()
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: dial, handshake and log in (holding one of the
    /// remote's handshake slots until logged in), then start SFTP.
    async fn attempt(
        &self,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<SftpConnection, AttemptFailed> {
        let s = &self.settings;
        let permit = self.handshakes.acquire().await.map_err(|_| {
            AttemptFailed::from(self.lost("the remote's handshake limiter is closed".into()))
        })?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (stream, local) = dial(&s.host, s.port, &s.sources, left).await?;
        let (stream, ident) = IdentSniffer::new(stream);
        let rejection = Arc::new(Mutex::new(None));
        let negotiated = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            policy: s.host_keys.clone(),
            rejection: rejection.clone(),
            negotiated: negotiated.clone(),
        };
        let mut ssh = match russh::client::connect_stream(client_config(&s.ssh), stream, handler)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                if let Some(rejected) = rejection.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(policy_failure(rejected).into());
                }
                return Err(AttemptFailed {
                    closed_early: closed_by_server(&e),
                    error: self.lost(format!("SSH handshake failed: {e}")),
                });
            }
        };
        self.authenticate(&mut ssh).await?;
        drop(permit);
        let negotiated = negotiated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let legacy = negotiated.legacy();
        if !legacy.is_empty() {
            tracing::warn!(
                remote = %s.name,
                "connected with legacy SSH algorithms ({}): {negotiated}; ask the server's admin to enable modern ones",
                legacy.join(", ")
            );
        }
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
        let ident = ident.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(SftpConnection {
            in_order: processes_in_order(ident.as_deref()),
            ssh,
            posix_rename: version.extensions.contains_key("posix-rename@openssh.com"),
            statvfs: version.extensions.contains_key("statvfs@openssh.com"),
            sftp: Arc::new(sftp),
            local,
            dead,
            negotiated,
        })
    }

    /// Logs in as OpenSSH's client would with what is configured: the
    /// private key, then the password, then keyboard-interactive answering
    /// the server's prompts with the password (PAM-based servers), each
    /// only while the server still lists it.
    async fn authenticate(
        &self,
        ssh: &mut russh::client::Handle<ClientHandler>,
    ) -> std::result::Result<(), AttemptFailed> {
        let s = &self.settings;
        let transport = |e: russh::Error| AttemptFailed {
            closed_early: closed_by_server(&e),
            error: self.lost(format!("login failed: {e}")),
        };
        let mut tried = Vec::new();
        // What the server still accepts; `None` until it has said.
        let mut remaining: Option<russh::MethodSet> = None;
        let allows = |remaining: &Option<russh::MethodSet>, kind: russh::MethodKind| {
            remaining.as_ref().is_none_or(|m| m.contains(&kind))
        };
        if let Some(key) = &s.private_key {
            let hash = if key.algorithm().is_rsa() {
                match ssh.best_supported_rsa_hash().await {
                    Ok(Some(Some(hash))) => Some(hash),
                    // The server named no rsa-sha2 signature: an old one,
                    // which takes SHA-1 (`ssh-rsa`) only if allowed.
                    Ok(Some(None)) | Ok(None) if s.ssh.sha1_signatures() => None,
                    _ => Some(HashAlg::Sha512),
                }
            } else {
                None
            };
            let result = ssh
                .authenticate_publickey(&s.username, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(transport)?;
            match result {
                russh::client::AuthResult::Success => return Ok(()),
                russh::client::AuthResult::Failure {
                    remaining_methods, ..
                } => remaining = Some(remaining_methods),
            }
            tried.push("private key");
        }
        if let Some(password) = &s.password {
            if allows(&remaining, russh::MethodKind::Password) {
                let result = ssh
                    .authenticate_password(&s.username, password)
                    .await
                    .map_err(transport)?;
                match result {
                    russh::client::AuthResult::Success => return Ok(()),
                    russh::client::AuthResult::Failure {
                        remaining_methods, ..
                    } => remaining = Some(remaining_methods),
                }
                tried.push("password");
            }
            if allows(&remaining, russh::MethodKind::KeyboardInteractive) {
                if self
                    .keyboard_interactive(ssh, password)
                    .await
                    .map_err(transport)?
                {
                    return Ok(());
                }
                tried.push("keyboard-interactive");
            }
        }
        let how = if tried.is_empty() {
            if s.private_key.is_none() && s.password.is_none() {
                "no password or private key configured".to_string()
            } else {
                "the server offers none of the configured methods".to_string()
            }
        } else {
            format!("tried {}", tried.join(", "))
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
        .with_connect_failure(ConnectFailure::AuthFailed)
        .into())
    }

    /// keyboard-interactive: every prompt that hides its answer gets the
    /// password, one that echoes (a user name) gets the user name; at most
    /// a few rounds, as PAM conversations are short.
    async fn keyboard_interactive(
        &self,
        ssh: &mut russh::client::Handle<ClientHandler>,
        password: &str,
    ) -> std::result::Result<bool, russh::Error> {
        use russh::client::KeyboardInteractiveAuthResponse as Reply;
        let s = &self.settings;
        let mut reply = ssh
            .authenticate_keyboard_interactive_start(&s.username, None)
            .await?;
        for _ in 0..5 {
            match reply {
                Reply::Success => return Ok(true),
                Reply::Failure { .. } => return Ok(false),
                Reply::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|p| {
                            if p.echo {
                                s.username.clone()
                            } else {
                                password.to_string()
                            }
                        })
                        .collect();
                    reply = ssh
                        .authenticate_keyboard_interactive_respond(answers)
                        .await?;
                }
            }
        }
        Ok(matches!(reply, Reply::Success))
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
