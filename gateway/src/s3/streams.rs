//! Bodies in and out of the S3 endpoint: a request body as a stream that
//! gives up on a stalled client, a download read ahead from storage, and
//! an upload's parts read back in order.

use std::sync::Arc;
use std::time::Duration;

use backends::FileReader;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use s3s::dto::*;

use crate::core::tree::VirtualPath;

/// The request body as a stream of byte chunks.
/// A client that stops sending mid-body for [`BODY_IDLE_TIMEOUT`] fails
/// the request, so it cannot hold an upload open forever.
pub(super) fn body_stream(
    body: Option<StreamingBlob>,
) -> impl Stream<Item = Result<Bytes, String>> + Send + Unpin {
    let inner = match body {
        Some(b) => b.map_err(|e| e.to_string()).left_stream(),
        None => futures::stream::empty().right_stream(),
    };
    Box::pin(futures::stream::unfold(Some(inner), |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(BODY_IDLE_TIMEOUT, inner.next()).await {
            Ok(Some(item)) => Some((item, Some(inner))),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!(
                    "the client sent nothing for {} s in the middle of the body",
                    BODY_IDLE_TIMEOUT.as_secs()
                )),
                None,
            )),
        }
    }))
}

/// Reads exactly `len` bytes at `offset` (fewer only at end of file).
pub(super) async fn read_fully(
    reader: &dyn FileReader,
    offset: u64,
    len: usize,
) -> backends::Result<Bytes> {
    let first = reader.read_at(offset, len).await?;
    if first.len() == len || first.is_empty() {
        return Ok(first);
    }
    let mut buf = bytes::BytesMut::from(&first[..]);
    while buf.len() < len {
        let more = reader
            .read_at(offset + buf.len() as u64, len - buf.len())
            .await?;
        if more.is_empty() {
            break;
        }
        buf.extend_from_slice(&more);
    }
    Ok(buf.freeze())
}

/// Streams `range` of an open file, several reads in flight.
pub(super) fn download_stream(
    reader: Arc<dyn FileReader>,
    range: std::ops::Range<u64>,
    path: VirtualPath,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    let chunks: Vec<(u64, usize)> = {
        let mut v = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(READ_CHUNK as u64) as usize;
            v.push((at, len));
            at += len as u64;
        }
        v
    };
    let stream = futures::stream::iter(chunks)
        .map(move |(offset, len)| {
            let reader = reader.clone();
            let path = path.clone();
            async move {
                let data = read_fully(reader.as_ref(), offset, len)
                    .await
                    .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
                if data.len() != len {
                    return Err(std::io::Error::other(format!(
                        "{path}: the file shrank while being read"
                    )));
                }
                Ok(data)
            }
        })
        .buffered(READS_IN_FLIGHT);
    SyncStream(std::sync::Mutex::new(Box::pin(stream)))
}

/// Makes a `Send` stream `Sync` (as `StreamingBlob` needs) by locking it;
/// only one task ever polls it, so the lock is never contended.
pub(super) struct SyncStream<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S: Stream> Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.as_mut().poll_next(cx)
    }
}

/// The bytes of `files`, one after the other, in chunks of up to 1 MiB.
pub(super) fn parts_stream(
    files: Vec<std::path::PathBuf>,
) -> impl Stream<Item = Result<Bytes, String>> + Send + Unpin {
    struct State {
        files: std::collections::VecDeque<std::path::PathBuf>,
        current: Option<tokio::fs::File>,
    }
    let state = State {
        files: files.into(),
        current: None,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        use tokio::io::AsyncReadExt;
        let mut state = state?;
        loop {
            let file = match state.current.as_mut() {
                Some(f) => f,
                None => {
                    let next = state.files.pop_front()?;
                    match tokio::fs::File::open(&next).await {
                        Ok(f) => state.current.insert(f),
                        Err(e) => {
                            return Some((Err(format!("part {}: {e}", next.display())), None))
                        }
                    }
                }
            };
            let mut buf = vec![0u8; 1024 * 1024];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(e.to_string()), None)),
                }
            }
            if filled == 0 {
                state.current = None;
                continue;
            }
            buf.truncate(filled);
            return Some((Ok(Bytes::from(buf)), Some(state)));
        }
    }))
}

/// Bytes read from storage per request of a download.
pub(super) const READ_CHUNK: usize = 256 * 1024;

/// Reads of one download in flight at once (hides a remote's latency).
pub(super) const READS_IN_FLIGHT: usize = 8;

/// Longest pause allowed between two pieces of a request body.
pub(super) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
