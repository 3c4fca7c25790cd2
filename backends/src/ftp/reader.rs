//! A remote file open for reading. One RETR stream serves sequential
//! reads; a read elsewhere reopens it with REST. Reads that arrive a little
//! out of order (an SFTP client keeps many in flight) are served from a
//! window of recently read bytes, or by reading ahead, instead of
//! reopening the transfer for each.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::backend::FtpBackend;
use super::connector::FtpConnector;
use super::error::FtpError;
use super::stream::MaybeTls;
use crate::backend::{FileReader, Metadata};
use crate::pool::Pooled;
use crate::read_window::ReadWindow;
use crate::{BackendError, Result, StoragePath};

/// Bytes kept behind the stream's position for late reads.
const WINDOW: usize = 4 * 1024 * 1024;
/// How far ahead of the stream's position a read may start and still be
/// reached by reading on rather than reopening.
const REACH: u64 = 4 * 1024 * 1024;
/// Largest single read from the data connection.
const READ_CHUNK: usize = 256 * 1024;

/// An open remote file.
pub struct FtpReader {
    backend: FtpBackend,
    path: StoragePath,
    remote: String,
    metadata: Metadata,
    state: tokio::sync::Mutex<ReadState>,
}

struct ReadState {
    /// The connection; `None` after it broke (the next read takes another).
    conn: Option<Pooled<FtpConnector>>,
    /// The open RETR stream, positioned at `pos`.
    data: Option<MaybeTls>,
    /// The bytes just before `pos`.
    window: ReadWindow,
    pos: u64,
    /// The stream reached the end of the file at `pos`.
    eof: bool,
}

impl FtpReader {
    /// A reader of `remote` on `conn`; no transfer starts before the first read.
    pub fn new(
        backend: FtpBackend,
        conn: Pooled<FtpConnector>,
        path: StoragePath,
        remote: String,
        metadata: Metadata,
    ) -> Self {
        FtpReader {
            backend,
            path,
            remote,
            metadata,
            state: tokio::sync::Mutex::new(ReadState {
                conn: Some(conn),
                data: None,
                window: ReadWindow::new(WINDOW),
                pos: 0,
                eof: false,
            }),
        }
    }

    fn err(&self, e: FtpError) -> BackendError {
        self.backend.err(e, "read", &self.path)
    }

    /// Ends the current transfer (if any) and starts one at `offset`.
    async fn reopen(&self, st: &mut ReadState, offset: u64) -> Result<()> {
        if st.conn.is_none() {
            st.conn = Some(self.backend.checkout().await?);
        }
        let Some(conn) = st.conn.as_mut() else {
            return Ok(());
        };
        let data = st.data.take();
        st.window.reset(offset);
        st.pos = offset;
        st.eof = false;
        let result = {
            let mut c = conn.lock().await;
            match c.abort_transfer(data).await {
                Ok(()) => c
                    .start_transfer(&format!("RETR {}", self.remote), Some(offset))
                    .await
                    .map(Some),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(data) => {
                st.data = data;
                Ok(())
            }
            Err(e) => {
                let err = self.err(e);
                if err.is_temporary() {
                    st.drop_conn();
                }
                Err(err)
            }
        }
    }

    /// Reads from the stream until `pos` reaches `end` or the file ends.
    async fn fill(&self, st: &mut ReadState, end: u64) -> Result<()> {
        if st.conn.is_none() {
            return Ok(());
        }
        let timeout = self.backend.settings().io_timeout;
        while st.pos < end && !st.eof {
            let Some(data) = st.data.as_mut() else {
                return Ok(());
            };
            let want = usize::try_from(end - st.pos)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            let window = st.window.buffer();
            window.reserve(want);
            let read = tokio::time::timeout(timeout, data.take(want as u64).read_buf(window)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                // TLS ended without close_notify: the final reply decides.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => {
                    st.drop_conn();
                    return Err(self.err(FtpError::Io(e)));
                }
                Err(_) => {
                    st.drop_conn();
                    return Err(self.err(FtpError::Timeout("reading", timeout.as_secs())));
                }
            };
            if n == 0 {
                st.eof = true;
                st.data = None;
                if let Some(conn) = st.conn.as_ref() {
                    let finished = conn.lock().await.finish_transfer().await;
                    if let Err(e) = finished {
                        let err = self.err(e);
                        if err.is_temporary() {
                            st.drop_conn();
                        }
                        return Err(err);
                    }
                }
                // A data connection closed early (FIN) with a server that had
                // already handed everything to its TCP stack still ends in
                // 226: only the size tells a cut transfer from the whole file.
                if st.pos < self.metadata.size {
                    return Err(self.err(FtpError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the data connection ended after {} of {} bytes",
                            st.pos, self.metadata.size
                        ),
                    ))));
                }
            }
            st.pos += n as u64;
        }
        Ok(())
    }
}

impl ReadState {
    /// Gives up a broken connection (its pool slot is freed).
    fn drop_conn(&mut self) {
        self.data = None;
        if let Some(mut conn) = self.conn.take() {
            conn.mark_broken();
        }
    }
}

#[async_trait::async_trait]
impl FileReader for FtpReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let mut st = self.state.lock().await;
        let end = offset.saturating_add(len as u64);
        if len == 0 || (st.eof && offset >= st.pos) {
            return Ok(Bytes::new());
        }
        let in_window = st.window.holds(offset, st.pos);
        let reachable = offset >= st.pos && offset - st.pos <= REACH && st.data.is_some();
        if !in_window && !reachable {
            if offset >= self.metadata.size {
                // Past the end of the file as it was when opened.
                return Ok(Bytes::new());
            }
            self.reopen(&mut st, offset).await?;
        }
        self.fill(&mut st, end).await?;
        let out = st.window.copy(offset, end.min(st.pos));
        st.window.trim();
        Ok(out)
    }

    async fn metadata(&self) -> Result<Metadata> {
        Ok(self.metadata.clone())
    }
}

impl Drop for FtpReader {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        let (Some(data), Some(mut conn)) = (st.data.take(), st.conn.take()) else {
            return;
        };
        // End the transfer before the connection goes back to the pool.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let result = conn.lock().await.abort_transfer(Some(data)).await;
                    if result.is_err() {
                        conn.mark_broken();
                    }
                });
            }
            Err(_) => conn.mark_broken(),
        }
    }
}
