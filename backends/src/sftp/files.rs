//! Files open on a remote: the reader with its read-ahead and the writer
//! with its writes in flight, each holding its pooled connection.

use super::*;
use std::sync::atomic::AtomicUsize;

/// A remote file open for reading; holds its connection until dropped.
pub(super) struct SftpReader {
    pub(super) backend: SftpBackend,
    pub(super) conn: Option<Pooled<SftpConnector>>,
    pub(super) handle: String,
    pub(super) path: StoragePath,
    /// The file's size when it was opened, if the remote said: a short
    /// read of any length that ends there marks the end of the file (a
    /// short read alone may be a server's own cap on read lengths).
    pub(super) size_at_open: Option<u64>,
    /// Where the last short read showed the end of the file ([`NO_EOF`]
    /// if none): the next read there is answered without a round trip.
    pub(super) eof_at: AtomicU64,
    /// A request failed with a connection error (lost, or no answer in
    /// time): the connection is not asked anything more and never reused.
    pub(super) broken: AtomicBool,
}

/// `eof_at` when no end of file was seen.
pub(super) const NO_EOF: u64 = u64::MAX;

/// Reads up to this long that come back short mark the end of a regular
/// file: SFTP (draft 02, SSH_FXP_READ) guarantees a disk file reads in
/// full up to its end, and every server must accept packets this large,
/// so a short answer cannot be a server's own length cap.
pub(super) const SHORT_READ_IS_EOF: usize = 32 * 1024;

impl SftpReader {
    /// Remembers a connection error so that the connection is dropped,
    /// not asked to close the handle and reused.
    pub(super) fn settle(&self, err: BackendError) -> BackendError {
        if err.is_temporary() {
            self.broken.store(true, Ordering::Relaxed);
        }
        err
    }

    pub(super) fn conn(&self) -> Result<&Pooled<SftpConnector>> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(BackendError::new(
                ErrorKind::ConnectionLost,
                "read",
                self.path.as_str(),
                "the connection to the remote failed earlier",
            ));
        }
        self.conn.as_ref().ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "read",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }
}

#[async_trait]
impl FileReader for SftpReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        // A client confirms the end of a small file with one more read
        // right where the last one stopped short (OpenSSH's `get` does);
        // answer it from what that read showed, once.
        if offset == self.eof_at.load(Ordering::Relaxed)
            && self
                .eof_at
                .compare_exchange(offset, NO_EOF, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(Bytes::new());
        }
        let conn = self.conn()?;
        let mut out: Vec<u8> = Vec::new();
        // One request per chunk, all in flight together, taken in order.
        let mut requests: futures::stream::FuturesOrdered<_> = (0..len.div_ceil(CHUNK))
            .map(|i| {
                let n = CHUNK.min(len - i * CHUNK) as u32;
                conn.guard(
                    conn.sftp
                        .read(self.handle.clone(), offset + (i * CHUNK) as u64, n),
                )
            })
            .collect();
        while let Some(result) = requests.next().await {
            match result {
                Ok(data) => {
                    let short = data.data.len() < CHUNK.min(len - out.len());
                    if out.is_empty() {
                        out = data.data; // the common case: one chunk, no copy
                    } else {
                        out.extend_from_slice(&data.data);
                    }
                    if short {
                        break;
                    }
                }
                Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => break,
                Err(e) => return Err(self.settle(self.backend.err("read", &self.path, e))),
            }
        }
        let end = offset + out.len() as u64;
        if out.len() < len
            && !out.is_empty()
            && (len <= SHORT_READ_IS_EOF || self.size_at_open == Some(end))
        {
            self.eof_at.store(end, Ordering::Relaxed);
        }
        Ok(Bytes::from(out))
    }

    async fn metadata(&self) -> Result<Metadata> {
        let conn = self.conn()?;
        conn.sftp
            .fstat(self.handle.clone())
            .await
            .map(|a| metadata_of(&a.attrs))
            .map_err(|e| self.settle(self.backend.err("stat", &self.path, e)))
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) {
            // Dropped broken: the pool closes it and frees its slot.
            if let Some(mut conn) = self.conn.take() {
                conn.mark_broken();
            }
            return;
        }
        // Close the remote handle before the connection goes back to the pool.
        if let Some(conn) = self.conn.take() {
            let handle = std::mem::take(&mut self.handle);
            spawn_cleanup(async move {
                let _ = conn.sftp.close(handle).await;
                drop(conn);
            });
        }
    }
}

pub(super) fn spawn_cleanup(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(task);
    }
}

pub(super) type WriteFuture = BoxFuture<'static, std::result::Result<(), SftpError>>;

/// How a new file reaches its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Publish {
    /// Written under a hidden name, renamed to `final_remote` on close;
    /// `exclusive`: the final name must not exist.
    Rename {
        /// The final name on the remote.
        final_remote: String,
        /// Whether the final name must not exist.
        exclusive: bool,
    },
    /// Written under its final name (`atomic_uploads = false`), removed if
    /// the upload fails.
    InPlace {
        /// Whether the name must not exist (the open fails if it does).
        exclusive: bool,
    },
}

/// A remote file being written; holds its connection until closed.
pub(super) struct SftpWriter {
    pub(super) backend: SftpBackend,
    pub(super) conn: Option<Pooled<SftpConnector>>,
    pub(super) handle: String,
    pub(super) path: StoragePath,
    /// The file written to (a hidden temporary name for an atomic
    /// `Replace`).
    pub(super) target: String,
    /// For `Replace`: how the file is published, and so what a failure
    /// removes (the target either way).
    pub(super) publish: Option<Publish>,
    pub(super) position: u64,
    pub(super) in_flight: FuturesUnordered<WriteFuture>,
    /// Writes in `in_flight` not sent yet: a write request goes out when
    /// its future is first polled, and `FuturesUnordered` may stop polling
    /// before it has polled every new future (when two of them yield, as
    /// under tokio's cooperative budget). The close must not overtake
    /// them: the server would close the handle first and answer those
    /// writes with a bare `Failure` (seen under a 40-client burst, where a
    /// `tokio::select!` in `guarded` also held requests back: see there).
    pub(super) unsent: Arc<AtomicUsize>,
}

/// A write future that counts itself sent once it has been polled (see
/// [`SftpWriter::unsent`]).
pub(super) struct SentOnFirstPoll {
    inner: WriteFuture,
    unsent: Option<Arc<AtomicUsize>>,
}

impl std::future::Future for SentOnFirstPoll {
    type Output = std::result::Result<(), SftpError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let result = self.inner.as_mut().poll(cx);
        if let Some(unsent) = self.unsent.take() {
            unsent.fetch_sub(1, Ordering::SeqCst);
        }
        result
    }
}

impl SftpWriter {
    pub(super) fn sftp(&self) -> Result<Arc<RawSftpSession>> {
        self.conn.as_ref().map(|c| c.sftp.clone()).ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "write",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }

    pub(super) fn dead(&self) -> Result<Arc<DeadSignal>> {
        self.conn.as_ref().map(|c| c.dead.clone()).ok_or_else(|| {
            BackendError::new(
                ErrorKind::ConnectionLost,
                "write",
                self.path.as_str(),
                "the file is closed",
            )
        })
    }

    pub(super) fn fail(&mut self, e: SftpError) -> BackendError {
        let err = self.backend.err("write", &self.path, e);
        if err.is_temporary() {
            if let Some(c) = self.conn.as_mut() {
                c.mark_broken();
            }
        }
        err
    }

    pub(super) async fn drain(&mut self) -> Result<()> {
        while let Some(done) = self.in_flight.next().await {
            if let Err(e) = done {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for SftpWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        let sftp = self.sftp()?;
        let dead = self.dead()?;
        while !data.is_empty() {
            while self.in_flight.len() >= WRITES_IN_FLIGHT {
                if let Some(Err(e)) = self.in_flight.next().await {
                    return Err(self.fail(e));
                }
            }
            let chunk = data.split_to(CHUNK.min(data.len()));
            let (sftp, handle, offset, len) = (
                sftp.clone(),
                self.handle.clone(),
                self.position,
                chunk.len(),
            );
            // Zero-copy when the gateway handed over the only reference.
            let bytes = Vec::from(chunk);
            let write = guarded(dead.clone(), async move {
                sftp.write(handle, offset, bytes).await.map(|_| ())
            });
            self.unsent.fetch_add(1, Ordering::SeqCst);
            self.in_flight.push(Box::pin(SentOnFirstPoll {
                inner: Box::pin(write),
                unsent: Some(self.unsent.clone()),
            }));
            self.position += len as u64;
            // A request goes out when its future is first polled: poll now,
            // so the remote works on this chunk while the client sends the
            // next one (or its close), instead of at the next drain.
            if let Some(Some(Err(e))) = self.in_flight.next().now_or_never() {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let sftp = self.sftp()?;
        let handle = self.handle.clone();
        // The close is sent right behind the writes still in flight (the
        // server handles one session's requests in order), and their
        // answers are awaited together: one round trip instead of two.
        // Nothing is published unless every write and the close succeeded.
        if !self.conn.as_ref().is_some_and(|c| c.in_order) {
            // A server that may run requests concurrently could close the
            // handle before the last writes: wait for their answers first.
            if let Err(e) = self.drain().await {
                self.discard().await;
                return Err(e);
            }
        }
        let dead = self.dead()?;
        let unsent = self.unsent.clone();
        let (drained, closed) =
            close_behind_writes(self.drain(), &unsent, guarded(dead, sftp.close(handle))).await;
        if let Err(e) = drained {
            self.discard().await;
            return Err(e);
        }
        if let Some(Err(e)) = closed {
            let err = self.fail(e);
            self.discard().await;
            return Err(err);
        }
        if let Some(Publish::Rename {
            final_remote,
            exclusive,
        }) = self.publish.take()
        {
            let conn = self.conn.as_ref().ok_or_else(|| {
                BackendError::new(
                    ErrorKind::ConnectionLost,
                    "close",
                    self.path.as_str(),
                    "the file is closed",
                )
            })?;
            self.backend.removals().forget(&final_remote).await;
            let result = if exclusive {
                conn.sftp
                    .rename(self.target.clone(), final_remote)
                    .await
                    .map(|_| ())
            } else {
                rename_replacing(conn, &self.target, &final_remote).await
            };
            if let Err(e) = result {
                let mut err = self.fail(e);
                if matches!(
                    err.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::Unsupported
                ) {
                    // Said so the admin knows the way out.
                    let remote = err.remote().map(Arc::<str>::from);
                    let better = BackendError::new(
                        err.kind(),
                        "write",
                        self.path.as_str(),
                        format!(
                            "the server refused to rename the finished upload into place ({}); \
                             a server that forbids renames needs `atomic_uploads = false` on the remote",
                            err.message()
                        ),
                    );
                    err = match &remote {
                        Some(r) => better.in_remote(r),
                        None => better,
                    };
                }
                if let Some(conn) = self.conn.as_mut() {
                    remove_temporary(&self.backend, conn, &self.target).await;
                }
                return Err(err);
            }
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}

/// Runs `drain` (awaiting the writes in flight, which sends those still
/// `unsent`) together with `close`, which is sent once no write is left
/// unsent, so that it follows them on the wire. When the drain fails first,
/// the writes it leaves behind are never sent and the close is not sent
/// either (`None`): the caller discards the upload, which closes the handle.
pub(super) async fn close_behind_writes<C: std::future::Future>(
    drain: impl std::future::Future<Output = Result<()>>,
    unsent: &AtomicUsize,
    close: C,
) -> (Result<()>, Option<C::Output>) {
    let drain_failed = AtomicBool::new(false);
    let drain = async {
        let drained = drain.await;
        if drained.is_err() {
            drain_failed.store(true, Ordering::SeqCst);
        }
        drained
    };
    let close = async {
        // `join!` polls the drain first, which sends what is unsent.
        while unsent.load(Ordering::SeqCst) > 0 {
            if drain_failed.load(Ordering::SeqCst) {
                return None;
            }
            tokio::task::yield_now().await;
        }
        Some(close.await)
    };
    futures::join!(drain, close)
}

impl SftpWriter {
    /// Closes the handle and, for a `Replace`, removes the temporary file
    /// (or remembers it, if the connection is broken).
    pub(super) async fn discard(&mut self) {
        while self.in_flight.next().await.is_some() {}
        let temporary = self.publish.take().map(|_| self.target.as_str());
        if let Some(conn) = self.conn.as_mut() {
            clean_up(&self.backend, conn, &self.handle, temporary).await;
        }
    }
}

/// Closes the handle of a discarded upload and removes its temporary file
/// `temporary`, if any. A broken connection is not asked to: it would
/// only wait for the timeouts again; the temporary file (never under the
/// final name) is then removed through the next working connection.
pub(super) async fn clean_up(
    backend: &SftpBackend,
    conn: &mut Pooled<SftpConnector>,
    handle: &str,
    temporary: Option<&str>,
) {
    if !conn.is_broken() && !handle.is_empty() {
        if let Err(e) = conn.guard(conn.sftp.close(handle)).await {
            if connection_broke(&e) {
                conn.mark_broken();
            }
        }
    }
    if let Some(temporary) = temporary {
        remove_temporary(backend, conn, temporary).await;
    }
}

/// Removes the temporary file `temporary` of a failed upload through
/// `conn`, or remembers it for the next working connection when `conn` is
/// (or turns out) broken.
pub(super) async fn remove_temporary(
    backend: &SftpBackend,
    conn: &mut Pooled<SftpConnector>,
    temporary: &str,
) {
    let why = if conn.is_broken() {
        "the connection to the remote broke".to_string()
    } else {
        match (&**conn).remove(temporary).await {
            Removal::Broken(e) => {
                conn.mark_broken();
                e.to_string()
            }
            // Removed, never created, or not ours to remove.
            _ => return,
        }
    };
    backend.removals().remember(temporary, &why);
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        // Dropped without close (client vanished): discard in the background.
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let backend = self.backend.clone();
        let in_flight = std::mem::take(&mut self.in_flight);
        let handle = std::mem::take(&mut self.handle);
        let temporary = self.publish.take().map(|_| self.target.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    in_flight.for_each(|_| async {}).await;
                    clean_up(&backend, &mut conn, &handle, temporary.as_deref()).await;
                });
            }
            Err(_) => {
                if let Some(temporary) = temporary {
                    backend
                        .removals()
                        .remember(&temporary, "the upload was dropped outside a runtime");
                }
                conn.mark_broken();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write failing while others are still unsent (seen in CI after the
    /// remote's sshd was killed mid-upload): the close must give up, not
    /// wait forever for writes that will never be sent.
    #[tokio::test]
    async fn a_failed_drain_with_writes_unsent_skips_the_close() {
        let unsent = AtomicUsize::new(2);
        let failed_drain = async {
            Err(BackendError::new(
                ErrorKind::ConnectionLost,
                "write",
                "/f",
                "lost",
            ))
        };
        let (drained, closed) = tokio::time::timeout(
            Duration::from_secs(5),
            close_behind_writes(failed_drain, &unsent, async { "closed" }),
        )
        .await
        .expect("the close waited forever behind writes that were never sent");
        assert!(drained.is_err());
        assert_eq!(closed, None);
    }

    /// The close goes out only after the drain has sent every write.
    #[tokio::test]
    async fn the_close_waits_until_every_write_is_sent() {
        let unsent = AtomicUsize::new(1);
        let sent_before_close = AtomicBool::new(false);
        let drain = async {
            tokio::task::yield_now().await;
            sent_before_close.store(true, Ordering::SeqCst);
            unsent.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        };
        let close = async { sent_before_close.load(Ordering::SeqCst) };
        let (drained, closed) = close_behind_writes(drain, &unsent, close).await;
        assert!(drained.is_ok());
        assert_eq!(closed, Some(true), "the close overtook an unsent write");
    }
}
