//! Reaching the cluster's PostgreSQL database: connection settings from
//! the `server.state` URL, and the versioned schema every node applies at
//! start-up.

use std::time::Duration;

use tokio_postgres::Client;

pub use crate::database::{describe, hide_password, Database, CONNECT_TIMEOUT};

/// How long one statement may take before the store reports an error.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

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
    // 2: the S3 endpoint's multipart uploads in progress, staged where
    // every node sees them (gateway/src/s3/uploads/database.rs).
    r#"
CREATE TABLE gw_s3_uploads (
    id      text   PRIMARY KEY,
    info    bytea  NOT NULL,
    created bigint NOT NULL
);
CREATE TABLE gw_s3_parts (
    upload_id  text    NOT NULL REFERENCES gw_s3_uploads (id) ON DELETE CASCADE,
    number     integer NOT NULL,
    generation text    NOT NULL,
    chunks     integer NOT NULL,
    size       bigint  NOT NULL,
    md5        text    NOT NULL,
    modified   bigint  NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE gw_s3_chunks (
    upload_id  text    NOT NULL REFERENCES gw_s3_uploads (id) ON DELETE CASCADE,
    generation text    NOT NULL,
    seq        integer NOT NULL,
    data       bytea   NOT NULL,
    PRIMARY KEY (upload_id, generation, seq)
);
-- Chunks are bytes already compressed or random as often as not:
-- store them as they are, out of line.
ALTER TABLE gw_s3_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
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
