//! A TCP stream that may carry TLS, for control and data connections alike,
//! and a non-blocking look at whether an idle one is still alive.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustix::net::RecvFlags;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A plain or TLS-protected connection.
#[derive(Debug)]
pub enum MaybeTls {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// What an idle connection's socket shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Nothing to read: the usual state of a healthy idle connection.
    Quiet,
    /// Bytes arrived unasked (a `421` before closing, or TLS records).
    Pending,
    /// The peer closed the connection or the socket failed.
    Closed,
}

impl MaybeTls {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
        }
    }

    /// The TLS session, if there is one.
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(s) => Some(s.get_ref().1),
        }
    }

    /// Reads what the server has already sent, without waiting. On a TLS
    /// 1.3 data connection that takes in the session tickets the server
    /// sent after the handshake: an upload never reads otherwise, and
    /// without fresh tickets later data connections could not resume the
    /// control connection's session (which vsftpd demands).
    pub fn take_pending(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match futures::FutureExt::now_or_never(self.read(&mut buf)) {
                Some(Ok(n)) if n > 0 => continue,
                _ => return,
            }
        }
    }

    /// Reads until the server closes the connection (or `limit` passes),
    /// so its last TLS records (tickets, close_notify) are taken in and no
    /// unread data makes the close a reset.
    pub async fn drain(&mut self, limit: Duration) {
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(limit, async {
            while let Ok(n) = self.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// Looks at the socket without reading from it or blocking.
    pub fn health(&self) -> Health {
        let mut byte = [0u8; 1];
        match rustix::net::recv(
            self.tcp(),
            &mut byte[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Ok((_, 0)) => Health::Closed,
            Ok(_) => Health::Pending,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Health::Quiet,
            Err(_) => Health::Closed,
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn health_sees_pending_bytes_and_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = MaybeTls::Plain(TcpStream::connect(addr).await.unwrap());
        let (mut server, _) = listener.accept().await.unwrap();
        assert_eq!(client.health(), Health::Quiet);
        server.write_all(b"421 bye\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(client.health(), Health::Pending);

        let other = MaybeTls::Plain(TcpStream::connect(addr).await.unwrap());
        let (server, _) = listener.accept().await.unwrap();
        drop(server);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(other.health(), Health::Closed);
    }
}
