//! What FTP adds to the shared plain-or-TLS stream ([`MaybeTls`]): taking
//! in what the server sent unasked (TLS 1.3 tickets, close_notify), and a
//! non-blocking look at whether an idle connection is still alive.

use std::time::Duration;

use rustix::net::RecvFlags;
use tokio::io::AsyncReadExt;

pub use crate::tls::MaybeTls;

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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

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
