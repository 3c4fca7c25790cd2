//! Why an SFTP request failed, and the one function that turns that into
//! an SFTP status code and a message a person can act on.

use backends::{BackendError, ErrorKind, PathError};
use policy::Permission;
use russh_sftp::protocol::StatusCode;

use crate::tree::VirtualPath;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The storage refused or failed.
    #[error("{path}: {source}")]
    Backend {
        /// The path as the user sees it.
        path: VirtualPath,
        /// The storage's error.
        source: BackendError,
    },
    /// The user's permissions do not allow this.
    #[error("{path}: no `{permission}` permission")]
    Denied {
        /// The path as the user sees it.
        path: VirtualPath,
        /// What was missing.
        permission: Permission,
    },
    /// The client sent a path that cannot be used.
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    /// The handle is unknown or of the wrong kind.
    #[error("invalid handle")]
    BadHandle,
    /// The gateway does not offer this operation.
    #[error("{0} is not supported by this server")]
    Unsupported(&'static str),
    /// The request is malformed or not allowed in this state.
    #[error("{0}")]
    Failure(String),
}

impl RequestError {
    /// A storage error on `path`.
    pub fn backend(path: &VirtualPath, source: BackendError) -> Self {
        RequestError::Backend {
            path: path.clone(),
            source,
        }
    }

    /// A short name of the outcome for the audit log.
    pub fn outcome(&self) -> &'static str {
        match self {
            RequestError::Backend { source, .. } => match source.kind() {
                ErrorKind::NotFound => "not-found",
                ErrorKind::PermissionDenied | ErrorKind::InvalidPath => "denied",
                ErrorKind::ConnectionLost | ErrorKind::Timeout => "unavailable",
                _ => "failed",
            },
            RequestError::Denied { .. } => "denied",
            RequestError::BadPath(_) => "bad-path",
            RequestError::BadHandle => "bad-handle",
            RequestError::Unsupported(_) => "unsupported",
            RequestError::Failure(_) => "failed",
        }
    }
}

/// The status code and message the client is sent for `err`. Messages name
/// the path as the user sees it, never where it is stored.
pub fn to_status(err: &RequestError) -> (StatusCode, String) {
    match err {
        RequestError::Backend { path, source } => {
            let (code, what) = match source.kind() {
                ErrorKind::NotFound => {
                    (StatusCode::NoSuchFile, "no such file or folder".to_string())
                }
                ErrorKind::PermissionDenied => (
                    StatusCode::PermissionDenied,
                    "permission denied by the storage".to_string(),
                ),
                ErrorKind::AlreadyExists => (StatusCode::Failure, "already exists".to_string()),
                ErrorKind::DirectoryNotEmpty => {
                    (StatusCode::Failure, "folder is not empty".to_string())
                }
                ErrorKind::NotADirectory => (StatusCode::Failure, "not a folder".to_string()),
                ErrorKind::IsADirectory => (StatusCode::Failure, "is a folder".to_string()),
                ErrorKind::InvalidPath => (
                    StatusCode::PermissionDenied,
                    "path leads outside your folder".to_string(),
                ),
                ErrorKind::Unsupported => (
                    StatusCode::OpUnsupported,
                    format!("{} is not supported by this storage", source.operation()),
                ),
                ErrorKind::NoSpace => (StatusCode::Failure, "storage is full".to_string()),
                ErrorKind::ConnectionLost | ErrorKind::Timeout => (
                    StatusCode::Failure,
                    "remote storage is unavailable, try again later".to_string(),
                ),
                ErrorKind::Other => (
                    StatusCode::Failure,
                    format!("{} failed", source.operation()),
                ),
            };
            (code, format!("{path}: {what}"))
        }
        RequestError::Denied { path, permission } => (
            StatusCode::PermissionDenied,
            format!("{path}: permission denied (you lack `{permission}` here)"),
        ),
        RequestError::BadPath(e) => (StatusCode::Failure, format!("bad path: {e}")),
        RequestError::BadHandle => (StatusCode::Failure, "invalid handle".to_string()),
        RequestError::Unsupported(what) => (
            StatusCode::OpUnsupported,
            format!("{what} is not supported by this server"),
        ),
        RequestError::Failure(msg) => (StatusCode::Failure, msg.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_the_virtual_path() {
        let path = VirtualPath::resolve("/docs/a.txt").unwrap();
        let err = RequestError::backend(
            &path,
            BackendError::new(ErrorKind::NotFound, "open", "alice/docs/a.txt", "x"),
        );
        let (code, msg) = to_status(&err);
        assert_eq!(code, StatusCode::NoSuchFile);
        assert_eq!(msg, "/docs/a.txt: no such file or folder");
        let (code, _) = to_status(&RequestError::Denied {
            path,
            permission: Permission::Write,
        });
        assert_eq!(code, StatusCode::PermissionDenied);
    }
}
