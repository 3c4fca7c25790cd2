//! Why an SFTP request failed, and the one function that turns that into
//! an SFTP status code and a message a person can act on.

use backends::{BackendError, ConnectFailure, ErrorKind, PathError};
use policy::Permission;
use russh_sftp::protocol::StatusCode;

use crate::core::tree::VirtualPath;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The storage refused or failed.
    #[error("{path}: {source}")]
    Backend {
        /// The path as the user sees it.
        path: VirtualPath,
        /// The storage's error (boxed: it is large, and errors are rare).
        source: Box<BackendError>,
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
            source: Box::new(source),
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

/// The status code and sentence for an error of a configured remote that
/// concerns the remote as a whole (it cannot be reached, is disabled,
/// refuses our login, has no free connection, dropped the connection),
/// or `None` for an error about the file itself.
///
/// Codes are chosen for what clients show: OpenSSH's `sftp` prints only
/// the code's own text ("No connection", "Connection lost"), paramiko,
/// rclone and lftp print the message. The sentence names the remote by
/// its config name and says who can act, never its address.
pub fn remote_status(source: &BackendError) -> Option<(StatusCode, String)> {
    let remote = source.remote()?;
    let no_connection = |what: String| Some((StatusCode::NoConnection, what));
    if let Some(reason) = source.connect_failure() {
        return match reason {
            ConnectFailure::HostKeyMismatch => no_connection(format!(
                "remote `{remote}` is disabled: its host key changed; an admin must check the new key and run `gateway remote trust {remote}`"
            )),
            ConnectFailure::AuthFailed => no_connection(format!(
                "remote `{remote}` refused the gateway's login; an admin must check the remote's credentials"
            )),
            ConnectFailure::BindFailed => no_connection(format!(
                "remote `{remote}` cannot be reached: the gateway cannot use its dedicated source address; tell an admin"
            )),
            ConnectFailure::Refused => no_connection(format!(
                "remote `{remote}` is unreachable: it refused the connection; try again later"
            )),
            ConnectFailure::Timeout => no_connection(format!(
                "remote `{remote}` is unreachable: it did not answer in time; try again later"
            )),
            ConnectFailure::Tls => no_connection(format!(
                "remote `{remote}` is unreachable: a secure connection could not be set up; tell an admin"
            )),
            ConnectFailure::Other => no_connection(format!(
                "remote `{remote}` is unreachable; try again later"
            )),
        };
    }
    match source.kind() {
        // The pool's wait for a free connection ran out.
        ErrorKind::Timeout if source.operation() == "connect" => no_connection(format!(
            "remote `{remote}` is busy: all its connections are in use; try again later"
        )),
        ErrorKind::Timeout => Some((
            StatusCode::ConnectionLost,
            format!("remote `{remote}` stopped answering; try again later"),
        )),
        ErrorKind::ConnectionLost => Some((
            StatusCode::ConnectionLost,
            format!("the connection to remote `{remote}` was lost; try again"),
        )),
        _ => None,
    }
}

/// The status code and message the client is sent for `err`. Messages name
/// the path as the user sees it, never where it is stored.
pub fn to_status(err: &RequestError) -> (StatusCode, String) {
    match err {
        RequestError::Backend { path, source } => {
            if let Some((code, what)) = remote_status(source) {
                return (code, format!("{path}: {what}"));
            }
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

    fn remote_error(kind: ErrorKind, op: &'static str) -> BackendError {
        BackendError::new(
            kind,
            op,
            "inbox/a.txt",
            "partner.example:22: unreachable: x",
        )
        .in_remote(&std::sync::Arc::from("partner"))
    }

    #[test]
    fn a_remote_that_cannot_be_used_is_named_with_what_to_do() {
        let path = VirtualPath::resolve("/partner/a.txt").unwrap();
        let cases = [
            (
                remote_error(ErrorKind::PermissionDenied, "connect")
                    .with_connect_failure(ConnectFailure::HostKeyMismatch),
                StatusCode::NoConnection,
                "remote `partner` is disabled: its host key changed; an admin must check the new key and run `gateway remote trust partner`",
            ),
            (
                remote_error(ErrorKind::PermissionDenied, "connect")
                    .with_connect_failure(ConnectFailure::AuthFailed),
                StatusCode::NoConnection,
                "refused the gateway's login",
            ),
            (
                remote_error(ErrorKind::ConnectionLost, "connect")
                    .with_connect_failure(ConnectFailure::Refused),
                StatusCode::NoConnection,
                "remote `partner` is unreachable: it refused the connection",
            ),
            (
                remote_error(ErrorKind::Timeout, "connect"),
                StatusCode::NoConnection,
                "remote `partner` is busy",
            ),
            (
                remote_error(ErrorKind::ConnectionLost, "read"),
                StatusCode::ConnectionLost,
                "the connection to remote `partner` was lost",
            ),
        ];
        for (source, code, words) in cases {
            let (got_code, msg) = to_status(&RequestError::backend(&path, source));
            assert_eq!(got_code, code, "{msg}");
            assert!(msg.starts_with("/partner/a.txt: "), "{msg}");
            assert!(msg.contains(words), "{msg}");
            assert!(
                !msg.contains("partner.example"),
                "the address leaked: {msg}"
            );
        }
        // A file's own error from a remote keeps its usual code.
        let (code, _) = to_status(&RequestError::backend(
            &path,
            remote_error(ErrorKind::NotFound, "open"),
        ));
        assert_eq!(code, StatusCode::NoSuchFile);
    }
}
