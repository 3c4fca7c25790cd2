//! The admin API's error bodies, shaped like Files.com's:
//! `{"error", "http-code", "instance", "title", "type"}`. `instance` is a
//! fresh UUID, logged with the error so an operator can find the log line
//! of a failure a client reports.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::ops_endpoint::Body;

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// `type`: a Files.com-style `group/kind` (`not-found`,
    /// `not-authenticated/invalid-credentials`, ...).
    pub kind: &'static str,
    /// `title`: the kind in words.
    pub title: &'static str,
    /// `error`: what happened, for a person.
    pub message: String,
    /// `errors`: the individual problems (an invalid config's), if any.
    pub errors: Vec<String>,
    /// The methods the path allows (for 405's `Allow`).
    pub allow: Option<&'static str>,
}

/// The JSON body.
#[derive(Serialize)]
struct ProblemBody<'a> {
    error: &'a str,
    #[serde(rename = "http-code")]
    http_code: u16,
    instance: &'a str,
    title: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

impl Problem {
    /// A problem without `errors` or `Allow`.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            message: message.into(),
            errors: Vec::new(),
            allow: None,
        }
    }

    /// 404 `not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found", message)
    }

    /// 400 `bad-request/request-params-invalid`.
    pub fn bad_params(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request/request-params-invalid",
            "Request Params Invalid",
            message,
        )
    }

    /// 405 `bad-request/method-not-allowed`, with `Allow`.
    pub fn method_not_allowed(method: &hyper::Method, allow: &'static str) -> Self {
        Problem {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad-request/method-not-allowed",
                "Method Not Allowed",
                format!("{method} is not allowed here; use {allow}"),
            )
        }
    }

    /// 500 `processing-failure`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "processing-failure",
            "Processing Failure",
            message,
        )
    }

    /// The response, with a fresh `instance`; logs the problem with it
    /// (`method` and `path` name the request in the log).
    pub fn response(self, method: &hyper::Method, path: &str) -> Response<Body> {
        let instance = uuid::Uuid::new_v4().to_string();
        let status = self.status.as_u16();
        let (kind, message) = (self.kind, self.message.as_str());
        if self.status.is_server_error() {
            tracing::error!(%instance, status, kind, %method, path, "admin API: {message}");
        } else if self.status == StatusCode::UNAUTHORIZED {
            tracing::warn!(%instance, status, kind, %method, path, "admin API: {message}");
        } else {
            tracing::info!(%instance, status, kind, %method, path, "admin API: {message}");
        }
        let body = ProblemBody {
            error: &self.message,
            http_code: status,
            instance: &instance,
            title: self.title,
            kind: self.kind,
            errors: &self.errors,
        };
        // Serialising strings and numbers cannot fail; the fallback keeps
        // the shape if it ever did.
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
            format!(
                r#"{{"error":"error","http-code":{status},"instance":"{instance}","title":"Error","type":"processing-failure"}}"#
            )
            .into_bytes()
        });
        let mut r = Response::new(Full::new(Bytes::from(bytes)));
        *r.status_mut() = self.status;
        let headers = r.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="gateway admin API""#),
            );
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}
