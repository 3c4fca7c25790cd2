//! Outbound TCP connections from the gateway's dedicated source addresses.
//!
//! Counterparties whitelist the gateway's dedicated IPs, so a connection
//! that should leave from one of them must never leave from anywhere else:
//! if no dedicated address can be bound, dialing fails with an error that
//! names them. Consecutive connections are spread across the addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::{BackendError, ConnectFailure, ErrorKind, Result};

/// Where outbound connections come from.
#[derive(Debug, Clone, Default)]
pub struct SourceAddresses {
    /// The dedicated addresses; empty means the system chooses.
    addresses: Arc<Vec<IpAddr>>,
    /// Rotates the first address tried.
    next: Arc<AtomicUsize>,
}

impl SourceAddresses {
    /// Connections bind to one of `addresses` (the system chooses if empty).
    pub fn dedicated(addresses: Vec<IpAddr>) -> Self {
        SourceAddresses {
            addresses: Arc::new(addresses),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections leave from whatever address the system chooses.
    pub fn system() -> Self {
        SourceAddresses::default()
    }

    /// The configured addresses (empty when the system chooses).
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }
}

/// Connects to `host:port` from one of `sources`, within `timeout`.
/// Returns the stream and the local address it left from.
pub async fn dial(
    host: &str,
    port: u16,
    sources: &SourceAddresses,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr)> {
    let target = format!("{host}:{port}");
    let resolved: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                BackendError::new(
                    ErrorKind::Timeout,
                    "connect",
                    "",
                    format!("{target}: name lookup timed out"),
                )
                .with_connect_failure(ConnectFailure::Timeout)
            })?
            .map_err(|e| {
                BackendError::new(
                    ErrorKind::ConnectionLost,
                    "connect",
                    "",
                    format!("{target}: unreachable: cannot resolve the name: {e}"),
                )
                .with_connect_failure(ConnectFailure::Other)
            })?
            .collect();
    let Some(first) = resolved.first().copied() else {
        return Err(BackendError::new(
            ErrorKind::ConnectionLost,
            "connect",
            "",
            format!("{target}: unreachable: the name has no address"),
        )
        .with_connect_failure(ConnectFailure::Other));
    };
    let stream = if sources.addresses.is_empty() {
        let socket = new_socket(first).map_err(|e| connect_error(&target, e))?;
        connect(socket, first, &target, timeout).await?
    } else {
        dial_from_dedicated(&resolved, sources, &target, timeout).await?
    };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_err(|e| connect_error(&target, e))?;
    Ok((stream, local))
}

async fn dial_from_dedicated(
    resolved: &[SocketAddr],
    sources: &SourceAddresses,
    target: &str,
    timeout: Duration,
) -> Result<TcpStream> {
    let count = sources.addresses.len();
    let start = sources.next.fetch_add(1, Ordering::Relaxed);
    let mut bind_failures = Vec::new();
    for i in 0..count {
        let source = sources.addresses[(start + i) % count];
        // A source of the wrong family can never reach the target.
        let Some(dest) = resolved
            .iter()
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .copied()
        else {
            bind_failures.push(format!(
                "{source}: the remote has no address of that family"
            ));
            continue;
        };
        let bound = new_socket(dest).and_then(|s| s.bind(SocketAddr::new(source, 0)).map(|()| s));
        match bound {
            Ok(socket) => return connect(socket, dest, target, timeout).await,
            Err(e) => bind_failures.push(format!("{source}: {e}")),
        }
    }
    Err(BackendError::new(
        ErrorKind::Other,
        "connect",
        "",
        format!(
            "{target}: cannot bind source address (dedicated IPs {}): {}; not connecting from any other address",
            sources.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
            bind_failures.join("; ")
        ),
    )
    .with_connect_failure(ConnectFailure::BindFailed))
}

fn new_socket(dest: SocketAddr) -> std::io::Result<TcpSocket> {
    if dest.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

async fn connect(
    socket: TcpSocket,
    dest: SocketAddr,
    target: &str,
    timeout: Duration,
) -> Result<TcpStream> {
    match tokio::time::timeout(timeout, socket.connect(dest)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(connect_error(target, e)),
        Err(_) => Err(BackendError::new(
            ErrorKind::Timeout,
            "connect",
            "",
            format!(
                "{target}: unreachable: no answer within {}s",
                timeout.as_secs()
            ),
        )
        .with_connect_failure(ConnectFailure::Timeout)),
    }
}

fn connect_error(target: &str, e: std::io::Error) -> BackendError {
    let reason = ConnectFailure::of_io(&e);
    BackendError::new(
        ErrorKind::ConnectionLost,
        "connect",
        "",
        format!("{target}: unreachable: {e}"),
    )
    .with_connect_failure(reason)
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_the_dedicated_addresses_in_turn() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sources = SourceAddresses::dedicated(vec![
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
        ]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (_stream, local) = dial("127.0.0.1", port, &sources, Duration::from_secs(5))
                .await
                .unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), local.ip());
            seen.push(local.ip().to_string());
        }
        assert_eq!(seen, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
    }

    #[tokio::test]
    async fn skips_an_unbindable_address_and_never_falls_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mixed = SourceAddresses::dedicated(vec![
            "192.0.2.1".parse().unwrap(),
            "127.0.0.4".parse().unwrap(),
        ]);
        for _ in 0..2 {
            let (_s, local) = dial("127.0.0.1", port, &mixed, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(local.ip().to_string(), "127.0.0.4");
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip().to_string(), "127.0.0.4");
        }
        let none = SourceAddresses::dedicated(vec!["192.0.2.1".parse().unwrap()]);
        let err = dial("127.0.0.1", port, &none, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            err.message().contains("cannot bind source address"),
            "{err}"
        );
        assert!(err.message().contains("192.0.2.1"), "{err}");
        assert_eq!(err.connect_failure(), Some(ConnectFailure::BindFailed));
        // Nothing reached the listener from the failed attempt.
        let pending = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            pending.is_err(),
            "a connection arrived despite the bind failure"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_classified() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = dial(
            "127.0.0.1",
            port,
            &SourceAddresses::system(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.connect_failure(),
            Some(ConnectFailure::Refused),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::ConnectionLost);
    }
}
