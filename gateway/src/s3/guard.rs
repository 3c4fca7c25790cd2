//! What keeps one S3 client from hurting the others: addresses that keep
//! failing signatures are refused for a while (like the SSH login
//! throttle), each access key has a request rate, and a response the
//! client stops reading is abandoned ([`StallGuard`]).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use policy::{ConnectionRateSettings, LoginThrottle, ThrottleSettings, TokenBuckets};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Failed signatures from one address, within [`FAILURE_WINDOW`], before
/// it is refused: more than a mistyped secret retried by hand, fewer than
/// a guessing run.
pub const MAX_SIGNATURE_FAILURES: u32 = 20;

/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// How long a refused address waits.
pub const REFUSAL: Duration = Duration::from_secs(5 * 60);

/// The S3 error codes that mean the request's credentials were wrong.
const CREDENTIAL_ERRORS: [&str; 3] = [
    "<Code>SignatureDoesNotMatch</Code>",
    "<Code>InvalidAccessKeyId</Code>",
    "<Code>AuthorizationHeaderMalformed</Code>",
];

/// The endpoint's per-address and per-key limits.
pub struct Guard {
    failures: LoginThrottle,
    per_key: TokenBuckets<String>,
    per_key_rate: u32,
}

/// Why a request is refused before it runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Its address failed too many signatures.
    #[error("too many requests with wrong credentials from this address; try again in {}s", .0.as_secs().max(1))]
    Address(Duration),
    /// Its access key is over its request rate.
    #[error("access key {key} is over its rate of {per_second} requests a second; slow down")]
    Key {
        /// The access key id.
        key: String,
        /// Its rate.
        per_second: u32,
    },
}

impl Refusal {
    /// The label of `gateway_s3_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Address(_) => "signature_failures",
            Refusal::Key { .. } => "key_rate",
        }
    }
}

impl Guard {
    /// Limits with `per_key_rate` requests a second per access key (twice
    /// that at once; 0: none).
    pub fn new(per_key_rate: u32) -> Self {
        Guard {
            failures: LoginThrottle::new(ThrottleSettings {
                max_failures: MAX_SIGNATURE_FAILURES,
                failure_window: FAILURE_WINDOW,
                ban_duration: REFUSAL,
            }),
            per_key: TokenBuckets::new(ConnectionRateSettings {
                per_second: f64::from(per_key_rate),
                burst: per_key_rate.saturating_mul(2),
            }),
            per_key_rate,
        }
    }

    /// Whether a request from `peer` naming access key `key` may run now.
    pub fn admit(&self, peer: IpAddr, key: Option<&str>, now: Instant) -> Result<(), Refusal> {
        if let Err(banned) = self.failures.check(peer) {
            return Err(Refusal::Address(banned.remaining));
        }
        if let Some(key) = key {
            // Only authenticated requests take tokens (in `record`), so a
            // client naming someone else's key cannot use up its rate.
            if !self.per_key.has_token(&key.to_string(), now) {
                return Err(Refusal::Key {
                    key: key.to_string(),
                    per_second: self.per_key_rate,
                });
            }
        }
        Ok(())
    }

    /// Counts the answer to a request from `peer` with key `key`: a
    /// credentials error counts against the address, an authenticated
    /// request takes one of its key's tokens. `body` is the answer's
    /// buffered body, if it has one (errors do).
    pub fn record(
        &self,
        peer: IpAddr,
        key: Option<&str>,
        status: u16,
        body: Option<&Bytes>,
        now: Instant,
    ) -> bool {
        let credentials_wrong = status == 403
            && body.is_some_and(|b| {
                let text = String::from_utf8_lossy(b);
                CREDENTIAL_ERRORS.iter().any(|c| text.contains(c))
            });
        if credentials_wrong {
            self.failures.record_failure(peer);
            return true;
        }
        if let Some(key) = key.filter(|_| status != 403 && status != 401) {
            let _ = self.per_key.take(&key.to_string(), now);
        }
        false
    }
}

/// The access key id a request claims (`Credential=ID/...` in its
/// `Authorization` header or `X-Amz-Credential` query), unverified.
pub fn claimed_key(headers: &hyper::HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|rest| rest.split('/').next())
        .map(str::to_string);
    from_header.or_else(|| {
        query?.split('&').find_map(|pair| {
            let value = pair.strip_prefix("X-Amz-Credential=")?;
            let id = value.split(['/', '%']).next()?;
            Some(id.to_string())
        })
    })
}

/// A connection whose writes fail once one has made no progress for
/// `limit` (a client that stopped reading a download), so its task and
/// buffers are freed instead of waiting forever.
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    /// `inner` with writes limited to `limit` without progress.
    pub fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// `Pending` with a running timer, or the timeout error once it fired.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {}",
                    humantime::format_duration(limit)
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_errors_count_and_keys_have_a_rate() {
        let g = Guard::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Instant::now();
        let denied = Bytes::from_static(b"<Error><Code>AccessDenied</Code></Error>");
        let bad = Bytes::from_static(b"<Error><Code>SignatureDoesNotMatch</Code></Error>");
        assert!(
            !g.record(ip, None, 403, Some(&denied), t),
            "a permission refusal is not a bad signature"
        );
        for _ in 0..MAX_SIGNATURE_FAILURES {
            assert!(g.record(ip, Some("K"), 403, Some(&bad), t));
        }
        assert!(matches!(g.admit(ip, None, t), Err(Refusal::Address(_))));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(g.admit(other, Some("K"), t).is_ok());
        for _ in 0..4 {
            g.record(other, Some("K"), 200, None, t);
        }
        let over = g.admit(other, Some("K"), t).unwrap_err();
        assert_eq!(over.reason(), "key_rate");
        assert!(g.admit(other, Some("L"), t).is_ok(), "another key");
        assert!(g
            .admit(other, Some("K"), t + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn the_claimed_key_is_read_from_header_or_query() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            hyper::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=GWKEY123/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert_eq!(claimed_key(&h, None).as_deref(), Some("GWKEY123"));
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=GWKEY9%2F20261207%2Fus-east-1";
        assert_eq!(
            claimed_key(&hyper::HeaderMap::new(), Some(q)).as_deref(),
            Some("GWKEY9")
        );
        assert_eq!(claimed_key(&hyper::HeaderMap::new(), None), None);
    }
}
