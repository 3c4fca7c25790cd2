//! The S3-compatible endpoint: partner sites and S3 clients reach a
//! user's tree over the S3 protocol, signed (SigV4) with access keys the
//! admin issues per user.
//!
//! The protocol (routing, XML, SigV4 and its streaming variants, error
//! bodies) is the `s3s` crate's; this module maps its operations onto the
//! tree ([`endpoint`]) and owns the keys ([`keys`]), the mapping of keys
//! to paths ([`paths`]), listings in S3 order ([`listing`]) and multipart
//! uploads in progress ([`uploads`]). It listens on its own address, with
//! TLS unless that address is loopback.

pub mod endpoint;
pub mod guard;
pub mod keys;
pub mod listing;
pub mod paths;
mod streams;
pub mod uploads;
mod wire;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::S3EndpointSettings;
use crate::core::Shared;
use crate::state::StateStore;

/// How long an unfinished multipart upload is kept before start-up
/// removes it.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// HTTP connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 512;
/// The most a request's head (URI and headers) may take; SigV4 needs a
/// few KiB, and each request's head is held in memory while it runs.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Binds the endpoint's address and prepares its TLS and state; errors
/// here stop start-up, so a misconfigured endpoint is never silently off.
/// Multipart uploads are staged in `database` when the node shares one
/// with a cluster (any node may receive any part), else under `state_dir`.
pub async fn bind(
    settings: &S3EndpointSettings,
    state_dir: &Path,
    database: Option<&crate::database::Database>,
) -> anyhow::Result<(
    TcpListener,
    Option<tokio_rustls::TlsAcceptor>,
    uploads::Uploads,
)> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some(crate::server_tls::tls_acceptor(cert, key, "s3")?),
        None => None,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (s3.listen)", settings.listen))?;
    let uploads = match database {
        Some(db) => uploads::Uploads::Database(uploads::database::DatabaseUploads::new(db.clone())),
        None => uploads::Uploads::Folder(uploads::folder::FolderUploads::new(
            state_dir.join("s3-uploads"),
        )),
    };
    tracing::debug!("S3 multipart uploads staged {}", uploads.describe());
    match uploads.remove_older_than(STALE_UPLOAD_AGE).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} multipart upload(s) abandoned for over a week"),
        Err(e) => tracing::warn!("cannot clean up old multipart uploads: {e}"),
    }
    Ok((listener, tls, uploads))
}

/// Serves S3 on `listener` until `stop` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn serve_s3(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    uploads: uploads::Uploads,
    settings: S3EndpointSettings,
    shared: Arc<Shared>,
    store: Arc<dyn StateStore>,
    mut stop: watch::Receiver<bool>,
) {
    let guard = Arc::new(guard::Guard::new(settings.requests_per_second_per_key));
    let write_timeout = settings.write_timeout;
    let book = keys::KeyBook::new(store);
    let mut builder =
        s3s::service::S3ServiceBuilder::new(endpoint::Endpoint::new(shared, book.clone(), uploads));
    builder.set_auth(keys::KeyAuth { keys: book });
    let service = builder.build();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "S3 endpoint on {scheme}://{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("S3 endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let service = service.clone();
        let tls = tls.clone();
        let guard = guard.clone();
        let stream = guard::StallGuard::new(stream, write_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(endpoint::PeerAddr(peer));
                    let service = service.clone();
                    let guard = guard.clone();
                    let method = req.method().to_string();
                    let path = req.uri().path().to_string();
                    let key = guard::claimed_key(req.headers(), req.uri().query());
                    let head_bytes: usize = req
                        .headers()
                        .iter()
                        .map(|(k, v)| k.as_str().len() + v.len() + 4)
                        .sum::<usize>()
                        + req.uri().to_string().len();
                    async move {
                        if head_bytes > MAX_HEADER_BYTES {
                            tracing::info!(%peer, "S3 request refused: its head has {head_bytes} bytes");
                            return Ok::<_, Infallible>(wire::headers_too_large(head_bytes));
                        }
                        if let Err(refusal) =
                            guard.admit(peer.ip(), key.as_deref(), std::time::Instant::now())
                        {
                            tracing::info!(%peer, "S3 request refused: {refusal}");
                            metrics::counter!("gateway_s3_refused_total", "reason" => refusal.reason())
                                .increment(1);
                            return Ok::<_, Infallible>(wire::slow_down(&refusal.to_string()));
                        }
                        let resp = match hyper::service::Service::call(&service, req).await {
                            Ok(resp) => resp,
                            Err(e) => {
                                tracing::warn!(%peer, "S3 request failed: {e:?}");
                                let mut resp = hyper::Response::new(s3s::Body::empty());
                                *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                resp
                            }
                        };
                        let status = resp.status().as_u16();
                        if guard.record(
                            peer.ip(),
                            key.as_deref(),
                            status,
                            resp.body().bytes().as_ref(),
                            std::time::Instant::now(),
                        ) {
                            metrics::counter!("gateway_s3_signature_failures_total").increment(1);
                        }
                        log_answer(peer, &method, &path, resp.status());
                        let status = format!("{}xx", resp.status().as_u16() / 100);
                        metrics::counter!(
                            "gateway_s3_requests_total",
                            "method" => method,
                            "status" => status
                        )
                        .increment(1);
                        Ok::<_, Infallible>(resp)
                    }
                },
            );
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    // At most 100 headers (hyper answers 431 beyond).
                    .max_headers(100);
                b
            };
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), svc).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "S3 endpoint: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => builder.serve_connection(TokioIo::new(stream), svc).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "S3 connection ended: {e}");
            }
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Logs an error answer by whose mistake it was: refused credentials at
/// INFO (who knocks matters), other client errors and APIs not offered at
/// DEBUG (a listing of a missing key is routine), server errors at WARN
/// (their cause was logged where it arose).
fn log_answer(peer: std::net::SocketAddr, method: &str, path: &str, status: hyper::StatusCode) {
    let code = status.as_u16();
    match code {
        401 | 403 => tracing::info!(%peer, method, path, status = code, "S3 request refused"),
        // 501: an API the endpoint does not offer, which the client asked for.
        400..=499 | 501 => tracing::debug!(%peer, method, path, status = code, "S3 client error"),
        500..=599 => tracing::warn!(%peer, method, path, status = code, "S3 request failed"),
        _ => {}
    }
}
