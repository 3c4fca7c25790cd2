//! S3 failures as storage errors: the server's error code (or the HTTP
//! status when a response has no body, as with HEAD) chooses the
//! [`ErrorKind`], and the message names the remote and keeps the server's
//! words. Failures below HTTP (connect, TLS, timeouts) keep the kind and
//! message the connector or HTTP client gave them.

use std::error::Error;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::answers::unreadable;
use super::http::HttpFailure;
use crate::error::find_in_chain;
use crate::{BackendError, ErrorKind};

/// What an error message needs to know about the remote.
#[derive(Debug, Clone)]
pub struct RemoteInfo {
    /// The remote's name in the config.
    pub name: String,
    /// The bucket.
    pub bucket: String,
    /// The endpoint URL.
    pub endpoint: String,
    /// The access key id (not secret; helps spot a wrong one).
    pub access_key_id: String,
}

impl RemoteInfo {
    /// An error of `kind` whose message starts with the remote's name.
    pub fn error(
        &self,
        kind: ErrorKind,
        operation: &'static str,
        path: &str,
        message: impl std::fmt::Display,
    ) -> BackendError {
        BackendError::new(
            kind,
            operation,
            path,
            format!("remote `{}`: {message}", self.name),
        )
    }

    /// An SDK failure of `operation` on `path` as a storage error.
    pub fn sdk<E>(
        &self,
        operation: &'static str,
        path: &str,
        err: SdkError<E, HttpResponse>,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    {
        let (kind, message) = match &err {
            SdkError::ServiceError(_) if unreadable(&err).is_some() => {
                let answer = unreadable(&err).map(|a| a.to_string()).unwrap_or_default();
                (ErrorKind::Other, format!("the server answered {answer}"))
            }
            SdkError::ServiceError(_) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                let mut found = classify_service(self, status, err.code(), err.message());
                if let Some(s @ 200..=299) = status {
                    // AWS sends some errors (CompleteMultipartUpload,
                    // CopyObject) after a 200 has gone out.
                    found.1 = format!("{} (an error document in an HTTP {s} answer)", found.1);
                }
                if is_setup_problem(err.code()) {
                    // The client only sees "permission denied" or "failure":
                    // the log says what to fix.
                    tracing::warn!(remote = %self.name, "{operation} /{path}: {}", found.1);
                }
                found
            }
            SdkError::TimeoutError(_) => (ErrorKind::Timeout, "no answer in time".to_string()),
            SdkError::ResponseError(_) => match below_http(&err) {
                Some(found) => found,
                None => (
                    ErrorKind::ConnectionLost,
                    format!("the server's response could not be read: {}", chain(&err)),
                ),
            },
            SdkError::DispatchFailure(dispatch) => match below_http(&err) {
                Some(found) => found,
                None if dispatch.is_timeout() => (ErrorKind::Timeout, chain(&err)),
                None if dispatch.is_io() => (
                    ErrorKind::ConnectionLost,
                    format!("connection lost: {}", chain(&err)),
                ),
                None => (ErrorKind::Other, chain(&err)),
            },
            _ => (ErrorKind::Other, chain(&err)),
        };
        self.error(kind, operation, path, message).with_source(err)
    }

    /// A failure while a response body streams (a download) as a storage error.
    pub fn body(
        &self,
        operation: &'static str,
        path: &str,
        err: impl Error + Send + Sync + 'static,
    ) -> BackendError {
        let (kind, message) = below_http(&err).unwrap_or_else(|| {
            (
                ErrorKind::ConnectionLost,
                format!("the download broke off: {}", chain(&err)),
            )
        });
        self.error(kind, operation, path, message).with_source(err)
    }
}

/// The kind and message of a failure that happened below HTTP: a dial or
/// TLS error from the connector, or a timeout of the HTTP client.
fn below_http(err: &(dyn Error + 'static)) -> Option<(ErrorKind, String)> {
    if let Some(failure) = find_in_chain::<HttpFailure>(err) {
        return Some((ErrorKind::Timeout, failure.to_string()));
    }
    if let Some(dial) = find_in_chain::<BackendError>(err) {
        return Some((dial.kind(), dial.message().to_string()));
    }
    None
}

/// Every message of an error's source chain, joined; repeated ones left out.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Whether an error code means the remote's settings are wrong (every
/// request will fail alike), rather than something about one object.
fn is_setup_problem(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "RequestTimeTooSkewed"
                | "NoSuchBucket"
                | "AuthorizationHeaderMalformed"
                | "PermanentRedirect"
                | "IllegalLocationConstraintException"
        )
    )
}

/// The kind and message for an error response from the server.
pub fn classify_service(
    remote: &RemoteInfo,
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
) -> (ErrorKind, String) {
    let says = match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
        (Some(c), _) => c.to_string(),
        (None, _) => match status {
            Some(s) => format!("HTTP status {s}"),
            None => "an unexplained error".to_string(),
        },
    };
    let bucket = &remote.bucket;
    let (kind, what) = match code.unwrap_or_default() {
        "NoSuchKey" | "NotFound" | "NoSuchUpload" => (ErrorKind::NotFound, None),
        "NoSuchBucket" => (
            ErrorKind::NotFound,
            Some(format!("bucket `{bucket}` does not exist on {}", remote.endpoint)),
        ),
        "InvalidAccessKeyId" => (
            ErrorKind::PermissionDenied,
            Some(format!(
                "authentication failed: the server does not know access key id `{}`",
                remote.access_key_id
            )),
        ),
        "SignatureDoesNotMatch" => (
            ErrorKind::PermissionDenied,
            Some(
                "authentication failed: the secret access key does not match the access key id"
                    .to_string(),
            ),
        ),
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" | "InvalidObjectState" => (
            ErrorKind::PermissionDenied,
            Some(format!("access to bucket `{bucket}` denied")),
        ),
        "RequestTimeTooSkewed" => (
            ErrorKind::PermissionDenied,
            Some("the gateway's clock differs too much from the server's".to_string()),
        ),
        "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException" => (
            ErrorKind::Other,
            Some(format!(
                "bucket `{bucket}` needs another region or endpoint (check `region` and `path_style`)"
            )),
        ),
        "PreconditionFailed" => (ErrorKind::AlreadyExists, None),
        "EntityTooLarge" | "QuotaExceeded" | "XMinioStorageFull" | "StorageFull" => {
            (ErrorKind::NoSpace, None)
        }
        "NotImplemented" => (ErrorKind::Unsupported, None),
        "SlowDown" | "ServiceUnavailable" | "RequestTimeout" | "InternalError" => {
            (ErrorKind::ConnectionLost, None)
        }
        _ => match status {
            Some(404) => (ErrorKind::NotFound, None),
            Some(401 | 403) => (
                ErrorKind::PermissionDenied,
                Some(format!(
                    "access to bucket `{bucket}` denied (wrong credentials or missing permission)"
                )),
            ),
            Some(301 | 307) => (
                ErrorKind::Other,
                Some(format!(
                    "bucket `{bucket}` needs another region or endpoint (check `region` and `path_style`)"
                )),
            ),
            Some(412) => (ErrorKind::AlreadyExists, None),
            Some(501) => (ErrorKind::Unsupported, None),
            Some(503) => (ErrorKind::ConnectionLost, None),
            _ => (ErrorKind::Other, None),
        },
    };
    let message = match what {
        Some(what) => format!("{what}; the server says: {says}"),
        None => format!("the server says: {says}"),
    };
    (kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteInfo {
        RemoteInfo {
            name: "partner".into(),
            bucket: "inbox".into(),
            endpoint: "https://s3.example.com".into(),
            access_key_id: "AKIDEXAMPLE".into(),
        }
    }

    fn kind_of(status: u16, code: Option<&str>) -> ErrorKind {
        classify_service(&remote(), Some(status), code, None).0
    }

    #[test]
    fn codes_and_statuses_map_to_kinds() {
        let cases = [
            (404, Some("NoSuchKey"), ErrorKind::NotFound),
            (404, None, ErrorKind::NotFound),
            (404, Some("NoSuchBucket"), ErrorKind::NotFound),
            (403, Some("AccessDenied"), ErrorKind::PermissionDenied),
            (
                403,
                Some("SignatureDoesNotMatch"),
                ErrorKind::PermissionDenied,
            ),
            (403, Some("InvalidAccessKeyId"), ErrorKind::PermissionDenied),
            (403, None, ErrorKind::PermissionDenied),
            (412, Some("PreconditionFailed"), ErrorKind::AlreadyExists),
            (400, Some("EntityTooLarge"), ErrorKind::NoSpace),
            (501, Some("NotImplemented"), ErrorKind::Unsupported),
            (503, Some("SlowDown"), ErrorKind::ConnectionLost),
            (301, None, ErrorKind::Other),
            (400, Some("InvalidArgument"), ErrorKind::Other),
            (500, None, ErrorKind::Other),
        ];
        for (status, code, kind) in cases {
            assert_eq!(kind_of(status, code), kind, "{status} {code:?}");
        }
    }

    #[test]
    fn messages_name_the_remote_and_what_to_fix() {
        let r = remote();
        let (_, m) = classify_service(&r, Some(404), Some("NoSuchBucket"), Some("gone"));
        assert_eq!(
            m,
            "bucket `inbox` does not exist on https://s3.example.com; the server says: NoSuchBucket: gone"
        );
        let (_, m) = classify_service(&r, Some(403), Some("InvalidAccessKeyId"), None);
        assert!(
            m.contains("does not know access key id `AKIDEXAMPLE`"),
            "{m}"
        );
        let (_, m) = classify_service(&r, Some(403), Some("SignatureDoesNotMatch"), None);
        assert!(m.contains("secret access key does not match"), "{m}");
        let (_, m) = classify_service(&r, Some(403), Some("AccessDenied"), Some("Access Denied"));
        assert_eq!(
            m,
            "access to bucket `inbox` denied; the server says: AccessDenied: Access Denied"
        );
        let (_, m) = classify_service(&r, Some(404), None, None);
        assert_eq!(m, "the server says: HTTP status 404");
        let e = r.error(ErrorKind::NotFound, "stat", "a/b", m);
        assert_eq!(
            e.to_string(),
            "stat /a/b: remote `partner`: the server says: HTTP status 404"
        );
    }

    #[test]
    fn failures_below_http_keep_their_kind() {
        let r = remote();
        let stalled = HttpFailure::Stalled(std::time::Duration::from_secs(30));
        let e = r.body("read", "f", stalled);
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("nothing received within 30s"), "{e}");
        let dial = BackendError::new(
            ErrorKind::Other,
            "connect",
            "",
            "h:443: cannot bind source address (dedicated IPs 192.0.2.10): ...",
        );
        let e = r.body("read", "f", dial);
        assert_eq!(e.kind(), ErrorKind::Other);
        assert!(e.message().contains("cannot bind source address"), "{e}");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(r.body("read", "f", io).kind(), ErrorKind::ConnectionLost);
    }
}
