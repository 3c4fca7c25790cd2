//! Between S3's values and the gateway's: storage errors as S3 errors,
//! keys as paths, times, ETags, the `mtime` metadata, `Content-MD5` and
//! copy ranges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backends::{BackendError, ErrorKind, Metadata};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use super::paths::{parse_key, KeyTarget};
use crate::core::checksums::Algorithm;
use crate::core::tree::VirtualPath;

/// The only bucket.
pub const BUCKET: &str = "default";

/// An error of the gateway's own (not the client's), answered as S3's
/// `InternalError` and logged at WARN: the S3 library's own error log is
/// off, because it would log every client mistake at ERROR.
pub(super) fn internal_error(message: impl std::fmt::Display) -> S3Error {
    tracing::warn!("S3 endpoint: {message}");
    S3Error::with_message(S3ErrorCode::InternalError, message.to_string())
}

/// A storage error as S3 reports it; one that is not the client's doing
/// (a remote unreachable or failing) is logged at WARN.
pub(super) fn storage_error(path: &VirtualPath, e: BackendError) -> S3Error {
    let message = format!("{path}: {e}");
    let code = match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            S3ErrorCode::NoSuchKey
        }
        ErrorKind::PermissionDenied => S3ErrorCode::AccessDenied,
        ErrorKind::InvalidPath => S3ErrorCode::InvalidArgument,
        ErrorKind::NoSpace => S3ErrorCode::EntityTooLarge,
        ErrorKind::Unsupported => S3ErrorCode::NotImplemented,
        ErrorKind::ConnectionLost | ErrorKind::Timeout => S3ErrorCode::ServiceUnavailable,
        ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty => S3ErrorCode::OperationAborted,
        ErrorKind::Other => S3ErrorCode::InternalError,
    };
    if matches!(
        code,
        S3ErrorCode::ServiceUnavailable | S3ErrorCode::InternalError
    ) {
        tracing::warn!("S3 endpoint: {message}");
    }
    S3Error::with_message(code, message)
}

pub(super) fn no_such_key(path: &VirtualPath) -> S3Error {
    s3_error!(NoSuchKey, "{path}: no such key")
}

pub(super) fn check_bucket(bucket: &str) -> S3Result<()> {
    if bucket == BUCKET {
        Ok(())
    } else {
        Err(s3_error!(
            NoSuchBucket,
            "this endpoint has one bucket, `{BUCKET}`"
        ))
    }
}

pub(super) fn key_target(key: &str) -> S3Result<KeyTarget> {
    parse_key(key).map_err(|e| s3_error!(InvalidArgument, "{e}"))
}

pub(super) fn timestamp(t: Option<SystemTime>) -> Option<Timestamp> {
    t.map(Timestamp::from)
}

/// A stand-in ETag for a file whose MD5 is not known without reading it:
/// it changes when the size or time does, and its `-1` suffix marks it as
/// not an MD5 (as a multipart ETag is), so no client checks content
/// against it.
pub(super) fn version_etag(meta: &Metadata) -> String {
    let nanos = meta
        .modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = crate::core::checksums::of_bytes(
        Algorithm::Md5,
        format!("{}:{nanos}", meta.size).as_bytes(),
    );
    format!("{stamp}-1")
}

/// The modification time in `mtime` user metadata.
pub(super) fn metadata_mtime(metadata: Option<&s3s::dto::Metadata>) -> Option<SystemTime> {
    parse_mtime(metadata?.get(MTIME_KEY)?)
}

/// An `mtime` value: Unix seconds with an optional fraction.
pub(super) fn parse_mtime(text: &str) -> Option<SystemTime> {
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || !(0.0..=1e11).contains(&secs) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

pub(super) fn mtime_metadata(t: Option<SystemTime>) -> Option<s3s::dto::Metadata> {
    let d = t?.duration_since(UNIX_EPOCH).ok()?;
    let mut m = s3s::dto::Metadata::new();
    m.insert(
        MTIME_KEY.to_string(),
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
    );
    Some(m)
}

/// Percent-encodes a key for `encoding-type=url` listings (what the AWS
/// CLI asks for), keeping `/`.
pub(super) fn url_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a `Content-MD5` header (base64 of 16 bytes) to hex.
pub(super) fn content_md5_hex(header: &str) -> S3Result<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
    if raw.len() != 16 {
        return Err(s3_error!(InvalidDigest, "Content-MD5 is not 16 bytes"));
    }
    Ok(backends::hash::hex(&raw))
}

/// `bytes=first-last` of an UploadPartCopy, within a file of `size` bytes.
pub(super) fn parse_copy_range(text: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last within the source, not `{text}`"
        )
    };
    let (first, last) = text
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(bad());
    }
    Ok(first..last + 1)
}

/// User metadata key holding a file's modification time (what rclone and
/// our own S3 remotes write): Unix seconds with an optional fraction.
pub(super) const MTIME_KEY: &str = "mtime";

/// MD5 of nothing: the ETag of a folder marker.
pub(super) const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// A `503 SlowDown` answer, as S3 throttles (SDKs back off and retry),
/// with `message` for whoever reads it.
pub(super) fn slow_down(message: &str) -> hyper::Response<s3s::Body> {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>{escaped}</Message></Error>"
    );
    let mut resp = hyper::Response::new(s3s::Body::from(xml));
    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    resp
}

/// A `431` answer for a request whose head has `bytes` bytes.
pub(super) fn headers_too_large(bytes: usize) -> hyper::Response<s3s::Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>RequestHeaderSectionTooLarge</Code><Message>the request's headers take {bytes} bytes; at most {} are read</Message></Error>",
        super::MAX_HEADER_BYTES
    );
    let mut resp = hyper::Response::new(s3s::Body::from(xml));
    *resp.status_mut() = hyper::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp
}
