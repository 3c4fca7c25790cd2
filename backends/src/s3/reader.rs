//! An object open for reading. One streaming GET, from the current offset
//! to the end, serves sequential reads; a read elsewhere drops it and the
//! next one starts at the new offset (`Range: bytes=N-`). Reads that
//! arrive a little out of order (an SFTP client keeps many in flight) are
//! served from a window of recently read bytes, or by reading on, instead
//! of reopening. Every GET asks for the version that was opened
//! (`If-Match` with its entity tag), so a file replaced while it is read
//! fails instead of mixing two contents.

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

/// An open object.
pub struct S3Reader {
    bucket: Arc<Bucket>,
    path: StoragePath,
    info: ObjectInfo,
    state: tokio::sync::Mutex<ReadState>,
}

struct ReadState {
    /// The open GET, positioned at `pos`.
    body: Option<aws_sdk_s3::primitives::ByteStream>,
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
                window: ReadWindow::new(WINDOW),
                pos: 0,
                eof: false,
            }),
        }
    }

    /// Starts a GET from `st.pos` to the end.
    async fn open(&self, st: &mut ReadState) -> Result<()> {
        let result = self
            .bucket
            .client
            .get_object()
            .bucket(&self.bucket.info.bucket)
            .key(&self.info.key)
            .range(format!("bytes={}-", st.pos))
            .set_if_match(self.info.etag.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                st.body = Some(out.body);
                self.bucket.retry_pending_aborts();
                Ok(())
            }
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                // The range starts at or past the end.
                Some(416) => {
                    st.eof = true;
                    Ok(())
                }
                Some(412) => Err(self.bucket.info.error(
                    ErrorKind::Other,
                    "read",
                    self.path.as_str(),
                    "the file was replaced on the server while it was being read",
                )),
                _ => Err(self.bucket.info.sdk("read", self.path.as_str(), e)),
            },
        }
    }

    /// Reads on until `pos` reaches `end` or the object ends.
    async fn fill(&self, st: &mut ReadState, end: u64) -> Result<()> {
        while st.pos < end && !st.eof {
            if st.body.is_none() {
                self.open(st).await?;
                continue;
            }
            let Some(body) = st.body.as_mut() else {
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    st.pos += chunk.len() as u64;
                    st.window.buffer().extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    st.body = None;
                    return Err(self.bucket.info.body("read", self.path.as_str(), e));
                }
                None => {
                    st.body = None;
                    st.eof = true;
                }
            }
        }
        Ok(())
    }
}

impl ReadState {
    /// Drops the stream and the window; the next fill starts at `offset`.
    fn seek(&mut self, offset: u64) {
        self.body = None;
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
