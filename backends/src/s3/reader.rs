//! An object open for reading. Sequential reads are served by one
//! streaming ranged GET for the part being read now and, for objects
//! larger than one [`CHUNK`], up to `read_ahead` (default 4) ranged GETs of the chunks
//! after it, fetched whole in parallel (one connection's speed is rarely a
//! server's). A read elsewhere drops them all and the next one starts at
//! the new offset. Reads that arrive a little out of order (an SFTP client
//! keeps many in flight) are served from a window of recently read bytes,
//! or by reading on, instead of reopening. Every GET asks for the version
//! that was opened (`If-Match` with its entity tag), so a file replaced
//! while it is read fails instead of mixing two contents.
//!
//! Memory per open object: at most `read_ahead` × `CHUNK` (16 MiB) of chunks
//! fetched ahead, plus the 2 MiB window.

use std::sync::Arc;

use bytes::Bytes;

use super::objects::{Bucket, ObjectInfo};
use crate::backend::{FileReader, Metadata};
use crate::read_window::ReadWindow;
use crate::{ErrorKind, Result, StoragePath};

/// Bytes kept behind the stream's position for late reads.
const WINDOW: usize = 2 * 1024 * 1024;
/// How far ahead of the stream's position a read may start and still be
/// reached by reading on rather than reopening.
const REACH: u64 = 2 * 1024 * 1024;
/// Bytes per ranged GET fetched ahead.
pub const CHUNK: u64 = 4 * 1024 * 1024;

/// An open object.
pub struct S3Reader {
    bucket: Arc<Bucket>,
    path: StoragePath,
    info: ObjectInfo,
    state: tokio::sync::Mutex<ReadState>,
}

struct ReadState {
    /// The open GET, positioned at `pos`; it ends at `body_end`.
    body: Option<aws_sdk_s3::primitives::ByteStream>,
    body_end: u64,
    /// Whole chunks being fetched after `body_end`, in order.
    ahead: std::collections::VecDeque<Ahead>,
    /// The pieces of the chunk fetched ahead that is being read now (it
    /// ends at `body_end`), taken one by one as reads need them.
    ready: std::collections::VecDeque<Bytes>,
    /// The bytes just before `pos`.
    window: ReadWindow,
    pos: u64,
    /// The object ended at `pos`.
    eof: bool,
}

impl S3Reader {
    /// A reader of the object `info`; no GET is sent before the first read.
    pub fn new(bucket: Arc<Bucket>, path: StoragePath, info: ObjectInfo) -> Self {
        S3Reader {
            bucket,
            path,
            info,
            state: tokio::sync::Mutex::new(ReadState {
                body: None,
                body_end: 0,
                ahead: Default::default(),
                ready: Default::default(),
                window: ReadWindow::new(WINDOW),
                pos: 0,
                eof: false,
            }),
        }
    }

    /// Starts a streaming GET from `st.pos`: to the end for an object of
    /// one chunk or less, else to the end of this chunk, with the chunks
    /// after it fetched ahead.
    async fn open(&self, st: &mut ReadState) -> Result<()> {
        let size = self.info.size;
        let end = if size > CHUNK && self.bucket.read_ahead > 0 {
            st.pos.saturating_add(CHUNK).min(size)
        } else {
            size
        };
        match get_range(&self.bucket, &self.info, &self.path, st.pos, end).await {
            Ok(Some(body)) => {
                st.body = Some(body);
                st.body_end = end;
                self.bucket.retry_pending_aborts();
                self.top_up(st);
                Ok(())
            }
            // The range starts at or past the end.
            Ok(None) => {
                st.eof = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts fetching the chunks after the stream (or after the last one
    /// fetched ahead) until `read_ahead` are on their way.
    fn top_up(&self, st: &mut ReadState) {
        let size = self.info.size;
        while st.ahead.len() < self.bucket.read_ahead {
            let start = st.ahead.back().map_or(st.body_end, |a| a.end);
            if start >= size {
                break;
            }
            let end = start.saturating_add(CHUNK).min(size);
            let (bucket, info, path) = (self.bucket.clone(), self.info.clone(), self.path.clone());
            let task = tokio::spawn(async move {
                let body = get_range(&bucket, &info, &path, start, end).await?;
                let Some(mut body) = body else {
                    return Ok(Vec::new());
                };
                // The pieces as they came: no copy into one buffer.
                let mut pieces = Vec::new();
                while let Some(piece) = body.next().await {
                    pieces.push(piece.map_err(|e| bucket.info.body("read", path.as_str(), e))?);
                }
                Ok(pieces)
            });
            st.ahead.push_back(Ahead { end, task });
        }
    }

    /// Reads on until `pos` reaches `end` or the object ends.
    async fn fill(&self, st: &mut ReadState, end: u64) -> Result<()> {
        while st.pos < end && !st.eof {
            if let Some(body) = st.body.as_mut() {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        st.pos += chunk.len() as u64;
                        st.window.buffer().extend_from_slice(&chunk);
                    }
                    Some(Err(e)) => {
                        st.drop_streams();
                        return Err(self.bucket.info.body("read", self.path.as_str(), e));
                    }
                    None => {
                        st.body = None;
                        if st.pos < st.body_end {
                            // The server ended the range early: the object
                            // is shorter than it said (as before read-ahead,
                            // the read ends here).
                            st.drop_streams();
                            st.eof = true;
                        } else if st.ahead.is_empty() {
                            st.eof = st.body_end >= self.info.size;
                        }
                    }
                }
                continue;
            }
            if let Some(piece) = st.ready.pop_front() {
                st.pos += piece.len() as u64;
                st.window.buffer().extend_from_slice(&piece);
                if st.ready.is_empty() && st.ahead.is_empty() {
                    st.eof = st.body_end >= self.info.size;
                }
                continue;
            }
            if let Some(next) = st.ahead.pop_front() {
                let fetched = match (&mut { next.task }).await {
                    Ok(result) => result,
                    Err(e) => Err(self.bucket.info.error(
                        ErrorKind::Other,
                        "read",
                        self.path.as_str(),
                        format!("a read-ahead task failed: {e}"),
                    )),
                };
                let pieces = match fetched {
                    Ok(pieces) => pieces,
                    Err(e) => {
                        st.drop_streams();
                        return Err(e);
                    }
                };
                let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
                if st.pos + len != next.end {
                    st.drop_streams();
                    return Err(self.bucket.info.error(
                        ErrorKind::Other,
                        "read",
                        self.path.as_str(),
                        format!(
                            "the server sent {len} bytes for the {} bytes from offset {}",
                            next.end - st.pos,
                            st.pos
                        ),
                    ));
                }
                st.ready = pieces.into();
                st.body_end = next.end;
                self.top_up(st);
                continue;
            }
            self.open(st).await?;
        }
        Ok(())
    }
}

/// One chunk fetched ahead: it ends at `end` and starts where the one
/// before it (or the stream) ends.
struct Ahead {
    end: u64,
    task: tokio::task::JoinHandle<Result<Vec<Bytes>>>,
}

/// A streaming GET of `[start, end)` of the version `info` names; `None`
/// when `start` is at or past the end.
async fn get_range(
    bucket: &Bucket,
    info: &ObjectInfo,
    path: &StoragePath,
    start: u64,
    end: u64,
) -> Result<Option<aws_sdk_s3::primitives::ByteStream>> {
    let result = bucket
        .client
        .get_object()
        .bucket(&bucket.info.bucket)
        .key(&info.key)
        .range(format!(
            "bytes={start}-{}",
            end.saturating_sub(1).max(start)
        ))
        .set_if_match(info.etag.clone())
        .send()
        .await;
    match result {
        Ok(out) => Ok(Some(out.body)),
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(416) => Ok(None),
            Some(412) => Err(bucket.info.error(
                ErrorKind::Other,
                "read",
                path.as_str(),
                "the file was replaced on the server while it was being read",
            )),
            _ => Err(bucket.info.sdk("read", path.as_str(), e)),
        },
    }
}

impl Drop for ReadState {
    fn drop(&mut self) {
        self.drop_streams();
    }
}

impl ReadState {
    /// Drops the stream and the chunks fetched ahead (their GETs stop).
    fn drop_streams(&mut self) {
        self.body = None;
        self.ready.clear();
        for a in self.ahead.drain(..) {
            a.task.abort();
        }
        self.body_end = self.pos;
    }

    /// Drops the streams and the window; the next fill starts at `offset`.
    fn seek(&mut self, offset: u64) {
        self.drop_streams();
        self.window.reset(offset);
        self.pos = offset;
        self.eof = false;
    }
}

#[async_trait::async_trait]
impl FileReader for S3Reader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let size = self.info.size;
        if len == 0 || offset >= size {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len as u64).min(size);
        let mut st = self.state.lock().await;
        let in_window = st.window.holds(offset, st.pos);
        let reachable = offset >= st.pos && offset - st.pos <= REACH && !st.eof;
        if !in_window && !reachable {
            st.seek(offset);
        }
        self.fill(&mut st, end).await?;
        let out = st.window.copy(offset, end.min(st.pos));
        st.window.trim();
        Ok(out)
    }

    async fn metadata(&self) -> Result<Metadata> {
        Ok(self.info.metadata())
    }
}
