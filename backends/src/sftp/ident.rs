//! The server's SSH identification line (`SSH-2.0-OpenSSH_9.2p1 ...`),
//! read as it passes by on the connection: russh does not hand it out, and
//! what the server is decides whether an upload's close may be pipelined
//! behind its writes (see [`processes_in_order`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest stretch read while looking for the line (RFC 4253 lets a
/// server send other lines first; the identification itself is at most
/// 255 bytes).
const LOOK_AT_MOST: usize = 8 * 1024;

/// A stream that records the first line starting with `SSH-` it reads.
pub(super) struct IdentSniffer<S> {
    inner: S,
    seen: Vec<u8>,
    done: bool,
    ident: Arc<Mutex<Option<String>>>,
}

impl<S> IdentSniffer<S> {
    /// Wraps `inner`; the line appears in the returned slot once read.
    pub(super) fn new(inner: S) -> (Self, Arc<Mutex<Option<String>>>) {
        let ident = Arc::new(Mutex::new(None));
        (
            IdentSniffer {
                inner,
                seen: Vec::new(),
                done: false,
                ident: ident.clone(),
            },
            ident,
        )
    }

    fn look(&mut self, fresh: &[u8]) {
        self.seen.extend_from_slice(fresh);
        while let Some(end) = self.seen.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.seen.drain(..=end).collect();
            if line.starts_with(b"SSH-") {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                *self.ident.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
                self.done = true;
                self.seen = Vec::new();
                return;
            }
        }
        if self.seen.len() > LOOK_AT_MOST {
            self.done = true;
            self.seen = Vec::new();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdentSniffer<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.done {
            if let Poll::Ready(Ok(())) = &result {
                let fresh = buf.filled()[before..].to_vec();
                self.look(&fresh);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdentSniffer<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Whether the server is known to handle one SFTP session's requests one
/// at a time, in order (OpenSSH's `sftp-server` and `internal-sftp`), so
/// that a close sent right behind writes is processed after them. Others
/// (AsyncSSH, Go's `pkg/sftp` behind rclone, ...) may run requests
/// concurrently and close the handle first: their uploads wait for every
/// write's answer before closing.
pub(super) fn processes_in_order(ident: Option<&str>) -> bool {
    ident.is_some_and(|id| id.starts_with("SSH-2.0-OpenSSH_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_identification_is_seen_whatever_comes_first_and_however_split() {
        let wire = b"hello banner\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x01binary";
        for split in [1, 3, 16, wire.len()] {
            let (mut a, b) = tokio::io::duplex(64);
            let (mut sniffer, ident) = IdentSniffer::new(b);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for chunk in wire.chunks(split) {
                    a.write_all(chunk).await.unwrap();
                }
            });
            let mut out = Vec::new();
            sniffer.read_to_end(&mut out).await.unwrap();
            writer.await.unwrap();
            assert_eq!(out, wire, "bytes pass through unchanged");
            let seen = ident.lock().unwrap().clone();
            assert_eq!(seen.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1 Debian-2"));
            assert!(processes_in_order(seen.as_deref()));
        }
        assert!(!processes_in_order(Some("SSH-2.0-AsyncSSH_2.24.1")));
        assert!(!processes_in_order(None));
    }
}
