//! Noticing that a connection died or stalled: a stream wrapper that ends
//! with its SSH session and closes it when nothing comes back for the I/O
//! timeout while requests are outstanding.

use super::*;

/// A stream that ends (reads give EOF, writes fail) as soon as its SSH
/// session is closed, even while blocked waiting for the peer; and that
/// closes the session when the remote stalls: requests are outstanding
/// and nothing has come back for the I/O timeout. Progress, not the age of
/// a request, is what counts, so a slow remote serving a deep pipeline of
/// reads is never mistaken for a dead one.
pub(super) struct Watched<S> {
    pub(super) inner: S,
    pub(super) dead: Arc<DeadSignal>,
    pub(super) sent: FrameCounter,
    pub(super) received: FrameCounter,
}

#[derive(Default)]
pub(super) struct DeadSignal {
    pub(super) dead: std::sync::atomic::AtomicBool,
    pub(super) reader: futures::task::AtomicWaker,
    pub(super) writer: futures::task::AtomicWaker,
    /// SFTP packets written (requests) and read (answers): SFTP answers
    /// every request once, so the difference is what is outstanding.
    pub(super) requests: AtomicU64,
    pub(super) answers: AtomicU64,
    /// Wakes [`DeadSignal::wait`].
    pub(super) notify: tokio::sync::Notify,
    /// When bytes last came from the remote, or a request went out while
    /// none was outstanding (milliseconds since `epoch`).
    pub(super) progress_ms: AtomicU64,
    pub(super) epoch: std::sync::OnceLock<tokio::time::Instant>,
}

impl DeadSignal {
    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn now_ms(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(tokio::time::Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn outstanding(&self) -> u64 {
        self.requests
            .load(Ordering::SeqCst)
            .saturating_sub(self.answers.load(Ordering::SeqCst))
    }

    /// Whether requests have waited `timeout` without any progress.
    pub(super) fn stalled(&self, timeout: Duration) -> bool {
        let idle = self
            .now_ms()
            .saturating_sub(self.progress_ms.load(Ordering::SeqCst));
        self.outstanding() > 0 && idle >= u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn kill(&self) {
        self.dead.store(true, std::sync::atomic::Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
        self.notify.notify_waiters();
    }

    /// Resolves once the connection is dead.
    pub(super) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_dead() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts the SFTP packets (`u32` length, then that many bytes) in one
/// direction of the byte stream.
#[derive(Default)]
pub(super) struct FrameCounter {
    pub(super) header: [u8; 4],
    pub(super) header_len: usize,
    pub(super) remaining: u64,
}

impl FrameCounter {
    /// The number of packets that `bytes` completes.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut complete = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    complete += 1;
                }
                continue;
            }
            let n = (4 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 4 {
                self.header_len = 0;
                self.remaining = u64::from(u32::from_be_bytes(self.header));
                if self.remaining == 0 {
                    complete += 1;
                }
            }
        }
        complete
    }
}

pub(super) fn watched<S>(
    inner: S,
    ssh: &Arc<russh::client::Handle<ClientHandler>>,
    io_timeout: Duration,
) -> Watched<S> {
    let dead = Arc::new(DeadSignal::default());
    dead.progress_ms.store(dead.now_ms(), Ordering::SeqCst);
    let (signal, session) = (dead.clone(), Arc::downgrade(ssh));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(handle) = session.upgrade() else {
                signal.kill();
                return;
            };
            if handle.is_closed() {
                signal.kill();
                return;
            }
            if signal.stalled(io_timeout) {
                tracing::debug!(
                    outstanding = signal.outstanding(),
                    "SFTP remote stalled for {io_timeout:?}: dropping the connection"
                );
                signal.kill();
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "stalled", "en")
                    .await;
                return;
            }
        }
    });
    Watched {
        inner,
        dead,
        sent: FrameCounter::default(),
        received: FrameCounter::default(),
    }
}

pub(super) fn closed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the SSH connection to the remote closed",
    )
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.dead.reader.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            let answers = this.received.feed(&buf.filled()[before..]);
            this.dead.answers.fetch_add(answers, Ordering::SeqCst);
            this.dead
                .progress_ms
                .store(this.dead.now_ms(), Ordering::SeqCst);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.dead.writer.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Err(closed_error()));
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            let this = &mut *self;
            let requests = this.sent.feed(&buf[..*n]);
            if requests > 0 {
                // Waiting starts now if nothing was outstanding before.
                if this.dead.outstanding() == 0 {
                    this.dead
                        .progress_ms
                        .store(this.dead.now_ms(), Ordering::SeqCst);
                }
                this.dead.requests.fetch_add(requests, Ordering::SeqCst);
            }
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.dead.writer.register(cx.waker());
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Err(closed_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.dead.is_dead() {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod frame_tests {
    use super::FrameCounter;

    #[test]
    fn counts_packets_split_anywhere() {
        let mut stream = Vec::new();
        for len in [5u32, 0, 70000, 1] {
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for piece in [1, 3, 4, 5, 1000, stream.len()] {
            let mut c = FrameCounter::default();
            let total: u64 = stream.chunks(piece).map(|p| c.feed(p)).sum();
            assert_eq!(total, 4, "pieces of {piece}");
        }
        let mut c = FrameCounter::default();
        assert_eq!(c.feed(&stream[..stream.len() - 1]), 3);
    }
}
