//! The HTTP client aws-sdk-s3 sends through: hyper-util's pooled HTTP/1.1
//! client over our [`Connector`], because the SDK's own client cannot bind
//! a source address.
//!
//! It also does what the SDK leaves to its HTTP client:
//! - the per-remote cap on parallel requests (a semaphore; a slot is held
//!   from sending until the response body is finished or dropped, and
//!   waited for up to the I/O timeout);
//! - timeouts: connecting is bounded by the connect timeout (in the
//!   connector), and after that a request fails when neither a byte of its
//!   body is taken nor its response headers arrive for the I/O timeout, and
//!   a response body fails when no data arrives for the I/O timeout while
//!   it is being read. Long transfers are fine as long as they move.
//!
//! Timeouts, a full request cap and connect failures other than refused or
//! unreachable connections are reported so that the SDK does not retry
//! them: a stalled server must end in an error within the timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::connect::{capture_connection, CaptureConnection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::connector::{BoxError, Connector};
use crate::error::find_in_chain;
use crate::slots::{SlotGate, SlotLease};
use crate::{BackendError, ErrorKind};

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Largest piece of a request body handed to hyper at once, so that upload
/// progress is seen while a large part is being sent.
const SEND_PIECE: usize = 64 * 1024;

/// Why the HTTP client gave up on a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// Nothing was sent or received for the I/O timeout.
    #[error("the server stopped answering: nothing received within {}", shown(*.0))]
    Stalled(Duration),
    /// Every request slot stayed taken for the I/O timeout.
    #[error("too busy: {max} requests already in flight for {}", shown(*.waited))]
    Busy {
        /// The cap.
        max: usize,
        /// How long the request waited.
        waited: Duration,
    },
}

/// `30s`, or `400ms` below a second.
fn shown(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// One of the `max_requests` request slots, held until the response body
/// ends; counted in `gateway_remote_connections_in_use` while held. In a
/// cluster it also holds one of the remote's cluster-wide slots.
struct RequestSlot {
    _permit: OwnedSemaphorePermit,
    _lease: Option<SlotLease>,
    in_flight: ::metrics::Gauge,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// The SDK's HTTP client for one remote; cheap to clone.
#[derive(Clone)]
pub struct GatewayHttp {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<Connector, RequestBody>,
    /// The remote's name (the cluster's slots are per remote name).
    remote: String,
    permits: Arc<Semaphore>,
    /// The cluster's slots, when several nodes share the cap.
    gate: OnceLock<Arc<dyn SlotGate>>,
    max_requests: usize,
    /// Requests in flight (`gateway_remote_connections_in_use`).
    in_flight: ::metrics::Gauge,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl std::fmt::Debug for GatewayHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHttp")
            .field("max_requests", &self.inner.max_requests)
            .field("io_timeout", &self.inner.io_timeout)
            .finish()
    }
}

impl GatewayHttp {
    /// A client over `connector`, with at most `max_requests` requests at
    /// once; `remote` names it in the metrics.
    pub fn new(
        remote: &str,
        connector: Connector,
        max_requests: usize,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(max_requests)
            .build(connector);
        let r = remote.to_string();
        ::metrics::gauge!(crate::metrics::CONNECTIONS_MAX, "remote" => r.clone())
            .set(max_requests as f64);
        let in_flight = ::metrics::gauge!(crate::metrics::CONNECTIONS_IN_USE, "remote" => r);
        in_flight.set(0.0);
        GatewayHttp {
            inner: Arc::new(Inner {
                client,
                remote: remote.to_string(),
                permits: Arc::new(Semaphore::new(max_requests.max(1))),
                gate: OnceLock::new(),
                max_requests,
                in_flight,
                connect_timeout,
                io_timeout,
            }),
        }
    }

    /// Sends one request and returns its response with a streaming body.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let io_timeout = self.inner.io_timeout;
        let permit = self.acquire().await?;
        let request = request
            .try_into_http1x()
            .map_err(|e| ConnectorError::user(e.into()))?;
        // Until a connection is ready the deadline leaves room for connecting.
        let progress = Arc::new(Progress::new(self.inner.connect_timeout));
        let (parts, body) = request.into_parts();
        let body = RequestBody {
            inner: body,
            pending: Bytes::new(),
            progress: progress.clone(),
        };
        let mut request = http::Request::from_parts(parts, body);
        let mut connection = capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            // The SDK closes a connection after a transient error (5xx,
            // throttling) through this; without it, it logs an ERROR.
            let captured = connection.clone();
            smithy.set_connection_retriever(move || smithy_connection(&captured));
        }
        let mut connected = false;
        let mut pending = std::pin::pin!(self.inner.client.request(request));
        let response = loop {
            tokio::select! {
                biased;
                result = &mut pending => match result {
                    Ok(response) => break response,
                    Err(e) => return Err(classify(e)),
                },
                ready = connection.wait_for_connection_metadata(), if !connected => {
                    connected = true;
                    if ready.is_some() {
                        progress.connected();
                    }
                }
                () = tokio::time::sleep_until(progress.deadline(io_timeout)) => {
                    if progress.deadline(io_timeout) <= Instant::now() {
                        return Err(ConnectorError::other(
                            Box::new(HttpFailure::Stalled(io_timeout)),
                            None,
                        ));
                    }
                    // The body moved on since the deadline was set.
                }
            }
        };
        let (parts, body) = response.into_parts();
        let body = ResponseBody {
            permit: (!body.is_end_stream()).then_some(permit),
            inner: body,
            idle: io_timeout,
            timer: None,
        };
        let response = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
        HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
    }

    /// Makes `max_requests` a cap over every gateway node: each request
    /// also holds one of the remote's cluster-wide slots from `gate`
    /// (see [`crate::slots`]). Call once, before use.
    pub fn use_slot_gate(&self, gate: Arc<dyn SlotGate>) {
        let _ = self.inner.gate.set(gate);
    }

    /// A request slot, waiting up to the I/O timeout (for this node's slot
    /// and the cluster's together).
    async fn acquire(&self) -> Result<RequestSlot, ConnectorError> {
        let wait = self.inner.io_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let busy = || {
            ConnectorError::other(
                Box::new(HttpFailure::Busy {
                    max: self.inner.max_requests,
                    waited: wait,
                }),
                None,
            )
        };
        let permit =
            match tokio::time::timeout_at(deadline, self.inner.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                _ => return Err(busy()),
            };
        let lease = match self.inner.gate.get() {
            None => None,
            Some(gate) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match gate
                    .acquire(&self.inner.remote, self.inner.max_requests, left)
                    .await
                {
                    Ok(lease) => Some(lease),
                    // Its message says whether all slots were busy across
                    // the cluster or the cluster cannot tell.
                    Err(e) => return Err(ConnectorError::other(Box::new(e), None)),
                }
            }
        };
        self.inner.in_flight.increment(1.0);
        Ok(RequestSlot {
            _permit: permit,
            _lease: lease,
            in_flight: self.inner.in_flight.clone(),
        })
    }
}

/// The request's connection as the SDK sees it: something it can poison
/// (hyper then closes it instead of returning it to the pool).
fn smithy_connection(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    captured.connection_metadata().as_ref()?;
    let captured = captured.clone();
    Some(
        ConnectionMetadata::builder()
            .proxied(false)
            .poison_fn(move || {
                if let Some(connected) = captured.connection_metadata().as_ref() {
                    connected.poison();
                }
            })
            .build(),
    )
}

/// A failure of hyper-util's client as the SDK should see it: connections
/// refused or cut are I/O errors (retried); timeouts, bind and TLS
/// failures are final.
fn classify(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let dial_kind = find_in_chain::<BackendError>(&e).map(BackendError::kind);
    match dial_kind {
        Some(ErrorKind::ConnectionLost) | None => ConnectorError::io(e.into()),
        Some(_) => ConnectorError::other(e.into(), None),
    }
}

impl HttpConnector for GatewayHttp {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move { this.send(request).await })
    }
}

impl HttpClient for GatewayHttp {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The timeouts are the remote's own (S3Settings), not the SDK's.
        SharedHttpConnector::new(self.clone())
    }
}

/// When a request last made progress.
struct Progress {
    base: Instant,
    /// Milliseconds after `base`.
    last_ms: AtomicU64,
}

impl Progress {
    /// Progress "made" `grace` from now, so the first deadline is later.
    fn new(grace: Duration) -> Self {
        Progress {
            base: Instant::now(),
            last_ms: AtomicU64::new(millis(grace)),
        }
    }

    /// The connection is ready: the I/O timeout runs from now (also when
    /// that is earlier than the room left for connecting).
    fn connected(&self) {
        self.last_ms
            .store(millis(self.base.elapsed()), Ordering::Relaxed);
    }

    /// Progress now.
    fn touch(&self) {
        self.last_ms
            .fetch_max(millis(self.base.elapsed()), Ordering::Relaxed);
    }

    fn deadline(&self, timeout: Duration) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request body handed to hyper in pieces, noting progress as it goes.
pub struct RequestBody {
    inner: SdkBody,
    /// The rest of the data frame being sent.
    pending: Bytes,
    progress: Arc<Progress>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(SEND_PIECE);
                let piece = this.pending.split_to(n);
                this.progress.touch();
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(other) => {
                        this.progress.touch();
                        return Poll::Ready(Some(Ok(other)));
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let extra = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

/// A response body that holds its request slot until it ends and fails
/// when no data arrives for the I/O timeout while it is read.
struct ResponseBody {
    inner: hyper::body::Incoming,
    permit: Option<RequestSlot>,
    idle: Duration,
    /// Running while the body is read and nothing arrives.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.permit = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.permit = None;
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.permit = None;
                        Poll::Ready(Some(Err(Box::new(HttpFailure::Stalled(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dial::SourceAddresses;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn client(max: usize, io: Duration) -> GatewayHttp {
        let connector = Connector::new(
            "test",
            SourceAddresses::system(),
            Duration::from_secs(2),
            None,
        );
        GatewayHttp::new("test", connector, max, Duration::from_secs(2), io)
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest::try_from(
            http::Request::builder()
                .uri(url)
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap()
    }

    /// Accepts connections, reads the request head and answers `reply`
    /// (or nothing, when `reply` is `None`), keeping the connection open.
    async fn server(reply: Option<&'static str>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/b/k", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                if let Some(reply) = reply {
                    let _ = s.write_all(reply.as_bytes()).await;
                }
                held.push(s);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (url, task) = server(None).await;
        let http = client(4, Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = http.send(get(&url)).await.unwrap_err();
        let stalled = find_in_chain::<HttpFailure>(&err);
        assert!(matches!(stalled, Some(HttpFailure::Stalled(_))), "{err:?}");
        assert!(!err.is_io() && !err.is_timeout(), "must not be retried");
        assert!(started.elapsed() < Duration::from_secs(4));
        task.abort();
    }

    #[tokio::test]
    async fn a_body_that_stops_times_out_and_frees_its_slot() {
        let (url, task) = server(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-part",
        ))
        .await;
        let http = client(1, Duration::from_millis(300));
        let response = http.send(get(&url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        // The only slot is taken while the body is open.
        let err = http.send(get(&url)).await.unwrap_err();
        assert!(
            matches!(
                find_in_chain::<HttpFailure>(&err),
                Some(HttpFailure::Busy { max: 1, .. })
            ),
            "{err:?}"
        );
        let mut body = response.into_body();
        let collected = http_body_util_collect(&mut body).await;
        let err = collected.unwrap_err();
        assert!(
            matches!(
                find_in_chain::<HttpFailure>(err.as_ref()),
                Some(HttpFailure::Stalled(_))
            ),
            "{err:?}"
        );
        drop(body);
        // The slot is free again: the next request gets as far as the server.
        let response = http.send(get(&url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        task.abort();
    }

    async fn http_body_util_collect(body: &mut SdkBody) -> Result<Vec<u8>, BoxError> {
        let mut out = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
            match frame {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        out.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(out),
            }
        }
    }

    #[tokio::test]
    async fn the_sdk_can_poison_the_connection_of_a_request() {
        let (url, task) = server(Some(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        let http = client(4, Duration::from_secs(5));
        let capture = CaptureSmithyConnection::new();
        let mut request = get(&url);
        request.add_extension(capture.clone());
        let response = http.send(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 500);
        // What the SDK's connection-poisoning interceptor does after a
        // transient error (it logs an ERROR when there is no connection).
        let connection = capture.get().expect("the connection is captured");
        connection.poison();
        task.abort();
    }

    #[tokio::test]
    async fn large_bodies_are_sent_in_pieces() {
        let progress = Arc::new(Progress::new(Duration::ZERO));
        let mut body = RequestBody {
            inner: SdkBody::from(vec![7u8; 200 * 1024]),
            pending: Bytes::new(),
            progress,
        };
        assert_eq!(body.size_hint().exact(), Some(200 * 1024));
        let mut sizes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, [65536, 65536, 65536, 8192]);
        assert!(body.is_end_stream());
    }
}
