//! The one error type every backend returns, with a kind that the inbound
//! server maps to a protocol status in exactly one place.

use std::fmt;

/// What went wrong, independent of the protocol that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file or folder does not exist.
    NotFound,
    /// The storage refused the operation.
    PermissionDenied,
    /// Something already exists under the target name.
    AlreadyExists,
    /// A folder cannot be removed because it still has entries.
    DirectoryNotEmpty,
    /// A folder was expected, a file was found.
    NotADirectory,
    /// A file was expected, a folder was found.
    IsADirectory,
    /// The path cannot be used (bad characters, too long, escapes the root).
    InvalidPath,
    /// The backend cannot do this operation at all.
    Unsupported,
    /// The storage is full or over quota.
    NoSpace,
    /// The connection to the remote dropped; the operation may be retried.
    ConnectionLost,
    /// The remote did not answer in time; the operation may be retried.
    Timeout,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same operation later may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorKind::ConnectionLost | ErrorKind::Timeout)
    }

    /// The kind in snake_case (`not_found`), as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::DirectoryNotEmpty => "directory_not_empty",
            ErrorKind::NotADirectory => "not_a_directory",
            ErrorKind::IsADirectory => "is_a_directory",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Other => "other",
        }
    }
}

/// Why opening a connection to a remote failed: the `reason` label of
/// `gateway_remote_connect_failures_total`, set where the cause is known
/// (see [`BackendError::with_connect_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// The remote refused the TCP connection (nothing listens there).
    Refused,
    /// No answer in time (name lookup, TCP, TLS, SSH or login).
    Timeout,
    /// None of the dedicated source addresses could be bound.
    BindFailed,
    /// The SFTP server's host key is not the pinned one (or the remote is
    /// disabled because of that).
    HostKeyMismatch,
    /// The server refused the login.
    AuthFailed,
    /// TLS could not be set up (handshake, certificate, server refusal).
    Tls,
    /// Anything else (name resolution, protocol errors, resets).
    Other,
}

impl ConnectFailure {
    /// Every reason, in the order the docs list them.
    pub const ALL: [ConnectFailure; 7] = [
        ConnectFailure::Refused,
        ConnectFailure::Timeout,
        ConnectFailure::BindFailed,
        ConnectFailure::HostKeyMismatch,
        ConnectFailure::AuthFailed,
        ConnectFailure::Tls,
        ConnectFailure::Other,
    ];

    /// The label value (`refused`, `host_key_mismatch`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::BindFailed => "bind_failed",
            ConnectFailure::HostKeyMismatch => "host_key_mismatch",
            ConnectFailure::AuthFailed => "auth_failed",
            ConnectFailure::Tls => "tls",
            ConnectFailure::Other => "other",
        }
    }

    /// The reason for a TCP connect that failed with `err`.
    pub fn of_io(err: &std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            std::io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ => ConnectFailure::Other,
        }
    }
}

/// An error from a storage backend: a kind, the operation and path it
/// concerns, and a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub struct BackendError {
    kind: ErrorKind,
    operation: &'static str,
    path: String,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    connect_failure: Option<ConnectFailure>,
    remote: Option<std::sync::Arc<str>>,
}

impl BackendError {
    /// An error of `kind` for `operation` on `path`.
    pub fn new(
        kind: ErrorKind,
        operation: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        BackendError {
            kind,
            operation,
            path: path.into(),
            message: message.into(),
            source: None,
            connect_failure: None,
            remote: None,
        }
    }

    /// Attaches the underlying cause (kept for logs, not shown to clients).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Records why a connection could not be opened (for metrics); set
    /// where the cause is known, so nobody has to parse messages.
    pub fn with_connect_failure(mut self, reason: ConnectFailure) -> Self {
        self.connect_failure = Some(reason);
        self
    }

    /// Names the configured remote the error came from (kept if one was
    /// named already), so the inbound side can tell a person which remote
    /// failed without parsing messages.
    pub fn in_remote(mut self, remote: &std::sync::Arc<str>) -> Self {
        if self.remote.is_none() {
            self.remote = Some(remote.clone());
        }
        self
    }

    /// The configured remote the error came from, if it came from one.
    pub fn remote(&self) -> Option<&str> {
        self.remote.as_deref()
    }

    /// Why a connection could not be opened, when the code that failed
    /// knew (see [`with_connect_failure`](Self::with_connect_failure)).
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        self.connect_failure
    }

    /// [`connect_failure`](Self::connect_failure), or else a guess from the
    /// kind (`timeout` for [`ErrorKind::Timeout`], `other` otherwise): the
    /// reason a failed connect is counted under.
    pub fn connect_failure_reason(&self) -> ConnectFailure {
        match (self.connect_failure, self.kind) {
            (Some(reason), _) => reason,
            (None, ErrorKind::Timeout) => ConnectFailure::Timeout,
            (None, _) => ConnectFailure::Other,
        }
    }

    /// Maps an OS error from local storage to a kind and a readable message.
    pub fn from_io(operation: &'static str, path: impl Into<String>, err: std::io::Error) -> Self {
        let kind = io_kind(&err);
        let message = match kind {
            ErrorKind::NotFound => "no such file or folder".to_string(),
            ErrorKind::PermissionDenied => "permission denied by the storage".to_string(),
            ErrorKind::AlreadyExists => "already exists".to_string(),
            ErrorKind::DirectoryNotEmpty => "folder is not empty".to_string(),
            ErrorKind::NotADirectory => "not a folder".to_string(),
            ErrorKind::IsADirectory => "is a folder".to_string(),
            ErrorKind::InvalidPath => "path is not allowed".to_string(),
            ErrorKind::NoSpace => "storage is full".to_string(),
            _ => err.to_string(),
        };
        BackendError::new(kind, operation, path, message).with_source(err)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed (`"read"`, `"rename"`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The path the operation was about, relative to the backend's root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The human-readable description, without operation and path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} /: {}", self.operation, self.message)
        } else {
            write!(f, "{} /{}: {}", self.operation, self.path, self.message)
        }
    }
}

fn io_kind(err: &std::io::Error) -> ErrorKind {
    use rustix::io::Errno;
    use std::io::ErrorKind as Io;
    if let Some(errno) = Errno::from_io_error(err) {
        let by_errno = [
            (Errno::NOTEMPTY, ErrorKind::DirectoryNotEmpty),
            (Errno::NOTDIR, ErrorKind::NotADirectory),
            (Errno::ISDIR, ErrorKind::IsADirectory),
            (Errno::NOSPC, ErrorKind::NoSpace),
            (Errno::DQUOT, ErrorKind::NoSpace),
            // openat2 with RESOLVE_BENEATH answers EXDEV when a path would
            // leave the root, ELOOP for a link it refuses to follow.
            (Errno::XDEV, ErrorKind::InvalidPath),
            (Errno::LOOP, ErrorKind::InvalidPath),
            (Errno::NAMETOOLONG, ErrorKind::InvalidPath),
        ];
        if let Some((_, kind)) = by_errno.iter().find(|(e, _)| *e == errno) {
            return *kind;
        }
    }
    match err.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::PermissionDenied => ErrorKind::PermissionDenied,
        Io::AlreadyExists => ErrorKind::AlreadyExists,
        Io::Unsupported => ErrorKind::Unsupported,
        Io::TimedOut => ErrorKind::Timeout,
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
            ErrorKind::ConnectionLost
        }
        _ => ErrorKind::Other,
    }
}

/// Result alias for backend operations.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// The first error of type `T` in `err`'s source chain (`err` included).
pub(crate) fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
