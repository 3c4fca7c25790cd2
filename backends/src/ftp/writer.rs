//! A remote file being written: one STOR (or APPE, or REST+STOR for a
//! resume) stream fed as data arrives. With atomic uploads the file is
//! written under a hidden temporary name and renamed into place on close;
//! otherwise it is written under its own name. A failed upload removes
//! what it wrote and reports why; when the connection is gone (the server
//! stopped), the removal is remembered and done through the next working
//! connection (`pending`).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::backend::{rename_on, FtpBackend};
use super::connector::FtpConnector;
use super::control::Control;
use super::error::FtpError;
use super::stream::MaybeTls;
use crate::backend::{FileWriter, RenameMode, WriteMode};
use crate::local::hidden_upload_path;
use crate::pool::Pooled;
use crate::pooled::settle;
use crate::{BackendError, ErrorKind, Result, StoragePath};

/// How long to wait for the server to close a finished upload's data
/// connection (it does so right after its final reply).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Bytes written to the data connection under one stall timeout.
const WRITE_PIECE: usize = 64 * 1024;

/// An upload in progress.
pub struct FtpWriter {
    backend: FtpBackend,
    conn: Option<Pooled<FtpConnector>>,
    data: Option<MaybeTls>,
    path: StoragePath,
    /// The remote file being written (a temporary name for atomic uploads).
    target: String,
    /// For atomic uploads: the final name and whether it must not exist.
    publish: Option<(String, bool)>,
    /// Whether `target` is removed when the upload fails (never for a
    /// resume: the existing part belongs to the user).
    remove_on_failure: bool,
    position: u64,
}

/// Where an upload goes and how.
struct Plan {
    target: String,
    publish: Option<(String, bool)>,
    remove_on_failure: bool,
    position: u64,
}

impl FtpWriter {
    /// Starts the upload of `path` on `conn`.
    pub async fn open(
        backend: FtpBackend,
        mut conn: Pooled<FtpConnector>,
        path: StoragePath,
        mode: WriteMode,
    ) -> Result<Self> {
        let started = {
            let mut c = conn.lock().await;
            start(&backend, &mut c, &path, mode).await
        };
        settle(&mut conn, &started);
        let (data, plan) = started?;
        Ok(FtpWriter {
            backend,
            conn: Some(conn),
            data: Some(data),
            path,
            target: plan.target,
            publish: plan.publish,
            remove_on_failure: plan.remove_on_failure,
            position: plan.position,
        })
    }

    fn closed(&self) -> BackendError {
        BackendError::new(
            ErrorKind::ConnectionLost,
            "write",
            self.path.as_str(),
            "the upload was already ended",
        )
    }

    /// The upload failed with `e`: ends the transfer, prefers the server's
    /// own reason (a 552 "quota exceeded" explains a reset), removes the
    /// partial file, and gives up the connection if it broke.
    async fn fail(&mut self, e: FtpError) -> BackendError {
        let mut data = self.data.take();
        if let Some(d) = data.as_mut() {
            d.take_pending();
        }
        let Some(mut conn) = self.conn.take() else {
            return self.backend.err(e, "write", &self.path);
        };
        let err = {
            let mut c = conn.lock().await;
            drop(data);
            let reason = match c.finish_transfer().await {
                Err(reply @ FtpError::Reply { .. }) => reply,
                _ => e,
            };
            self.remove_target(&mut c).await;
            self.backend.err(reason, "write", &self.path)
        };
        if err.is_temporary() {
            conn.mark_broken();
        }
        err
    }

    /// Ends the transfer and removes what was written, without an error.
    ///
    /// The data connection is closed as a finished upload is (TLS
    /// close_notify, FIN, then reading until the server closes), not reset:
    /// over TLS 1.3 the session tickets that later data connections resume
    /// with arrive on it (an upload that was abandoned right after it
    /// started has not read them yet), and vsftpd refuses data connections
    /// that do not resume a session (`522 ... session reuse required`)
    /// once a control connection has none left. The server then keeps what
    /// arrived, which is removed below as before.
    async fn discard(&mut self) {
        let mut data = self.data.take();
        if let Some(d) = data.as_mut() {
            d.take_pending();
            if matches!(
                tokio::time::timeout(DRAIN_LIMIT, d.shutdown()).await,
                Ok(Ok(()))
            ) {
                d.drain(DRAIN_LIMIT).await;
            }
        }
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let ok = {
            let mut c = conn.lock().await;
            let ended = c.abort_transfer(data).await.is_ok();
            self.remove_target(&mut c).await && ended
        };
        if !ok {
            conn.mark_broken();
        }
    }
}

/// Checks the target, picks the name to write and starts the transfer.
async fn start(
    backend: &FtpBackend,
    c: &mut Control,
    path: &StoragePath,
    mode: WriteMode,
) -> Result<(MaybeTls, Plan)> {
    let final_remote = c.path(path);
    let (command, offset, plan) = match mode {
        WriteMode::Replace { exclusive } => {
            // A partial upload of an earlier attempt waiting to be removed
            // is replaced now: it must not be removed afterwards.
            backend.removals().forget(&final_remote).await;
            if exclusive {
                match c.stat(&final_remote).await {
                    Ok(None) => {}
                    Ok(Some(m)) if m.is_dir() => {
                        return Err(refuse(ErrorKind::IsADirectory, path, "is a folder"))
                    }
                    Ok(Some(_)) => {
                        return Err(refuse(ErrorKind::AlreadyExists, path, "already exists"))
                    }
                    Err(e) => return Err(backend.err(e, "write", path)),
                }
            }
            let plan = if backend.settings().atomic_uploads {
                Plan {
                    target: c.path(&hidden_upload_path(path)?),
                    publish: Some((final_remote, exclusive)),
                    remove_on_failure: true,
                    position: 0,
                }
            } else {
                Plan {
                    target: final_remote,
                    publish: None,
                    remove_on_failure: true,
                    position: 0,
                }
            };
            (format!("STOR {}", plan.target), None, plan)
        }
        WriteMode::Resume { offset } => {
            let size = match c.stat(&final_remote).await {
                Ok(Some(m)) if m.is_dir() => {
                    return Err(refuse(ErrorKind::IsADirectory, path, "is a folder"))
                }
                Ok(Some(m)) => m.size,
                Ok(None) => return Err(refuse(ErrorKind::NotFound, path, "no such file")),
                Err(e) => return Err(backend.err(e, "write", path)),
            };
            if offset > size {
                return Err(refuse(
                    ErrorKind::Other,
                    path,
                    &format!("cannot resume at byte {offset}: the file has {size} bytes"),
                ));
            }
            // APPE where it is a plain append; REST + STOR in the middle.
            let (command, rest) = if offset == size {
                (format!("APPE {final_remote}"), None)
            } else {
                (format!("STOR {final_remote}"), Some(offset))
            };
            let plan = Plan {
                target: final_remote,
                publish: None,
                remove_on_failure: false,
                position: offset,
            };
            (command, rest, plan)
        }
    };
    match c.start_transfer(&command, offset).await {
        Ok(data) => Ok((data, plan)),
        Err(e) => {
            let err = backend.err(e, "write", path);
            if err.is_temporary() {
                return Err(err);
            }
            // 553 "could not create file" hides a missing folder or a folder
            // in the way: look.
            if let Some(parent) = path.parent() {
                let parent_remote = c.path(&parent);
                if matches!(c.stat(&parent_remote).await, Ok(None)) {
                    return Err(refuse(
                        ErrorKind::NotFound,
                        path,
                        "the containing folder does not exist",
                    ));
                }
            }
            let final_remote = plan.publish.as_ref().map_or(&plan.target, |(f, _)| f);
            if matches!(c.stat(final_remote).await, Ok(Some(m)) if m.is_dir()) {
                return Err(refuse(ErrorKind::IsADirectory, path, "is a folder"));
            }
            Err(err)
        }
    }
}

fn refuse(kind: ErrorKind, path: &StoragePath, message: &str) -> BackendError {
    BackendError::new(kind, "write", path.as_str(), message)
}

#[async_trait::async_trait]
impl FileWriter for FtpWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.conn.is_none() {
            return Err(self.closed());
        }
        let timeout = self.backend.settings().io_timeout;
        // The timeout is for a stall: each piece must get through in time.
        for piece in data.chunks(WRITE_PIECE) {
            let Some(stream) = self.data.as_mut() else {
                return Err(self.closed());
            };
            match tokio::time::timeout(timeout, stream.write_all(piece)).await {
                Ok(Ok(())) => self.position += piece.len() as u64,
                Ok(Err(e)) => return Err(self.fail(FtpError::Io(e)).await),
                Err(_) => {
                    let e = FtpError::Timeout("writing", timeout.as_secs());
                    return Err(self.fail(e).await);
                }
            }
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let (true, Some(mut data)) = (self.conn.is_some(), self.data.take()) else {
            return Err(self.closed());
        };
        let timeout = self.backend.settings().io_timeout;
        // close_notify and FIN tell the server the file is complete.
        let shut = tokio::time::timeout(timeout, data.shutdown()).await;
        if let Err(e) = match shut {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FtpError::Io(e)),
            Err(_) => Err(FtpError::Timeout("finishing the upload", timeout.as_secs())),
        } {
            self.data = Some(data);
            return Err(self.fail(e).await);
        }
        let Some(mut conn) = self.conn.take() else {
            return Err(self.closed());
        };
        let result = {
            let mut c = conn.lock().await;
            let finished = c.finish_transfer().await;
            data.drain(DRAIN_LIMIT).await;
            drop(data);
            match finished {
                Err(e) => {
                    self.remove_target(&mut c).await;
                    Err(self.backend.err(e, "write", &self.path))
                }
                Ok(()) => match self.publish.take() {
                    None => Ok(()),
                    Some((final_remote, exclusive)) => {
                        let published = self.publish_on(&mut c, &final_remote, exclusive).await;
                        if published.is_err() {
                            self.remove_target(&mut c).await;
                        }
                        published
                    }
                },
            }
        };
        settle(&mut conn, &result);
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}

impl FtpWriter {
    /// Removes what a failed upload wrote (unless it was a resume), or,
    /// if the connection is gone, remembers it for the next connection.
    /// False if the connection is no longer usable.
    async fn remove_target(&self, c: &mut Control) -> bool {
        if !self.remove_on_failure {
            return true;
        }
        match c.delete(&self.target).await {
            Ok(()) => true,
            Err(e) if e.kind().is_temporary() => {
                self.backend
                    .removals()
                    .remember(&self.target, &e.to_string());
                false
            }
            // Never created (the STOR was refused), or not ours to remove.
            Err(_) => true,
        }
    }

    /// Renames the finished temporary file to its final name.
    async fn publish_on(&self, c: &mut Control, final_remote: &str, exclusive: bool) -> Result<()> {
        self.backend.removals().forget(final_remote).await;
        let mode = if exclusive {
            match c.stat(final_remote).await {
                Ok(None) => RenameMode::NoReplace,
                Ok(Some(_)) => {
                    return Err(refuse(
                        ErrorKind::AlreadyExists,
                        &self.path,
                        "already exists",
                    ))
                }
                Err(e) => return Err(self.backend.err(e, "write", &self.path)),
            }
        } else {
            RenameMode::Replace
        };
        rename_on(
            &self.backend,
            c,
            &self.target,
            final_remote,
            mode,
            &self.path,
            &self.path,
        )
        .await
    }
}

impl Drop for FtpWriter {
    fn drop(&mut self) {
        // Dropped without close (the client vanished): discard in the background.
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut orphan = FtpWriter {
            backend: self.backend.clone(),
            conn: Some(conn),
            data: self.data.take(),
            path: self.path.clone(),
            target: std::mem::take(&mut self.target),
            publish: None,
            remove_on_failure: self.remove_on_failure,
            position: self.position,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { orphan.discard().await });
            }
            Err(_) => {
                if orphan.remove_on_failure {
                    orphan
                        .backend
                        .removals()
                        .remember(&orphan.target, "the upload was dropped outside a runtime");
                }
                if let Some(mut conn) = orphan.conn.take() {
                    conn.mark_broken();
                }
            }
        }
    }
}
