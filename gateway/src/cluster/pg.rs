//! Reaching the cluster's PostgreSQL database: connection settings from
//! the `server.state` URL, and the versioned schema every node applies at
//! start-up.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one statement may take before the store reports an error.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the state database is, parsed once from the config's URL.
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
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
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| format!("not a PostgreSQL URL: {e}"))?;
        config
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
        })
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
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        String,
    > {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls)).await {
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

/// The schema, one entry per version; a node applies those the database
/// lacks, in order, each in its own transaction. Never edit an entry that
/// was released: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: key-value state (what the embedded store holds), node heartbeats,
    // remote ids for advisory locks, and the slot-taking function.
    r#"
CREATE TABLE gw_state (
    tbl   text  NOT NULL,
    key   text  NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tbl, key)
);
CREATE TABLE gw_nodes (
    node     text        PRIMARY KEY,
    host     text        NOT NULL,
    pid      integer     NOT NULL,
    started  timestamptz NOT NULL,
    seen     timestamptz NOT NULL,
    lock_pid integer
);
CREATE TABLE gw_remote_ids (
    id   serial PRIMARY KEY,
    name text   NOT NULL UNIQUE
);
-- Takes the first free slot of `remote` below `cap` that this session does
-- not hold already (`held`: advisory locks are re-entrant within a session),
-- as a session-level advisory lock (`remote`, slot); NULL when all are taken.
CREATE FUNCTION gw_take_slot(remote integer, cap integer, held integer[])
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    FOR s IN 0 .. cap - 1 LOOP
        IF NOT (s = ANY (held)) AND pg_try_advisory_lock(remote, s) THEN
            RETURN s;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
"#,
];

/// The version the schema of this build has.
pub fn schema_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// Brings the database's schema to this build's version. Several nodes
/// starting together take turns (a transaction-level advisory lock); a
/// database newer than this build is refused, since this build would not
/// know what the newer schema means.
pub async fn migrate(client: &mut Client) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    // An arbitrary constant: the lock that orders schema changes.
    tx.execute("SELECT pg_advisory_xact_lock(7146001)", &[])
        .await
        .map_err(|e| describe(&e))?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS gw_schema (version integer NOT NULL)",
        &[],
    )
    .await
    .map_err(|e| describe(&e))?;
    let current: i32 = tx
        .query_opt("SELECT version FROM gw_schema", &[])
        .await
        .map_err(|e| describe(&e))?
        .map_or(0, |row| row.get(0));
    if current > schema_version() {
        return Err(format!(
            "the database's schema is version {current}, newer than this gateway's {} (upgrade this node)",
            schema_version()
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(step)
            .await
            .map_err(|e| format!("schema version {}: {}", i + 1, describe(&e)))?;
    }
    if current == 0 {
        tx.execute(
            "INSERT INTO gw_schema (version) VALUES ($1)",
            &[&schema_version()],
        )
        .await
        .map_err(|e| describe(&e))?;
    } else if current < schema_version() {
        tx.execute("UPDATE gw_schema SET version = $1", &[&schema_version()])
            .await
            .map_err(|e| describe(&e))?;
    }
    tx.commit().await.map_err(|e| describe(&e))?;
    if current < schema_version() {
        tracing::info!(
            "state database schema upgraded from version {current} to {}",
            schema_version()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://gw:s3cret@db:5432/gateway"),
            "postgres://gw:***@db:5432/gateway"
        );
        assert_eq!(
            hide_password("postgres://gw@db/gateway?password=s3cret&sslmode=disable"),
            "postgres://gw@db/gateway?password=***&sslmode=disable"
        );
        assert_eq!(
            hide_password("postgres://db/gateway"),
            "postgres://db/gateway"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = Database::parse("postgres://gw:s3cret@db:notaport/x").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
