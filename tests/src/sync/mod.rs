//! Syncs end to end: a folder of the gateway's storage and a path
//! on a real remote (sshd, vsftpd, pure-ftpd, ProFTPD, AsyncSSH, S3), driven by
//! the real `gateway sync ...` commands and `gateway serve`.
//!
//! [`SyncRig`] holds one test's gateway config and state, its remote server
//! and the remote's folder on disk (sshd's and the FTP server's root, or
//! s3s-fs's bucket folder, where object `KEY` is the file `KEY`), so every
//! side of a sync is checked file by file, content included, without going
//! through the gateway. The output lines of `sync run` and `sync run
//! --dry-run` are parsed into [`Actions`] so a dry run can be compared with
//! the real run that follows; [`SyncRig::checked_run`] does both.
//!
//! Shared scenarios (push, pull, two-way for each remote kind) live in
//! [`scenarios`]; the test files call them.

mod cli;
mod files;
mod output;
mod rig;
pub mod scenarios;

use std::time::Duration;

pub use cli::*;
pub use files::*;
pub use output::*;
pub use rig::*;

/// The sync's name in the shared scenarios.
pub const SYNC: &str = "nightly";

/// The gateway-side folder of the shared scenarios (storage path).
pub const FOLDER: &str = "/outbound";

/// The remote's name in every [`SyncRig`] config.
pub const REMOTE: &str = "partner";

/// The path under the remote's root of the shared scenarios.
pub const REMOTE_PATH: &str = "drop";

/// Time limit of one `gateway sync ...` command.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Prefix of the hidden temporary files uploads are written to.
pub const TEMP_PREFIX: &str = ".gw-upload-";
