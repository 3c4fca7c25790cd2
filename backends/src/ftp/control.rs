//! One FTP control connection: logging in (with explicit or implicit TLS),
//! sending commands and reading replies under a timeout, and opening data
//! connections (EPSV, falling back to PASV) from the control connection's
//! own source address, with TLS resumed from the control session.
//!
//! Any I/O failure, timeout or `421` marks the connection broken, so the
//! pool closes it instead of handing it out again.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::future::Either;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::error::FtpError;
use super::features::Features;
use super::passive::{parse_epsv, parse_pasv};
use super::probe::TlsSummary;
use super::reply::{read_reply, ReadError, Reply};
use super::stream::{Health, MaybeTls};
use super::tls::{summarize, TlsSession, TlsSetup};
use super::{FtpSettings, FtpTls};
use crate::dial::dial;
use crate::{BackendError, ErrorKind, StoragePath};

/// How long QUIT may take when a connection is closed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// A logged-in control connection.
#[derive(Debug)]
pub struct Control {
    stream: BufReader<MaybeTls>,
    io_timeout: Duration,
    connect_timeout: Duration,
    local: SocketAddr,
    peer: SocketAddr,
    /// Set when data connections are protected (PROT P).
    data_tls: Option<TlsSession>,
    features: Features,
    welcome: String,
    tls_summary: Option<TlsSummary>,
    /// The absolute remote folder that the storage root maps to.
    base: String,
    /// Whether EPSV is still worth trying (cleared on its first refusal).
    epsv: bool,
    broken: bool,
    /// A transfer's final reply is still to be read.
    transfer_open: bool,
    /// The command of the transfer in progress (for the log).
    transfer_command: Option<String>,
    /// The algorithm HASH uses on this connection (FEAT's default until
    /// `OPTS HASH` selects another).
    hash_selected: Option<String>,
    last_used: Instant,
    /// What this connection was opened with (its remote's name for logs).
    settings: FtpSettings,
}

impl Control {
    /// Connects, sets up TLS as configured, logs in and learns the server's
    /// features and login folder, all within the connect timeout.
    pub async fn open(settings: &FtpSettings, tls: Option<&TlsSetup>) -> Result<Self, FtpError> {
        let limit = settings.connect_timeout;
        match tokio::time::timeout(limit, Self::open_inner(settings, tls)).await {
            Ok(result) => result,
            Err(_) => Err(FtpError::Timeout("connect and log in", limit.as_secs())),
        }
    }

    async fn open_inner(settings: &FtpSettings, tls: Option<&TlsSetup>) -> Result<Self, FtpError> {
        let s = settings;
        let (tcp, local) = dial(&s.host, s.port, &s.sources, s.connect_timeout)
            .await
            .map_err(FtpError::Dial)?;
        let peer = tcp.peer_addr().map_err(FtpError::Io)?;
        let session = tls.map(TlsSetup::session);
        let stream = match (s.tls, &session) {
            (FtpTls::RequireImplicit, Some(session)) => MaybeTls::Tls(Box::new(
                session
                    .handshake(tcp, s.connect_timeout, "TLS handshake")
                    .await?,
            )),
            (FtpTls::RequireImplicit, None) => {
                return Err(FtpError::Tls("TLS is required but not set up".into()))
            }
            _ => MaybeTls::Plain(tcp),
        };
        let mut control = Control {
            stream: BufReader::new(stream),
            io_timeout: s.io_timeout,
            connect_timeout: s.connect_timeout,
            local,
            peer,
            data_tls: None,
            features: Features::default(),
            welcome: String::new(),
            tls_summary: None,
            base: String::new(),
            epsv: true,
            broken: false,
            transfer_open: false,
            transfer_command: None,
            hash_selected: None,
            last_used: Instant::now(),
            settings: s.clone(),
        };
        control.read_welcome().await?;
        let wants_explicit = matches!(s.tls, FtpTls::Require | FtpTls::IfAvailable);
        if let (true, Some(session)) = (wants_explicit, &session) {
            let reply = control.command("AUTH TLS").await?;
            if reply.code == 234 {
                control = control.start_tls(session).await?;
            } else if s.tls == FtpTls::Require {
                return Err(FtpError::Tls(format!(
                    "{} does not offer TLS: AUTH TLS answered {reply}",
                    s.host
                )));
            }
        }
        if let Some(conn) = control.stream.get_ref().tls() {
            control.tls_summary = Some(summarize(conn));
            if tls.is_some_and(TlsSetup::allows_any_certificate) {
                tracing::warn!(
                    remote = %s.name,
                    "certificate checks are off (certificate = allow_any): this FTPS connection is not protected against impersonation"
                );
            }
        }
        control.login(&s.username, &s.password).await?;
        if let (true, Some(session)) = (control.tls_summary.is_some(), session) {
            control.protect_data(session, s.tls).await?;
        }
        let feat = control.command("FEAT").await?;
        control.features = Features::from_reply(&feat);
        control.hash_selected = control.features.hash_default.clone();
        if control.features.utf8 {
            // Some servers only use UTF-8 names when asked; a refusal is harmless.
            control.command("OPTS UTF8 ON").await?;
        }
        control.expect_success("TYPE I").await?;
        let pwd = control.expect_success("PWD").await?;
        let login_folder = parse_pwd(pwd.text()).ok_or_else(|| {
            FtpError::Protocol(format!("cannot read the login folder from `{pwd}`"))
        })?;
        control.base = base_folder(&login_folder, &s.root);
        Ok(control)
    }

    async fn read_welcome(&mut self) -> Result<(), FtpError> {
        loop {
            let reply = self.read_reply().await?;
            match reply.code {
                // "Service ready in n minutes": the real greeting follows.
                120 => continue,
                220 => {
                    self.welcome = reply
                        .lines
                        .iter()
                        .map(|l| l.get(4..).unwrap_or("").trim())
                        .collect::<Vec<_>>()
                        .join("\n");
                    return Ok(());
                }
                _ => return Err(refused("connect", reply)),
            }
        }
    }

    /// Replaces the plain stream by a TLS one after `AUTH TLS` was accepted.
    async fn start_tls(self, session: &TlsSession) -> Result<Self, FtpError> {
        if !self.stream.buffer().is_empty() {
            return Err(FtpError::Protocol(
                "the server sent data right after accepting AUTH TLS".into(),
            ));
        }
        let Control {
            stream,
            connect_timeout,
            ..
        } = self;
        let MaybeTls::Plain(tcp) = stream.into_inner() else {
            return Err(FtpError::Protocol("TLS is already active".into()));
        };
        let tls = session
            .handshake(tcp, connect_timeout, "TLS handshake")
            .await?;
        Ok(Control {
            stream: BufReader::new(MaybeTls::Tls(Box::new(tls))),
            ..self
        })
    }

    async fn login(&mut self, user: &str, password: &str) -> Result<(), FtpError> {
        let reply = self.command(&format!("USER {user}")).await?;
        let reply = match reply.code {
            230 | 202 => return Ok(()),
            331 => self.command(&format!("PASS {password}")).await?,
            _ => return Err(login_failed(user, reply)),
        };
        match reply.code {
            230 | 202 => Ok(()),
            332 => Err(FtpError::Protocol(
                "the server asks for an account (ACCT), which is not supported".into(),
            )),
            _ => Err(login_failed(user, reply)),
        }
    }

    /// PBSZ 0 and PROT P: data connections use TLS too. Only
    /// `tls = if_available` accepts a server that refuses.
    async fn protect_data(&mut self, session: TlsSession, mode: FtpTls) -> Result<(), FtpError> {
        let pbsz = self.command("PBSZ 0").await?;
        let prot = if pbsz.is_success() {
            self.command("PROT P").await?
        } else {
            pbsz
        };
        if prot.is_success() {
            self.data_tls = Some(session);
            Ok(())
        } else if mode == FtpTls::IfAvailable {
            tracing::warn!(
                "the server refused TLS on data connections ({prot}); they stay in clear text"
            );
            Ok(())
        } else {
            Err(FtpError::Tls(format!(
                "the server refused TLS on data connections: {prot}"
            )))
        }
    }

    /// The reply to `line`, whatever its code.
    pub async fn command(&mut self, line: &str) -> Result<Reply, FtpError> {
        self.command_within(line, self.io_timeout).await
    }

    /// The reply to `line`, waited for up to `limit` (for a command the
    /// server takes long over, as hashing a big file).
    pub async fn command_within(&mut self, line: &str, limit: Duration) -> Result<Reply, FtpError> {
        if self.broken {
            return Err(FtpError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the connection broke earlier",
            )));
        }
        self.send(line).await?;
        self.read_reply_within(limit).await
    }

    /// The reply to `line`, which must be a success (2xx).
    pub async fn expect_success(&mut self, line: &str) -> Result<Reply, FtpError> {
        let reply = self.command(line).await?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(refused(line, reply))
        }
    }

    /// The reply to `line`, which must have code `code`.
    pub async fn expect_code(&mut self, line: &str, code: u16) -> Result<Reply, FtpError> {
        let reply = self.command(line).await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(refused(line, reply))
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), FtpError> {
        if line.contains(['\r', '\n']) {
            return Err(FtpError::LineBreak);
        }
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(&bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.io_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.broken = true;
                Err(FtpError::Io(e))
            }
            Err(_) => {
                self.broken = true;
                Err(FtpError::Timeout(
                    "sending a command",
                    self.io_timeout.as_secs(),
                ))
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, FtpError> {
        self.read_reply_within(self.io_timeout).await
    }

    async fn read_reply_within(&mut self, limit: Duration) -> Result<Reply, FtpError> {
        let result = tokio::time::timeout(limit, read_reply(&mut self.stream)).await;
        self.last_used = Instant::now();
        match result {
            Ok(Ok(reply)) => {
                if reply.code == 421 {
                    self.broken = true;
                }
                Ok(reply)
            }
            Ok(Err(ReadError::Io(e))) => {
                self.broken = true;
                Err(FtpError::Io(e))
            }
            Ok(Err(ReadError::Malformed(m))) => {
                self.broken = true;
                Err(FtpError::Protocol(m))
            }
            Err(_) => {
                self.broken = true;
                Err(FtpError::Timeout("waiting for a reply", limit.as_secs()))
            }
        }
    }

    /// Opens a data connection and starts `command` (RETR, STOR, APPE,
    /// LIST, MLSD) on it, after `REST offset` when an offset is given.
    /// Its final reply must then be read with [`Control::finish_transfer`]
    /// or [`Control::abort_transfer`].
    pub async fn start_transfer(
        &mut self,
        command: &str,
        offset: Option<u64>,
    ) -> Result<MaybeTls, FtpError> {
        if self.transfer_open {
            return Err(FtpError::Protocol("a transfer is already open".into()));
        }
        let tcp = self.open_data().await?;
        if let Some(offset) = offset.filter(|o| *o > 0) {
            self.expect_code(&format!("REST {offset}"), 350).await?;
        }
        self.send(command).await?;
        let Some(session) = self.data_tls.clone() else {
            let reply = self.read_reply().await?;
            self.accept_start(command, reply)?;
            return Ok(MaybeTls::Plain(tcp));
        };
        // Servers differ on whether the data connection's TLS handshake
        // comes before or after the 150 reply: drive both at once.
        let timeout = self.io_timeout;
        let handshake =
            Box::pin(async move { session.handshake(tcp, timeout, "data connection TLS").await });
        let reply = Box::pin(self.read_reply());
        let (reply, tls) = match futures::future::select(reply, handshake).await {
            Either::Left((reply, handshake)) => (reply, Either::Left(handshake)),
            Either::Right((tls, reply)) => (reply.await, Either::Right(tls)),
        };
        self.accept_start(command, reply?)?;
        let tls = match tls {
            Either::Left(handshake) => handshake.await,
            Either::Right(tls) => tls,
        };
        match tls {
            Ok(stream) => Ok(MaybeTls::Tls(Box::new(stream))),
            Err(e) => {
                // The transfer's final reply would arrive unasked later.
                self.broken = true;
                Err(e)
            }
        }
    }

    fn accept_start(&mut self, command: &str, reply: Reply) -> Result<(), FtpError> {
        if reply.code == 522 {
            // The data connection's TLS was refused (vsftpd: "session reuse
            // required" once this connection has no session ticket left):
            // later data connections would fail the same way.
            self.broken = true;
        }
        if reply.is_preliminary() {
            self.transfer_open = true;
            self.transfer_command = Some(command.to_string());
            Ok(())
        } else if reply.is_success() {
            // Done at once (an empty listing on some servers).
            Ok(())
        } else {
            self.log_failed_transfer(command, &reply);
            Err(refused(command, reply))
        }
    }

    /// A transfer the server refused or failed, with its reply, at WARN:
    /// the storage error that follows only says what kind of failure it was.
    fn log_failed_transfer(&self, command: &str, reply: &Reply) {
        tracing::warn!(
            remote = %self.settings.name,
            command = %command,
            code = reply.code,
            "FTP transfer failed: the server answered `{reply}`"
        );
    }

    /// Reads the final reply of a transfer whose data connection is done.
    pub async fn finish_transfer(&mut self) -> Result<(), FtpError> {
        if !self.transfer_open {
            return Ok(());
        }
        self.transfer_open = false;
        let reply = self.read_reply().await?;
        if reply.is_success() {
            Ok(())
        } else {
            let command = self.transfer_command.take().unwrap_or_default();
            self.log_failed_transfer(&command, &reply);
            Err(refused("transfer", reply))
        }
    }

    /// Ends a transfer early: drops its data connection, takes the final
    /// reply(ies) and checks with NOOP that replies are back in step.
    pub async fn abort_transfer(&mut self, data: Option<MaybeTls>) -> Result<(), FtpError> {
        drop(data);
        if !self.transfer_open {
            return Ok(());
        }
        self.transfer_open = false;
        self.read_reply().await?;
        self.send("NOOP").await?;
        for _ in 0..3 {
            if self.read_reply().await?.code == 200 {
                return Ok(());
            }
        }
        self.broken = true;
        Err(FtpError::Protocol(
            "replies out of step after an aborted transfer".into(),
        ))
    }

    /// EPSV (or PASV once EPSV was refused), then a TCP connection to the
    /// port given, from this control connection's own source address.
    async fn open_data(&mut self) -> Result<TcpStream, FtpError> {
        let port = loop {
            if self.epsv {
                let reply = self.command("EPSV").await?;
                if reply.code == 229 {
                    break parse_epsv(reply.text()).ok_or_else(|| {
                        FtpError::Protocol(format!("unreadable EPSV reply `{reply}`"))
                    })?;
                }
                if (500..600).contains(&reply.code) {
                    self.epsv = false;
                    continue;
                }
                return Err(refused("EPSV", reply));
            }
            let reply = self.expect_code("PASV", 227).await?;
            let (ip, port) = parse_pasv(reply.text())
                .ok_or_else(|| FtpError::Protocol(format!("unreadable PASV reply `{reply}`")))?;
            if IpAddr::V4(ip) != self.peer.ip() {
                // Behind NAT servers often announce an internal address; the
                // data connection goes where the control connection goes.
                tracing::debug!(announced = %ip, using = %self.peer.ip(), "PASV address ignored");
            }
            break port;
        };
        dial_data(
            self.local.ip(),
            SocketAddr::new(self.peer.ip(), port),
            self.connect_timeout,
        )
        .await
    }

    /// Sends QUIT and closes the connection (best effort).
    pub async fn quit(mut self) {
        self.close_in_place().await;
    }

    /// QUIT and close; the connection is broken afterwards.
    async fn close_in_place(&mut self) {
        let mut answered = false;
        if !self.broken && !self.transfer_open {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, async {
                if self.send("QUIT").await.is_ok() && self.read_reply().await.is_ok() {
                    answered = true;
                    // The server closes after its reply: take in its last
                    // TLS records.
                    self.stream.get_mut().drain(QUIT_TIMEOUT).await;
                }
            })
            .await;
        }
        let stream = self.stream.get_mut();
        let shut = tokio::time::timeout(QUIT_TIMEOUT, stream.shutdown()).await;
        if answered && matches!(shut, Ok(Ok(()))) {
            // A server that answered QUIT closes its end at once: wait for
            // that, so that a connection the pool opens next does not
            // overlap this one at the server. A broken one is not waited for.
            let tcp = stream.tcp();
            let _ = tokio::time::timeout(QUIT_TIMEOUT, async {
                let mut buf = [0u8; 1024];
                loop {
                    if tcp.readable().await.is_err() {
                        return;
                    }
                    match tcp.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => return,
                    }
                }
            })
            .await;
        }
        self.broken = true;
    }

    /// Whether the connection can still be used; a connection with a
    /// transfer in progress, or that broke, cannot.
    pub fn health(&self) -> Health {
        if self.broken || self.transfer_open {
            Health::Closed
        } else if !self.stream.buffer().is_empty() {
            Health::Pending
        } else {
            self.stream.get_ref().health()
        }
    }

    /// Marks the connection unusable (a transfer could not be finished).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The limit for one command or one data read or write.
    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// How long since the server last answered.
    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// The absolute remote path of `path`.
    pub fn path(&self, path: &StoragePath) -> String {
        join_remote(&self.base, path.as_str())
    }

    /// The server's extensions.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The algorithm HASH uses on this connection now.
    pub fn hash_selected(&self) -> Option<&str> {
        self.hash_selected.as_deref()
    }

    /// Notes that `OPTS HASH` selected `name` on this connection.
    pub fn set_hash_selected(&mut self, name: &str) {
        self.hash_selected = Some(name.to_string());
    }

    /// The greeting the server sent.
    pub fn welcome(&self) -> &str {
        &self.welcome
    }

    /// The TLS session of the control connection, if any.
    pub fn tls_summary(&self) -> Option<&TlsSummary> {
        self.tls_summary.as_ref()
    }

    /// Where this connection left from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// A data connection to `dest`, bound to `source` (the control
/// connection's local address), never from anywhere else.
async fn dial_data(
    source: IpAddr,
    dest: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, FtpError> {
    let socket = if dest.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(FtpError::Io)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(|e| {
        FtpError::Dial(BackendError::new(
            ErrorKind::Other,
            "connect",
            "",
            format!("cannot bind the data connection to source address {source}: {e}"),
        ))
    })?;
    match tokio::time::timeout(timeout, socket.connect(dest)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(FtpError::Io(std::io::Error::new(
            e.kind(),
            format!("data connection to {dest} failed: {e}"),
        ))),
        Err(_) => Err(FtpError::Timeout("data connection", timeout.as_secs())),
    }
}

fn refused(command: &str, reply: Reply) -> FtpError {
    FtpError::Reply {
        command: command.split(' ').next().unwrap_or(command).to_string(),
        reply,
    }
}

fn login_failed(user: &str, reply: Reply) -> FtpError {
    if reply.code == 421 {
        return refused("USER", reply);
    }
    FtpError::Login {
        user: user.to_string(),
        reply,
    }
}

/// The folder of a `257 "/path" is current` reply (`""` is an escaped quote).
fn parse_pwd(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// The remote folder the storage root maps to: `root` if absolute, else
/// `root` under the login folder.
fn base_folder(login: &str, root: &str) -> String {
    if !root.is_empty() && root.trim_matches('/').is_empty() {
        return "/".to_string();
    }
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        if login.is_empty() {
            "/".to_string()
        } else {
            login.to_string()
        }
    } else if root.starts_with('/') {
        root.to_string()
    } else {
        join_remote(login, root)
    }
}

fn join_remote(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwd_replies_and_base_folders() {
        assert_eq!(
            parse_pwd("\"/home/u\" is the current directory").as_deref(),
            Some("/home/u")
        );
        assert_eq!(
            parse_pwd("\"/a \"\"q\"\" b\" ok").as_deref(),
            Some("/a \"q\" b")
        );
        assert_eq!(parse_pwd("no quotes"), None);
        assert_eq!(base_folder("/home/u", ""), "/home/u");
        assert_eq!(base_folder("/", ""), "/");
        assert_eq!(base_folder("/home/u", "/srv/x/"), "/srv/x");
        assert_eq!(base_folder("/home/u", "up load"), "/home/u/up load");
        assert_eq!(base_folder("/", "in"), "/in");
        assert_eq!(base_folder("/home/u", "/"), "/");
        assert_eq!(join_remote("/", "a/b"), "/a/b");
        assert_eq!(join_remote("/x", ""), "/x");
    }
}
