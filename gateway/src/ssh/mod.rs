//! The SSH side of a connection: authentication against policy, the login
//! throttle and address allow-lists, and handing the `sftp` subsystem to
//! [`crate::ssh::sftp`], and SSH commands to [`crate::ssh::exec`] (the checksum
//! commands; any other is refused there). Shells and forwarding are refused.

pub mod algorithms;
pub mod exec;
pub mod sftp;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use policy::User;
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};

use crate::core::sessions::{LimitRefusal, SessionGuard};
use crate::core::tree::Tree;
use crate::core::Shared;
use exec::ExecContext;
use sftp::{Ended, SessionContext};

/// russh server settings: host keys, methods, and the figures that were
/// measured to matter for throughput (see PERF-NOTES): 8 MiB windows,
/// 64 KiB packets, and AES-GCM offered.
pub fn ssh_config(
    keys: Vec<PrivateKey>,
    idle_timeout: Duration,
    max_auth_attempts: usize,
    algorithms: &algorithms::ServerAlgorithms,
) -> russh::server::Config {
    let preferred = russh::Preferred {
        key: Cow::Borrowed(&[
            Algorithm::Ed25519,
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]),
        ..russh::Preferred::default()
    };
    let preferred = algorithms.apply(preferred);
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-gateway")),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        // Rejections take at least this long, so timing does not tell an
        // unknown user from a wrong password.
        auth_rejection_time: Duration::from_millis(500),
        // The "none" probe every OpenSSH client sends first need not wait.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        inactivity_timeout: Some(idle_timeout),
        max_auth_attempts,
        nodelay: true,
        preferred,
        ..Default::default()
    }
}

/// One SSH connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    user: Option<Arc<User>>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Its place in the session registry (freed when it ends).
    session: SessionGuard,
    /// Set once it has logged in within the session limits (the login
    /// grace timer watches it).
    logged_in: tokio::sync::watch::Sender<bool>,
    /// A login over a session limit: the connection is ended with this
    /// message when it opens a channel.
    refused: Option<LimitRefusal>,
    /// Dropped with the connection: its SFTP sessions watch it to tell a
    /// client that is gone from one that only ended its input.
    alive: tokio::sync::watch::Sender<()>,
}

impl Connection {
    /// A new, unauthenticated connection from `peer`, registered as
    /// `session`; `logged_in` turns true when it logs in.
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        session: SessionGuard,
        logged_in: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        Connection {
            shared,
            peer,
            user: None,
            channels: HashMap::new(),
            session,
            logged_in,
            refused: None,
            alive: tokio::sync::watch::channel(()).0,
        }
    }

    fn login_audit(&self, user: &str, method: &str, result: &str, reason: &str) {
        tracing::info!(target: "audit", user, addr = %self.peer.ip(), op = "login", method, result, reason);
    }

    fn banned(&self, user: &str, method: &str) -> bool {
        match self.shared.throttle.check(self.peer.ip()) {
            Ok(()) => false,
            Err(banned) => {
                self.login_audit(user, method, "refused", &banned.to_string());
                self.banned_metric(method);
                true
            }
        }
    }

    fn failed(&self, user: &str, method: &str, reason: &str) {
        let ban_started = self.shared.throttle.record_failure(self.peer.ip());
        self.login_audit(user, method, "rejected", reason);
        metrics::counter!("gateway_logins_total", "method" => method.to_string(), "outcome" => "rejected")
            .increment(1);
        if ban_started {
            metrics::counter!("gateway_throttled_addresses_total").increment(1);
            tracing::warn!(addr = %self.peer.ip(), "too many failed logins: address banned");
        }
    }

    fn succeeded(&mut self, user: Arc<User>, method: &str) {
        self.shared.throttle.record_success(self.peer.ip());
        let limits = self.shared.live().settings.limits;
        match self.session.login(&user.name, &limits) {
            Ok(()) => {
                // A user, not a flood: its connection's place comes back.
                self.shared.connection_rate.refund(self.peer.ip());
                self.login_audit(&user.name, method, "ok", "");
                metrics::counter!("gateway_logins_total", "method" => method.to_string(), "outcome" => "ok")
                    .increment(1);
                let _ = self.logged_in.send(true);
            }
            Err(refusal) => {
                self.login_audit(&user.name, method, "refused", &refusal.to_string());
                metrics::counter!("gateway_logins_total", "method" => method.to_string(), "outcome" => "refused")
                    .increment(1);
                metrics::counter!("gateway_sessions_refused_total", "reason" => refusal.reason())
                    .increment(1);
                self.refused = Some(refusal);
            }
        }
        self.user = Some(user);
    }

    /// Takes the logged-in user's open channel for a subsystem or command
    /// and builds their tree; answers success, or failure and `None` when
    /// there is no user, no such channel or no usable home.
    async fn accept_channel(
        &mut self,
        channel_id: ChannelId,
        session: &mut Session,
    ) -> Result<Option<(Arc<User>, Channel<Msg>, Tree)>, russh::Error> {
        let (Some(user), Some(channel)) = (self.user.clone(), self.channels.remove(&channel_id))
        else {
            session.channel_failure(channel_id)?;
            return Ok(None);
        };
        match self.shared.tree_for(&user).await {
            Ok(tree) => {
                session.channel_success(channel_id)?;
                Ok(Some((user, channel, tree)))
            }
            Err(e) => {
                tracing::error!(user = %user.name, "{e}");
                session.channel_failure(channel_id)?;
                Ok(None)
            }
        }
    }

    fn banned_metric(&self, method: &str) {
        metrics::counter!("gateway_logins_total", "method" => method.to_string(), "outcome" => "banned")
            .increment(1);
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.banned(user, "password") {
            return Ok(Auth::reject());
        }
        let authenticator = self.shared.live().authenticator.clone();
        let (name, secret, ip) = (user.to_string(), password.to_string(), self.peer.ip());
        // Argon2 is deliberately slow: keep it off the async threads.
        let checked =
            tokio::task::spawn_blocking(move || authenticator.check_password(&name, &secret, ip))
                .await;
        match checked {
            Ok(Ok(found)) => {
                self.succeeded(found, "password");
                Ok(Auth::Accept)
            }
            Ok(Err(e)) => {
                self.failed(user, "password", &e.reason().to_string());
                Ok(Auth::reject())
            }
            Err(e) => {
                tracing::error!("password check failed: {e}");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A probe without signature: answer, but do not count it.
        if self.shared.throttle.check(self.peer.ip()).is_err() {
            return Ok(Auth::reject());
        }
        match self.shared.live().authenticator.check_public_key(
            user,
            offer.public_key,
            self.peer.ip(),
        ) {
            Ok(_) => Ok(Auth::Accept),
            Err(_) => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.banned(user, "publickey") {
            return Ok(Auth::reject());
        }
        match self.shared.live().authenticator.check_public_key(
            user,
            key.public_key,
            self.peer.ip(),
        ) {
            Ok(found) => {
                self.succeeded(found, "publickey");
                Ok(Auth::Accept)
            }
            Err(e) => {
                self.failed(user, "publickey", &e.reason().to_string());
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(refusal) = &self.refused {
            // Over a session limit: say why, in the words the client shows.
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                &refusal.to_string(),
                "en",
            )?;
            return Ok(());
        }
        if self.user.is_some() {
            self.channels.insert(channel.id(), channel);
            reply.accept().await;
        } else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            session.channel_failure(channel_id)?;
            return Ok(());
        }
        let Some((user, channel, tree)) = self.accept_channel(channel_id, session).await? else {
            return Ok(());
        };
        let ctx = SessionContext {
            tree,
            user,
            peer: self.peer,
            transfers: self.shared.transfers.clone(),
            idle_timeout: self.shared.live().settings.idle_timeout,
            budget: sftp::Budget::DEFAULT,
            notices: sftp::notices::Notices::to(channel.make_writer_ext(Some(1))),
            connection: Some(self.alive.subscribe()),
            activity: self.session.activity(),
        };
        ctx.activity.set_protocol("sftp");
        let ssh = session.handle();
        let peer = self.peer;
        tokio::spawn(async move {
            match sftp::serve(channel.into_stream(), ctx).await {
                Ended::Finished(stream) => {
                    // Like sshd: exit status first, then EOF and close
                    // (dropping the stream closes the channel). OpenSSH's
                    // scp reports failure when the status is missing or
                    // arrives after the close.
                    let _ = ssh.exit_status_request(channel_id, 0).await;
                    let _ = ssh.eof(channel_id).await;
                    drop(stream);
                }
                Ended::ClientGone => {
                    // The stream, dropped in `serve`, closed the channel.
                    tracing::info!(%peer, "SFTP client went away with requests in flight; they were dropped");
                }
                Ended::Stalled => {
                    tracing::warn!(%peer, "SFTP session made no progress for idle_timeout (the client stopped reading); disconnecting");
                    metrics::counter!("gateway_sessions_refused_total", "reason" => "idle_timeout")
                        .increment(1);
                    let _ = ssh
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "no progress for idle_timeout".into(),
                            "en".into(),
                        )
                        .await;
                }
                Ended::ProtocolError(reason) => {
                    tracing::warn!(%peer, "closing SFTP session: {reason}");
                }
            }
        });
        Ok(())
    }

    /// A command: run by [`exec`] (which refuses all but the checksum
    /// commands with a message and an exit status, like a shell would).
    async fn exec_request(
        &mut self,
        channel_id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((user, channel, tree)) = self.accept_channel(channel_id, session).await? else {
            return Ok(());
        };
        let line = String::from_utf8_lossy(data).into_owned();
        self.session.activity().set_protocol("exec");
        let ctx = ExecContext {
            tree,
            user,
            peer: self.peer,
            checksums: self.shared.checksums.clone(),
        };
        tokio::spawn(async move {
            exec::run(channel, &line, ctx).await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}
