//! Uploads staged in the cluster's PostgreSQL database, so that a load
//! balancer may send the parts of one upload to different nodes (tables
//! `gw_s3_uploads`, `gw_s3_parts`, `gw_s3_chunks`: schema version 2).
//!
//! A part's bytes are rows of [`CHUNK`] bytes, written as they arrive, so a
//! node holds one chunk per part in flight whatever the part's size. Each
//! copy of a part has a random `generation`: a part sent again is written
//! beside the old copy, and one statement then points the part at the new
//! copy and deletes the old one, so a reader never sees half of either.
//! Deleting an upload deletes its parts and chunks (foreign keys).
//!
//! The endpoint's statements run on one session of their own (the state
//! store's session answers small requests one at a time; a part must not
//! wait behind them nor they behind a part), opened again when it breaks.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio_postgres::Client;

use super::{
    is_upload_id, new_upload_id, now_secs, random_hex, PartError, PartInfo, PartsStream, Stored,
    UploadInfo,
};
use crate::core::checksums::{Algorithm, ChecksumHasher};
use crate::database::{describe, Database};

/// Bytes per chunk row.
pub const CHUNK: usize = 1 << 20;

/// Uploads in the database; cheap to clone (one shared session).
#[derive(Clone)]
pub struct DatabaseUploads {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    session: tokio::sync::Mutex<Option<Arc<Client>>>,
}

fn db_error(e: tokio_postgres::Error) -> io::Error {
    io::Error::other(format!("state database: {}", describe(&e)))
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl DatabaseUploads {
    /// Uploads in `database` (whose schema the state store brought up to
    /// date); the session opens on first use.
    pub fn new(database: Database) -> Self {
        DatabaseUploads {
            inner: Arc::new(Inner {
                database,
                session: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The database's URL without its password.
    pub fn shown(&self) -> &str {
        self.inner.database.shown()
    }

    /// The session, opened (again) if needed.
    async fn client(&self) -> io::Result<Arc<Client>> {
        let mut session = self.inner.session.lock().await;
        if let Some(client) = session.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = self
            .inner
            .database
            .connect()
            .await
            .map_err(|e| io::Error::other(format!("state database: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("S3 uploads' database session ended: {}", describe(&e));
            }
        });
        let client = Arc::new(client);
        *session = Some(client.clone());
        Ok(client)
    }

    /// Starts an upload; returns its id.
    pub async fn create(&self, info: &UploadInfo) -> io::Result<String> {
        let id = new_upload_id()?;
        let json = serde_json::to_vec(info).map_err(io::Error::other)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO gw_s3_uploads (id, info, created) VALUES ($1, $2, $3)",
                &[&id, &json, &(info.created as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(id)
    }

    /// The upload `id`, if it exists.
    pub async fn info(&self, id: &str) -> io::Result<Option<UploadInfo>> {
        if !is_upload_id(id) {
            return Ok(None);
        }
        let row = self
            .client()
            .await?
            .query_opt("SELECT info FROM gw_s3_uploads WHERE id = $1", &[&id])
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => serde_json::from_slice(row.get::<_, &[u8]>(0))
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }

    /// Stores part `number` of upload `id` from `body`, replacing an
    /// earlier copy of that part.
    pub async fn write_part<S, E>(
        &self,
        id: &str,
        number: i32,
        mut body: S,
    ) -> Result<PartInfo, PartError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        if !is_upload_id(id) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such upload").into());
        }
        let client = self.client().await?;
        let generation = random_hex::<8>()?;
        let insert = client
            .prepare(
                "INSERT INTO gw_s3_chunks (upload_id, generation, seq, data) VALUES ($1, $2, $3, $4)",
            )
            .await
            .map_err(db_error)?;
        let written = async {
            let mut md5 = ChecksumHasher::new(Algorithm::Md5);
            let mut size = 0u64;
            let mut seq = 0i32;
            let mut pending = BytesMut::with_capacity(CHUNK);
            let mut ended = false;
            while !ended {
                match body.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| PartError::Body(e.to_string()))?;
                        md5.update(&chunk);
                        size += chunk.len() as u64;
                        pending.extend_from_slice(&chunk);
                    }
                    None => ended = true,
                }
                // Full chunks as they fill; the rest (even empty, for an
                // empty part) at the end.
                while pending.len() >= CHUNK || (ended && (!pending.is_empty() || seq == 0)) {
                    let take = pending.len().min(CHUNK);
                    let row = pending.split_to(take);
                    client
                        .execute(&insert, &[&id, &generation, &seq, &&row[..]])
                        .await
                        .map_err(|e| PartError::Io(db_error(e)))?;
                    seq += 1;
                }
            }
            Ok::<_, PartError>((size, md5.finish(), seq))
        }
        .await;
        let (size, md5, chunks) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = client
                    .execute(
                        "DELETE FROM gw_s3_chunks WHERE upload_id = $1 AND generation = $2",
                        &[&id, &generation],
                    )
                    .await;
                return Err(e);
            }
        };
        let modified = SystemTime::now();
        // Point the part at this copy and delete the copy it replaces, in
        // one statement (so in one transaction).
        client
            .execute(
                "WITH old AS (
                     SELECT generation FROM gw_s3_parts
                     WHERE upload_id = $1 AND number = $2 FOR UPDATE
                 ), put AS (
                     INSERT INTO gw_s3_parts (upload_id, number, generation, chunks, size, md5, modified)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (upload_id, number) DO UPDATE SET
                         generation = EXCLUDED.generation, chunks = EXCLUDED.chunks,
                         size = EXCLUDED.size, md5 = EXCLUDED.md5, modified = EXCLUDED.modified
                 )
                 DELETE FROM gw_s3_chunks
                 WHERE upload_id = $1 AND generation IN (SELECT generation FROM old)",
                &[
                    &id,
                    &number,
                    &generation,
                    &chunks,
                    &(size as i64),
                    &md5,
                    &millis(modified),
                ],
            )
            .await
            .map_err(|e| PartError::Io(db_error(e)))?;
        Ok(PartInfo {
            number,
            size,
            md5,
            modified,
            stored: Stored::Rows { generation, chunks },
        })
    }

    /// Forgets copy `generation` of part `number` (one that failed its
    /// checks), unless another copy replaced it already.
    pub async fn discard(&self, id: &str, number: i32, generation: &str) -> io::Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM gw_s3_parts WHERE upload_id = $1 AND number = $2 AND generation = $3",
                &[&id, &number, &generation],
            )
            .await
            .map_err(db_error)?;
        client
            .execute(
                "DELETE FROM gw_s3_chunks WHERE upload_id = $1 AND generation = $2",
                &[&id, &generation],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The parts of upload `id`, by number.
    pub async fn parts(&self, id: &str) -> io::Result<Vec<PartInfo>> {
        if !is_upload_id(id) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such upload"));
        }
        let rows = self
            .client()
            .await?
            .query(
                "SELECT number, generation, chunks, size, md5, modified FROM gw_s3_parts
                 WHERE upload_id = $1 ORDER BY number",
                &[&id],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| PartInfo {
                number: row.get(0),
                stored: Stored::Rows {
                    generation: row.get(1),
                    chunks: row.get(2),
                },
                size: row.get::<_, i64>(3).max(0) as u64,
                md5: row.get(4),
                modified: UNIX_EPOCH + Duration::from_millis(row.get::<_, i64>(5).max(0) as u64),
            })
            .collect())
    }

    /// The bytes of `parts` of upload `id` in order, one chunk at a time.
    pub fn read_parts(&self, id: &str, parts: &[PartInfo]) -> PartsStream {
        let mut rows: std::collections::VecDeque<(i32, String, i32)> = Default::default();
        for part in parts {
            if let Stored::Rows { generation, chunks } = &part.stored {
                for seq in 0..*chunks {
                    rows.push_back((part.number, generation.clone(), seq));
                }
            }
        }
        let this = self.clone();
        let id = id.to_string();
        Box::pin(futures::stream::unfold(
            (this, id, rows),
            |(this, id, mut rows)| async move {
                let (number, generation, seq) = rows.pop_front()?;
                let fetched = async {
                    this.client()
                        .await
                        .map_err(|e| e.to_string())?
                        .query_opt(
                            "SELECT data FROM gw_s3_chunks
                             WHERE upload_id = $1 AND generation = $2 AND seq = $3",
                            &[&id, &generation, &seq],
                        )
                        .await
                        .map_err(|e| format!("state database: {}", describe(&e)))?
                        .map(|row| Bytes::copy_from_slice(row.get::<_, &[u8]>(0)))
                        .ok_or_else(|| {
                            format!("part {number} of the upload is missing from the database")
                        })
                }
                .await;
                match fetched {
                    // Nothing more after an error.
                    Err(e) => Some((Err(e), (this, id, Default::default()))),
                    Ok(bytes) => Some((Ok(bytes), (this, id, rows))),
                }
            },
        ))
    }

    /// Removes upload `id` and its parts.
    pub async fn remove(&self, id: &str) -> io::Result<()> {
        if !is_upload_id(id) {
            return Ok(());
        }
        self.client()
            .await?
            .execute("DELETE FROM gw_s3_uploads WHERE id = $1", &[&id])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Removes uploads started more than `age` ago; returns how many.
    pub async fn remove_older_than(&self, age: Duration) -> io::Result<usize> {
        let cutoff = now_secs().saturating_sub(age.as_secs()) as i64;
        let removed = self
            .client()
            .await?
            .execute("DELETE FROM gw_s3_uploads WHERE created < $1", &[&cutoff])
            .await
            .map_err(db_error)?;
        Ok(removed as usize)
    }
}
