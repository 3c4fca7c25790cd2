//! Failures of the FTP client and their mapping to [`BackendError`]: reply
//! codes to [`ErrorKind`]s, with the server's own words kept in the message.

use super::reply::Reply;
use crate::{BackendError, ConnectFailure, ErrorKind};

/// Something the FTP client could not do.
#[derive(Debug, thiserror::Error)]
pub enum FtpError {
    /// The server refused a command.
    #[error("the server refused {command}: {reply}")]
    Reply {
        /// The command's verb (never its argument, which may be a password).
        command: String,
        /// What the server answered.
        reply: Reply,
    },
    /// The connection failed or closed.
    #[error("connection lost: {0}")]
    Io(#[source] std::io::Error),
    /// The server did not answer in time.
    #[error("{0}: no answer within {1}s")]
    Timeout(&'static str, u64),
    /// TLS could not be set up (handshake, certificate, server refusal).
    #[error("{0}")]
    Tls(String),
    /// The server refused the login.
    #[error("authentication failed for user `{user}`: the server says {reply}")]
    Login {
        /// The login name.
        user: String,
        /// What the server answered.
        reply: Reply,
    },
    /// The server spoke out of protocol.
    #[error("{0}")]
    Protocol(String),
    /// A path with a line break would end the command early.
    #[error("a name with a line break cannot be sent over FTP")]
    LineBreak,
    /// Opening a connection failed (an error from the dialer).
    #[error("{0}")]
    Dial(BackendError),
}

impl FtpError {
    /// The reply code, when the server refused a command.
    pub fn code(&self) -> Option<u16> {
        match self {
            FtpError::Reply { reply, .. } => Some(reply.code),
            _ => None,
        }
    }

    /// The kind of failure, as the rest of the gateway sees it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FtpError::Reply { reply, .. } => kind_for_reply(reply.code, reply.text()),
            FtpError::Io(_) | FtpError::Protocol(_) => ErrorKind::ConnectionLost,
            FtpError::Timeout(..) => ErrorKind::Timeout,
            FtpError::Tls(_) => ErrorKind::Other,
            FtpError::Login { .. } => ErrorKind::PermissionDenied,
            FtpError::LineBreak => ErrorKind::InvalidPath,
            FtpError::Dial(e) => e.kind(),
        }
    }

    /// Why opening a connection failed with this error, for metrics.
    pub fn connect_failure(&self) -> ConnectFailure {
        match self {
            FtpError::Dial(e) => e.connect_failure_reason(),
            FtpError::Timeout(..) => ConnectFailure::Timeout,
            FtpError::Tls(_) => ConnectFailure::Tls,
            FtpError::Login { .. } => ConnectFailure::AuthFailed,
            FtpError::Io(e) => ConnectFailure::of_io(e),
            FtpError::Reply { .. } | FtpError::Protocol(_) | FtpError::LineBreak => {
                ConnectFailure::Other
            }
        }
    }

    /// A [`BackendError`] for `operation` on `path` of remote `remote`.
    pub fn into_backend(self, remote: &str, operation: &'static str, path: &str) -> BackendError {
        let kind = self.kind();
        let message = match &self {
            FtpError::Reply { reply, .. } => {
                format!("remote `{remote}`: the server says: {reply}")
            }
            FtpError::Dial(e) => format!("remote `{remote}`: {}", e.message()),
            other => format!("remote `{remote}`: {other}"),
        };
        BackendError::new(kind, operation, path, message).with_source(self)
    }
}

/// The kind of a refusal, from its code and, for the catch-all 550 and
/// 553, from the server's text.
pub fn kind_for_reply(code: u16, text: &str) -> ErrorKind {
    let lower = text.to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let permission = ["permission", "denied", "not allowed", "forbidden", "access"];
    match code {
        421 | 425 | 426 => ErrorKind::ConnectionLost,
        430 | 530 | 532 => ErrorKind::PermissionDenied,
        452 | 552 => ErrorKind::NoSpace,
        502 | 504 => ErrorKind::Unsupported,
        550 => {
            if says(&["no such", "not found", "not exist", "doesn't exist"]) {
                ErrorKind::NotFound
            } else if says(&["not empty"]) {
                ErrorKind::DirectoryNotEmpty
            } else if says(&["not a directory"]) {
                ErrorKind::NotADirectory
            } else if says(&["is a directory", "not a regular file", "not a plain file"]) {
                ErrorKind::IsADirectory
            } else if says(&["exists"]) {
                ErrorKind::AlreadyExists
            } else if says(&permission) {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::NotFound
            }
        }
        553 => {
            if says(&permission) {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::InvalidPath
            }
        }
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> FtpError {
        FtpError::Reply {
            command: "DELE".into(),
            reply: Reply {
                code,
                lines: vec![format!("{code} {text}")],
            },
        }
    }

    #[test]
    fn reply_codes_map_to_kinds() {
        let cases = [
            (550, "Failed to open file.", ErrorKind::NotFound),
            (550, "No such file or directory", ErrorKind::NotFound),
            (550, "Permission denied.", ErrorKind::PermissionDenied),
            (550, "Directory not empty", ErrorKind::DirectoryNotEmpty),
            (550, "File exists", ErrorKind::AlreadyExists),
            (550, "Not a directory", ErrorKind::NotADirectory),
            (550, "x: Is a directory", ErrorKind::IsADirectory),
            (553, "Could not create file.", ErrorKind::InvalidPath),
            (553, "Access denied", ErrorKind::PermissionDenied),
            (452, "Insufficient storage", ErrorKind::NoSpace),
            (552, "Quota exceeded", ErrorKind::NoSpace),
            (421, "Timeout.", ErrorKind::ConnectionLost),
            (
                426,
                "Failure writing network stream.",
                ErrorKind::ConnectionLost,
            ),
            (530, "Login incorrect.", ErrorKind::PermissionDenied),
            (502, "MFMT not implemented.", ErrorKind::Unsupported),
            (500, "Unknown command.", ErrorKind::Other),
        ];
        for (code, text, kind) in cases {
            assert_eq!(reply(code, text).kind(), kind, "{code} {text}");
        }
    }

    #[test]
    fn messages_name_the_remote_and_keep_the_server_words() {
        let e = reply(550, "Permission denied.").into_backend("partner", "remove", "a/b");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.path(), "a/b");
        assert_eq!(
            e.message(),
            "remote `partner`: the server says: 550 Permission denied."
        );
        let e = FtpError::Timeout("read", 30).into_backend("p", "read", "f");
        assert!(e.is_temporary());
        assert!(e.message().contains("no answer within 30s"), "{e}");
        let e =
            FtpError::Io(std::io::ErrorKind::ConnectionReset.into()).into_backend("p", "stat", "");
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    }
}
