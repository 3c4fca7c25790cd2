//! Where the cluster's PostgreSQL database is: the `server.state` URL,
//! parsed once when the configuration is read (so a wrong URL is reported
//! with its file and line) and shown without its password. A value type of
//! its own, so that the configuration and the cluster code that opens
//! sessions with it do not depend on each other. Sessions use TLS as the
//! URL's `sslmode` says ([`tls`]).

pub mod tls;

use std::time::Duration;

use tokio_postgres::Client;

pub use tls::{PgTls, PgTlsStream, SslMode};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the state database is, parsed once from the config's URL.
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    /// How sessions use TLS.
    tls: PgTls,
    /// The URL's `sslmode`.
    mode: SslMode,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Database {
    /// Parses a `postgres://user:password@host:port/database?...` URL
    /// (libpq's syntax). The error never repeats the password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (mode, root, rest) = tls::split_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| format!("not a PostgreSQL URL: {e}"))?;
        let tls = PgTls::new(mode, root.as_deref())?;
        config
            .ssl_mode(mode.negotiation())
            .connect_timeout(CONNECT_TIMEOUT)
            // A node whose network vanished must lose its slots in seconds,
            // not after the kernel's two hours: the server drops the
            // session (and its advisory locks) when keepalives go unanswered.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("sftp-gateway");
        }
        Ok(Database {
            shown: hide_password(url),
            config,
            tls,
            mode,
        })
    }

    /// The URL's `sslmode` (`prefer` when it names none, as libpq).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a session; the returned task drives it and must be spawned.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            Client,
            tokio_postgres::Connection<tokio_postgres::Socket, PgTlsStream<tokio_postgres::Socket>>,
        ),
        String,
    > {
        let connect = self.config.connect(self.tls.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        }
    }
}

/// An error of the PostgreSQL client, with the server's message when
/// there is one (the client's own display says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// `url` with the password (if any) replaced by `***`.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_string(),
    };
    // A password in the query string (`?password=`) is hidden too.
    let tail = match tail.find("password=") {
        Some(i) => {
            let end = tail[i..].find('&').map_or(tail.len(), |j| i + j);
            format!("{}password=***{}", &tail[..i], &tail[end..])
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}
